//! `/metrics` (Prometheus text format), `/healthz` and `/readyz` for `cdcd run` and `cdcd sink`.
//!
//! Labels name tables, operations, queues, actions and error codes, never row values. Ages
//! (checkpoint, lag) and the binlog retention headroom are computed when scraped, so they keep
//! moving when the pipeline stalls instead of freezing at the last update. Every metric is
//! documented in docs/operations.md.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use cdcd_binlog::{Position, ReplicaOptions};
use cdcd_event::{ChangeEvent, Op, TableSchema};
use cdcd_sink::MaskingCounters;

/// Everything `cdcd run` reports.
pub struct Metrics {
    registry: Registry,
    rows: IntCounterVec,
    events: IntCounterVec,
    binlog_bytes: IntCounter,
    transactions: IntCounter,
    /// Transactions too large to buffer, written to the lake in parts.
    pub large_transactions: IntCounter,
    pub objects: IntCounter,
    pub bytes: IntCounter,
    pub flush_seconds: Histogram,
    /// `cdcd sink`: Kinesis records read, by shard.
    pub sink_records: IntCounterVec,
    /// `cdcd sink`: how far each owned shard's reader is behind the tip (`MillisBehindLatest`).
    pub sink_behind_ms: IntGaugeVec,
    lag: Gauge,
    checkpoint_age: Gauge,
    /// Commit time (µs since the epoch) of the last transaction read; 0 when caught up.
    last_commit_us: AtomicI64,
    /// When the checkpoint was last written (µs since the epoch).
    checkpointed_us: AtomicI64,
    /// Connected to the source and following it.
    following: AtomicBool,
    /// When the lake thread last went round its loop (µs since the epoch).
    alive_us: AtomicI64,
    /// How long the checkpoint may stand still before `/readyz` fails.
    stall: Duration,
    /// The Kinesis producer's counters, when `cdcd run` has a Kinesis output.
    kinesis: OnceLock<Arc<cdcd_kinesis::ProducerMetrics>>,
    /// The replication connection's fault counters.
    source: OnceLock<Arc<cdcd_binlog::ReplicaCounters>>,
    /// The masker's counters.
    masking: OnceLock<Arc<MaskingCounters>>,
    /// The pipeline's queues: name, capacity, and how to read the depth.
    queues: Mutex<Vec<Queue>>,
    /// The binlog file of the checkpoint: the oldest binlog cdcd still needs.
    checkpoint_file: Mutex<String>,
    /// When the server may purge `checkpoint_file`, in seconds since the epoch (an `f64`'s bits):
    /// infinite when never, NaN until known.
    purge_at: AtomicU64,
}

struct Queue {
    name: &'static str,
    capacity: usize,
    depth: Box<dyn Fn() -> usize + Send + Sync>,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}

impl Metrics {
    pub fn new(stall: Duration) -> Result<Arc<Metrics>> {
        let registry = Registry::new();
        let rows = IntCounterVec::new(
            Opts::new(
                "cdcd_rows_total",
                "Row changes read from the binlog for the lake, by table and op (a replay after a crash counts again)",
            ),
            &["table", "op"],
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "cdcd_events_total",
                "Binlog row events (each carrying one or more rows) read for the lake, by table and op",
            ),
            &["table", "op"],
        )?;
        let binlog_bytes = IntCounter::new(
            "cdcd_binlog_bytes_read_total",
            "Binlog bytes read, up to the last transaction boundary (from the binlog positions)",
        )?;
        let large_transactions = IntCounter::new(
            "cdcd_large_transactions_total",
            "Transactions too large to buffer (lake.max_rows / max_bytes), written to the lake in parts",
        )?;
        let transactions = IntCounter::new(
            "cdcd_transactions_total",
            "Transactions read from the binlog (including ones the table filter left empty)",
        )?;
        let objects = IntCounter::new(
            "cdcd_lake_objects_written_total",
            "Objects written to the lake",
        )?;
        let bytes = IntCounter::new("cdcd_lake_bytes_written_total", "Bytes written to the lake")?;
        let flush_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "cdcd_lake_flush_seconds",
                "Time to make one flush durable: its objects, then the checkpoint",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        let lag = Gauge::new(
            "cdcd_replication_lag_seconds",
            "Age of the last transaction read (commit time to now); 0 when caught up",
        )?;
        let checkpoint_age = Gauge::new(
            "cdcd_checkpoint_age_seconds",
            "Seconds since the checkpoint was last written: advanced, or confirmed while the source is idle",
        )?;
        let sink_records = IntCounterVec::new(
            Opts::new(
                "cdcd_sink_records_total",
                "Kinesis records read by cdcd sink, by shard (a replay after a crash counts again)",
            ),
            &["shard"],
        )?;
        let sink_behind_ms = IntGaugeVec::new(
            Opts::new(
                "cdcd_sink_millis_behind_latest",
                "How far cdcd sink's reader of a shard is behind the tip of the stream (Kinesis MillisBehindLatest)",
            ),
            &["shard"],
        )?;
        for collector in [
            Box::new(rows.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sink_records.clone()),
            Box::new(sink_behind_ms.clone()),
            Box::new(events.clone()),
            Box::new(binlog_bytes.clone()),
            Box::new(transactions.clone()),
            Box::new(large_transactions.clone()),
            Box::new(objects.clone()),
            Box::new(bytes.clone()),
            Box::new(flush_seconds.clone()),
            Box::new(lag.clone()),
            Box::new(checkpoint_age.clone()),
        ] {
            registry.register(collector)?;
        }
        Ok(Arc::new(Metrics {
            registry,
            rows,
            events,
            binlog_bytes,
            transactions,
            large_transactions,
            objects,
            bytes,
            flush_seconds,
            sink_records,
            sink_behind_ms,
            lag,
            checkpoint_age,
            last_commit_us: AtomicI64::new(0),
            checkpointed_us: AtomicI64::new(now_us()),
            following: AtomicBool::new(false),
            alive_us: AtomicI64::new(now_us()),
            kinesis: OnceLock::new(),
            source: OnceLock::new(),
            masking: OnceLock::new(),
            queues: Mutex::new(Vec::new()),
            checkpoint_file: Mutex::new(String::new()),
            purge_at: AtomicU64::new(f64::NAN.to_bits()),
            stall,
        }))
    }

    /// A change of a transaction committed at `commit_ts_us` was read.
    fn read_commit(&self, commit_ts_us: i64) {
        self.last_commit_us.store(commit_ts_us, Ordering::Relaxed);
    }

    /// The source said it has nothing newer: the lag is 0.
    pub fn caught_up(&self) {
        self.last_commit_us.store(0, Ordering::Relaxed);
    }

    /// Reports the Kinesis producer's counters from now on.
    pub fn watch_kinesis(&self, producer: Arc<cdcd_kinesis::ProducerMetrics>) {
        let _ = self.kinesis.set(producer);
    }

    /// Reports the replication connection's reconnects and errors from now on.
    pub fn watch_source(&self, counters: Arc<cdcd_binlog::ReplicaCounters>) {
        let _ = self.source.set(counters);
    }

    /// Reports the masker's counters from now on.
    pub fn watch_masking(&self, counters: Arc<MaskingCounters>) {
        let _ = self.masking.set(counters);
    }

    /// Reports how many items wait in the queue `sender` feeds. Holds the sender weakly, so the
    /// queue still closes when its last real sender is dropped.
    pub fn watch_queue<T: Send + 'static>(&self, name: &'static str, sender: &mpsc::Sender<T>) {
        let weak = sender.downgrade();
        let depth = move || {
            weak.upgrade()
                .map_or(0, |sender| sender.max_capacity() - sender.capacity())
        };
        self.queues
            .lock()
            .expect("the queue list is never poisoned")
            .push(Queue {
                name,
                capacity: sender.max_capacity(),
                depth: Box::new(depth),
            });
    }

    /// The pipeline is turning (called by the lake thread on every round).
    pub fn alive(&self) {
        self.alive_us.store(now_us(), Ordering::Relaxed);
    }

    /// Whether the pipeline turned within `period`: what the systemd watchdog is fed on.
    pub fn alive_within(&self, period: Duration) -> bool {
        now_us() - self.alive_us.load(Ordering::Relaxed) <= period.as_micros() as i64
    }

    /// The checkpoint was written (advanced, or confirmed while idle), at `binlog` for `cdcd run`.
    pub fn checkpointed(&self, binlog: Option<&Position>) {
        self.checkpointed_us.store(now_us(), Ordering::Relaxed);
        let Some(position) = binlog else { return };
        let mut file = self
            .checkpoint_file
            .lock()
            .expect("the checkpoint file is never poisoned");
        if *file != position.file {
            position.file.clone_into(&mut file);
        }
    }

    /// The binlog file of the checkpoint.
    fn checkpoint_file(&self) -> String {
        self.checkpoint_file
            .lock()
            .expect("the checkpoint file is never poisoned")
            .clone()
    }

    /// Seconds until the server may purge the checkpoint's binlog (never negative; infinite when
    /// it never will), or `None` until it is known.
    fn retention_headroom(&self) -> Option<f64> {
        let purge_at = f64::from_bits(self.purge_at.load(Ordering::Relaxed));
        (!purge_at.is_nan()).then(|| (purge_at - now_us() as f64 / 1e6).max(0.0))
    }

    pub fn set_following(&self, following: bool) {
        self.following.store(following, Ordering::Relaxed);
    }

    fn checkpoint_age(&self) -> f64 {
        (now_us() - self.checkpointed_us.load(Ordering::Relaxed)) as f64 / 1e6
    }

    fn render(&self) -> Vec<u8> {
        let last = self.last_commit_us.load(Ordering::Relaxed);
        self.lag.set(if last == 0 {
            0.0
        } else {
            ((now_us() - last) as f64 / 1e6).max(0.0)
        });
        self.checkpoint_age.set(self.checkpoint_age());
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("the text encoder writes to memory");
        if let Some(kinesis) = self.kinesis.get() {
            render_kinesis(kinesis, &mut out);
        }
        render_faults(self.source.get(), self.kinesis.get(), &mut out);
        self.render_pipeline(&mut out);
        out
    }

    /// The values read from elsewhere when scraped: headroom, masking counters, queue depths.
    fn render_pipeline(&self, out: &mut Vec<u8>) {
        if let Some(headroom) = self.retention_headroom() {
            let value = if headroom.is_infinite() {
                "+Inf".to_string()
            } else {
                format!("{headroom:.0}")
            };
            write_metric(
                out,
                "cdcd_binlog_retention_headroom_seconds",
                "gauge",
                "Seconds until the source may purge the binlog file of the checkpoint (+Inf: it never purges binlogs, or the file is the current one; 0: purged or due)",
                &[(String::new(), value)],
            );
        }
        if let Some(masking) = self.masking.get() {
            let actions: Vec<(String, String)> = masking
                .actions()
                .map(|(action, n)| (format!("{{action=\"{action}\"}}"), n.to_string()))
                .collect();
            write_metric(
                out,
                "cdcd_masked_values_total",
                "counter",
                "Values masked by [[masking.rules]], by action",
                &actions,
            );
            let kinds: Vec<(String, String)> = masking
                .detections()
                .map(|(kind, n)| (format!("{{kind=\"{kind}\"}}"), n.to_string()))
                .collect();
            write_metric(
                out,
                "cdcd_masking_detections_total",
                "counter",
                "Spans of free text replaced by [[masking.detect]], by kind",
                &kinds,
            );
        }
        let queues = self
            .queues
            .lock()
            .expect("the queue list is never poisoned");
        if !queues.is_empty() {
            let label = |q: &Queue| format!("{{queue=\"{}\"}}", q.name);
            let depths: Vec<(String, String)> = queues
                .iter()
                .map(|q| (label(q), (q.depth)().to_string()))
                .collect();
            write_metric(
                out,
                "cdcd_queue_depth",
                "gauge",
                "Batches waiting between pipeline stages (records: reader to lake thread; flushes: lake thread to uploader)",
                &depths,
            );
            let capacities: Vec<(String, String)> = queues
                .iter()
                .map(|q| (label(q), q.capacity.to_string()))
                .collect();
            write_metric(
                out,
                "cdcd_queue_capacity",
                "gauge",
                "How many batches each queue holds before its producer waits",
                &capacities,
            );
        }
    }

    /// Ready: following the source, and the checkpoint advanced within the stall limit.
    fn ready(&self) -> Result<(), String> {
        if !self.following.load(Ordering::Relaxed) {
            return Err("not following the source".into());
        }
        let age = self.checkpoint_age();
        if age > self.stall.as_secs_f64() {
            return Err(format!("the checkpoint has not advanced for {age:.0} s"));
        }
        Ok(())
    }
}

/// One metric family in the text format: `samples` are (`{labels}` or empty, value).
fn write_metric(
    out: &mut Vec<u8>,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, String)],
) {
    use std::io::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The producer's atomics in the text format (they are read, not mirrored into the registry).
fn render_kinesis(m: &cdcd_kinesis::ProducerMetrics, out: &mut Vec<u8>) {
    use cdcd_kinesis::ProducerMetrics as P;
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let samples: Vec<(String, String)> = samples
            .iter()
            .map(|(labels, value)| (labels.to_string(), value.to_string()))
            .collect();
        write_metric(out, name, kind, help, &samples);
    };
    metric(
        "cdcd_kinesis_records_put_total",
        "counter",
        "Records acknowledged by Kinesis",
        &[("", P::get(&m.records_put))],
    );
    metric(
        "cdcd_kinesis_bytes_put_total",
        "counter",
        "Bytes of the acknowledged records",
        &[("", P::get(&m.bytes_put))],
    );
    metric(
        "cdcd_kinesis_put_requests_total",
        "counter",
        "PutRecords requests sent, every attempt",
        &[("", P::get(&m.put_requests))],
    );
    metric(
        "cdcd_kinesis_records_retried_total",
        "counter",
        "Records sent again after a failure",
        &[("", P::get(&m.records_retried))],
    );
    let by_code: Vec<(String, u64)> = m
        .record_failures_by_code()
        .iter()
        .map(|(code, n)| (format!("{{code=\"{code}\"}}"), *n))
        .collect();
    let by_code: Vec<(&str, u64)> = by_code.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        "cdcd_kinesis_records_failed_total",
        "counter",
        "Per-record PutRecords failures, by error code",
        &by_code,
    );
    metric(
        "cdcd_kinesis_call_failures_total",
        "counter",
        "Whole PutRecords calls that failed, by kind",
        &[
            ("{kind=\"throttled\"}", P::get(&m.call_failures_throttled)),
            ("{kind=\"server\"}", P::get(&m.call_failures_server)),
            ("{kind=\"transport\"}", P::get(&m.call_failures_transport)),
            ("{kind=\"permanent\"}", P::get(&m.call_failures_permanent)),
        ],
    );
    metric(
        "cdcd_kinesis_throttles_total",
        "counter",
        "Throttles of any kind",
        &[("", P::get(&m.throttles))],
    );
    metric(
        "cdcd_kinesis_buffered_records",
        "gauge",
        "Records put and not yet acknowledged",
        &[("", P::get(&m.buffered_records))],
    );
    metric(
        "cdcd_kinesis_in_flight_requests",
        "gauge",
        "PutRecords requests in flight",
        &[("", P::get(&m.in_flight_requests))],
    );
    metric(
        "cdcd_kinesis_aggregates_put_total",
        "counter",
        "Kinesis records put that were KPL aggregates (their user records count in records_put)",
        &[("", P::get(&m.aggregates_put))],
    );
    histogram(
        out,
        "cdcd_kinesis_ack_latency_seconds",
        "Source commit to Kinesis acknowledgement, per record",
        &m.ack_latency,
    );
    histogram(
        out,
        "cdcd_kinesis_send_latency_seconds",
        "Handed to the producer to Kinesis acknowledgement, per record",
        &m.send_latency,
    );
}

/// A [`cdcd_kinesis::LatencyHistogram`] in the text format.
fn histogram(out: &mut Vec<u8>, name: &str, help: &str, h: &cdcd_kinesis::LatencyHistogram) {
    use std::io::Write;
    let latency = h.snapshot();
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, count) in &latency.buckets {
        let le = if bound.is_infinite() {
            "+Inf".to_string()
        } else {
            bound.to_string()
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_sum {}", latency.sum_seconds);
    let _ = writeln!(out, "{name}_count {}", latency.count);
}

/// Reconnects, failovers, and errors by kind: `source` (the replication connection was lost or
/// a reconnect failed), `s3` (a lake or checkpoint request failed and was retried), `kinesis`
/// (a PutRecords call or record failed and was retried). S3 retries also by kind.
fn render_faults(
    source: Option<&Arc<cdcd_binlog::ReplicaCounters>>,
    kinesis: Option<&Arc<cdcd_kinesis::ProducerMetrics>>,
    out: &mut Vec<u8>,
) {
    use cdcd_binlog::ReplicaCounters as R;
    use cdcd_kinesis::ProducerMetrics as P;
    use cdcd_sink::store::{RetryCounters as S, RETRIES};
    use std::io::Write;
    let mut metric = |name: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let source_count = |get: fn(&R) -> &std::sync::atomic::AtomicU64| {
        source.map_or(0, |counters| R::get(get(counters)))
    };
    metric(
        "cdcd_reconnects_total",
        "Attempts to reopen the replication stream after it was lost",
        &[("", source_count(|c| &c.reconnects))],
    );
    metric(
        "cdcd_failovers_total",
        "Reconnects that found another server behind the source endpoint and continued there by GTID",
        &[("", source_count(|c| &c.failovers))],
    );
    let s3 = [
        ("{kind=\"throttled\"}", S::get(&RETRIES.throttled)),
        ("{kind=\"server\"}", S::get(&RETRIES.server)),
        ("{kind=\"timeout\"}", S::get(&RETRIES.timeout)),
        ("{kind=\"transport\"}", S::get(&RETRIES.transport)),
    ];
    metric(
        "cdcd_s3_retries_total",
        "S3 requests that failed transiently and were sent again, by kind",
        &s3,
    );
    let kinesis_errors = kinesis.map_or(0, |m| {
        [
            &m.call_failures_throttled,
            &m.call_failures_server,
            &m.call_failures_transport,
            &m.call_failures_permanent,
            &m.record_failures_throughput_exceeded,
            &m.record_failures_internal,
            &m.record_failures_kms_throttling,
            &m.record_failures_other,
        ]
        .into_iter()
        .map(P::get)
        .sum()
    });
    metric(
        "cdcd_errors_total",
        "Errors met and handled (retried), by kind: source, s3, kinesis",
        &[
            ("{kind=\"source\"}", source_count(|c| &c.connection_errors)),
            ("{kind=\"s3\"}", s3.iter().map(|(_, n)| n).sum()),
            ("{kind=\"kinesis\"}", kinesis_errors),
        ],
    );
}

/// The lake thread's counting of what it reads: rows and row events by table and op,
/// transactions, and binlog bytes. Holds the counter handles, so that counting a row costs a
/// lookup, not a label formatting.
pub struct ReadCounters {
    by_table: HashMap<TableOp, (IntCounter, IntCounter)>,
    /// The counters of the last change's table definition and op: rows mostly come in runs of
    /// one table, which then cost no hashing.
    last_table: Option<(Arc<TableSchema>, Op, IntCounter, IntCounter)>,
    /// The rows event of the last change (its transaction and offset): a new one is one more event.
    last_event: Option<(usize, u64)>,
    /// The last transaction boundary's file and offset.
    last_position: (String, u64),
}

/// Schema, table and operation: the labels of the row and event counters.
type TableOp = (Arc<str>, Arc<str>, Op);

impl ReadCounters {
    /// Counting from `start`, where reading begins (a binlog position, for `cdcd run`).
    pub fn new(start: Option<&Position>) -> ReadCounters {
        ReadCounters {
            by_table: HashMap::new(),
            last_table: None,
            last_event: None,
            last_position: start.map_or_else(Default::default, |p| (p.file.clone(), p.pos)),
        }
    }

    /// A row change was read.
    pub fn change(&mut self, metrics: &Metrics, event: &ChangeEvent) {
        let transaction = &event.source.transaction;
        metrics.read_commit(transaction.commit_ts_us);
        let cached = matches!(&self.last_table,
            Some((table, op, ..)) if Arc::ptr_eq(table, &event.table) && *op == event.op);
        if !cached {
            let key = (
                event.table.schema.clone(),
                event.table.table.clone(),
                event.op,
            );
            let (rows, events) = self.by_table.entry(key).or_insert_with(|| {
                let table = format!("{}.{}", event.table.schema, event.table.table);
                let labels = [table.as_str(), event.op.as_str()];
                (
                    metrics.rows.with_label_values(&labels),
                    metrics.events.with_label_values(&labels),
                )
            });
            self.last_table = Some((event.table.clone(), event.op, rows.clone(), events.clone()));
        }
        let (_, _, rows, events) = self.last_table.as_ref().expect("just set");
        rows.inc();
        let rows_event = (Arc::as_ptr(transaction) as usize, event.source.pos);
        if self.last_event != Some(rows_event) {
            self.last_event = Some(rows_event);
            events.inc();
        }
    }

    /// A transaction ended; `binlog` is where the next one starts (`None` outside the binlog).
    pub fn commit(&mut self, metrics: &Metrics, binlog: Option<&Position>) {
        metrics.transactions.inc();
        let Some(position) = binlog else { return };
        let (file, pos) = &mut self.last_position;
        if *file == position.file {
            metrics
                .binlog_bytes
                .inc_by(position.pos.saturating_sub(*pos));
        } else {
            // A boundary in a later file: that file from its first event on (after its 4-byte
            // magic number). The end of the files before it, after their last boundary (a
            // ROTATE event), is not counted.
            metrics.binlog_bytes.inc_by(position.pos.saturating_sub(4));
            position.file.clone_into(file);
        }
        *pos = position.pos;
    }
}

/// How often the retention headroom is recomputed (and when the checkpoint's file changes).
const RETENTION_PERIOD: Duration = Duration::from_secs(60);

/// Keeps `cdcd_binlog_retention_headroom_seconds` current: asks the source when the checkpoint's
/// binlog file will be purged, at start, whenever the checkpoint moves to another file, and every
/// minute. A failed query is logged and leaves the last value (which keeps counting down).
///
/// Reading a binlog file's creation time needs a short binlog dump; it registers as replica id
/// `source.server_id` with the high bit flipped, so as not to displace cdcd's own stream.
pub fn watch_retention(
    metrics: Arc<Metrics>,
    options: ReplicaOptions,
) -> tokio::task::JoinHandle<()> {
    let probe_server_id = options.server_id ^ (1 << 31);
    tokio::spawn(async move {
        let mut computed: Option<(String, std::time::Instant)> = None;
        loop {
            let file = metrics.checkpoint_file();
            let due = computed
                .as_ref()
                .is_none_or(|(last, at)| *last != file || at.elapsed() >= RETENTION_PERIOD);
            if due && !file.is_empty() {
                match cdcd_binlog::headroom(&options, &file, probe_server_id).await {
                    Ok(seconds) => {
                        let purge_at = now_us() as f64 / 1e6 + seconds;
                        metrics
                            .purge_at
                            .store(purge_at.to_bits(), Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(
                        file = %file,
                        error = %e,
                        "cannot compute the binlog retention headroom"
                    ),
                }
                computed = Some((file, std::time::Instant::now()));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Serves the endpoints on `listen` until the process ends. Binding happens before this returns,
/// so a bad address is an error at start, not a silent absence.
pub async fn serve(listen: &str, metrics: Arc<Metrics>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics.listen = {listen}: cannot listen there"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), respond(stream, &metrics)).await;
            });
        }
    });
    Ok(())
}

async fn respond(mut stream: tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = match path.split('?').next().unwrap_or("/") {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" => ("200 OK", "text/plain", b"ok\n".to_vec()),
        "/readyz" => match metrics.ready() {
            Ok(()) => ("200 OK", "text/plain", b"ready\n".to_vec()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {why}\n").into_bytes(),
            ),
        },
        _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(metrics: &Metrics, name: &str) -> String {
        let text = String::from_utf8(metrics.render()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    #[test]
    fn lag_grows_while_stalled_and_is_zero_when_caught_up() {
        let metrics = Metrics::new(Duration::from_secs(60)).unwrap();
        let lag = |m: &Metrics| {
            sample(m, "cdcd_replication_lag_seconds")
                .parse::<f64>()
                .unwrap()
        };
        assert_eq!(lag(&metrics), 0.0, "nothing read yet");
        metrics.read_commit(now_us() - 5_000_000);
        let first = lag(&metrics);
        assert!((5.0..6.0).contains(&first), "{first}");
        // No event, no heartbeat: the lag keeps growing instead of freezing at 5 s.
        std::thread::sleep(Duration::from_millis(1100));
        assert!(lag(&metrics) >= first + 1.0);
        metrics.caught_up();
        assert_eq!(lag(&metrics), 0.0);
    }

    #[test]
    fn headroom_counts_down_and_infinity_is_plus_inf() {
        let metrics = Metrics::new(Duration::from_secs(60)).unwrap();
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            !text.contains("cdcd_binlog_retention_headroom_seconds"),
            "absent until known"
        );
        let name = "cdcd_binlog_retention_headroom_seconds";
        let in_an_hour = now_us() as f64 / 1e6 + 3600.0;
        metrics
            .purge_at
            .store(in_an_hour.to_bits(), Ordering::Relaxed);
        let headroom: f64 = sample(&metrics, name).parse().unwrap();
        assert!((3598.0..=3600.0).contains(&headroom), "{headroom}");
        metrics.purge_at.store(1.0f64.to_bits(), Ordering::Relaxed);
        assert_eq!(sample(&metrics, name), "0", "past: 0, not negative");
        metrics
            .purge_at
            .store(f64::INFINITY.to_bits(), Ordering::Relaxed);
        assert_eq!(sample(&metrics, name), "+Inf");
    }
}
