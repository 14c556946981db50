//! The lake pipeline shared by `cdcd run` (binlog → lake) and `cdcd sink` (Kinesis → lake).
//!
//! Three stages joined by bounded queues, so that a slow store slows the reader down instead of
//! filling memory:
//!
//! ```text
//! reader (async)  --records-->  lake thread  --flushes-->  uploader (async)
//! decodes, masks                buffers, cuts objects,     encodes (blocking pool), puts
//!                               puts on Kinesis (run)      objects, then the checkpoint
//! ```
//!
//! Acknowledgement is end to end: a flush carries the boundary its objects complete (a
//! [`Progress`]: a binlog position for `cdcd run`, per-shard sequence numbers for `cdcd sink`),
//! and the uploader hands that boundary to the [`Checkpoints`] only after every object of the
//! flush (and of all flushes before it) is durable. A crash anywhere loses no change: the next
//! run resumes at the checkpoint and rewrites the same objects (see `cdcd_sink::lake`).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

use cdcd_binlog::Position;
use cdcd_event::{ChangeEvent, DdlEvent};
use cdcd_kinesis::Acks;
use cdcd_sink::{Lake, Object, Pending, Spent, Store};

use crate::kinesis_output::KinesisOutput;
use crate::metrics::{Metrics, ReadCounters};

/// What a reader sends the lake thread, one at a time.
pub enum Item<S> {
    /// A masked row change of the open transaction, and its lane: changes of different lanes
    /// never share an object (`cdcd sink`'s shards; `None` for `cdcd run`).
    Change(ChangeEvent, Option<Arc<str>>),
    /// The end of a transaction (for `cdcd sink`, of a record): where reading may resume.
    Commit(S),
    /// The source is idle and caught up.
    Heartbeat,
    Ddl(DdlEvent),
}

/// A reader's record type: what it turns into for the lake thread.
pub trait Input: Send + 'static {
    type Progress: Progress;
    fn into_item(self) -> Item<<Self::Progress as Progress>::Step>;
}

/// Where reading stands: what a checkpoint records.
pub trait Progress: Clone + PartialEq + Send + 'static {
    /// What one commit moves it by.
    type Step: Send;
    /// Whether a transaction too large to buffer is written in parts before it commits (and the
    /// parts recorded as pending in the checkpoint). `cdcd sink` never needs it: its transactions
    /// are single Kinesis records, bounded by the stream's record size.
    const SPLITS_TRANSACTIONS: bool;
    fn advance(&mut self, step: Self::Step);
    /// A DDL statement read before the commit that ends its transaction.
    fn ddl(&mut self, _ddl: &DdlEvent) {}
    /// The binlog position it stands for (`cdcd run`), for the binlog metrics.
    fn binlog(&self) -> Option<&Position> {
        None
    }
}

/// Where a command keeps its checkpoint.
pub trait Checkpoints: Send + 'static {
    type Progress: Progress;
    /// Everything up to `progress` is durable (it is saved at the next [`Checkpoints::save`]).
    fn advance(&mut self, progress: Self::Progress);
    /// Objects about to be written past the checkpoint (parts of a large transaction).
    fn add_pending(&mut self, keys: Vec<String>);
    /// Writes the checkpoint, held by this process (`release`: by nobody, at a clean stop).
    fn save(&mut self, release: bool) -> impl Future<Output = Result<()>> + Send;
}

/// Objects to write, and what they complete.
pub struct Flush<P> {
    /// Rows to encode (on the uploader's side, so that encoding and reading use both cores).
    objects: Pending,
    /// The boundary to checkpoint once the objects are durable; `None` for the parts of a
    /// transaction too large to buffer, which complete no boundary and are recorded in the
    /// checkpoint as pending before they are written.
    checkpoint: Option<P>,
    /// The last Kinesis record of the changes before `checkpoint`: the checkpoint also waits
    /// for Kinesis to acknowledge it.
    kinesis_token: Option<u64>,
}

/// Concurrent PUTs per flush.
const PARALLEL_PUTS: usize = 8;

/// Where the lake stages write: the store, and where encoded rows go to be freed by the reader
/// that allocated them (`None`: freed where they were encoded).
pub type Output = (Store, Option<mpsc::UnboundedSender<Spent>>);

/// The lake thread and the uploader, running; the reader feeds them through the queue [`start`]
/// returned.
pub struct Running {
    lake_thread: std::thread::JoinHandle<Result<()>>,
    uploader: tokio::task::JoinHandle<Result<()>>,
}

/// Starts the lake thread ([`cut_objects`]) and the uploader ([`upload`]) on the current runtime,
/// from `start`; returns the queue of record batches the reader fills.
pub fn start<R: Input, C: Checkpoints<Progress = R::Progress>>(
    lake: Lake,
    (checkpoint_interval, start): (Duration, R::Progress),
    output: Output,
    (checkpoints, acks): (C, Option<Acks>),
    metrics: &Arc<Metrics>,
    kinesis: Option<KinesisOutput>,
) -> Result<(mpsc::Sender<Vec<R>>, Running)> {
    let (records_tx, records) = mpsc::channel::<Vec<R>>(4);
    let (flushes, flush_rx) = mpsc::channel(2);
    metrics.watch_queue("records", &records_tx);
    metrics.watch_queue("flushes", &flushes);
    let runtime = tokio::runtime::Handle::current();
    let thread_metrics = metrics.clone();
    let lake_thread = std::thread::Builder::new()
        .name("lake".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            cut_objects(
                records,
                flushes,
                lake,
                (checkpoint_interval, start),
                &thread_metrics,
                kinesis,
            )
        })
        .context("starting the lake thread")?;
    let uploader = tokio::spawn(upload(
        flush_rx,
        output,
        (checkpoints, acks),
        metrics.clone(),
    ));
    Ok((
        records_tx,
        Running {
            lake_thread,
            uploader,
        },
    ))
}

impl Running {
    /// Waits for both stages once the reader has stopped (with `read`, its result). The
    /// uploader's error comes first, as it explains why the stages before it stopped; then the
    /// lake thread's; then the reader's.
    pub async fn finish(self, read: Result<()>) -> Result<()> {
        let cut = self
            .lake_thread
            .join()
            .map_err(|_| anyhow::anyhow!("the lake thread panicked"))?;
        let uploaded = self.uploader.await.context("the uploader panicked")?;
        uploaded?;
        cut?;
        read
    }
}

/// The lake thread: buffers rows, decides when objects are cut and flushed, and feeds Kinesis.
fn cut_objects<R: Input>(
    mut records: mpsc::Receiver<Vec<R>>,
    flushes: mpsc::Sender<Flush<R::Progress>>,
    mut lake: Lake,
    (checkpoint_interval, start): (Duration, R::Progress),
    metrics: &Metrics,
    mut kinesis: Option<KinesisOutput>,
) -> Result<()> {
    let runtime = tokio::runtime::Handle::current();
    // False once the uploader has stopped (its error is the one reported).
    let send = |flush: Flush<R::Progress>| flushes.blocking_send(flush).is_ok();
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
    let mut counters = ReadCounters::new(boundary.last_commit.binlog());
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
            match record.into_item() {
                Item::Change(event, lane) => {
                    counters.change(metrics, &event);
                    if let Some(kinesis) = &mut kinesis {
                        kinesis.put_change(&event)?;
                    }
                    lake.push_in(event, lane);
                    if R::Progress::SPLITS_TRANSACTIONS && lake.transaction_overflows() {
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
                Item::Commit(step) => {
                    boundary.kinesis_token = kinesis.as_ref().and_then(KinesisOutput::last_token);
                    lake.commit();
                    in_parts = false;
                    boundary.last_commit.advance(step);
                    counters.commit(metrics, boundary.last_commit.binlog());
                }
                Item::Heartbeat => metrics.caught_up(),
                Item::Ddl(ddl) => {
                    boundary.last_commit.ddl(&ddl);
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
struct Boundary<P> {
    last_commit: P,
    /// The last Kinesis record before `last_commit`.
    kinesis_token: Option<u64>,
    checkpointed: Instant,
    checkpointed_at: P,
}

impl<P: Progress> Boundary<P> {
    /// A flush of every committed row, which checkpoints the last boundary.
    fn flush(&mut self, lake: &mut Lake) -> Flush<P> {
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
async fn upload<C: Checkpoints>(
    mut flushes: mpsc::Receiver<Flush<C::Progress>>,
    (store, spent): Output,
    (checkpoints, acks): (C, Option<Acks>),
    metrics: Arc<Metrics>,
) -> Result<()> {
    let mut committer = Committer {
        checkpoints,
        checkpointed_binlog: None,
        acks,
        saved: Instant::now(),
        unsaved: false,
        metrics,
    };
    // Flushes being encoded on the blocking pool, up to WRITE_AHEAD at once, so that encoding
    // overlaps the store's latency. Their objects are written one flush at a time, in order, and
    // only once the checkpoint covers every flush before: at most one flush's objects ever lie
    // past the checkpoint, which is what lets a replay replace them (see `cdcd_sink::lake`).
    let mut encoding = VecDeque::new();
    loop {
        while encoding.len() < WRITE_AHEAD {
            let next = if encoding.is_empty() {
                flushes.recv().await
            } else {
                flushes.try_recv().ok()
            };
            let Some(flush) = next else { break };
            let started = Instant::now();
            if flush.checkpoint.is_none() {
                // Parts of a large transaction: recorded in the checkpoint before they are
                // written, so a crash cannot leave them unknown; nothing else is in flight then.
                while let Some(encoded) = encoding.pop_front() {
                    committer.write(&store, encoded, false).await?;
                }
                let objects = encode(flush.objects, &spent)
                    .await
                    .context("the encoder panicked")??;
                committer
                    .checkpoints
                    .add_pending(objects.iter().map(|o| o.key.clone()).collect());
                committer.save().await?;
                let written = write_objects(&store, objects).await?;
                committer
                    .complete((None, None, started, written), false)
                    .await?;
                continue;
            }
            encoding.push_back(Encoded {
                objects: encode(flush.objects, &spent),
                checkpoint: flush.checkpoint,
                kinesis_token: flush.kinesis_token,
                started,
            });
        }
        let Some(encoded) = encoding.pop_front() else {
            break;
        };
        let more = !encoding.is_empty();
        committer.write(&store, encoded, more).await?;
    }
    committer.release().await
}

/// Flushes encoded at the same time.
const WRITE_AHEAD: usize = 2;

/// A flush being encoded, and what it completes.
struct Encoded<P> {
    objects: tokio::task::JoinHandle<Result<Vec<Object>, cdcd_sink::LakeError>>,
    checkpoint: Option<P>,
    kinesis_token: Option<u64>,
    started: Instant,
}

/// A flush whose objects are durable: the boundary it completes, its Kinesis token, when it
/// started, and the sizes and row count of its objects.
type Written<P> = (Option<P>, Option<u64>, Instant, (Vec<u64>, usize));

/// Encodes on the blocking pool, starting now; the encoded rows go to `spent` (if given) to be
/// freed by the reader that allocated them.
fn encode(
    pending: Pending,
    spent: &Option<mpsc::UnboundedSender<Spent>>,
) -> tokio::task::JoinHandle<Result<Vec<Object>, cdcd_sink::LakeError>> {
    let spent = spent.clone();
    tokio::task::spawn_blocking(move || {
        if pending.rows() == 0 {
            return Ok(Vec::new());
        }
        let (objects, rows) = pending.encode()?;
        if let Some(spent) = spent {
            // A reader that has stopped leaves them to be freed here.
            let _ = spent.send(rows);
        }
        Ok(objects)
    })
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
struct Committer<C> {
    checkpoints: C,
    /// The binlog position of the last boundary advanced to, for the retention metric.
    checkpointed_binlog: Option<Position>,
    acks: Option<Acks>,
    saved: Instant,
    /// Advanced since the last save.
    unsaved: bool,
    metrics: Arc<Metrics>,
}

impl<C: Checkpoints> Committer<C> {
    /// Writes an encoded flush's objects, after saving the checkpoint of the flushes before it
    /// (if they have objects: a replay can only replace the objects of the one flush past the
    /// checkpoint), then completes it.
    async fn write(
        &mut self,
        store: &Store,
        encoded: Encoded<C::Progress>,
        more: bool,
    ) -> Result<()> {
        let objects = encoded.objects.await.context("the encoder panicked")??;
        if !objects.is_empty() && self.unsaved {
            self.save().await?;
        }
        let written = write_objects(store, objects).await?;
        self.complete(
            (
                encoded.checkpoint,
                encoded.kinesis_token,
                encoded.started,
                written,
            ),
            more,
        )
        .await
    }

    /// Accounts for a written flush and checkpoints its boundary. While catching up (`more`
    /// flushes in flight) the checkpoint is written at most once a second: it only lags, and
    /// the store is spared a conditional PUT per flush.
    async fn complete(&mut self, written: Written<C::Progress>, more: bool) -> Result<()> {
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
            self.checkpointed_binlog = position.binlog().cloned();
            self.checkpoints.advance(position);
            self.unsaved = true;
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
        self.checkpoints.save(false).await?;
        self.saved = Instant::now();
        self.unsaved = false;
        // Advanced, or confirmed while idle: durable up to the source's present.
        self.metrics.checkpointed(self.checkpointed_binlog.as_ref());
        Ok(())
    }

    /// The final checkpoint, held by nobody.
    async fn release(mut self) -> Result<()> {
        self.checkpoints.save(true).await
    }
}
