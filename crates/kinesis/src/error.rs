//! Why the producer refused a record or stopped. Every message names the stream or the record
//! and says what to do; none carries record data.

/// An error of the producer. `Clone`, because one failure is reported to every waiter
/// ([`Producer::send`](crate::Producer::send), [`Producer::flush`](crate::Producer::flush),
/// [`Acks::changed`](crate::Acks::changed)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("kinesis.{field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    #[error(
        "Kinesis stream {stream} does not exist ({where_}): create it, or fix kinesis.stream / \
         kinesis.region / kinesis.endpoint"
    )]
    StreamNotFound { stream: String, where_: String },
    #[error("Kinesis stream {stream} cannot be written: {reason}")]
    StreamNotWritable { stream: String, reason: String },
    /// A permanent AWS error: retrying cannot help.
    #[error("{operation} on Kinesis stream {stream}: {message}")]
    Aws {
        operation: &'static str,
        stream: String,
        message: String,
    },
    /// A transient error that did not go away within `retry_seconds`.
    #[error(
        "{operation} on Kinesis stream {stream} still failing after {seconds} s of retries \
         (kinesis.retry_seconds): {message}"
    )]
    GaveUp {
        operation: &'static str,
        stream: String,
        seconds: u64,
        message: String,
    },
    #[error(
        "record {} with partition key {partition_key:?} is {size} bytes (data + partition key), \
         over the stream's limit of {limit} bytes: it was not sent, and nothing after it will be",
        .event_id.as_deref().unwrap_or("(no event id)")
    )]
    RecordTooLarge {
        partition_key: String,
        size: usize,
        limit: usize,
        event_id: Option<String>,
    },
    #[error(
        "record {} has an invalid partition key {partition_key:?}: {reason}; it was not sent, and \
         nothing after it will be",
        .event_id.as_deref().unwrap_or("(no event id)")
    )]
    InvalidPartitionKey {
        partition_key: String,
        reason: &'static str,
        event_id: Option<String>,
    },
    #[error(
        "token {token} is not above the previous record's token {previous}: tokens must increase \
         (the record was not sent, and nothing after it will be)"
    )]
    TokenOrder { token: u64, previous: u64 },
    #[error("the Kinesis producer has stopped")]
    Closed,
    #[error("the Kinesis producer failed: {0}")]
    Internal(String),
}
