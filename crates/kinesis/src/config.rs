//! `[kinesis]`: where the producer writes and how hard it tries.

use serde::Deserialize;

use crate::error::ProducerError;

/// The most records one `PutRecords` call may carry.
pub const MAX_BATCH_RECORDS: usize = 500;
/// The most bytes (data and partition keys) one `PutRecords` call may carry, with streams that
/// allow records over 1 MiB (the classic limit is 5 MiB).
pub const MAX_REQUEST_BYTES: usize = 10 << 20;

/// The Kinesis producer's settings. Every field has a default; only `stream` must be set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KinesisConfig {
    /// The stream's name, or its ARN (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
    pub stream: String,
    /// AWS region; default: the standard chain (`AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint URL; default: AWS (or `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// `strict` (default): at most one record per partition key in a request, so that per-key
    /// order survives partial failures. `batched`: many records per key per request (faster for
    /// hot keys; a partial failure can reorder a key, see the crate docs).
    pub ordering: OrderingMode,
    /// The most `PutRecords` requests in flight at once, across all shards (each shard has at
    /// most one).
    pub max_in_flight: usize,
    /// Records per `PutRecords` request, at most 500.
    pub max_batch_records: usize,
    /// Bytes (data + partition keys) per `PutRecords` request; raised to the stream's record limit
    /// when that is larger, so that any valid record can be sent.
    pub max_batch_bytes: usize,
    /// Bytes of pushed records not yet acknowledged before `send` waits (backpressure).
    pub max_buffered_bytes: usize,
    /// Give up (and stop with an error) when a record has kept failing for this long; 0: at the
    /// first failure.
    pub retry_seconds: u64,
    /// First retry delay bound; doubled per failed attempt, with full jitter.
    pub backoff_initial_ms: u64,
    /// Largest retry delay bound.
    pub backoff_max_ms: u64,
    /// Timeout of one request attempt (connect, send, response).
    pub request_timeout_seconds: u64,
    /// How often to reload the shard map (`ListShards`) to follow resharding; 0: only when a
    /// response shows that the map is stale.
    pub shard_refresh_seconds: u64,
    /// Pack the records of one shard into KPL aggregated records (see [`crate::kpl`]), up to the
    /// record size limit. Consumers must deaggregate (the KCL, `cdcd sink`, `aws-kinesis-agg`);
    /// DMS consumers cannot, so `cdcd run` refuses it with the DMS format.
    pub aggregate: bool,
    /// What `cdcd run` does with a record over the stream's size limit: `fail` (stop with an
    /// error naming the record) or `s3` (write it to `overflow_url` and put a pointer record,
    /// see [`crate::overflow`]). The producer itself always refuses such a record.
    pub oversize: OversizeMode,
    /// Where `oversize = "s3"` writes payloads: `s3://bucket/prefix`, `file:///dir`; empty: the
    /// lake's store under `_cdcd/kinesis-overflow/`.
    pub overflow_url: String,
}

/// What happens to a record over the stream's size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OversizeMode {
    /// Refuse it: `cdcd run` stops with an error naming the record.
    #[default]
    Fail,
    /// Write the payload to the overflow store, then put a pointer record in its place.
    S3,
}

/// How the producer trades per-key order against throughput on partial failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderingMode {
    /// One record per partition key per request: order per key always holds.
    #[default]
    Strict,
    /// Up to 500 records per partition key per request: a partial failure can reorder a key.
    Batched,
}

impl Default for KinesisConfig {
    fn default() -> Self {
        KinesisConfig {
            stream: String::new(),
            region: None,
            endpoint: None,
            ordering: OrderingMode::Strict,
            max_in_flight: 64,
            max_batch_records: MAX_BATCH_RECORDS,
            max_batch_bytes: 5 << 20,
            max_buffered_bytes: 64 << 20,
            retry_seconds: 600,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            request_timeout_seconds: 30,
            shard_refresh_seconds: 60,
            aggregate: false,
            oversize: OversizeMode::Fail,
            overflow_url: String::new(),
        }
    }
}

impl KinesisConfig {
    /// Checks the settings that do not need AWS; `start` calls it.
    pub fn validate(&self) -> Result<(), ProducerError> {
        let invalid =
            |field: &'static str, message: String| Err(ProducerError::Config { field, message });
        if self.stream.trim().is_empty() {
            return invalid(
                "stream",
                "no stream: set the Kinesis stream's name or ARN".into(),
            );
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight", "must be at least 1".into());
        }
        if !(1..=MAX_BATCH_RECORDS).contains(&self.max_batch_records) {
            return invalid(
                "max_batch_records",
                format!(
                    "{} is outside 1..={MAX_BATCH_RECORDS} (the PutRecords limit)",
                    self.max_batch_records
                ),
            );
        }
        if !(1..=MAX_REQUEST_BYTES).contains(&self.max_batch_bytes) {
            return invalid(
                "max_batch_bytes",
                format!(
                    "{} is outside 1..={MAX_REQUEST_BYTES} (the PutRecords limit)",
                    self.max_batch_bytes
                ),
            );
        }
        if !(1 << 20..=1 << 40).contains(&self.max_buffered_bytes) {
            return invalid(
                "max_buffered_bytes",
                format!("{} is outside 1 MiB..=1 TiB", self.max_buffered_bytes),
            );
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return invalid(
                "backoff_initial_ms",
                "must be at least 1 and at most backoff_max_ms".into(),
            );
        }
        if self.request_timeout_seconds == 0 {
            return invalid("request_timeout_seconds", "must be at least 1".into());
        }
        if !self.overflow_url.is_empty() && self.oversize != OversizeMode::S3 {
            return invalid(
                "overflow_url",
                "is set, but kinesis.oversize is not \"s3\": set oversize = \"s3\" to use it, \
                 or remove overflow_url"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let config = KinesisConfig {
            stream: "s".into(),
            ..KinesisConfig::default()
        };
        config.validate().unwrap();
        assert!(KinesisConfig::default()
            .validate()
            .unwrap_err()
            .to_string()
            .contains("kinesis.stream"));
        let too_many = KinesisConfig {
            max_batch_records: 501,
            ..config.clone()
        };
        assert!(too_many
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_batch_records"));
    }

    #[test]
    fn deserializes_with_defaults_and_refuses_unknown_keys() {
        let config: KinesisConfig =
            serde_json::from_str(r#"{"stream":"cdc","ordering":"batched","retry_seconds":5}"#)
                .unwrap();
        assert_eq!(config.stream, "cdc");
        assert_eq!(config.ordering, OrderingMode::Batched);
        assert_eq!(config.retry_seconds, 5);
        assert_eq!(config.max_batch_records, 500);
        let error = serde_json::from_str::<KinesisConfig>(r#"{"stream":"cdc","streams":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `streams`"), "{error}");
    }
}
