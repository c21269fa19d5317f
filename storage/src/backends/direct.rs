//! Appending to a staged upload file with `O_DIRECT`, bypassing the page cache.
//!
//! Why: a chunked push is bounded by the slowest serial stage per byte. With
//! buffered writes that is the kernel's copy into the page cache, which cost
//! 1.6× the SHA-256 of the same bytes on the development machine (perf
//! profile in `docs/performance.md`), plus an `fdatasync` per PATCH that
//! then has the whole chunk to write back. A direct write is a DMA from our
//! buffer, and the `fdatasync` before the 202 only has the file size and the
//! device cache left to flush.
//!
//! How: bytes are copied into a block-aligned buffer and written at
//! block-aligned offsets. An append that starts inside a block first reads
//! that block's bytes back (they were written and synced by the previous
//! append) and rewrites them with the new ones. The last partial block of an
//! append goes through an ordinary buffered handle, so the file never holds
//! padding: its length is always the number of bytes received, which is what
//! recovery after a crash reads the upload's offset from.
//!
//! Filesystems without `O_DIRECT` (tmpfs on older kernels, some network
//! filesystems) answer `EINVAL` at open; [`open`] then returns `None` and the
//! caller writes through the page cache.

use bytes::Bytes;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Offsets, lengths and buffer addresses of direct I/O are multiples of this
/// (the largest logical block size in common use).
const BLOCK: usize = 4096;
/// Bytes gathered before one direct write: small enough that the write left
/// when a body ends is short (4 MiB measured 25 % slower), large enough to
/// keep syscalls few.
const BUFFER: usize = 1 << 20;

/// Opens `path` (which exists) for direct writes, or `None` when its
/// filesystem does not support them.
#[cfg(target_os = "linux")]
pub fn open(path: &Path) -> io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn open(_path: &Path) -> io::Result<Option<File>> {
    Ok(None)
}

/// A zeroed heap buffer whose usable window starts on a [`BLOCK`] boundary,
/// found by offsetting into a slightly larger `Vec` (no unsafe code).
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    fn new() -> Self {
        let raw = vec![0u8; BUFFER + BLOCK];
        let start = raw.as_ptr().align_offset(BLOCK);
        debug_assert!(start < BLOCK);
        AlignedBuf { raw, start }
    }

    fn window(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + BUFFER]
    }
}

/// Appends to one file from a blocking thread; [`Appender::finish`] makes
/// everything durable and returns the new length.
pub struct Appender {
    direct: File,
    buffered: File,
    buf: AlignedBuf,
    /// File offset of the buffer's first byte; always block-aligned.
    buf_offset: u64,
    /// Bytes of the buffer in use.
    filled: usize,
}

impl Appender {
    /// Starts appending at `offset`, which must be the file's length.
    pub fn new(direct: File, buffered: File, offset: u64) -> io::Result<Self> {
        let tail = (offset % BLOCK as u64) as usize;
        let mut appender = Appender {
            direct,
            buffered,
            buf: AlignedBuf::new(),
            buf_offset: offset - tail as u64,
            filled: tail,
        };
        if tail > 0 {
            // A direct read of the whole block is a short read of the `tail`
            // bytes before the end of the file.
            let at = appender.buf_offset;
            let read = read_at_most(&appender.direct, &mut appender.buf.window()[..BLOCK], at)?;
            if read != tail {
                return Err(io::Error::other(format!(
                    "read {read} bytes of the last block, expected {tail}"
                )));
            }
        }
        Ok(appender)
    }

    pub fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = (BUFFER - self.filled).min(data.len());
            let filled = self.filled;
            self.buf.window()[filled..filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == BUFFER {
                let at = self.buf_offset;
                self.direct.write_all_at(self.buf.window(), at)?;
                self.buf_offset += BUFFER as u64;
                self.filled = 0;
            }
        }
        Ok(())
    }

    /// Writes what is buffered, syncs, and returns the file's new length.
    pub fn finish(mut self) -> io::Result<u64> {
        let whole = self.filled - self.filled % BLOCK;
        let at = self.buf_offset;
        if whole > 0 {
            self.direct.write_all_at(&self.buf.window()[..whole], at)?;
        }
        let filled = self.filled;
        if whole < filled {
            let rest = &self.buf.window()[whole..filled];
            self.buffered.write_all_at(rest, at + whole as u64)?;
        }
        // One fdatasync covers the inode: the buffered tail, the new size, and
        // a flush of the device cache for the direct writes.
        self.buffered.sync_data()?;
        Ok(at + filled as u64)
    }
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match file.read_at(&mut buf[read..], offset + read as u64) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

/// Runs an [`Appender`] on a blocking thread, fed chunk by chunk; `None` ends
/// the append. If the channel closes without `None` the append is abandoned
/// (the caller truncates the file back).
pub fn spawn(
    appender: Appender,
    mut chunks: tokio::sync::mpsc::Receiver<Option<Bytes>>,
) -> tokio::task::JoinHandle<io::Result<Option<u64>>> {
    tokio::task::spawn_blocking(move || {
        let mut appender = appender;
        while let Some(chunk) = chunks.blocking_recv() {
            match chunk {
                Some(bytes) => appender.push(&bytes)?,
                None => return appender.finish().map(Some),
            }
        }
        Ok(None)
    })
}
