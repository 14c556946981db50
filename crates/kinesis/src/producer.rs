//! The producer: the handle the daemon pushes records into, and the dispatcher task that groups
//! them per shard, sends them with `PutRecords`, retries failures and acknowledges.
//!
//! The dispatcher is one task that owns all state (queues, the acknowledgement window, the shard
//! map); the requests run as tasks of a `JoinSet` and hand their results back to it. So the
//! ordering rules of the crate docs are plain sequential code: a group is either idle or has
//! exactly one request out, and a failed record is pushed back to the head of its group's queue
//! before the group can send again.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};

use crate::acks::{AckWindow, Acks, Progress};
use crate::aws::{self, backoff, classify_code, hint, with_stream, CallError, Class, StreamInfo};
use crate::config::{KinesisConfig, OrderingMode, MAX_REQUEST_BYTES};
use crate::error::ProducerError;
use crate::kpl::Aggregator;
use crate::metrics::ProducerMetrics;
use crate::shards::{hash_key, ShardMap};

/// Bytes charged to the buffer budget per record on top of its data and key (bookkeeping).
const RECORD_OVERHEAD: usize = 128;
/// Queued records looked at to fill one strict-mode request (bounds the work with a hot key).
const SCAN_LIMIT: usize = 4096;
/// Shortest time between two shard-map reloads.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Kinesis partition keys are 1 to 256 Unicode characters.
const MAX_KEY_CHARS: usize = 256;

/// One record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition_key: String,
    pub data: Bytes,
    /// Opaque, strictly increasing across pushes: what the watermark reports.
    pub token: u64,
    /// The change event's id, only for error messages (a record that is refused).
    pub event_id: Option<String>,
    /// When the source committed the change (µs since the epoch), for the commit-to-acknowledged
    /// latency ([`ProducerMetrics::ack_latency`]).
    pub commit_ts_us: Option<i64>,
}

impl Record {
    pub fn new(partition_key: impl Into<String>, data: impl Into<Bytes>, token: u64) -> Record {
        Record {
            partition_key: partition_key.into(),
            data: data.into(),
            token,
            event_id: None,
            commit_ts_us: None,
        }
    }

    pub fn with_commit_ts_us(mut self, commit_ts_us: i64) -> Record {
        self.commit_ts_us = Some(commit_ts_us);
        self
    }

    pub fn with_event_id(mut self, event_id: impl Into<String>) -> Record {
        self.event_id = Some(event_id.into());
        self
    }

    /// What counts against the stream's record limit: data plus the partition key's UTF-8 bytes.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// The handle records are pushed into. Dropping it lets the producer finish sending what was
/// pushed in the background; [`Producer::shutdown`] waits for that.
pub struct Producer {
    input: Option<mpsc::UnboundedSender<Pending>>,
    budget: Arc<Semaphore>,
    progress: watch::Receiver<Progress>,
    failure: Arc<OnceLock<ProducerError>>,
    /// Set when `send` refused a record: nothing more is accepted.
    refused: Option<ProducerError>,
    pushed: u64,
    last_token: Option<u64>,
    metrics: Arc<ProducerMetrics>,
    stream: StreamInfo,
    task: Option<JoinHandle<()>>,
}

impl Producer {
    /// Checks the stream (see the crate docs), loads the shard map and starts the dispatcher.
    pub async fn start(config: KinesisConfig) -> Result<(Producer, Acks), ProducerError> {
        config.validate()?;
        let client = aws::client(&config).await;
        Producer::start_with_client(client, config).await
    }

    /// The checks [`Producer::start`] makes, without starting anything (for `cdcd check`): the
    /// stream exists and is described with these credentials, takes records (`ACTIVE` or
    /// `UPDATING`) and routes by partition key. Failing calls are retried for at most 10 s.
    pub async fn check_stream(config: &KinesisConfig) -> Result<StreamInfo, ProducerError> {
        config.validate()?;
        let config = KinesisConfig {
            retry_seconds: config.retry_seconds.min(10),
            ..config.clone()
        };
        let client = aws::client(&config).await;
        aws::describe(&client, &config).await
    }

    /// [`Producer::start`] with a client built by the caller. The producer retries by itself, so
    /// give it a client with the SDK's retries off.
    pub async fn start_with_client(
        client: Client,
        config: KinesisConfig,
    ) -> Result<(Producer, Acks), ProducerError> {
        config.validate()?;
        let stream = aws::describe(&client, &config).await?;
        if config.max_buffered_bytes < stream.record_limit + RECORD_OVERHEAD {
            return Err(ProducerError::Config {
                field: "max_buffered_bytes",
                message: format!(
                    "{} cannot hold one record of the stream's limit ({} bytes)",
                    config.max_buffered_bytes, stream.record_limit
                ),
            });
        }
        let map = discover(&client, &config, Some(stream.open_shards)).await?;
        let listed = map.ranges.iter().all(|r| r.shard_id.is_some());
        tracing::info!(
            stream = %stream.name,
            status = %stream.status,
            mode = stream.mode.as_deref().unwrap_or("?"),
            shards = map.len(),
            shard_map = if listed { "ListShards" } else { "equal ranges" },
            record_limit = stream.record_limit,
            kms_key = stream.kms_key.as_deref().unwrap_or("none"),
            ordering = ?config.ordering,
            "Kinesis producer started"
        );
        let metrics = Arc::new(ProducerMetrics::default());
        ProducerMetrics::set(&metrics.shards, map.len() as u64);
        let failure = Arc::new(OnceLock::new());
        let budget = Arc::new(Semaphore::new(config.max_buffered_bytes));
        let (input, receiver) = mpsc::unbounded_channel();
        let (progress_sender, progress) = watch::channel(Progress::default());
        let batch_bytes = config
            .max_batch_bytes
            .max(stream.record_limit)
            .min(MAX_REQUEST_BYTES.max(stream.record_limit));
        let dispatcher = Dispatcher {
            groups: map
                .ranges
                .iter()
                .map(|r| Group::new(r.shard_id.clone()))
                .collect(),
            map,
            client,
            batch_bytes,
            record_limit: stream.record_limit,
            input: receiver,
            input_open: true,
            requests: JoinSet::new(),
            window: AckWindow::default(),
            progress: progress_sender,
            metrics: metrics.clone(),
            failure: failure.clone(),
            budget: budget.clone(),
            refresh: None,
            next_map: None,
            refresh_wanted: false,
            last_refresh: Instant::now(),
            rotate: 0,
            config,
        };
        let task = tokio::spawn(dispatcher.run());
        let acks = Acks {
            progress: progress.clone(),
            failure: failure.clone(),
        };
        let producer = Producer {
            input: Some(input),
            budget,
            progress,
            failure,
            refused: None,
            pushed: 0,
            last_token: None,
            metrics,
            stream,
            task: Some(task),
        };
        Ok((producer, acks))
    }

    /// Queues a record, waiting while `max_buffered_bytes` of records are unacknowledged.
    ///
    /// A record that cannot be sent (over [`Producer::record_limit`], an empty or over-long
    /// partition key, a token not above the previous one) is refused with the reason, and from
    /// then on every `send` returns that error: records pushed before it are still sent (so
    /// [`Producer::flush`] can complete), none after it. Also fails once the producer stopped.
    pub async fn send(&mut self, record: Record) -> Result<(), ProducerError> {
        if let Some(error) = &self.refused {
            return Err(error.clone());
        }
        if let Some(error) = self.failure.get() {
            return Err(error.clone());
        }
        if let Err(error) = self.check(&record) {
            tracing::error!(%error, "Kinesis record refused");
            self.refused = Some(error.clone());
            return Err(error);
        }
        let size = record.size();
        let permit = match self
            .budget
            .clone()
            .acquire_many_owned((size + RECORD_OVERHEAD) as u32)
            .await
        {
            Ok(permit) => permit,
            Err(_) => return Err(self.stopped()),
        };
        let Some(input) = &self.input else {
            return Err(ProducerError::Closed);
        };
        let token = record.token;
        let pending = Pending {
            seq: self.pushed,
            token,
            hash: hash_key(&record.partition_key),
            key: record.partition_key,
            data: record.data,
            size,
            commit_ts_us: record.commit_ts_us,
            pushed: Instant::now(),
            attempts: 0,
            first_failure: None,
            _permit: permit,
        };
        if input.send(pending).is_err() {
            return Err(self.stopped());
        }
        self.pushed += 1;
        self.last_token = Some(token);
        ProducerMetrics::add(&self.metrics.buffered_records, 1);
        ProducerMetrics::add(&self.metrics.buffered_bytes, size as u64);
        Ok(())
    }

    fn check(&self, record: &Record) -> Result<(), ProducerError> {
        let key = &record.partition_key;
        let reason = if key.is_empty() {
            Some("it is empty")
        } else if key.chars().count() > MAX_KEY_CHARS {
            Some("it is longer than Kinesis's 256 characters")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(ProducerError::InvalidPartitionKey {
                partition_key: key.chars().take(MAX_KEY_CHARS).collect(),
                reason,
                event_id: record.event_id.clone(),
            });
        }
        if record.size() > self.stream.record_limit {
            return Err(ProducerError::RecordTooLarge {
                partition_key: key.clone(),
                size: record.size(),
                limit: self.stream.record_limit,
                event_id: record.event_id.clone(),
            });
        }
        match self.last_token {
            Some(previous) if record.token <= previous => Err(ProducerError::TokenOrder {
                token: record.token,
                previous,
            }),
            _ => Ok(()),
        }
    }

    /// Waits until every record pushed so far is acknowledged by Kinesis. Succeeds even after a
    /// refused record (the records before it are what it waits for); fails when the producer
    /// stopped before getting them all in.
    pub async fn flush(&mut self) -> Result<(), ProducerError> {
        let target = self.pushed;
        let mut progress = self.progress.clone();
        loop {
            if progress.borrow_and_update().acknowledged >= target {
                return Ok(());
            }
            if let Some(error) = self.failure.get() {
                return Err(error.clone());
            }
            if progress.changed().await.is_err() {
                if progress.borrow().acknowledged >= target {
                    return Ok(());
                }
                return Err(self.stopped());
            }
        }
    }

    /// Flushes, then stops the dispatcher and waits for it.
    pub async fn shutdown(mut self) -> Result<(), ProducerError> {
        let flushed = self.flush().await;
        self.input = None;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        flushed
    }

    /// Another receiver of the watermark.
    pub fn acks(&self) -> Acks {
        Acks {
            progress: self.progress.clone(),
            failure: self.failure.clone(),
        }
    }

    pub fn metrics(&self) -> Arc<ProducerMetrics> {
        self.metrics.clone()
    }

    /// What the stream looked like at start.
    pub fn stream(&self) -> &StreamInfo {
        &self.stream
    }

    /// The largest [`Record::size`] the stream takes.
    pub fn record_limit(&self) -> usize {
        self.stream.record_limit
    }

    /// Records pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    fn stopped(&self) -> ProducerError {
        self.failure.get().cloned().unwrap_or(ProducerError::Closed)
    }
}

/// The shard map: `ListShards`, or equal ranges over the open shards when that is not allowed.
async fn discover(
    client: &Client,
    config: &KinesisConfig,
    open_shards: Option<usize>,
) -> Result<ShardMap, ProducerError> {
    if let Some(map) = aws::list_shards(client, config).await? {
        return Ok(map);
    }
    let open_shards = match open_shards {
        Some(n) => n,
        None => aws::describe(client, config).await?.open_shards,
    };
    Ok(ShardMap::uniform(open_shards))
}

/// A pushed record until Kinesis acknowledges it. Holds its share of the buffer budget.
struct Pending {
    /// Push order, from 0.
    seq: u64,
    token: u64,
    key: String,
    hash: u128,
    data: Bytes,
    size: usize,
    commit_ts_us: Option<i64>,
    /// When [`Producer::send`] queued it.
    pushed: Instant,
    /// Failed sends so far.
    attempts: u32,
    first_failure: Option<Instant>,
    _permit: OwnedSemaphorePermit,
}

/// One Kinesis record of a request: a single user record, or several as a KPL aggregate.
struct Entry {
    /// In queue order; one unless aggregated.
    records: Vec<Pending>,
    /// Present when `records` are more than one.
    aggregate: Option<Aggregator>,
}

impl Entry {
    fn single(pending: Pending) -> Entry {
        Entry {
            records: vec![pending],
            aggregate: None,
        }
    }

    /// Against the record size limit and the request's bytes: data plus partition key.
    fn size(&self) -> usize {
        match &self.aggregate {
            Some(aggregate) => aggregate.size() + self.records[0].key.len(),
            None => self.records[0].size,
        }
    }

    /// The request entry. An aggregate takes its first record's partition key, so it lands on
    /// that key's shard, which the shard map says is every record's in it.
    fn to_request(&self) -> PutRecordsRequestEntry {
        let first = &self.records[0];
        let data = match &self.aggregate {
            Some(aggregate) => aggregate.encode(),
            None => first.data.to_vec(),
        };
        PutRecordsRequestEntry::builder()
            .partition_key(first.key.clone())
            .data(Blob::new(data))
            .build()
            .expect("partition key and data are set")
    }
}

/// The records of one shard (one hash-key range): a queue and at most one request out.
struct Group {
    shard_id: Option<String>,
    queue: VecDeque<Pending>,
    /// The Kinesis records of the request in flight, in request order.
    sending: Vec<Entry>,
    busy: bool,
    /// No request before this (backoff after a failure).
    retry_at: Option<Instant>,
}

impl Group {
    fn new(shard_id: Option<String>) -> Group {
        Group {
            shard_id,
            queue: VecDeque::new(),
            sending: Vec::new(),
            busy: false,
            retry_at: None,
        }
    }
}

type RequestResult = (usize, Result<PutRecordsOutput, CallError>);
type RefreshResult = Result<ShardMap, ProducerError>;

struct Dispatcher {
    client: Client,
    config: KinesisConfig,
    /// Bytes per request: `max_batch_bytes`, raised to the record limit.
    batch_bytes: usize,
    /// The stream's record size limit (data + partition key), which aggregates fill up to.
    record_limit: usize,
    input: mpsc::UnboundedReceiver<Pending>,
    input_open: bool,
    map: ShardMap,
    /// One per range of `map`, same order.
    groups: Vec<Group>,
    requests: JoinSet<RequestResult>,
    window: AckWindow,
    progress: watch::Sender<Progress>,
    metrics: Arc<ProducerMetrics>,
    failure: Arc<OnceLock<ProducerError>>,
    budget: Arc<Semaphore>,
    refresh: Option<JoinHandle<RefreshResult>>,
    /// A changed map, applied once no request is in flight.
    next_map: Option<ShardMap>,
    refresh_wanted: bool,
    last_refresh: Instant,
    /// Where the next round of dispatching starts (fairness across groups).
    rotate: usize,
}

impl Dispatcher {
    async fn run(mut self) {
        let outcome = self.drive().await;
        self.requests.abort_all();
        if let Some(refresh) = &self.refresh {
            refresh.abort();
        }
        if let Err(error) = outcome {
            tracing::error!(%error, "the Kinesis producer stopped");
            let _ = self.failure.set(error);
            // Wake senders waiting for buffer space; queued records are dropped unacknowledged,
            // so the watermark never passes them.
            self.budget.close();
        }
        // Dropping `self` closes the progress channel: every waiter sees the outcome.
    }

    async fn drive(&mut self) -> Result<(), ProducerError> {
        let period = Duration::from_secs(self.config.shard_refresh_seconds.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let periodic = self.config.shard_refresh_seconds > 0;
        loop {
            if self.next_map.is_some() && self.requests.is_empty() {
                self.apply_map();
            }
            if self.next_map.is_none() {
                self.dispatch();
            }
            if !self.input_open
                && self.requests.is_empty()
                && self.groups.iter().all(|g| g.queue.is_empty())
            {
                return Ok(());
            }
            if self.refresh_wanted
                && self.refresh.is_none()
                && self.last_refresh.elapsed() >= MIN_REFRESH_INTERVAL
            {
                self.start_refresh();
            }
            let wake = self.next_wake();
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                Some(done) = self.requests.join_next(), if !self.requests.is_empty() => {
                    let (group, result) = done.map_err(|e| {
                        ProducerError::Internal(format!("a PutRecords task failed: {e}"))
                    })?;
                    self.complete(group, result)?;
                }
                received = self.input.recv(), if self.input_open => match received {
                    Some(pending) => {
                        self.accept(pending);
                        // Take what else is waiting, so that bursts make full requests.
                        for _ in 0..10_000 {
                            match self.input.try_recv() {
                                Ok(pending) => self.accept(pending),
                                Err(_) => break,
                            }
                        }
                    }
                    None => self.input_open = false,
                },
                refreshed = join_refresh(&mut self.refresh), if self.refresh.is_some() => {
                    self.refresh = None;
                    self.refreshed(refreshed);
                }
                () = tokio::time::sleep_until(wake.unwrap_or(far).into()), if wake.is_some() => {}
                _ = tick.tick(), if periodic => self.refresh_wanted = true,
            }
        }
    }

    fn accept(&mut self, pending: Pending) {
        self.window.push(pending.seq, pending.token);
        let group = self.map.group_of(pending.hash);
        self.groups[group].queue.push_back(pending);
    }

    /// The earliest moment a waiting group may send again (or a deferred refresh may start).
    fn next_wake(&self) -> Option<Instant> {
        let retry = self
            .groups
            .iter()
            .filter(|g| !g.busy && !g.queue.is_empty())
            .filter_map(|g| g.retry_at)
            .min();
        let refresh = (self.refresh_wanted && self.refresh.is_none())
            .then(|| self.last_refresh + MIN_REFRESH_INTERVAL);
        match (retry, refresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts a request for every idle group with records whose backoff is over.
    fn dispatch(&mut self) {
        let count = self.groups.len();
        let now = Instant::now();
        for i in 0..count {
            if self.requests.len() >= self.config.max_in_flight {
                break;
            }
            let index = (self.rotate + i) % count;
            let group = &mut self.groups[index];
            if group.busy || group.queue.is_empty() || group.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            let batch = if self.config.aggregate {
                take_aggregates(
                    &mut group.queue,
                    self.config.max_batch_records,
                    self.batch_bytes,
                    self.record_limit,
                    self.config.ordering,
                )
            } else {
                take_batch(
                    &mut group.queue,
                    self.config.max_batch_records,
                    self.batch_bytes,
                    self.config.ordering,
                )
                .into_iter()
                .map(Entry::single)
                .collect()
            };
            let entries: Vec<PutRecordsRequestEntry> =
                batch.iter().map(Entry::to_request).collect();
            group.sending = batch;
            group.busy = true;
            group.retry_at = None;
            let client = self.client.clone();
            let stream = self.config.stream.clone();
            self.requests.spawn(async move {
                let result = with_stream!(client.put_records(), &stream)
                    .set_records(Some(entries))
                    .send()
                    .await
                    .map_err(|e| CallError::from_sdk(&e, "PutRecords"));
                (index, result)
            });
            ProducerMetrics::add(&self.metrics.put_requests, 1);
        }
        self.rotate = self.rotate.wrapping_add(1);
        ProducerMetrics::set(&self.metrics.in_flight_requests, self.requests.len() as u64);
    }

    /// Handles the answer to group `index`'s request.
    fn complete(
        &mut self,
        index: usize,
        result: Result<PutRecordsOutput, CallError>,
    ) -> Result<(), ProducerError> {
        let batch = std::mem::take(&mut self.groups[index].sending);
        self.groups[index].busy = false;
        ProducerMetrics::set(&self.metrics.in_flight_requests, self.requests.len() as u64);
        let output = match result {
            Ok(output) if output.records().len() == batch.len() => output,
            Ok(output) => {
                ProducerMetrics::add(&self.metrics.call_failures_server, 1);
                let error = CallError {
                    class: Class::Transient,
                    code: None,
                    message: format!(
                        "the response has {} results for {} records",
                        output.records().len(),
                        batch.len()
                    ),
                };
                return self.retry(index, records_of(batch), &error);
            }
            Err(error) => {
                let metrics = &self.metrics;
                match error.class {
                    Class::Throttled => {
                        ProducerMetrics::add(&metrics.call_failures_throttled, 1);
                        ProducerMetrics::add(&metrics.throttles, 1);
                    }
                    Class::Transient => ProducerMetrics::add(&metrics.call_failures_server, 1),
                    Class::Transport => ProducerMetrics::add(&metrics.call_failures_transport, 1),
                    Class::Permanent => {
                        ProducerMetrics::add(&metrics.call_failures_permanent, 1);
                        return Err(ProducerError::Aws {
                            operation: "PutRecords",
                            stream: self.config.stream.clone(),
                            message: error.message,
                        });
                    }
                }
                return self.retry(index, records_of(batch), &error);
            }
        };
        let results = output.records();
        if self.config.ordering == OrderingMode::Batched {
            // A failed record followed, in this request, by a stored record of its key has been
            // overtaken (strict mode never has a key in two entries of a request).
            let mut stored_later = HashSet::new();
            let mut overtaken = 0;
            for (entry, result) in batch.iter().zip(results).rev() {
                if result.error_code().is_none() {
                    stored_later.extend(entry.records.iter().map(|p| p.hash));
                } else {
                    overtaken += entry
                        .records
                        .iter()
                        .filter(|p| stored_later.contains(&p.hash))
                        .count() as u64;
                }
            }
            ProducerMetrics::add(&self.metrics.reordered, overtaken);
        }
        let mut failed = Vec::new();
        let mut last_error = None;
        let mut permanent = None;
        let mut moved = false;
        let mut stale = false;
        let now_us = now_micros();
        let now = Instant::now();
        for (entry, result) in batch.into_iter().zip(results) {
            let Some(code) = result.error_code() else {
                if let (Some(expected), Some(actual)) =
                    (&self.groups[index].shard_id, result.shard_id())
                {
                    stale |= expected != actual;
                }
                if entry.aggregate.is_some() {
                    ProducerMetrics::add(&self.metrics.aggregates_put, 1);
                }
                for pending in entry.records {
                    ProducerMetrics::add(&self.metrics.records_put, 1);
                    ProducerMetrics::add(&self.metrics.bytes_put, pending.size as u64);
                    ProducerMetrics::sub(&self.metrics.buffered_records, 1);
                    ProducerMetrics::sub(&self.metrics.buffered_bytes, pending.size as u64);
                    if let Some(committed) = pending.commit_ts_us {
                        self.metrics.ack_latency.observe_micros(now_us - committed);
                    }
                    let queued = now.duration_since(pending.pushed).as_micros();
                    self.metrics.send_latency.observe_micros(queued as i64);
                    moved |= self.window.complete(pending.seq);
                }
                continue;
            };
            self.metrics.record_failure(code);
            let class = classify_code(code).unwrap_or(Class::Transient);
            if class == Class::Throttled {
                ProducerMetrics::add(&self.metrics.throttles, 1);
            }
            let message = format!(
                "{code}: {}{}",
                result.error_message().unwrap_or("(no message)"),
                hint(Some(code), None, "PutRecords")
            );
            if class == Class::Permanent {
                permanent = Some(message);
                continue;
            }
            last_error = Some(CallError {
                class,
                code: Some(code.to_string()),
                message,
            });
            failed.extend(entry.records);
        }
        if moved {
            self.progress.send_replace(self.window.progress());
        }
        if let Some(message) = permanent {
            ProducerMetrics::add(&self.metrics.call_failures_permanent, 1);
            return Err(ProducerError::Aws {
                operation: "PutRecords",
                stream: self.config.stream.clone(),
                message,
            });
        }
        if stale && self.next_map.is_none() {
            tracing::info!(stream = %self.config.stream, "Kinesis stored a record on another shard than the shard map says: reloading the map");
            self.refresh_wanted = true;
        }
        match last_error {
            Some(error) => self.retry(index, failed, &error),
            None => Ok(()),
        }
    }

    /// Puts failed records back at the head of their group's queue, in their order, and makes the
    /// group wait; or gives up when a record has been failing for `retry_seconds`.
    fn retry(
        &mut self,
        index: usize,
        mut records: Vec<Pending>,
        error: &CallError,
    ) -> Result<(), ProducerError> {
        let now = Instant::now();
        let limit = Duration::from_secs(self.config.retry_seconds);
        let mut attempts = 0;
        for pending in &mut records {
            pending.attempts += 1;
            attempts = attempts.max(pending.attempts);
            let first = *pending.first_failure.get_or_insert(now);
            if now.duration_since(first) >= limit {
                return Err(ProducerError::GaveUp {
                    operation: "PutRecords",
                    stream: self.config.stream.clone(),
                    seconds: self.config.retry_seconds,
                    message: error.message.clone(),
                });
            }
        }
        ProducerMetrics::add(&self.metrics.records_retried, records.len() as u64);
        let delay = backoff(&self.config, attempts);
        if attempts >= 3 {
            tracing::warn!(stream = %self.config.stream, records = records.len(), attempts, error = %error.message, retry_in = ?delay, "PutRecords keeps failing; retrying");
        } else {
            tracing::debug!(stream = %self.config.stream, records = records.len(), attempts, error = %error.message, retry_in = ?delay, "PutRecords failed; retrying");
        }
        let group = &mut self.groups[index];
        group.retry_at = Some(now + delay);
        for pending in records.into_iter().rev() {
            group.queue.push_front(pending);
        }
        Ok(())
    }

    fn start_refresh(&mut self) {
        self.refresh_wanted = false;
        self.last_refresh = Instant::now();
        let client = self.client.clone();
        let config = self.config.clone();
        self.refresh = Some(tokio::spawn(async move {
            discover(&client, &config, None).await
        }));
    }

    fn refreshed(&mut self, result: Result<RefreshResult, JoinError>) {
        self.last_refresh = Instant::now();
        match result {
            Ok(Ok(map)) if map != self.map => self.next_map = Some(map),
            Ok(Ok(_)) => {}
            // The current map still gives correct order; only throughput may suffer.
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not reload the Kinesis shard map; keeping the current one")
            }
            Err(error) => {
                tracing::warn!(%error, "could not reload the Kinesis shard map; keeping the current one")
            }
        }
    }

    /// Moves every queued record, in order, to its group under the new map. Called only with no
    /// request in flight, so no key is in two groups' requests at once.
    fn apply_map(&mut self) {
        let Some(map) = self.next_map.take() else {
            return;
        };
        tracing::info!(
            stream = %self.config.stream,
            before = self.map.len(),
            after = map.len(),
            "the Kinesis stream's shards changed; regrouping queued records"
        );
        let mut groups: Vec<Group> = map
            .ranges
            .iter()
            .map(|r| Group::new(r.shard_id.clone()))
            .collect();
        for old in std::mem::take(&mut self.groups) {
            for pending in old.queue {
                let group = &mut groups[map.group_of(pending.hash)];
                group.retry_at = group.retry_at.max(old.retry_at);
                group.queue.push_back(pending);
            }
        }
        ProducerMetrics::add(&self.metrics.shard_map_changes, 1);
        ProducerMetrics::set(&self.metrics.shards, map.len() as u64);
        self.groups = groups;
        self.map = map;
    }
}

async fn join_refresh(
    refresh: &mut Option<JoinHandle<RefreshResult>>,
) -> Result<RefreshResult, JoinError> {
    match refresh {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// The user records of a request's entries, in request order.
fn records_of(entries: Vec<Entry>) -> Vec<Pending> {
    entries.into_iter().flat_map(|e| e.records).collect()
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Takes the next request's entries from the head of a group's queue, packing consecutive
/// records into KPL aggregates of at most `record_limit` bytes (a record alone stays plain).
///
/// Batched: the longest prefix within the limits. Strict: a key is in at most one entry of the
/// request (all of its records in one aggregate, stored or failed together, in order); a record
/// whose key is in an earlier entry stays queued, and so do all later records of that key.
fn take_aggregates(
    queue: &mut VecDeque<Pending>,
    max_entries: usize,
    max_bytes: usize,
    record_limit: usize,
    ordering: OrderingMode,
) -> Vec<Entry> {
    let strict = ordering == OrderingMode::Strict;
    let mut entries: Vec<Entry> = Vec::new();
    let mut closed_bytes = 0;
    let mut closed_keys = HashSet::new();
    let mut open = Entry {
        records: Vec::new(),
        aggregate: Some(Aggregator::default()),
    };
    let mut open_keys = HashSet::new();
    let mut skipped = Vec::new();
    while let Some(next) = queue.pop_front() {
        if strict && closed_keys.contains(&next.hash) {
            skipped.push(next);
            if skipped.len() >= SCAN_LIMIT {
                break;
            }
            continue;
        }
        let aggregator = open.aggregate.as_mut().expect("the open entry aggregates");
        let fits = open.records.is_empty() || {
            let size =
                aggregator.size_with(&next.key, None, next.data.len()) + open.records[0].key.len();
            size <= record_limit && closed_bytes + size <= max_bytes
        };
        if !fits {
            closed_bytes += open.size();
            closed_keys.extend(open_keys.drain());
            entries.push(finish(std::mem::replace(
                &mut open,
                Entry {
                    records: Vec::new(),
                    aggregate: Some(Aggregator::default()),
                },
            )));
            if entries.len() == max_entries || closed_bytes + next.size > max_bytes {
                queue.push_front(next);
                break;
            }
            if strict && closed_keys.contains(&next.hash) {
                skipped.push(next);
                if skipped.len() >= SCAN_LIMIT {
                    break;
                }
                continue;
            }
        }
        open.aggregate
            .as_mut()
            .expect("the open entry aggregates")
            .add(&next.key, None, next.data.clone());
        open_keys.insert(next.hash);
        open.records.push(next);
    }
    if !open.records.is_empty() {
        entries.push(finish(open));
    }
    for pending in skipped.into_iter().rev() {
        queue.push_front(pending);
    }
    entries
}

/// An aggregate of one record is sent as that record.
fn finish(mut entry: Entry) -> Entry {
    if entry.records.len() == 1 {
        entry.aggregate = None;
    }
    entry
}

/// Takes the next request's records from the head of a group's queue, in queue order.
///
/// Batched: the longest prefix within the limits. Strict: also at most one record per partition
/// key; a record whose key is already in the request stays queued, and so do all later records of
/// that key, so each key's records still leave the queue in order. The records left behind keep
/// their order.
fn take_batch(
    queue: &mut VecDeque<Pending>,
    max_records: usize,
    max_bytes: usize,
    ordering: OrderingMode,
) -> Vec<Pending> {
    let mut batch: Vec<Pending> = Vec::new();
    let mut bytes = 0;
    if ordering == OrderingMode::Batched {
        while let Some(next) = queue.front() {
            if batch.len() == max_records || (!batch.is_empty() && bytes + next.size > max_bytes) {
                break;
            }
            bytes += next.size;
            batch.extend(queue.pop_front());
        }
        return batch;
    }
    let mut keys = HashSet::new();
    let mut skipped = Vec::new();
    let mut scanned = 0;
    while batch.len() < max_records && scanned < SCAN_LIMIT {
        let Some(next) = queue.pop_front() else {
            break;
        };
        scanned += 1;
        if keys.contains(&next.hash) {
            skipped.push(next);
        } else if !batch.is_empty() && bytes + next.size > max_bytes {
            queue.push_front(next);
            break;
        } else {
            keys.insert(next.hash);
            bytes += next.size;
            batch.push(next);
        }
    }
    for pending in skipped.into_iter().rev() {
        queue.push_front(pending);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(budget: &Arc<Semaphore>, seq: u64, key: &str, size: usize) -> Pending {
        Pending {
            seq,
            token: seq,
            key: key.into(),
            hash: hash_key(key),
            data: Bytes::from(vec![0; size]),
            size,
            commit_ts_us: None,
            pushed: Instant::now(),
            attempts: 0,
            first_failure: None,
            _permit: budget.clone().try_acquire_owned().unwrap(),
        }
    }

    fn queue(keys: &[&str], size: usize) -> VecDeque<Pending> {
        let budget = Arc::new(Semaphore::new(1000));
        keys.iter()
            .enumerate()
            .map(|(i, k)| pending(&budget, i as u64, k, size))
            .collect()
    }

    fn seqs<'a>(records: impl IntoIterator<Item = &'a Pending>) -> Vec<u64> {
        records.into_iter().map(|p| p.seq).collect()
    }

    #[test]
    fn strict_batches_hold_one_record_per_key_in_order() {
        let mut q = queue(&["a", "a", "b", "c", "b", "a", "d"], 10);
        let batch = take_batch(&mut q, 500, 1 << 20, OrderingMode::Strict);
        assert_eq!(seqs(&batch), [0, 2, 3, 6]);
        assert_eq!(seqs(&q), [1, 4, 5]);
        let batch = take_batch(&mut q, 500, 1 << 20, OrderingMode::Strict);
        assert_eq!(seqs(&batch), [1, 4]);
        assert_eq!(seqs(&q), [5]);
    }

    #[test]
    fn limits() {
        let mut q = queue(&["a", "b", "c", "d", "e"], 10);
        assert_eq!(
            seqs(&take_batch(&mut q, 2, 1 << 20, OrderingMode::Strict)),
            [0, 1]
        );
        assert_eq!(
            seqs(&take_batch(&mut q, 500, 25, OrderingMode::Strict)),
            [2, 3]
        );
        assert_eq!(seqs(&q), [4]);
        let mut q = queue(&["a", "a", "a", "b"], 10);
        assert_eq!(
            seqs(&take_batch(&mut q, 500, 30, OrderingMode::Batched)),
            [0, 1, 2]
        );
        // A record larger than the byte limit still goes, alone.
        let mut q = queue(&["a", "b"], 100);
        assert_eq!(
            seqs(&take_batch(&mut q, 500, 50, OrderingMode::Batched)),
            [0]
        );
    }

    fn entry_seqs(entries: &[Entry]) -> Vec<Vec<u64>> {
        entries.iter().map(|e| seqs(&e.records)).collect()
    }

    #[test]
    fn aggregates_fill_up_to_the_record_limit_and_decode_in_order() {
        // 10 records of 100 bytes, keys "a".."e" twice; a limit that holds 4 of them per
        // aggregate (each costs 100 + ~6 bytes, plus the key table, magic and digest).
        let keys = ["a", "b", "c", "d", "e", "a", "b", "c", "d", "e"];
        let mut q = queue(&keys, 100);
        let entries = take_aggregates(&mut q, 500, 1 << 20, 460, OrderingMode::Batched);
        assert_eq!(
            entry_seqs(&entries),
            [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]
        );
        for entry in &entries {
            assert!(entry.size() <= 460, "{}", entry.size());
            let encoded = entry.aggregate.as_ref().unwrap().encode();
            let users = crate::kpl::deaggregate(&encoded).unwrap();
            let want: Vec<&str> = entry.records.iter().map(|p| p.key.as_str()).collect();
            let got: Vec<&str> = users.iter().map(|u| u.partition_key.as_str()).collect();
            assert_eq!(got, want);
        }
        // Strict: a key in a closed entry waits for the next request, with its later records;
        // a key of the open aggregate joins it.
        let mut q = queue(&keys, 100);
        let entries = take_aggregates(&mut q, 500, 1 << 20, 460, OrderingMode::Strict);
        assert_eq!(entry_seqs(&entries), [vec![0, 1, 2, 3], vec![4, 9]]);
        assert_eq!(seqs(&q), [5, 6, 7, 8]);
        // A record alone is sent plain; the entry count and request bytes are limits too.
        let mut q = queue(&["a", "b", "c"], 100);
        let entries = take_aggregates(&mut q, 2, 1 << 20, 150, OrderingMode::Batched);
        assert_eq!(entry_seqs(&entries), [vec![0], vec![1]]);
        assert!(entries.iter().all(|e| e.aggregate.is_none()));
        let mut q = queue(&["a", "b", "c", "d"], 100);
        let entries = take_aggregates(&mut q, 500, 250, 1 << 20, OrderingMode::Batched);
        assert_eq!(entry_seqs(&entries), [vec![0, 1]]);
        assert_eq!(seqs(&q), [2, 3]);
    }
}
