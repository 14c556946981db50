//! `/metrics` (Prometheus text format), `/healthz` and `/readyz` for `cdcd run`.
//!
//! Labels name tables and operations, never row values. Ages (checkpoint, lag) are computed when
//! scraped, so they keep growing when the pipeline stalls instead of freezing at the last update.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything `cdcd run` reports.
pub struct Metrics {
    registry: Registry,
    pub rows: IntCounterVec,
    pub transactions: IntCounter,
    pub objects: IntCounter,
    pub bytes: IntCounter,
    pub flush_seconds: Histogram,
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
    kinesis: std::sync::OnceLock<Arc<cdcd_kinesis::ProducerMetrics>>,
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
        for collector in [
            Box::new(rows.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(transactions.clone()),
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
            transactions,
            objects,
            bytes,
            flush_seconds,
            lag,
            checkpoint_age,
            last_commit_us: AtomicI64::new(0),
            checkpointed_us: AtomicI64::new(now_us()),
            following: AtomicBool::new(false),
            alive_us: AtomicI64::new(now_us()),
            kinesis: std::sync::OnceLock::new(),
            stall,
        }))
    }

    /// A change of a transaction committed at `commit_ts_us` was read.
    pub fn read_commit(&self, commit_ts_us: i64) {
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

    /// The pipeline is turning (called by the lake thread on every round).
    pub fn alive(&self) {
        self.alive_us.store(now_us(), Ordering::Relaxed);
    }

    /// Whether the pipeline turned within `period`: what the systemd watchdog is fed on.
    pub fn alive_within(&self, period: Duration) -> bool {
        now_us() - self.alive_us.load(Ordering::Relaxed) <= period.as_micros() as i64
    }

    pub fn checkpointed(&self) {
        self.checkpointed_us.store(now_us(), Ordering::Relaxed);
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
        out
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

/// The producer's atomics in the text format (they are read, not mirrored into the registry).
fn render_kinesis(m: &cdcd_kinesis::ProducerMetrics, out: &mut Vec<u8>) {
    use cdcd_kinesis::ProducerMetrics as P;
    use std::io::Write;
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
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
