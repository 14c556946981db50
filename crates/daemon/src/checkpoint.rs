//! Checkpoints: where a reader resumes after a stop.
//!
//! A checkpoint is always a transaction boundary whose output is durable: for `cdcd tail`, written
//! and flushed to stdout; for `cdcd run`, every object holding a change up to it is in the lake.
//! It records the server flavor and identity with the position, so that the reader can refuse to
//! apply it to a different server by file and offset.
//!
//! Storage is atomic. A local file is written to a temporary file, synced, renamed over the old
//! one and its directory synced, so a crash leaves the old or the new checkpoint, never a torn
//! one; a lock on `<file>.lock` keeps a second process away. An S3 object is replaced with a
//! conditional PUT (`If-Match` the version read, `If-None-Match: *` for the first), so two
//! processes cannot both advance it: the second to write fails.
//!
//! Single writer: `cdcd run` records its identity (`owner`) and the time in every write and
//! writes at least every `checkpoint.interval_seconds`. A checkpoint another owner wrote less than
//! `checkpoint.lease_seconds` ago means that process is alive, and `cdcd run` refuses to start.
//! A clean stop releases the checkpoint (writes it without an owner).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use cdcd_binlog::{Gtids, Position};
use cdcd_event::Flavor;
use cdcd_sink::{S3Config, Store, StoreError, Version};

/// A resumable position and the server it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub flavor: Flavor,
    pub server_uuid: Option<String>,
    pub position: Position,
    /// Objects about to be written past the position (the parts of a transaction too large to
    /// buffer): a run that resumes here removes them first, since it may cut the parts anew.
    pub pending: Vec<String>,
    /// The captured tables' definitions at the position (`schema.table` → [fingerprint]), so
    /// that a run resuming here sees which tables changed while cdcd was stopped.
    ///
    /// [fingerprint]: cdcd_event::TableSchema::fingerprint
    pub schemas: Schemas,
}

/// Table definitions by `schema.table`, as fingerprints.
pub type Schemas = Arc<BTreeMap<String, String>>;

impl Checkpoint {
    /// Reads a checkpoint file; `None` when it does not exist yet.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(Self::parse(&text, &path.display().to_string())?.0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading checkpoint {}", path.display())),
        }
    }

    /// Replaces the checkpoint file atomically.
    pub fn store(&self, path: &Path) -> Result<()> {
        cdcd_sink::store::write_atomically(path, self.to_json(None).as_bytes())
            .with_context(|| format!("writing checkpoint {}", path.display()))
    }

    /// The checkpoint and its lease: who wrote it, and when (seconds since the epoch).
    fn parse(text: &str, location: &str) -> Result<(Checkpoint, Option<Lease>)> {
        let bad = |what: &str| {
            anyhow::anyhow!(
                "checkpoint {location} is not a cdcd checkpoint ({what}); remove it to start over"
            )
        };
        let value: Value = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
        Ok((Self::from_json(&value, location)?, Lease::of(&value)))
    }

    fn from_json(value: &Value, location: &str) -> Result<Checkpoint> {
        let bad = |what: &str| {
            anyhow::anyhow!(
                "checkpoint {location} is not a cdcd checkpoint ({what}); remove it to start over"
            )
        };
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
        let pending = value["pending_objects"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        // Checkpoints written before the fingerprints have none: nothing to compare.
        let schemas = match value.get("schemas") {
            None => BTreeMap::new(),
            Some(Value::Object(tables)) => tables
                .iter()
                .map(|(table, fingerprint)| {
                    Ok((
                        table.clone(),
                        fingerprint
                            .as_str()
                            .ok_or_else(|| bad("schemas"))?
                            .to_string(),
                    ))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(bad("schemas")),
        };
        let checkpoint = Checkpoint {
            flavor,
            server_uuid: value["server_uuid"].as_str().map(str::to_string),
            position: Position { file, pos, gtids },
            pending,
            schemas: Arc::new(schemas),
        };
        Ok(checkpoint)
    }

    fn to_json(&self, owner: Option<&str>) -> String {
        let gtids = match &self.position.gtids {
            Gtids::None => Value::Null,
            gtids => Value::String(gtids.to_string()),
        };
        with_lease(
            json!({
                "version": 1,
                "flavor": self.flavor.as_str(),
                "server_uuid": self.server_uuid,
                "file": self.position.file,
                "pos": self.position.pos,
                "gtids": gtids,
                "pending_objects": self.pending,
                "schemas": *self.schemas,
            }),
            owner,
        )
    }
}

/// The document's text with the lease fields `owner` and `written_at` added.
fn with_lease(mut document: Value, owner: Option<&str>) -> String {
    document["owner"] = json!(owner);
    document["written_at"] = json!(now());
    let mut text = document.to_string();
    text.push('\n');
    text
}

/// Who holds a checkpoint (or a `cdcd sink` shard lease), and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    /// Seconds since the epoch.
    pub written_at: u64,
}

impl Lease {
    fn of(document: &Value) -> Option<Lease> {
        match (document["owner"].as_str(), document["written_at"].as_u64()) {
            (Some(owner), Some(at)) => Some(Lease {
                owner: owner.to_string(),
                written_at: at,
            }),
            _ => None,
        }
    }
}

/// What [`CheckpointStore::read`] found.
pub enum Held {
    /// No document yet.
    Nothing,
    /// The document, free to take: released, expired, or held by this process.
    Free(Value),
    /// Held by another live process: its lease and age in seconds.
    Other(Lease, u64),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Where `cdcd run` keeps its checkpoint, held by this process alone.
pub struct CheckpointStore {
    place: Place,
    /// Identifies this process in the lease: host, pid and start time.
    owner: String,
    lease_seconds: u64,
}

enum Place {
    /// A local file and the lock that keeps other processes away from it.
    File { path: PathBuf, _lock: std::fs::File },
    /// An object, and the version this process last read or wrote.
    Object {
        store: Store,
        key: String,
        version: Option<Version>,
    },
}

impl CheckpointStore {
    /// Opens the checkpoint at `url` (`s3://bucket/key`, `file:///path` or a path).
    pub async fn open(url: &str, s3: &S3Config, lease_seconds: u64) -> Result<CheckpointStore> {
        match Self::open_as(url, s3, lease_seconds, &process_owner()).await? {
            Ok(store) => Ok(store),
            Err(lock_path) => bail!(
                "checkpoint {url} is locked by another cdcd process ({lock_path} is held): one \
                 process per source and checkpoint; stop the other one first"
            ),
        }
    }

    /// Opens the document at `url` for `owner`; `Ok(Err(lock file))` when it is a local file
    /// that another process has locked.
    pub async fn open_as(
        url: &str,
        s3: &S3Config,
        lease_seconds: u64,
        owner: &str,
    ) -> Result<std::result::Result<CheckpointStore, String>> {
        let owner = owner.to_string();
        let place = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if key.is_empty() || key.ends_with('/') {
                bail!("checkpoint.url {url}: name the object, e.g. s3://{bucket}/cdcd/checkpoint.json");
            }
            Place::Object {
                store: Store::open(&format!("s3://{bucket}"), s3).await?,
                key: key.to_string(),
                version: None,
            }
        } else {
            let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("checkpoint.url: cannot create {}", dir.display()))?;
            }
            let lock_path = PathBuf::from(format!("{}.lock", path.display()));
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .with_context(|| format!("checkpoint.url: cannot open {}", lock_path.display()))?;
            if lock.try_lock().is_err() {
                return Ok(Err(lock_path.display().to_string()));
            }
            Place::File { path, _lock: lock }
        };
        Ok(Ok(CheckpointStore {
            place,
            owner,
            lease_seconds,
        }))
    }

    pub fn location(&self) -> String {
        match &self.place {
            Place::File { path, .. } => path.display().to_string(),
            Place::Object { store, key, .. } => store.location(key),
        }
    }

    /// Reads the checkpoint; `None` before the first one. Refuses one that another live
    /// process holds.
    pub async fn load(&mut self) -> Result<Option<Checkpoint>> {
        let location = self.location();
        match self.read().await? {
            Held::Nothing => Ok(None),
            Held::Free(document) => Ok(Some(Checkpoint::from_json(&document, &location)?)),
            Held::Other(lease, age) => bail!(
                "checkpoint {location} is held by another cdcd ({}), which wrote it {age} s ago: \
                 only one process may follow a source into one checkpoint. Stop the other \
                 one; if it is gone, start again after checkpoint.lease_seconds ({} s)",
                lease.owner,
                self.lease_seconds
            ),
        }
    }

    /// Reads the document and says whether this process may take it.
    pub async fn read(&mut self) -> Result<Held> {
        let location = self.location();
        let text = match &mut self.place {
            Place::File { path, .. } => match std::fs::read_to_string(&*path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Held::Nothing),
                Err(e) => return Err(e).with_context(|| format!("reading {location}")),
            },
            Place::Object {
                store,
                key,
                version,
            } => match store
                .get(key)
                .await
                .with_context(|| format!("reading {location}"))?
            {
                Some((body, read)) => {
                    *version = Some(read);
                    String::from_utf8(body).unwrap_or_default()
                }
                None => return Ok(Held::Nothing),
            },
        };
        let document: Value = serde_json::from_str(&text).map_err(|_| {
            anyhow::anyhow!(
                "{location} is not a cdcd checkpoint (not JSON); remove it to start over"
            )
        })?;
        // A local file's lock already proves that its holder is gone; an object needs the lease.
        if matches!(self.place, Place::Object { .. }) {
            if let Some(lease) = Lease::of(&document) {
                let age = now().saturating_sub(lease.written_at);
                if lease.owner != self.owner && age < self.lease_seconds {
                    return Ok(Held::Other(lease, age));
                }
            }
        }
        Ok(Held::Free(document))
    }

    /// Writes `checkpoint` as held by this process (`release`: as held by nobody).
    pub async fn save(&mut self, checkpoint: &Checkpoint, release: bool) -> Result<()> {
        let text = checkpoint.to_json((!release).then_some(self.owner.as_str()));
        self.write_text(text).await
    }

    /// Writes `document` (plus the lease fields) as held by this process (`release`: by nobody).
    /// Fails if another process wrote it since this one read it.
    pub async fn write(&mut self, document: Value, release: bool) -> Result<()> {
        let text = with_lease(document, (!release).then_some(self.owner.as_str()));
        self.write_text(text).await
    }

    async fn write_text(&mut self, text: String) -> Result<()> {
        let location = self.location();
        match &mut self.place {
            Place::File { path, .. } => cdcd_sink::store::write_atomically(path, text.as_bytes())
                .with_context(|| format!("writing checkpoint {location}")),
            Place::Object {
                store,
                key,
                version,
            } => match store
                .put_if(key, text.clone().into_bytes(), version.as_ref())
                .await
            {
                Ok(written) => {
                    *version = Some(written);
                    Ok(())
                }
                // A PUT retried after a lost response finds its own first attempt in place: the
                // object then holds exactly what this process wrote.
                Err(StoreError::Conflict { .. }) => match store.get(key).await {
                    Ok(Some((body, current))) if body == text.as_bytes() => {
                        *version = Some(current);
                        Ok(())
                    }
                    _ => bail!(
                        "checkpoint {location} was written by another process since this one \
                         read it: another cdcd follows the same source into the same checkpoint. \
                         Stopping; run one process per source"
                    ),
                },
                Err(e) => Err(e).with_context(|| format!("writing checkpoint {location}")),
            },
        }
    }
}

/// This process, as a lease owner: host, pid and start time.
pub fn process_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}:{}", host.trim(), std::process::id(), now())
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
            pending: vec!["shop/orders/year=2026/month=11/day=25/hour=08/gtid_23_0.parquet".into()],
            schemas: Arc::new(BTreeMap::from([(
                "shop.orders".to_string(),
                "8c2a6b1f0d3e4a57".to_string(),
            )])),
        };
        checkpoint.store(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(checkpoint.clone()));
        std::fs::write(&path, "garbage").unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("remove it"), "{err}");
    }
}
