//! cdcd's Kinesis Data Streams producer, and the shard reader of `cdcd sink` ([`consumer`]).
//!
//! The daemon pushes records in order, each tagged with an opaque, increasing `u64` token (its
//! position in the daemon's stream of events). The producer writes them with
//! `PutRecords`, concurrently across shards, and reports a *watermark*: the highest token up to
//! which everything is in Kinesis. That watermark is what the daemon checkpoints.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cdcd_kinesis::ProducerError> {
//! use cdcd_kinesis::{KinesisConfig, Producer, Record};
//! let config = KinesisConfig { stream: "cdc".into(), ..KinesisConfig::default() };
//! let (mut producer, mut acks) = Producer::start(config).await?;
//! producer.send(Record::new("shop.orders.42", b"{...}".to_vec(), 1)).await?; // waits when full
//! producer.flush().await?;                           // everything sent so far is in Kinesis
//! assert_eq!(acks.watermark(), Some(1));
//! acks.changed().await?;                             // or wait for the next advance
//! # Ok(()) }
//! ```
//!
//! # Invariants
//!
//! **1. Per-partition-key order.** Records with one partition key land in the stream in the order
//! they were pushed, retries included (with the default `ordering = "strict"`). Three rules give
//! this:
//!
//! - every partition key belongs to exactly one *group* at a time, and a group has at most one
//!   `PutRecords` request in flight. A group is an open shard: the key's MD5 hash is looked up in
//!   the hash-key ranges from `ListShards`;
//! - a record that fails (throttled, internal failure, or the whole call failed) goes back to the
//!   head of its group's queue, so it is sent again before any later record of its key;
//! - a request holds at most one record of each partition key. Kinesis processes the records of
//!   one request independently ("PutRecords doesn't guarantee the ordering of records", says its
//!   API reference): with two records of one key in a request, the first can be throttled while
//!   the second is stored, and the retried first one then lands after it. No retry policy can
//!   undo that, so strict mode never risks it.
//!
//! The price of the last rule: one record per key per round trip. With many keys (`primary-key`
//! partition keys) requests still fill up; with one hot key (`schema-table` keys and a busy table)
//! the key is limited to one record per `PutRecords` latency. `ordering = "batched"` lifts the rule
//! (up to 500 records of a key per request) for throughput; a per-record failure in the middle of
//! a key's run can then put later records of the key before the retried one, as with any producer
//! that puts several records of a key in one `PutRecords` request. The producer counts every
//! record that may have been overtaken in [`ProducerMetrics::reordered`] (always 0 in strict
//! mode). Records still carry their `event_id` for consumers that deduplicate or re-sort.
//!
//! The shard map decides concurrency only, never correctness: the rules hold for *any* function
//! from key to group, so a map made stale by resharding costs throughput (two groups writing one
//! shard, or one group spanning two), not order. `PutRecords` never fails because of a stale map
//! (Kinesis routes by hash key), so staleness is noticed otherwise: the map is reloaded every
//! `shard_refresh_seconds`, and as soon as a response names another shard than the one a record
//! was grouped under (at most once a second). A changed map is applied only when no request is in
//! flight, by moving every queued record, in order, to its new group. Without `kinesis:ListShards`
//! permission the groups are the stream's open-shard count of equal hash-key ranges (which is
//! what a stream created with N shards has).
//!
//! **2. Acknowledgement watermark.** A record is acknowledged when Kinesis returned a sequence
//! number for it. Tokens strictly increase from record to record (the daemon's event sequence
//! number, say), and [`Acks::watermark`] is the highest token T such that every record pushed with
//! a token ≤ T is acknowledged: the token of the last record of the acknowledged prefix. It never
//! goes back. (Tokens are not shared by the rows of a transaction: the watermark could then pass a
//! transaction's token before its later rows were pushed. Map the watermark to the last
//! transaction boundary at or below it instead.)
//!
//! **3. Nothing is dropped silently.** A record the producer cannot send (over the stream's record
//! size limit, an invalid partition key, a token not above the previous one) is refused by [`Producer::send`] with
//! the reason, and the producer then accepts nothing more: the records before it are still sent
//! and acknowledged ([`Producer::flush`] works), but the watermark can never pass the refused
//! record. A record that keeps failing is retried until `retry_seconds` have passed since its first
//! failure; then, or at the first permanent error (no such stream, access denied, KMS key disabled,
//! a request Kinesis calls invalid), the producer stops with an error that names the stream and the
//! fix, and the watermark stays where it was.
//!
//! **4. Bounded memory.** Pushed records hold a share of `max_buffered_bytes` (their data, key and
//! a fixed overhead) until they are acknowledged; [`Producer::send`] waits while the budget is
//! used up. The requests being sent are copies of buffered records (then base64 in JSON), so the
//! peak is about three times `max_buffered_bytes`.
//!
//! # Retries
//!
//! Per-record failures (`ProvisionedThroughputExceededException`, `InternalFailure`,
//! `KMSThrottlingException`, any code not known to be permanent) and whole-call failures
//! (throttling, HTTP 5xx, timeouts, connection errors) are retried with exponential backoff and
//! full jitter: the group waits a random time in `[0, min(backoff_max_ms, backoff_initial_ms *
//! 2^(attempts - 1))]`, `attempts` being the most failures of any record in the failed set. The
//! SDK's own retries are off, so that every retry is seen, ordered and counted here.
//!
//! # What is checked at start
//!
//! `DescribeStreamSummary`: the stream exists (in the configured region/endpoint) and can be read
//! about with these credentials, it is `ACTIVE` or `UPDATING` (`CREATING` is waited for, up to
//! `retry_seconds`; `DELETING` is an error), and its record distribution strategy is not `AUTO`
//! (which ignores partition keys, so no order could hold). Its `MaxRecordSizeInKiB`, when
//! present, sets the record size limit (otherwise 1 MiB). Then `ListShards` for the groups. Write
//! permission (`kinesis:PutRecords`, and `kms:GenerateDataKey` on a KMS-encrypted stream) is not
//! probed: writing a probe record would put a record in front of the stream's consumers. A
//! missing permission fails the first `PutRecords` at once, with the same kind of message.
//!
//! IAM: `kinesis:DescribeStreamSummary`, `kinesis:PutRecords`, `kinesis:ListShards` (optional,
//! see above); `kms:GenerateDataKey` for SSE-KMS streams.
//!
//! # KPL aggregation (`aggregate = true`)
//!
//! Off by default. On, a request's records become KPL aggregated records ([`kpl`]): consecutive
//! queued records of one group packed up to the stream's record size limit (data + partition
//! key; an aggregate takes its first record's partition key, a lone record stays plain). The
//! invariants above hold per *user* record: Kinesis stores or fails an aggregate whole, so a user
//! record is acknowledged exactly when its aggregate is, and a failed aggregate's records go back
//! to the head of the queue (they may be packed differently next time). Strict ordering puts a
//! key in at most one aggregate per request, in order inside it; batched packs without that rule.
//! One cost: an aggregate is routed by its first record's key, so while the shard map is stale
//! (a reshard not yet seen, at most `shard_refresh_seconds` or one response) a key's records can
//! go to a sibling shard of the one its own hash names; plain records never do. The KPL has the
//! same property. [`ProducerMetrics::aggregates_put`] counts aggregates.
//!
//! # Oversized records
//!
//! The producer refuses a record over the limit (invariant 3). `kinesis.oversize = "s3"` is
//! carried out by `cdcd run`, which checks [`Producer::record_limit`] first, writes the payload to
//! an object store and sends a pointer record instead ([`overflow`]).

mod acks;
mod aws;
mod config;
pub mod consumer;
mod error;
pub mod kpl;
mod metrics;
pub mod overflow;
mod producer;
mod shards;

pub use acks::{Acks, Progress};
pub use aws::StreamInfo;
pub use config::{KinesisConfig, OrderingMode, OversizeMode};
pub use consumer::{Consumer, ConsumerError};
pub use error::ProducerError;
pub use metrics::{LatencyHistogram, LatencySnapshot, ProducerMetrics, ACK_LATENCY_BOUNDS};
pub use producer::{Producer, Record};
pub use shards::hash_key;
