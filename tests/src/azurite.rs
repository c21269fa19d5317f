//! Azurite, Microsoft's Azure Storage emulator (npm), on loopback for tests.
//! scripts/setup installs it and the Python SDK used to create a container.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

/// Azurite's fixed development account.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const CONTAINER: &str = "test";

pub struct Azurite {
    port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Azurite {
    /// Starts the blob service and creates [`CONTAINER`].
    pub fn start() -> Azurite {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child =
            Command::new(crate::tool_cache().join("azurite/node_modules/.bin/azurite-blob"))
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .arg("--location")
                .arg(dir.path())
                .args(["--skipApiVersionCheck", "--silent"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("azurite is installed (scripts/setup installs it)");
        let azurite = Azurite {
            port,
            _dir: dir,
            child,
        };
        crate::wait_for_port(port, "azurite");
        let connection = format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={};",
            azurite.endpoint()
        );
        let created = Command::new(crate::python())
            .arg("-c")
            .arg(format!(
                "from azure.storage.blob import BlobServiceClient as C; C.from_connection_string({connection:?}).create_container({CONTAINER:?})"
            ))
            .output()
            .expect("the test venv's python");
        assert!(
            created.status.success(),
            "create container: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        azurite
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    pub fn config(&self) -> storage::config::AzureConfig {
        storage::config::AzureConfig {
            account_name: ACCOUNT.to_owned(),
            account_key: Some(KEY.to_owned()),
            container: CONTAINER.to_owned(),
            endpoint: Some(self.endpoint()),
            realm: "core.windows.net".to_owned(),
            root: None,
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
