//! Counters and gauges for the daemon's `/metrics`: plain atomics, read with
//! [`ProducerMetrics::get`] or directly (`Ordering::Relaxed` is enough: each is independent).

use std::sync::atomic::{AtomicU64, Ordering};

/// What the producer has done so far. Counters only grow; gauges (marked) go up and down.
#[derive(Debug, Default)]
pub struct ProducerMetrics {
    /// Records acknowledged by Kinesis.
    pub records_put: AtomicU64,
    /// Bytes (data + partition key) of the acknowledged records.
    pub bytes_put: AtomicU64,
    /// `PutRecords` requests sent (every attempt).
    pub put_requests: AtomicU64,
    /// Records sent again after a failure (per-record or whole call).
    pub records_retried: AtomicU64,
    /// Per-record failures `ProvisionedThroughputExceededException`.
    pub record_failures_throughput_exceeded: AtomicU64,
    /// Per-record failures `InternalFailure`.
    pub record_failures_internal: AtomicU64,
    /// Per-record failures `KMSThrottlingException`.
    pub record_failures_kms_throttling: AtomicU64,
    /// Per-record failures with any other code.
    pub record_failures_other: AtomicU64,
    /// Whole `PutRecords` calls refused for throttling (HTTP 400 throughput exceeded, 429, ...).
    pub call_failures_throttled: AtomicU64,
    /// Whole calls failed with HTTP 5xx or an internal failure code.
    pub call_failures_server: AtomicU64,
    /// Whole calls with no usable response: timeouts, connection errors.
    pub call_failures_transport: AtomicU64,
    /// Permanent errors (the producer stopped on the first).
    pub call_failures_permanent: AtomicU64,
    /// Throttles of any kind: per-record throughput/KMS throttling and throttled calls.
    pub throttles: AtomicU64,
    /// Records that may have been overtaken by a later record of their key (`batched` ordering
    /// only: a failed record with a stored later record of its key in the same request).
    pub reordered: AtomicU64,
    /// Shard maps applied after the first (resharding followed).
    pub shard_map_changes: AtomicU64,
    /// Kinesis records put that were KPL aggregates (`aggregate = true`); their user records
    /// count in `records_put`.
    pub aggregates_put: AtomicU64,
    /// Commit to acknowledgement, per record that carries its commit time.
    pub ack_latency: LatencyHistogram,
    /// [`Producer::send`](crate::Producer::send) to acknowledgement, per record: the producer's
    /// share of `ack_latency` (the rest is the source and the reader).
    pub send_latency: LatencyHistogram,
    /// Gauge: records pushed and not yet acknowledged.
    pub buffered_records: AtomicU64,
    /// Gauge: bytes of those records.
    pub buffered_bytes: AtomicU64,
    /// Gauge: `PutRecords` requests in flight.
    pub in_flight_requests: AtomicU64,
    /// Gauge: groups (open shards) requests are spread over.
    pub shards: AtomicU64,
}

/// Upper bounds, in seconds, of [`LatencyHistogram`]'s buckets (a last one, +Inf, follows). Dense
/// around 250 ms, the bar of the Kinesis benchmark.
pub const ACK_LATENCY_BOUNDS: [f64; 22] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A latency histogram of atomics, in the Prometheus sense: cumulative bucket counts are derived
/// when read.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; ACK_LATENCY_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// What a [`LatencyHistogram`] held at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// `(upper bound in seconds, observations ≤ it)`, cumulative, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencyHistogram {
    /// Records one latency; a negative one (clocks apart) counts as 0.
    pub fn observe_micros(&self, micros: i64) {
        let micros = micros.max(0) as u64;
        let seconds = micros as f64 / 1e6;
        let bucket = ACK_LATENCY_BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(ACK_LATENCY_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let mut cumulative = 0;
        let buckets = ACK_LATENCY_BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.buckets)
            .map(|(bound, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (bound, cumulative)
            })
            .collect();
        LatencySnapshot {
            buckets,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

impl ProducerMetrics {
    /// Reads one counter or gauge.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Per-record failures as `(error code, count)`, for a labelled metric.
    pub fn record_failures_by_code(&self) -> [(&'static str, u64); 4] {
        [
            (
                "ProvisionedThroughputExceededException",
                Self::get(&self.record_failures_throughput_exceeded),
            ),
            ("InternalFailure", Self::get(&self.record_failures_internal)),
            (
                "KMSThrottlingException",
                Self::get(&self.record_failures_kms_throttling),
            ),
            ("other", Self::get(&self.record_failures_other)),
        ]
    }

    /// Per-record failures of every code.
    pub fn record_failures(&self) -> u64 {
        self.record_failures_by_code().iter().map(|(_, n)| n).sum()
    }

    /// Whole-call failures of every kind.
    pub fn call_failures(&self) -> u64 {
        Self::get(&self.call_failures_throttled)
            + Self::get(&self.call_failures_server)
            + Self::get(&self.call_failures_transport)
            + Self::get(&self.call_failures_permanent)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn set(counter: &AtomicU64, n: u64) {
        counter.store(n, Ordering::Relaxed);
    }

    /// Counts one per-record failure by its code.
    pub(crate) fn record_failure(&self, code: &str) {
        let counter = match code {
            "ProvisionedThroughputExceededException" => &self.record_failures_throughput_exceeded,
            "InternalFailure" => &self.record_failures_internal,
            "KMSThrottlingException" => &self.record_failures_kms_throttling,
            _ => &self.record_failures_other,
        };
        Self::add(counter, 1);
    }
}
