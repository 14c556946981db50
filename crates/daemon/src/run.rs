//! `cdcd run`: follow the source into the lake, resuming from the checkpoint.
//!
//! Three stages joined by bounded queues, so that a slow store slows the reader down instead of
//! filling memory:
//!
//! ```text
//! reader (async)  --records-->  lake thread  --flushes-->  uploader (async)
//! decodes, masks                buffers, cuts objects,     encodes (blocking pool), puts
//!                               puts on Kinesis            objects, then the checkpoint
//! ```
//!
//! Decoding and masking, buffering, and encoding run on different threads, so a catch-up uses
//! both cores.
//!
//! Acknowledgement is end to end: a flush carries the transaction boundary its objects complete,
//! and the uploader writes that boundary as the checkpoint only after every object of the flush
//! (and of all flushes before it) is durable. A crash anywhere loses no change: the next run
//! resumes at the checkpoint and rewrites the same objects (see `cdcd_sink::lake`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use cdcd_binlog::{Position, Record, Replica, StartFrom, TableFilter};
use cdcd_event::dms::DmsWriter;
use cdcd_event::native::NativeWriter;
use cdcd_event::{ChangeEvent, DdlEvent};
use cdcd_kinesis::{Acks, Producer};
use cdcd_sink::{Lake, Masker, Object, Pending, Store};

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::{Config, SourceArgs};
use crate::metrics::{Metrics, ReadCounters};
use crate::notify;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Stop once caught up with the end of the binlog (backfills, tests, benchmarks).
    #[arg(long)]
    until_end: bool,
}

/// Objects to write, and what they complete.
struct Flush {
    /// Rows to encode (on the uploader's side, so that encoding and reading use both cores).
    objects: Pending,
    /// The transaction boundary to checkpoint once the objects are durable; `None` for the
    /// parts of a transaction too large to buffer, which complete no boundary and are recorded
    /// in the checkpoint as pending before they are written.
    checkpoint: Option<Position>,
    /// The last Kinesis record of the changes before `checkpoint`: the checkpoint also waits
    /// for Kinesis to acknowledge it.
    kinesis_token: Option<u64>,
}

/// `cdcd run`'s Kinesis output: every masked change (and, in DMS format, a control record per
/// DDL) as one record, tokens numbering them in order for the acknowledgement watermark.
struct KinesisOutput {
    producer: Producer,
    acks: Acks,
    format: KinesisFormat,
    /// DMS records, and the partition keys of both formats (`[dms] partition_key_type`).
    dms: DmsWriter,
    next_token: u64,
    buf: String,
}

enum KinesisFormat {
    Dms,
    Native(NativeWriter),
}

impl KinesisOutput {
    fn put_change(&mut self, event: &ChangeEvent) -> Result<()> {
        self.buf.clear();
        match &mut self.format {
            KinesisFormat::Dms => self.dms.write_change(&mut self.buf, event),
            KinesisFormat::Native(native) => native.write_change(&mut self.buf, event),
        }
        let key = self.dms.partition_key(event);
        // The event id only names a record the producer refuses (too large); it is not worth an
        // allocation for every other record.
        let oversized = self.buf.len() + key.len() > self.producer.record_limit();
        self.send(key, oversized.then(|| event.event_id()))
    }

    fn put_ddl(&mut self, ddl: &DdlEvent) -> Result<()> {
        self.buf.clear();
        match &mut self.format {
            KinesisFormat::Dms => {
                self.dms.write_ddl(&mut self.buf, ddl);
            }
            KinesisFormat::Native(native) => native.write_ddl(&mut self.buf, ddl),
        }
        if self.buf.is_empty() {
            // DMS mode without control records (dms.include_control_details = false).
            return Ok(());
        }
        let key = match &ddl.table {
            Some((schema, table)) => format!("{schema}.{table}"),
            None => ddl.schema.to_string(),
        };
        self.send(key, None)
    }

    /// Puts the rendered record, waiting while the producer's buffer is full.
    fn send(&mut self, key: String, event_id: Option<String>) -> Result<()> {
        // One record per change, without the line break that separates them in `cdcd tail`.
        let data = self.buf.trim_end_matches('\n');
        let mut record = cdcd_kinesis::Record::new(
            key,
            bytes::Bytes::copy_from_slice(data.as_bytes()),
            self.next_token,
        );
        if let Some(id) = event_id {
            record = record.with_event_id(id);
        }
        self.next_token += 1;
        tokio::runtime::Handle::current()
            .block_on(self.producer.send(record))
            .map_err(Into::into)
    }

    /// The token of the last record put, if any.
    fn last_token(&self) -> Option<u64> {
        self.next_token.checked_sub(1)
    }
}

/// Concurrent PUTs per flush.
const PARALLEL_PUTS: usize = 8;

pub async fn run(config_path: Option<&Path>, args: RunArgs) -> Result<()> {
    let config = Config::load(config_path)?;
    let masker = Masker::new(&config.masking)?;
    let lake = Lake::new(&config.lake)?;
    let interval = Duration::from_secs(config.checkpoint.interval_seconds);
    // Not ready when the checkpoint stands still for several intervals (and flushes).
    let stall = (interval * 6).max(Duration::from_secs_f64(config.lake.flush_seconds * 6.0));
    let metrics = Metrics::new(stall)?;
    metrics.watch_masking(masker.counters());
    let mut options = args.source.options(&config)?;
    // The same checks as `cdcd check`: the source's settings, the lake, Kinesis.
    crate::check::refuse_on_failure(&crate::check::preflight(&config, &options).await)?;
    let store = Store::open(&config.lake.url, &config.lake.s3).await?;
    let checkpoint_url = checkpoint_url(&config);
    let mut checkpoints = CheckpointStore::open(
        &checkpoint_url,
        &config.lake.s3,
        config.checkpoint.lease_seconds,
    )
    .await?;
    let resume = checkpoints.load().await?;
    if !config.metrics.listen.is_empty() {
        crate::metrics::serve(&config.metrics.listen, metrics.clone()).await?;
    }

    let filter = TableFilter::parse(&config.source.tables)
        .map_err(|e| anyhow::anyhow!("source.tables: {e}"))?;
    options.filter = filter;
    options.until_end = args.until_end;
    options.start = match &resume {
        Some(checkpoint) => {
            tracing::info!(
                checkpoint = %checkpoints.location(),
                file = %checkpoint.position.file,
                pos = checkpoint.position.pos,
                gtids = %checkpoint.position.gtids,
                "resuming from the checkpoint"
            );
            StartFrom::Position(checkpoint.position.clone(), checkpoint.server_uuid.clone())
        }
        None => crate::tail::parse_from(&config.run.start).context("run.start")?,
    };
    let retention = crate::metrics::watch_retention(metrics.clone(), options.clone());
    let mut replica = Replica::connect(options).await?;
    let tables = replica.captured_tables().await?;
    let unmatched = masker.unmatched(&tables);
    if !unmatched.is_empty() {
        bail!(
            "masking: {} selects no column of the {} captured tables; fix the pattern \
             (schema.table.column globs) or remove the rule",
            unmatched.join(", "),
            tables.len()
        );
    }
    let server = replica.server().clone();
    let start = Checkpoint {
        flavor: server.flavor,
        server_uuid: server.server_uuid.clone(),
        position: replica.position().clone(),
        pending: Vec::new(),
    };
    metrics.checkpointed(&start.position);
    if let Some(previous) = &resume {
        // Parts of a large transaction that the last run cut: this run cuts them anew.
        for key in &previous.pending {
            store.delete(key).await.with_context(|| {
                format!("removing {key}, written past the checkpoint by the last run")
            })?;
        }
    }
    if resume.as_ref().is_none_or(|r| !r.pending.is_empty()) {
        // From here on nothing is skipped: with run.start = "end", a restart before the first
        // flush would otherwise begin at a later "end".
        checkpoints.save(&start, false).await?;
    }
    let kinesis = if config.kinesis.stream.is_empty() {
        None
    } else {
        let (producer, acks) = Producer::start(config.kinesis.clone()).await?;
        metrics.watch_kinesis(producer.metrics());
        let format = match config.run.kinesis_format.as_str() {
            "native" => KinesisFormat::Native(NativeWriter::new()),
            _ => KinesisFormat::Dms,
        };
        Some(KinesisOutput {
            producer,
            acks,
            format,
            dms: DmsWriter::new(config.dms.options()?),
            next_token: 0,
            buf: String::new(),
        })
    };
    let acks = kinesis.as_ref().map(|k| k.acks.clone());
    tracing::info!(
        kinesis = %config.kinesis.stream,
        lake = %config.lake.url,
        checkpoint = %checkpoints.location(),
        tables = tables.len(),
        "connected to {} {}; writing the lake",
        server.flavor.as_str(),
        server.version
    );
    metrics.set_following(true);
    notify::ready();
    let watchdog = notify::spawn_watchdog(metrics.clone());

    let (records_tx, records_rx) = mpsc::channel::<Vec<Record>>(4);
    let (flush_tx, flush_rx) = mpsc::channel::<Flush>(2);
    metrics.watch_queue("records", &records_tx);
    metrics.watch_queue("flushes", &flush_tx);
    let runtime = tokio::runtime::Handle::current();
    let lake_metrics = metrics.clone();
    let start_position = start.position.clone();
    let lake_thread = std::thread::Builder::new()
        .name("lake".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            cut_objects(
                records_rx,
                flush_tx,
                lake,
                (interval, start_position),
                &lake_metrics,
                kinesis,
            )
        })
        .context("starting the lake thread")?;
    let uploader = tokio::spawn(upload(
        flush_rx,
        store,
        (checkpoints, acks),
        start,
        metrics.clone(),
    ));

    let read = read(replica, records_tx, &metrics, masker).await;
    metrics.set_following(false);
    let cut = lake_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the lake thread panicked"))?;
    let uploaded = uploader.await.context("the uploader panicked")?;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    retention.abort();
    // The uploader's error explains why the stages before it stopped; report it first.
    uploaded?;
    cut?;
    read
}

fn checkpoint_url(config: &Config) -> String {
    if !config.checkpoint.url.is_empty() {
        return config.checkpoint.url.clone();
    }
    let name = format!("_cdcd/checkpoint-{}.json", config.source.server_id);
    let lake = config.lake.url.trim_end_matches('/');
    if lake.starts_with("s3://") {
        format!("{lake}/{name}")
    } else {
        let dir = lake.strip_prefix("file://").unwrap_or(lake);
        Path::new(dir).join(name).display().to_string()
    }
}

/// Reads the binlog into batches until the end (with `--until-end`), a signal, or an error.
/// Masks as it reads, so that masking runs beside the lake thread's buffering and the encoders.
async fn read(
    mut replica: Replica,
    to_lake: mpsc::Sender<Vec<Record>>,
    metrics: &Metrics,
    mut masker: Masker,
) -> Result<()> {
    let mut batch = Vec::with_capacity(4096);
    let mut masked = 0;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let more = tokio::select! {
            more = replica.next_records(&mut batch) => more,
            _ = terminate.recv() => Ok(false),
            _ = &mut interrupt => Ok(false),
        };
        if matches!(more, Ok(false)) {
            // Stopping (a signal, or the end with --until-end): say so before the final flush.
            notify::stopping();
            metrics.set_following(false);
        }
        for record in &mut batch[masked..] {
            if let Record::Change(event) = record {
                masker.mask(event);
            }
        }
        masked = batch.len();
        let failed = more.is_err();
        // Everything decoded before an error or a signal still goes out, so that it is
        // checkpointed; the open transaction is read again on the next start.
        let last = !matches!(more, Ok(true));
        let boundary = batch
            .last()
            .is_some_and(|r| matches!(r, Record::Commit(_) | Record::Heartbeat));
        if last || boundary || batch.len() >= 4096 {
            masked = 0;
            let full = std::mem::replace(&mut batch, Vec::with_capacity(4096));
            if to_lake.send(full).await.is_err() {
                // The lake stage stopped; its error is the one to report.
                return Ok(());
            }
        }
        if failed {
            return more.map(drop).map_err(Into::into);
        }
        if last {
            return Ok(());
        }
    }
}

/// The lake thread: buffers rows, decides when objects are cut and flushed, and feeds Kinesis.
fn cut_objects(
    mut records: mpsc::Receiver<Vec<Record>>,
    flushes: mpsc::Sender<Flush>,
    mut lake: Lake,
    (checkpoint_interval, start): (Duration, Position),
    metrics: &Metrics,
    mut kinesis: Option<KinesisOutput>,
) -> Result<()> {
    let runtime = tokio::runtime::Handle::current();
    // False once the uploader has stopped (its error is the one reported).
    let send = |flush: Flush| flushes.blocking_send(flush).is_ok();
    let mut counters = ReadCounters::new(&start);
    // The last transaction boundary read (at first, where reading began), and when a checkpoint
    // was last sent on.
    let mut boundary = Boundary {
        last_commit: start.clone(),
        kinesis_token: None,
        checkpointed: Instant::now(),
        checkpointed_at: start,
    };
    // Whether the open transaction has already been written in parts.
    let mut in_parts = false;
    loop {
        metrics.alive();
        // Wake for the next flush or checkpoint, and at least 4 times a second to show the watchdog
        // that this thread is not stuck (a blocked uploader blocks it in `send`).
        let deadline = lake
            .next_deadline()
            .unwrap_or(boundary.checkpointed + checkpoint_interval)
            .min(Instant::now() + Duration::from_millis(250));
        let received = runtime
            .block_on(async { tokio::time::timeout_at(deadline.into(), records.recv()).await });
        let batch = match received {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(_timeout) => Vec::new(),
        };
        for record in batch {
            match record {
                Record::Change(event) => {
                    counters.change(metrics, &event);
                    if let Some(kinesis) = &mut kinesis {
                        kinesis.put_change(&event)?;
                    }
                    lake.push(event);
                    if lake.transaction_overflows() {
                        if !in_parts {
                            // The parts are recorded in a checkpoint that sits right before
                            // the transaction, so that a restart knows them all.
                            in_parts = true;
                            metrics.large_transactions.inc();
                            if !send(boundary.flush(&mut lake)) {
                                return Ok(());
                            }
                        }
                        let part = Flush {
                            objects: lake.take_transaction_part(),
                            checkpoint: None,
                            kinesis_token: None,
                        };
                        if !send(part) {
                            return Ok(());
                        }
                    }
                }
                Record::Commit(position) => {
                    boundary.kinesis_token = kinesis.as_ref().and_then(KinesisOutput::last_token);
                    counters.commit(metrics, &position);
                    lake.commit();
                    in_parts = false;
                    boundary.last_commit = position;
                }
                Record::Heartbeat => metrics.caught_up(),
                Record::Ddl(ddl) => {
                    if let Some(kinesis) = &mut kinesis {
                        kinesis.put_ddl(&ddl)?;
                    }
                }
            }
        }
        // Flush when rows are due; otherwise keep the checkpoint (and the lease) fresh, which
        // also moves it over transactions that the filter left out.
        let idle_due =
            lake.committed_rows() == 0 && boundary.checkpointed.elapsed() >= checkpoint_interval;
        if (lake.flush_due() || idle_due) && !send(boundary.flush(&mut lake)) {
            return Ok(());
        }
    }
    // The reader stopped: write what is complete. The open transaction is read again next time.
    if lake.committed_rows() > 0 || boundary.checkpointed_at != boundary.last_commit {
        send(boundary.flush(&mut lake));
    }
    if let Some(kinesis) = kinesis {
        // Everything put is acknowledged (or the error says why) before the final checkpoint.
        runtime.block_on(kinesis.producer.shutdown())?;
    }
    Ok(())
}

/// Where the lake thread stands: the last transaction boundary read, and the last it flushed.
struct Boundary {
    last_commit: Position,
    /// The last Kinesis record before `last_commit`.
    kinesis_token: Option<u64>,
    checkpointed: Instant,
    checkpointed_at: Position,
}

impl Boundary {
    /// A flush of every committed row, which checkpoints the last boundary.
    fn flush(&mut self, lake: &mut Lake) -> Flush {
        self.checkpointed = Instant::now();
        self.checkpointed_at = self.last_commit.clone();
        Flush {
            objects: lake.take_committed(),
            checkpoint: Some(self.last_commit.clone()),
            kinesis_token: self.kinesis_token,
        }
    }
}

/// Writes each flush's objects, then its checkpoint; releases the checkpoint at the end.
async fn upload(
    mut flushes: mpsc::Receiver<Flush>,
    store: Store,
    (checkpoints, acks): (CheckpointStore, Option<Acks>),
    checkpoint: Checkpoint,
    metrics: Arc<Metrics>,
) -> Result<()> {
    let mut committer = Committer {
        checkpoints,
        checkpoint,
        acks,
        saved: Instant::now(),
        metrics,
    };
    // Flushes being encoded (on the blocking pool) and written, up to WRITE_AHEAD at once, so
    // that encoding and the store's latency overlap; they complete in order.
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    loop {
        while in_flight.len() < WRITE_AHEAD {
            let next = if in_flight.is_empty() {
                flushes.recv().await
            } else {
                flushes.try_recv().ok()
            };
            let Some(flush) = next else { break };
            let started = Instant::now();
            if flush.checkpoint.is_none() {
                // Parts of a large transaction: recorded in the checkpoint before they are
                // written, so a crash cannot leave them unknown; nothing else is in flight then.
                while let Some(written) = in_flight.next().await {
                    committer.complete(written?, false).await?;
                }
                let objects = encode(flush.objects).await?;
                committer
                    .checkpoint
                    .pending
                    .extend(objects.iter().map(|o| o.key.clone()));
                committer.save().await?;
                let written = write_objects(&store, objects).await?;
                committer
                    .complete((None, None, started, written), false)
                    .await?;
                continue;
            }
            let store = &store;
            in_flight.push_back(async move {
                let objects = encode(flush.objects).await?;
                let written = write_objects(store, objects).await?;
                Ok::<_, anyhow::Error>((flush.checkpoint, flush.kinesis_token, started, written))
            });
        }
        let Some(written) = in_flight.next().await else {
            break;
        };
        let more = !in_flight.is_empty();
        committer.complete(written?, more).await?;
    }
    committer.release().await
}

/// Flushes encoded and written at the same time.
const WRITE_AHEAD: usize = 2;

/// A flush whose objects are durable: the boundary it completes, its Kinesis token, when it
/// started, and the sizes and row count of its objects.
type Written = (Option<Position>, Option<u64>, Instant, (Vec<u64>, usize));

async fn encode(pending: Pending) -> Result<Vec<Object>> {
    if pending.rows() == 0 {
        return Ok(Vec::new());
    }
    Ok(tokio::task::spawn_blocking(move || pending.encode())
        .await
        .context("the encoder panicked")??)
}

/// Writes the objects (several at once); their sizes and row count.
async fn write_objects(store: &Store, objects: Vec<Object>) -> Result<(Vec<u64>, usize)> {
    let sizes: Vec<u64> = objects.iter().map(|o| o.body.len() as u64).collect();
    let rows: usize = objects.iter().map(|o| o.rows).sum();
    futures_util::stream::iter(objects)
        .map(|object| async move {
            store
                .put(&object.key, object.body)
                .await
                .with_context(|| format!("writing {} rows to the lake", object.rows))
        })
        .buffer_unordered(PARALLEL_PUTS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok((sizes, rows))
}

/// Moves the checkpoint over flushes whose objects are durable, in order.
struct Committer {
    checkpoints: CheckpointStore,
    checkpoint: Checkpoint,
    acks: Option<Acks>,
    saved: Instant,
    metrics: Arc<Metrics>,
}

impl Committer {
    /// Accounts for a written flush and checkpoints its boundary. While catching up (`more`
    /// flushes in flight) the checkpoint is written at most once a second: it only lags, and
    /// the store is spared a conditional PUT per flush.
    async fn complete(&mut self, written: Written, more: bool) -> Result<()> {
        let (position, kinesis_token, started, (sizes, rows)) = written;
        self.metrics.objects.inc_by(sizes.len() as u64);
        self.metrics.bytes.inc_by(sizes.iter().sum());
        if !sizes.is_empty() {
            tracing::debug!(objects = sizes.len(), rows, "objects written");
        }
        if let Some(position) = position {
            if let (Some(acks), Some(token)) = (&mut self.acks, kinesis_token) {
                acks.wait_for(token).await?;
            }
            self.checkpoint.position = position;
            self.checkpoint.pending.clear();
            if !more || self.saved.elapsed() >= Duration::from_secs(1) {
                self.save().await?;
            }
        }
        self.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn save(&mut self) -> Result<()> {
        self.checkpoints.save(&self.checkpoint, false).await?;
        self.saved = Instant::now();
        // Advanced, or confirmed while idle: durable up to the source's present.
        self.metrics.checkpointed(&self.checkpoint.position);
        Ok(())
    }

    /// The final checkpoint, held by nobody.
    async fn release(mut self) -> Result<()> {
        self.checkpoints.save(&self.checkpoint, true).await?;
        let position = &self.checkpoint.position;
        tracing::info!(
            file = %position.file,
            pos = position.pos,
            gtids = %position.gtids,
            "stopped; checkpoint released"
        );
        Ok(())
    }
}
