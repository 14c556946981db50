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
    /// Gauge: records pushed and not yet acknowledged.
    pub buffered_records: AtomicU64,
    /// Gauge: bytes of those records.
    pub buffered_bytes: AtomicU64,
    /// Gauge: `PutRecords` requests in flight.
    pub in_flight_requests: AtomicU64,
    /// Gauge: groups (open shards) requests are spread over.
    pub shards: AtomicU64,
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
