//! Which cluster and node a metadata directory belongs to, recorded in
//! `<dir>/identity.json` once the node has the cluster's id. It lets a node
//! refuse a directory of another node or another cluster before it answers
//! any Raft call with it.

use crate::error::MetaError;
use crate::NodeId;
use std::path::{Path, PathBuf};

const FILE: &str = "identity.json";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: NodeId,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The identity recorded in `dir`, checked against the configured `node_id`.
pub fn load(dir: &Path, node_id: NodeId) -> Result<Option<Identity>, MetaError> {
    let file = path(dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(MetaError::Fatal(format!("read {}: {e}", file.display()))),
    };
    let identity: Identity = serde_json::from_str(&text)
        .map_err(|e| MetaError::Fatal(format!("{} is not an identity: {e}", file.display())))?;
    if identity.node_id != node_id {
        return Err(MetaError::Refused(format!(
            "the metadata directory {} belongs to node {} of cluster {}, but this node is configured \
             as node {node_id}; point cluster.nodeid or metadata.dir at the right pair",
            dir.display(),
            identity.node_id,
            identity.cluster_id
        )));
    }
    Ok(Some(identity))
}

/// Records `identity` in `dir` durably (temp file, fsync, rename, fsync dir).
pub fn store(dir: &Path, identity: &Identity) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(identity).map_err(std::io::Error::other)?;
    let temp = dir.join(format!("{FILE}.tmp"));
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path(dir))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_another_node_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), 1).unwrap(), None);
        let identity = Identity {
            cluster_id: "c1".into(),
            node_id: 2,
        };
        store(dir.path(), &identity).unwrap();
        assert_eq!(load(dir.path(), 2).unwrap(), Some(identity));
        let refused = load(dir.path(), 3).unwrap_err();
        assert!(matches!(refused, MetaError::Refused(_)), "{refused}");
        assert!(refused.to_string().contains("belongs to node 2"));
    }
}
