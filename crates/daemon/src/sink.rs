//! `cdcd sink`: read a Kinesis stream (what `cdcd run` or AWS DMS put there), mask, and write the
//! lake with the same pipeline as `cdcd run` ([`crate::pipeline`]).
//!
//! ```text
//! shard readers (one task per owned shard)  --Fetched-->  coordinator: decode, mask
//!     --records-->  lake thread  --flushes-->  uploader: objects, then per-shard checkpoints
//! ```
//!
//! # Checkpoints and leases
//!
//! Each shard has one small document next to the lake, `<checkpoint dir>/shard-<id>.json`:
//! the last sequence number whose change is durable in the lake, whether the shard is finished
//! (read to `SHARD_END` after resharding), and the lease (`owner`, `written_at`). It is written
//! with [`CheckpointStore`], the machinery of `cdcd run`'s checkpoint: a conditional PUT (S3) or
//! a locked file (a directory), so that two replicas can never both advance one shard. A replica
//! *owns* a shard once it has written the shard's document as its owner; it renews the lease at
//! every checkpoint (at least every `checkpoint.interval_seconds`). A document whose lease is
//! older than `sink.lease_seconds` (its replica died) is free to take. A replica whose write
//! fails its condition has lost the shard and stops with an error; nothing past its last
//! checkpoint is lost, since the new owner resumes there.
//!
//! Replicas need no index or count: each one lists the shards every `sink.list_shards_seconds`,
//! renews its entry in `replicas.json` (conditional writes) and takes free shards whose parents
//! are finished, up to its share (the workable shards divided by the replicas seen within the
//! lease time). Holding more than its share (a replica joined), it stops reading the excess and
//! releases each lease once what it read of the shard is checkpointed. docs/sink.md has the
//! whole design.
//!
//! # Exactly-once objects
//!
//! Every Kinesis record is a transaction of its own for the lake, and rows of different shards
//! never share an object (objects are cut per shard): after a restart each shard is read again
//! from its checkpoint, so each object starts at the same row as before and gets the same name
//! (`cdcd_sink::lake`), whatever the interleaving of the shards.
//!
//! # Stopping
//!
//! SIGTERM or Ctrl-C: the readers stop, everything read is flushed and checkpointed, the leases
//! are released (written without an owner), exit 0. `--until-caught-up` stops the same way once
//! every owned shard is at the tip of the stream and no unfinished shard is left that this
//! replica does not read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, Mutex};

use cdcd_event::dms_read::{self, DmsReader, DmsRecord, Origin};
use cdcd_event::native_read::NativeReader;
use cdcd_event::ChangeEvent;
use cdcd_kinesis::consumer::{Fetched, Shard, StartAt};
use cdcd_kinesis::{kpl, overflow, Consumer, ConsumerError, KinesisConfig};
use cdcd_sink::{Lake, Masker, Store};

use crate::checkpoint::{process_owner, CheckpointStore, Held};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::notify;
use crate::pipeline::{self, Checkpoints, Input, Item, Progress};
use crate::sink_types::TableTypes;

#[derive(Args)]
pub struct SinkArgs {
    /// Stop once every shard of the stream is finished or read by this replica up to its tip
    /// (backfills, tests); shards another replica holds are waited for (a dead one's until its
    /// lease expires).
    #[arg(long)]
    until_caught_up: bool,
}

/// What the coordinator sends the lake thread.
pub enum SinkRecord {
    /// A masked change, and the shard it came from (its lane in the lake).
    Change(ChangeEvent, Arc<str>),
    /// The record at this mark of the shard is complete.
    Commit(Arc<str>, ShardMark),
}

/// How far a shard is read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShardMark {
    /// The last record read; `None` before the first.
    pub sequence: Option<String>,
    /// Read to `SHARD_END`.
    pub finished: bool,
}

/// Every shard's mark, as far as this replica has read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SinkProgress(BTreeMap<Arc<str>, ShardMark>);

impl Progress for SinkProgress {
    type Step = (Arc<str>, ShardMark);
    const SPLITS_TRANSACTIONS: bool = false;

    fn advance(&mut self, (shard, mark): Self::Step) {
        self.0.insert(shard, mark);
    }
}

impl Input for SinkRecord {
    type Progress = SinkProgress;

    fn into_item(self) -> Item<(Arc<str>, ShardMark)> {
        match self {
            SinkRecord::Change(event, shard) => Item::Change(event, Some(shard)),
            SinkRecord::Commit(shard, mark) => Item::Commit((shard, mark)),
        }
    }
}

/// The shard documents this replica holds, shared by the coordinator (which takes shards) and
/// the uploader (which advances and renews them).
struct Leases {
    stream: String,
    owned: HashMap<Arc<str>, Lease>,
    /// Shards whose finished mark is durable: their children may start.
    finished: HashSet<Arc<str>>,
    /// Shards being handed back to other replicas, and the last sequence number read of each:
    /// the lease is released once the checkpoint reaches it.
    releasing: HashMap<Arc<str>, Option<String>>,
    renew_every: Duration,
}

struct Lease {
    store: CheckpointStore,
    /// The mark last written, and when.
    written: ShardMark,
    written_at: Instant,
}

/// A shard's checkpoint document (the lease fields are added by [`CheckpointStore::write`]).
fn shard_document(stream: &str, shard: &str, mark: &ShardMark) -> Json {
    json!({
        "version": 1,
        "stream": stream,
        "shard": shard,
        "sequence": mark.sequence,
        "finished": mark.finished,
    })
}

/// Whether sequence number `a` is after `b`: they are decimal numbers of up to 128 bits.
fn is_after(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// The uploader's side of the leases: per-shard checkpoints.
struct SinkCheckpoints {
    leases: Arc<Mutex<Leases>>,
    progress: SinkProgress,
}

impl Checkpoints for SinkCheckpoints {
    type Progress = SinkProgress;

    fn advance(&mut self, progress: SinkProgress) {
        self.progress = progress;
    }

    fn add_pending(&mut self, _keys: Vec<String>) {
        unreachable!("cdcd sink never writes a transaction in parts (SPLITS_TRANSACTIONS)")
    }

    async fn save(&mut self, release: bool) -> Result<()> {
        let mut leases = self.leases.lock().await;
        let leases = &mut *leases;
        let mut done = Vec::new();
        for (shard, lease) in leases.owned.iter_mut() {
            // The progress of a shard read before (and handed back) can be older than its
            // document: only a mark past what was written moves it.
            let mark = match self.progress.0.get(shard) {
                Some(read) if read.finished && !lease.written.finished => read.clone(),
                Some(read) => match (&read.sequence, &lease.written.sequence) {
                    (Some(a), Some(b)) if is_after(a, b) => read.clone(),
                    (Some(_), None) => read.clone(),
                    _ => lease.written.clone(),
                },
                None => lease.written.clone(),
            };
            let due = lease.written_at.elapsed() >= leases.renew_every;
            let handing_back = leases.releasing.contains_key(shard);
            if mark == lease.written && !due && !release && !handing_back {
                continue;
            }
            // A finished shard is released at once: nobody needs to hold it any more; a shard
            // handed back once everything read of it is checkpointed.
            let handed_back = match leases.releasing.get(shard) {
                None => false,
                // Nothing read since the shard was taken.
                Some(None) => true,
                Some(Some(target)) => mark
                    .sequence
                    .as_deref()
                    .is_some_and(|m| m == target || is_after(m, target)),
            };
            let let_go = release || mark.finished || handed_back;
            let document = shard_document(&leases.stream, shard, &mark);
            lease.store.write(document, let_go).await.with_context(|| {
                format!("shard {shard}: the lease was lost to another cdcd sink; stopping")
            })?;
            lease.written = mark;
            lease.written_at = Instant::now();
            if lease.written.finished || handed_back {
                done.push(shard.clone());
            }
        }
        for shard in done {
            leases.owned.remove(&shard);
            if leases.releasing.remove(&shard).is_some() {
                tracing::info!(shard = %shard, "shard handed back");
                continue;
            }
            tracing::info!(shard = %shard, "shard read to its end and checkpointed");
            leases.finished.insert(shard);
        }
        if release {
            leases.owned.clear();
            tracing::info!("stopped; shard leases released");
        }
        Ok(())
    }
}

pub async fn run(config_path: Option<&Path>, args: SinkArgs) -> Result<()> {
    let config = Config::load(config_path)?;
    if config.sink.stream.trim().is_empty() {
        bail!("config: sink.stream is empty: name the Kinesis stream cdcd sink reads");
    }
    let start = parse_start(&config.sink.start)?;
    let masker = Masker::new(&config.masking)?;
    let lake = Lake::new(&config.lake)?;
    let interval = Duration::from_secs(config.checkpoint.interval_seconds);
    let stall = (interval * 6).max(Duration::from_secs_f64(config.lake.flush_seconds * 6.0));
    let metrics = Metrics::new(stall)?;
    let store = Store::open(&config.lake.url, &config.lake.s3).await?;
    store
        .probe()
        .await
        .with_context(|| format!("lake.url {}: cdcd cannot write there", config.lake.url))?;
    let kinesis = KinesisConfig {
        stream: config.sink.stream.clone(),
        ..config.kinesis.clone()
    };
    let consumer = Consumer::connect(kinesis)
        .await
        .with_context(|| format!("sink.stream {}", config.sink.stream))?;
    if !config.metrics.listen.is_empty() {
        crate::metrics::serve(&config.metrics.listen, metrics.clone()).await?;
    }
    let leases = Arc::new(Mutex::new(Leases {
        stream: config.sink.stream.clone(),
        owned: HashMap::new(),
        finished: HashSet::new(),
        releasing: HashMap::new(),
        renew_every: interval,
    }));
    let directory = checkpoint_directory(&config);
    let coordinator = Coordinator {
        consumer,
        leases: leases.clone(),
        directory: directory.clone(),
        config: &config,
        owner: process_owner(),
        start,
        readers: HashMap::new(),
        readers_tx: None,
        caught_up: HashSet::new(),
        last_sequence: HashMap::new(),
        types: TableTypes::open(&config, &directory).await?,
        directory_store: Store::open(&directory, &config.lake.s3)
            .await
            .with_context(|| format!("sink.checkpoint_url {directory}"))?,
        stopping: false,
        metrics: metrics.clone(),
    };
    tracing::info!(
        stream = %config.sink.stream,
        lake = %config.lake.url,
        checkpoints = %coordinator.directory,
        "reading the stream into the lake"
    );
    metrics.set_following(true);
    notify::ready();
    let watchdog = notify::spawn_watchdog(metrics.clone());

    let checkpoints = SinkCheckpoints {
        leases: leases.clone(),
        progress: SinkProgress::default(),
    };
    let (records_tx, running) = pipeline::start(
        lake,
        (interval, SinkProgress::default()),
        (store, None),
        (checkpoints, None),
        &metrics,
        None,
    )?;

    let read = coordinator
        .read(records_tx, masker, args.until_caught_up)
        .await;
    metrics.set_following(false);
    let finished = running.finish(read).await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    finished
}

/// `sink.start`.
fn parse_start(text: &str) -> Result<StartAt> {
    Ok(match text {
        "trim-horizon" => StartAt::TrimHorizon,
        "latest" => StartAt::Latest,
        _ => match text
            .strip_prefix("at-timestamp:")
            .and_then(cdcd_event::parse_utc)
        {
            Some(micros) if micros >= 0 => {
                StartAt::AtTimestamp(UNIX_EPOCH + Duration::from_micros(micros as u64))
            }
            _ => bail!(
                "config: sink.start = `{text}`: use trim-horizon, latest or \
                 at-timestamp:YYYY-MM-DDTHH:MM:SSZ"
            ),
        },
    })
}

/// Where the shard documents live: `sink.checkpoint_url`, or `_cdcd/sink-<stream>` in the lake.
fn checkpoint_directory(config: &Config) -> String {
    if !config.sink.checkpoint_url.is_empty() {
        return config.sink.checkpoint_url.trim_end_matches('/').to_string();
    }
    let stream = config.sink.stream.rsplit('/').next().unwrap_or_default();
    let name = format!("_cdcd/sink-{stream}");
    let lake = config.lake.url.trim_end_matches('/');
    if lake.starts_with("s3://") {
        format!("{lake}/{name}")
    } else {
        let dir = lake.strip_prefix("file://").unwrap_or(lake);
        Path::new(dir).join(name).display().to_string()
    }
}

/// Takes shards, runs their readers, decodes and masks what they read.
struct Coordinator<'a> {
    consumer: Consumer,
    leases: Arc<Mutex<Leases>>,
    directory: String,
    config: &'a Config,
    owner: String,
    start: StartAt,
    readers: HashMap<Arc<str>, tokio::task::JoinHandle<()>>,
    readers_tx: Option<mpsc::Sender<Result<Fetched, ConsumerError>>>,
    /// Owned shards whose last read was empty at the tip of the stream.
    caught_up: HashSet<Arc<str>>,
    /// The last sequence number read of each shard.
    last_sequence: HashMap<Arc<str>, String>,
    /// Column types of DMS records.
    types: TableTypes,
    /// The checkpoint directory (shard documents, `replicas.json`).
    directory_store: Store,
    /// Set when stopping: the replica leaves `replicas.json`.
    stopping: bool,
    metrics: Arc<Metrics>,
}

impl Coordinator<'_> {
    async fn read(
        mut self,
        to_lake: mpsc::Sender<Vec<SinkRecord>>,
        mut masker: Masker,
        until_caught_up: bool,
    ) -> Result<()> {
        let (tx, mut fetched) = mpsc::channel(16);
        self.readers_tx = Some(tx);
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        let interrupt = tokio::signal::ctrl_c();
        tokio::pin!(interrupt);
        let mut list =
            tokio::time::interval(Duration::from_secs(self.config.sink.list_shards_seconds));
        let mut readers = Readers::default();
        let mut left_to_take = true;
        let result = loop {
            tokio::select! {
                _ = terminate.recv() => break Ok(()),
                _ = &mut interrupt => break Ok(()),
                _ = list.tick() => match self.take_shards().await {
                    Ok(left) => left_to_take = left,
                    Err(e) => break Err(e),
                },
                Some(batch) = fetched.recv() => {
                    let batch = match batch {
                        Ok(batch) => batch,
                        Err(e) => break Err(e.into()),
                    };
                    if !self.readers.contains_key(&batch.shard) {
                        // Read before the shard was handed back: its next owner reads it again.
                        continue;
                    }
                    let records = match self.decode(batch, &mut readers, &mut masker).await {
                        Ok(records) => records,
                        Err(e) => break Err(e),
                    };
                    if !records.is_empty() && to_lake.send(records).await.is_err() {
                        // The lake stage stopped; its error is the one to report.
                        break Ok(());
                    }
                }
            }
            if until_caught_up && !left_to_take && self.all_caught_up().await {
                tracing::info!("every owned shard is at the tip of the stream; stopping");
                break Ok(());
            }
        };
        notify::stopping();
        for reader in self.readers.values() {
            reader.abort();
        }
        self.stopping = true;
        if let Err(e) = self.replicas().await {
            tracing::warn!(error = %format!("{e:#}"), "could not leave replicas.json");
        }
        result
    }

    async fn all_caught_up(&self) -> bool {
        let leases = self.leases.lock().await;
        leases.owned.keys().all(|s| self.caught_up.contains(s))
    }

    /// Decodes and masks one `GetRecords` result; each record commits its shard's mark.
    async fn decode(
        &mut self,
        batch: Fetched,
        readers: &mut Readers,
        masker: &mut Masker,
    ) -> Result<Vec<SinkRecord>> {
        let shard = batch.shard.clone();
        if let Some(behind) = batch.millis_behind {
            self.metrics
                .sink_behind_ms
                .with_label_values(&[&shard])
                .set(behind);
        }
        if batch.records.is_empty() && batch.millis_behind.unwrap_or(0) == 0 {
            self.caught_up.insert(shard.clone());
        } else {
            self.caught_up.remove(&shard);
        }
        self.metrics
            .sink_records
            .with_label_values(&[&shard])
            .inc_by(batch.records.len() as u64);
        let mut out = Vec::with_capacity(batch.records.len() * 2 + 1);
        let mut mark = ShardMark::default();
        if let Some(last) = batch.records.last() {
            self.last_sequence
                .insert(shard.clone(), last.sequence.clone());
        }
        for record in &batch.records {
            let located = |e: anyhow::Error| {
                anyhow::anyhow!(
                    "record {} of shard {shard} in stream {}: {e:#}; nothing from it on was \
                     written (fix what writes such records; to skip it, start past it with a \
                     new checkpoint directory and sink.start = at-timestamp:…)",
                    record.sequence,
                    self.config.sink.stream
                )
            };
            // A KPL aggregate holds several user records; the record commits after the last.
            let parts = if kpl::is_aggregated(&record.data) {
                kpl::deaggregate(&record.data)
                    .map_err(|e| located(e.into()))?
                    .into_iter()
                    .map(|user| user.data)
                    .collect()
            } else {
                vec![record.data.clone()]
            };
            for (sub, data) in parts.into_iter().enumerate() {
                let data = resolve_overflow(data, &self.config.lake.s3)
                    .await
                    .map_err(located)?;
                let json: Json = serde_json::from_slice(&data)
                    .map_err(|e| located(anyhow::anyhow!("not JSON: {e}")))?;
                let origin = Origin {
                    shard: &shard,
                    sequence: &record.sequence,
                    sub: sub as u32,
                };
                let event = self
                    .decode_record(&json, readers, origin)
                    .await
                    .map_err(located)?;
                if let Some(mut event) = event {
                    masker.mask(&mut event);
                    out.push(SinkRecord::Change(event, shard.clone()));
                }
            }
            mark.sequence = Some(record.sequence.clone());
            out.push(SinkRecord::Commit(shard.clone(), mark.clone()));
        }
        if batch.shard_end {
            if mark.sequence.is_none() {
                mark.sequence = self.last_sequence.get(&shard).cloned();
            }
            mark.finished = true;
            self.readers.remove(&shard);
            self.caught_up.remove(&shard);
            out.push(SinkRecord::Commit(shard, mark));
        }
        Ok(out)
    }

    /// Lists the shards and takes the free ones this replica may read; whether any unfinished
    /// shard is left that this replica does not read (free, waiting for its parents, or held by
    /// another replica, which may be dead until its lease expires).
    async fn take_shards(&mut self) -> Result<bool> {
        let shards = self
            .consumer
            .shards()
            .await
            .with_context(|| format!("sink.stream {}", self.config.sink.stream))?;
        let listed: HashSet<Arc<str>> = shards.iter().map(|s| s.id.clone()).collect();
        let mut documents: HashMap<Arc<str>, Option<Json>> = HashMap::new();
        let mut live_owners: HashSet<String> = HashSet::from([self.owner.clone()]);
        let mut free = Vec::new();
        let mut unfinished: usize = 0;
        // Shards another replica holds (alive, or dead until its lease expires).
        let mut held_elsewhere = false;
        for shard in &shards {
            if self.readers.contains_key(&shard.id)
                || self.leases.lock().await.owned.contains_key(&shard.id)
            {
                unfinished += 1;
                continue;
            }
            if self.leases.lock().await.finished.contains(&shard.id) {
                continue;
            }
            let mut store = self.open(&shard.id).await?;
            let held = match &mut store {
                Some(store) => store.read().await?,
                None => Held::Other(
                    crate::checkpoint::Lease {
                        owner: "another process (the file is locked)".into(),
                        written_at: 0,
                    },
                    0,
                ),
            };
            match held {
                Held::Free(document) if document["finished"] == true => {
                    self.leases.lock().await.finished.insert(shard.id.clone());
                    documents.insert(shard.id.clone(), Some(document));
                }
                Held::Free(document) => {
                    unfinished += 1;
                    documents.insert(shard.id.clone(), Some(document.clone()));
                    free.push((shard.clone(), store, Some(document)));
                }
                Held::Nothing => {
                    unfinished += 1;
                    documents.insert(shard.id.clone(), None);
                    free.push((shard.clone(), store, None));
                }
                Held::Other(lease, _) => {
                    unfinished += 1;
                    held_elsewhere = true;
                    live_owners.insert(lease.owner);
                }
            }
        }
        // Children waiting for their parents are nobody's work yet.
        let finished = self.leases.lock().await.finished.clone();
        let parents_done = |shard: &Shard| {
            shard
                .parents
                .iter()
                .all(|p| finished.contains(p) || !listed.contains(p))
        };
        let waiting = free
            .iter()
            .filter(|(shard, ..)| !parents_done(shard))
            .count();
        let replicas = self.replicas().await?.max(live_owners.len());
        let share = (unfinished - waiting).div_ceil(replicas);
        let mut owned = self.leases.lock().await.owned.len();
        if owned > share {
            self.release_some(owned - share).await;
            owned = share;
        }
        let mut left = held_elsewhere;
        for (shard, store, document) in free {
            if !parents_done(&shard) || owned >= share {
                left = true;
                continue;
            }
            let Some(store) = store else { continue };
            match self.take(&shard, store, document, &documents).await? {
                true => owned += 1,
                false => left = true,
            }
        }
        Ok(left)
    }

    /// Renews this replica's entry in `replicas.json` (owner → last seen) and counts the replicas
    /// seen within `sink.lease_seconds`, this one included. The document is replaced with a
    /// conditional write, retried when another replica wrote it meanwhile.
    async fn replicas(&mut self) -> Result<usize> {
        const KEY: &str = "replicas.json";
        let now = seconds_since_epoch();
        let lease = self.config.sink.lease_seconds;
        for _ in 0..10 {
            let (mut members, version) = match self.directory_store.get(KEY).await? {
                Some((body, version)) => (
                    serde_json::from_slice::<BTreeMap<String, u64>>(&body).unwrap_or_default(),
                    Some(version),
                ),
                None => (BTreeMap::new(), None),
            };
            members.retain(|_, seen| now.saturating_sub(*seen) < lease);
            if self.stopping {
                members.remove(&self.owner);
            } else {
                members.insert(self.owner.clone(), now);
            }
            let body = serde_json::to_vec(&members).expect("a map of strings and numbers");
            match self
                .directory_store
                .put_if(KEY, body, version.as_ref())
                .await
            {
                Ok(_) => return Ok(members.len().max(1)),
                Err(cdcd_sink::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!(
            "{}: ten conditional writes in a row lost to other replicas",
            self.directory_store.location(KEY)
        )
    }

    /// Hands `count` shards back: their readers stop, and each lease is released once what was
    /// read of the shard is checkpointed (see [`SinkCheckpoints::save`]).
    async fn release_some(&mut self, count: usize) {
        let mut leases = self.leases.lock().await;
        let candidates: Vec<Arc<str>> = leases
            .owned
            .keys()
            .filter(|s| !leases.releasing.contains_key(*s))
            .take(count)
            .cloned()
            .collect();
        for shard in candidates {
            if let Some(reader) = self.readers.remove(&shard) {
                reader.abort();
            }
            self.caught_up.remove(&shard);
            let target = self.last_sequence.get(&shard).cloned();
            tracing::info!(shard = %shard, "more replicas than before: handing the shard back");
            leases.releasing.insert(shard, target);
        }
    }

    async fn open(&self, shard: &str) -> Result<Option<CheckpointStore>> {
        let url = format!("{}/shard-{shard}.json", self.directory);
        Ok(CheckpointStore::open_as(
            &url,
            &self.config.lake.s3,
            self.config.sink.lease_seconds,
            &self.owner,
        )
        .await?
        .ok())
    }

    /// Claims `shard` by writing its document as its owner, and starts its reader. False when
    /// another replica was faster.
    async fn take(
        &mut self,
        shard: &Shard,
        mut store: CheckpointStore,
        document: Option<Json>,
        documents: &HashMap<Arc<str>, Option<Json>>,
    ) -> Result<bool> {
        let sequence = document
            .as_ref()
            .and_then(|d| d["sequence"].as_str())
            .map(str::to_string);
        let mark = ShardMark {
            sequence: sequence.clone(),
            finished: false,
        };
        let body = shard_document(&self.config.sink.stream, &shard.id, &mark);
        if store.write(body, false).await.is_err() {
            tracing::info!(shard = %shard.id, "another replica took the shard first");
            return Ok(false);
        }
        // A child of shards read here begins at its start; a shard nobody read yet where
        // `sink.start` says.
        let parent_read = shard
            .parents
            .iter()
            .any(|p| documents.get(p).is_some_and(Option::is_some));
        let start = match sequence {
            Some(sequence) => StartAt::AfterSequence(sequence),
            None if parent_read
                || self
                    .leases
                    .lock()
                    .await
                    .finished
                    .iter()
                    .any(|f| shard.parents.contains(f)) =>
            {
                StartAt::TrimHorizon
            }
            None => self.start.clone(),
        };
        tracing::info!(shard = %shard.id, start = ?start, "took the shard");
        // What an earlier reader of this shard read is not this one's to hand back.
        self.last_sequence.remove(&shard.id);
        self.leases.lock().await.owned.insert(
            shard.id.clone(),
            Lease {
                store,
                written: mark,
                written_at: Instant::now(),
            },
        );
        let reader = self.consumer.spawn_reader(
            shard.id.clone(),
            start,
            Duration::from_millis(self.config.sink.poll_ms),
            self.readers_tx.clone().expect("set before reading"),
        );
        self.readers.insert(shard.id.clone(), reader);
        Ok(true)
    }
}

/// A record's data, or for an overflow pointer (`cdcd run` with `kinesis.oversize = "s3"`), the
/// payload it points to (read with the lake's S3 settings), checked against the pointer's length
/// and SHA-256.
async fn resolve_overflow(data: bytes::Bytes, s3: &cdcd_sink::S3Config) -> Result<bytes::Bytes> {
    let Some(pointer) = overflow::parse(&data)? else {
        return Ok(data);
    };
    let (root, key) = pointer
        .url
        .rsplit_once('/')
        .with_context(|| format!("overflow pointer to {}: not a URL", pointer.url))?;
    let store = Store::open(root, s3)
        .await
        .with_context(|| format!("overflow payload {}", pointer.url))?;
    let (payload, _) = store
        .get(key)
        .await?
        .with_context(|| format!("overflow payload {} does not exist", pointer.url))?;
    pointer.verify(&payload)?;
    Ok(payload.into())
}

/// The record readers, which keep the last table and transaction of their format.
#[derive(Default)]
struct Readers {
    native: NativeReader,
    dms: DmsReader,
}

impl Coordinator<'_> {
    /// One record's change: native records (`event_id` and `op`) or DMS records (`metadata`).
    /// `None` for records that change no row (DDL, DMS control records).
    async fn decode_record(
        &mut self,
        json: &Json,
        readers: &mut Readers,
        origin: Origin<'_>,
    ) -> Result<Option<ChangeEvent>> {
        if json.get("event_id").is_some() && json.get("op").is_some() {
            return Ok(readers.native.read(json)?);
        }
        if json.get("metadata").is_none() {
            bail!("neither a cdcd native record (event_id, op) nor a DMS record (metadata)");
        }
        match dms_read::classify(json)? {
            DmsRecord::Control {
                schema,
                table,
                definition: Some(definition),
                ..
            } => {
                self.types
                    .remember(schema, table, definition, &json["control"]["table-def"])
                    .await?;
                Ok(None)
            }
            DmsRecord::Control { .. } => Ok(None),
            DmsRecord::Data { schema, table } => {
                let definition = self.types.get(schema, table).await?;
                Ok(Some(readers.dms.read(json, &definition, origin)?))
            }
        }
    }
}

fn seconds_since_epoch() -> u64 {
    UNIX_EPOCH.elapsed().unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse_or_name_the_key() {
        assert_eq!(parse_start("trim-horizon").unwrap(), StartAt::TrimHorizon);
        assert_eq!(parse_start("latest").unwrap(), StartAt::Latest);
        assert_eq!(
            parse_start("at-timestamp:2026-11-25T08:00:00Z").unwrap(),
            StartAt::AtTimestamp(UNIX_EPOCH + Duration::from_secs(1_795_593_600))
        );
        let err = parse_start("at-timestamp:yesterday")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.start"), "{err}");
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(is_after("100", "99"));
        assert!(!is_after("99", "100"));
        assert!(!is_after("5", "5"));
    }

    #[test]
    fn unknown_sink_keys_and_short_leases_are_refused() {
        let dir = std::env::temp_dir().join(format!("cdcd-sink-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sink.toml");
        std::fs::write(&path, "[sink]\nstreams = \"x\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("streams"), "{err}");
        std::fs::write(&path, "[sink]\nlease_seconds = 5\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("sink.lease_seconds"), "{err}");
    }
}
