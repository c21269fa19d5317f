"""oras-py as a real client: push files as an artifact (monolithic and in
64 KiB chunks), pull them back, compare bytes, list tags.

Usage: oras_roundtrip.py HOST:PORT WORKDIR. Exits non-zero on any mismatch.
With ORAS_USER and ORAS_PASSWORD set it logs in with them, through the
auth backend ORAS_AUTH names (`basic`: Basic credentials on every request;
`token`, the default: Bearer tokens fetched from the challenge's realm).
"""
import filecmp
import os
import sys

import oras.client

host, work = sys.argv[1], sys.argv[2]
os.chdir(work)
with open("small.txt", "w") as f:
    f.write("an artifact file\n")
with open("large.bin", "wb") as f:
    f.write(os.urandom(700_000))

user, password = os.environ.get("ORAS_USER"), os.environ.get("ORAS_PASSWORD")
backend = os.environ.get("ORAS_AUTH", "token")
client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend=backend)
if user:
    client.auth.set_basic_auth(user, password)
for tag, chunked in (("whole", False), ("chunked", True)):
    target = f"{host}/oras/artifact:{tag}"
    response = client.push(files=["small.txt", "large.bin"], target=target,
                           do_chunked=chunked, chunk_size=64 * 1024, quiet=True)
    assert response.status_code == 201, (tag, response.status_code, response.text)
    out = os.path.join(work, f"out-{tag}")
    pulled = client.pull(target=target, outdir=out)
    assert sorted(os.path.basename(p) for p in pulled) == ["large.bin", "small.txt"], pulled
    for name in ("small.txt", "large.bin"):
        assert filecmp.cmp(name, os.path.join(out, name), shallow=False), (tag, name)

tags = client.get_tags(f"{host}/oras/artifact")
assert sorted(tags) == ["chunked", "whole"], tags
print("ok")
