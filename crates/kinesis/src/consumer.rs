//! Reading a stream: the shards and their lineage, and one `GetRecords` loop per shard
//! (`cdcd sink`).
//!
//! # Invariants
//!
//! - **Order per shard.** A reader hands over a shard's records in sequence-number order, each
//!   once, in [`Fetched`] batches; a batch's last record is where the shard has been read up to.
//!   After a retried call, an expired iterator or a restart, reading continues *after* the last
//!   record handed over (`AFTER_SEQUENCE_NUMBER`), so nothing is repeated or skipped within a run.
//! - **A checkpoint sequence number** means: every record of the shard up to and including it is
//!   durable downstream. Resuming from it starts at [`StartAt::AfterSequence`]. A shard read to
//!   its end (`SHARD_END`: a closed shard, after resharding) is *finished*; [`Fetched::shard_end`]
//!   says so, once, with the last batch.
//! - **Parents before children.** After a split or merge, a child shard's records follow its
//!   parents' (per partition key). [`Shard::parents`] lists them (parent and adjacent parent); the
//!   caller starts a child only when every parent is finished (or no longer listed: expired
//!   with the stream's retention). This module does not decide ownership.
//!
//! Throttling (`ProvisionedThroughputExceededException`, `LimitExceededException`) and passing
//! failures are retried with full-jitter backoff (the producer's `backoff_*` settings) until
//! `retry_seconds` pass; an expired iterator is re-acquired from the last record handed over;
//! permanent errors (no such stream, access denied) end the reader with an error that names the
//! shard. An idle shard is polled every `poll` interval; a busy one at most five times a second
//! (the per-shard `GetRecords` limit).
//!
//! IAM: `kinesis:DescribeStreamSummary`, `kinesis:ListShards`, `kinesis:GetShardIterator`,
//! `kinesis:GetRecords` (and `kms:Decrypt` for SSE-KMS streams).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::primitives::DateTime as AwsDateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::aws::{self, with_stream, CallError, Class, Failure};
use crate::config::KinesisConfig;
use crate::error::ProducerError;
use crate::StreamInfo;

/// Why reading failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerError {
    /// The stream itself: missing, not readable, settings.
    #[error(transparent)]
    Stream(#[from] ProducerError),
    #[error("{operation} on shard {shard} of Kinesis stream {stream}: {message}")]
    Shard {
        operation: &'static str,
        stream: String,
        shard: String,
        message: String,
    },
}

/// One shard and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: Arc<str>,
    /// The parent and the adjacent parent (of a merge), when they exist.
    pub parents: Vec<Arc<str>>,
    /// Closed by resharding: it ends (`SHARD_END`) once read.
    pub closed: bool,
}

/// Where a reader starts in its shard.
#[derive(Debug, Clone, PartialEq)]
pub enum StartAt {
    TrimHorizon,
    Latest,
    /// The first record that arrived at or after this time.
    AtTimestamp(SystemTime),
    /// The record after this sequence number (a checkpoint).
    AfterSequence(String),
    /// This record (a checkpoint inside an aggregated record).
    AtSequence(String),
}

/// One record as read.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub sequence: String,
    pub partition_key: String,
    pub data: Bytes,
}

/// What one `GetRecords` call of a shard's reader returned.
#[derive(Debug)]
pub struct Fetched {
    pub shard: Arc<str>,
    pub records: Vec<Consumed>,
    /// How far behind the tip of the stream this shard's reader is.
    pub millis_behind: Option<i64>,
    /// The shard is closed and read to its end: nothing follows these records.
    pub shard_end: bool,
}

/// A connection to one stream.
#[derive(Clone)]
pub struct Consumer {
    client: Client,
    config: Arc<KinesisConfig>,
    info: StreamInfo,
}

/// Records per `GetRecords` call (the API's maximum is 10,000).
const RECORDS_PER_CALL: i32 = 1000;

impl Consumer {
    /// Checks that the stream exists and is readable (`DescribeStreamSummary`).
    pub async fn connect(config: KinesisConfig) -> Result<Consumer, ConsumerError> {
        config.validate()?;
        let client = aws::client(&config).await;
        let info = aws::describe(&client, &config).await?;
        Ok(Consumer {
            client,
            config: Arc::new(config),
            info,
        })
    }

    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// Every shard the stream still has (open, and closed ones within the retention period),
    /// with their parents; all pages of `ListShards`.
    pub async fn shards(&self) -> Result<Vec<Shard>, ConsumerError> {
        const OPERATION: &str = "ListShards";
        let config = &*self.config;
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = aws::retrying(config, OPERATION, || async {
                let request = match &next_token {
                    // With a token, the stream must not be named again.
                    Some(token) => self.client.list_shards().next_token(token),
                    None => with_stream!(self.client.list_shards(), &config.stream),
                };
                request
                    .send()
                    .await
                    .map_err(|e| CallError::from_sdk(&e, OPERATION))
            })
            .await
            .map_err(|e| e.into_error(OPERATION, config))?;
            for shard in page.shards() {
                let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .filter(|p| !p.is_empty())
                    .map(Arc::from)
                    .collect();
                let closed = shard
                    .sequence_number_range()
                    .is_some_and(|r| r.ending_sequence_number().is_some());
                shards.push(Shard {
                    id: shard.shard_id().into(),
                    parents,
                    closed,
                });
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => break,
            }
        }
        Ok(shards)
    }

    /// Starts reading `shard` from `start` into `out`, until the shard ends, `out` is closed,
    /// or an error (sent on `out` as the reader's last message).
    pub fn spawn_reader(
        &self,
        shard: Arc<str>,
        start: StartAt,
        poll: Duration,
        out: mpsc::Sender<Result<Fetched, ConsumerError>>,
    ) -> tokio::task::JoinHandle<()> {
        let consumer = self.clone();
        tokio::spawn(async move {
            if let Err(error) = consumer.read(shard, start, poll, &out).await {
                let _ = out.send(Err(error)).await;
            }
        })
    }

    async fn read(
        &self,
        shard: Arc<str>,
        start: StartAt,
        poll: Duration,
        out: &mpsc::Sender<Result<Fetched, ConsumerError>>,
    ) -> Result<(), ConsumerError> {
        const OPERATION: &str = "GetRecords";
        let mut last: Option<String> = None;
        let mut iterator = self.iterator(&shard, &start).await?;
        let mut failing_since: Option<Instant> = None;
        let mut attempts = 0;
        loop {
            let called = Instant::now();
            let response = self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(RECORDS_PER_CALL)
                .send()
                .await;
            let output = match response {
                Ok(output) => output,
                Err(e) => {
                    let error = CallError::from_sdk(&e, OPERATION);
                    if error.code.as_deref() == Some("ExpiredIteratorException") {
                        // Iterators live five minutes: get a new one where reading stands.
                        let resume = match &last {
                            Some(sequence) => StartAt::AfterSequence(sequence.clone()),
                            None => start.clone(),
                        };
                        iterator = self.iterator(&shard, &resume).await?;
                        continue;
                    }
                    let since = *failing_since.get_or_insert(called);
                    let gave_up = since.elapsed() >= Duration::from_secs(self.config.retry_seconds);
                    if error.class == Class::Permanent || gave_up {
                        return Err(self.shard_error(OPERATION, &shard, error.message));
                    }
                    attempts += 1;
                    let delay =
                        aws::backoff(&self.config, attempts).max(Duration::from_millis(200));
                    if error.class != Class::Throttled {
                        tracing::warn!(shard = %shard, error = %error.message, retry_in = ?delay, "GetRecords failed; retrying");
                    }
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            failing_since = None;
            attempts = 0;
            let records: Vec<Consumed> = output
                .records()
                .iter()
                .map(|r| Consumed {
                    sequence: r.sequence_number().to_string(),
                    partition_key: r.partition_key().unwrap_or_default().to_string(),
                    data: Bytes::copy_from_slice(r.data().as_ref()),
                })
                .collect();
            if let Some(record) = records.last() {
                last = Some(record.sequence.clone());
            }
            let next = output.next_shard_iterator().map(str::to_string);
            let idle = records.is_empty();
            let fetched = Fetched {
                shard: shard.clone(),
                records,
                millis_behind: output.millis_behind_latest(),
                shard_end: next.is_none(),
            };
            if out.send(Ok(fetched)).await.is_err() {
                return Ok(());
            }
            let Some(next) = next else { return Ok(()) };
            iterator = next;
            // At most 5 calls a second per shard; idle shards every `poll`.
            let pause = if idle {
                poll
            } else {
                Duration::from_millis(200)
            };
            tokio::time::sleep_until((called + pause).into()).await;
        }
    }

    /// `GetShardIterator` for `start`.
    async fn iterator(&self, shard: &str, start: &StartAt) -> Result<String, ConsumerError> {
        const OPERATION: &str = "GetShardIterator";
        let config = &*self.config;
        let result = aws::retrying(config, OPERATION, || async {
            let request =
                with_stream!(self.client.get_shard_iterator(), &config.stream).shard_id(shard);
            let request = match start {
                StartAt::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
                StartAt::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
                StartAt::AtTimestamp(at) => request
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(AwsDateTime::from(*at)),
                StartAt::AfterSequence(sequence) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(sequence),
                StartAt::AtSequence(sequence) => request
                    .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                    .starting_sequence_number(sequence),
            };
            request
                .send()
                .await
                .map_err(|e| CallError::from_sdk(&e, OPERATION))
        })
        .await;
        match result {
            Ok(output) => output.shard_iterator().map(str::to_string).ok_or_else(|| {
                self.shard_error(OPERATION, shard, "no iterator in the response".into())
            }),
            Err(Failure::Permanent(e) | Failure::GaveUp(e)) => {
                Err(self.shard_error(OPERATION, shard, e.message))
            }
        }
    }

    fn shard_error(&self, operation: &'static str, shard: &str, message: String) -> ConsumerError {
        ConsumerError::Shard {
            operation,
            stream: self.config.stream.clone(),
            shard: shard.to_string(),
            message,
        }
    }
}
