//! Checkpoints: where a reader resumes after a stop.
//!
//! A checkpoint is always a transaction boundary whose output is durable (for `cdcd tail`: written
//! and flushed to stdout). It records the server flavor and identity with the position, so that the
//! reader can refuse to apply it to a different server by file and offset. The file is replaced
//! atomically: written to a temporary file, synced, renamed over the old one, and the directory
//! synced, so a crash leaves either the old or the new checkpoint, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use cdcd_binlog::{Gtids, Position};
use cdcd_event::Flavor;

/// A resumable position and the server it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub flavor: Flavor,
    pub server_uuid: Option<String>,
    pub position: Position,
}

impl Checkpoint {
    /// Reads a checkpoint file; `None` when it does not exist yet.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading checkpoint {}", path.display()))
            }
        };
        let bad = |what: &str| {
            anyhow::anyhow!(
                "checkpoint {} is not a cdcd checkpoint ({what}); remove it to start over",
                path.display()
            )
        };
        let value: Value = serde_json::from_str(&text).map_err(|_| bad("not JSON"))?;
        let flavor = match value["flavor"].as_str() {
            Some("mysql") => Flavor::MySql,
            Some("mariadb") => Flavor::MariaDb,
            _ => return Err(bad("no flavor")),
        };
        let file = value["file"]
            .as_str()
            .ok_or_else(|| bad("no file"))?
            .to_string();
        let pos = value["pos"].as_u64().ok_or_else(|| bad("no pos"))?;
        let gtids = match (value["gtids"].as_str(), flavor) {
            (None, _) => Gtids::None,
            (Some(set), Flavor::MySql) => Gtids::MySql(set.parse().map_err(|_| bad("gtids"))?),
            (Some(list), Flavor::MariaDb) => {
                Gtids::MariaDb(list.parse().map_err(|_| bad("gtids"))?)
            }
        };
        Ok(Some(Checkpoint {
            flavor,
            server_uuid: value["server_uuid"].as_str().map(str::to_string),
            position: Position { file, pos, gtids },
        }))
    }

    /// Replaces the checkpoint file atomically.
    pub fn store(&self, path: &Path) -> Result<()> {
        let gtids = match &self.position.gtids {
            Gtids::None => Value::Null,
            gtids => Value::String(gtids.to_string()),
        };
        let text = json!({
            "version": 1,
            "flavor": self.flavor.as_str(),
            "server_uuid": self.server_uuid,
            "file": self.position.file,
            "pos": self.position.pos,
            "gtids": gtids,
        })
        .to_string();
        let temporary = temporary_path(path);
        let context = || format!("writing checkpoint {}", path.display());
        let mut file = std::fs::File::create(&temporary).with_context(context)?;
        file.write_all(text.as_bytes()).with_context(context)?;
        file.write_all(b"\n").with_context(context)?;
        file.sync_all().with_context(context)?;
        std::fs::rename(&temporary, path).with_context(context)?;
        let directory = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(directory)
            .and_then(|dir| dir.sync_all())
            .with_context(context)?;
        Ok(())
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_guard_their_server() {
        let dir = std::env::temp_dir().join(format!("cdcd-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tail.checkpoint");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let checkpoint = Checkpoint {
            flavor: Flavor::MySql,
            server_uuid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562".into()),
            position: Position {
                file: "binlog.000003".into(),
                pos: 1234,
                gtids: Gtids::MySql("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42".parse().unwrap()),
            },
        };
        checkpoint.store(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(checkpoint.clone()));
        assert!(!temporary_path(&path).exists());
        std::fs::write(&path, "garbage").unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("remove it"), "{err}");
    }
}
