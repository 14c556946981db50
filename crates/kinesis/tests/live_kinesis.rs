//! The producer against real Kinesis emulators started by `scripts/services.sh start`:
//! kinesis-mock, and the fault proxy in front of it (throttled records, throttled and failing
//! calls). Every test reads the stream back with GetShardIterator/GetRecords and checks that every
//! record arrived, and in send order per partition key.
//!
//! The fault proxy is shared: only `fault_proxy` uses it, and it resets the control file to `{}`
//! when it ends (also on panic).
//!
//! Sizes: kinesis-mock's PutRecords costs time linear in the records already in the shard
//! (measured: 50 records into a shard holding 10,000 take ~300 ms, into an empty one ~10 ms), so
//! a stream's fill time grows with the square of its records per shard, whatever the batching.
//! The 20,000-record run takes ~30 s of that; the fault runs use 8,000 records each.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;
use cdcd_kinesis::{
    kpl, KinesisConfig, OrderingMode, Producer, ProducerError, ProducerMetrics, Record,
};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/services.sh start and source /tmp/cdcd-services.env")
    })
}

fn unique(test: &str) -> String {
    unique_in("cdcd-kinesis", test)
}

/// A stream name under `prefix` that no other run uses.
fn unique_in(prefix: &str, test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{test}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

/// A plain SDK client straight to kinesis-mock, for setting up and reading back.
async fn admin() -> Client {
    let endpoint = env("CDCD_TEST_KINESIS_ENDPOINT");
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let config = aws_sdk_kinesis::config::Builder::from(&shared)
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        let status = summary
            .stream_description_summary()
            .unwrap()
            .stream_status();
        if *status == StreamStatus::Active {
            return;
        }
        assert!(Instant::now() < deadline, "{name} not ACTIVE after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delete_stream(client: &Client, name: &str) {
    let _ = client.delete_stream().stream_name(name).send().await;
}

/// Every record of the stream, shard by shard in stream order: (partition key, data).
async fn read_back(client: &Client, name: &str) -> Vec<(String, Vec<u8>)> {
    let shards = client
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .expect("ListShards");
    let mut records = Vec::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator
            .expect("an iterator");
        loop {
            let page = client
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .expect("GetRecords");
            if page.records().is_empty() {
                break;
            }
            for record in page.records() {
                let data = record.data().as_ref();
                if kpl::is_aggregated(data) {
                    let users = kpl::deaggregate(data).expect("a valid KPL aggregate");
                    records.extend(
                        users
                            .into_iter()
                            .map(|u| (u.partition_key, u.data.to_vec())),
                    );
                } else {
                    records.push((
                        record.partition_key().unwrap_or_default().to_string(),
                        data.to_vec(),
                    ));
                }
            }
            match page.next_shard_iterator {
                Some(next) => iterator = next,
                None => break,
            }
        }
    }
    records
}

/// The records a test sends: `count` records over `keys` keys picked pseudo-randomly (fixed
/// seed), data `key|n` with n the record's index within its key; token = global index.
fn workload(count: usize, keys: usize, seed: u64) -> Vec<Record> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut next: HashMap<usize, usize> = HashMap::new();
    (0..count)
        .map(|i| {
            let key = rng.usize(0..keys);
            let n = next.entry(key).or_default();
            let partition_key = format!("shop.orders.{key}");
            let data = format!("{partition_key}|{n}|{}", "x".repeat(rng.usize(20..400)));
            *n += 1;
            Record::new(partition_key, data.into_bytes(), i as u64)
                .with_event_id(format!("test:{i}"))
        })
        .collect()
}

/// What the read-back shows, per partition key.
#[derive(Debug, Default)]
struct Verdict {
    keys: usize,
    records: usize,
    missing: usize,
    duplicates: usize,
    /// Records read after a record of their key that was sent later.
    out_of_order: usize,
}

fn verify(sent: &[Record], read: &[(String, Vec<u8>)]) -> Verdict {
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for record in sent {
        *expected.entry(record.partition_key.as_str()).or_default() += 1;
    }
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (key, data) in read {
        let text = std::str::from_utf8(data).expect("UTF-8 data");
        let mut fields = text.split('|');
        assert_eq!(fields.next(), Some(key.as_str()), "data names its key");
        let n: usize = fields.next().unwrap().parse().unwrap();
        seen.entry(key.clone()).or_default().push(n);
    }
    let mut verdict = Verdict {
        keys: seen.len(),
        records: read.len(),
        ..Verdict::default()
    };
    for (key, count) in &expected {
        let got = seen.remove(*key).unwrap_or_default();
        let mut present = vec![0usize; *count];
        let mut highest: Option<usize> = None;
        for &n in &got {
            assert!(n < *count, "{key}: record {n} was never sent");
            present[n] += 1;
            if highest.is_some_and(|h| n < h) {
                verdict.out_of_order += 1;
            }
            highest = highest.max(Some(n));
        }
        verdict.missing += present.iter().filter(|&&c| c == 0).count();
        verdict.duplicates += present.iter().map(|&c| c.saturating_sub(1)).sum::<usize>();
    }
    assert!(
        seen.is_empty(),
        "records of unknown keys: {:?}",
        seen.keys()
    );
    verdict
}

fn config(endpoint: String, stream: &str) -> KinesisConfig {
    KinesisConfig {
        stream: stream.into(),
        endpoint: Some(endpoint),
        backoff_initial_ms: 20,
        backoff_max_ms: 500,
        retry_seconds: 60,
        ..KinesisConfig::default()
    }
}

/// Runs one workload through a producer and reads the stream back.
struct Run {
    verdict: Verdict,
    watermark: Option<u64>,
    seconds: f64,
    metrics: std::sync::Arc<ProducerMetrics>,
}

async fn produce(config: KinesisConfig, records: &[Record]) -> Run {
    let started = Instant::now();
    let (mut producer, acks) = Producer::start(config.clone()).await.expect("start");
    // The watermark never goes back.
    let mut watcher = acks.clone();
    let monotonic = tokio::spawn(async move {
        let mut last = None;
        while let Ok(watermark) = watcher.changed().await {
            assert!(
                watermark >= last,
                "watermark went back: {last:?} -> {watermark:?}"
            );
            last = watermark;
        }
        last
    });
    for record in records {
        producer.send(record.clone()).await.expect("send");
    }
    producer.flush().await.expect("flush");
    let watermark = acks.watermark();
    let metrics = producer.metrics();
    producer.shutdown().await.expect("shutdown");
    let last = monotonic.await.expect("watcher");
    assert_eq!(last, watermark);
    let seconds = started.elapsed().as_secs_f64();
    let reading = Instant::now();
    let read = read_back(&admin().await, &config.stream).await;
    println!("read back in {:.1} s", reading.elapsed().as_secs_f64());
    Run {
        verdict: verify(records, &read),
        watermark,
        seconds,
        metrics,
    }
}

fn report(label: &str, run: &Run) {
    let m = &run.metrics;
    let get = ProducerMetrics::get;
    println!(
        "{label}: {} records over {} keys read back in {:.1} s (missing {}, duplicates {}, out of \
         order {}), watermark {:?}; {} PutRecords calls, {} records retried, per-record failures \
         {:?}, call failures: throttled {} server {} transport {}, throttles {}, reordered \
         (counted) {}",
        run.verdict.records,
        run.verdict.keys,
        run.seconds,
        run.verdict.missing,
        run.verdict.duplicates,
        run.verdict.out_of_order,
        run.watermark,
        get(&m.put_requests),
        get(&m.records_retried),
        m.record_failures_by_code(),
        get(&m.call_failures_throttled),
        get(&m.call_failures_server),
        get(&m.call_failures_transport),
        get(&m.throttles),
        get(&m.reordered),
    );
}

fn assert_exact(run: &Run, records: &[Record]) {
    assert_eq!(run.verdict.records, records.len());
    assert_eq!(run.verdict.missing, 0);
    assert_eq!(run.verdict.duplicates, 0);
    assert_eq!(run.verdict.out_of_order, 0);
    assert_eq!(run.watermark, Some(records.len() as u64 - 1));
    assert_eq!(
        ProducerMetrics::get(&run.metrics.records_put),
        records.len() as u64
    );
    assert_eq!(ProducerMetrics::get(&run.metrics.buffered_records), 0);
    assert_eq!(ProducerMetrics::get(&run.metrics.reordered), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_mock_four_shards_in_order() {
    let endpoint = env("CDCD_TEST_KINESIS_ENDPOINT");
    let admin = admin().await;
    let stream = unique("order");
    create_stream(&admin, &stream, 4).await;
    let records = workload(20_000, 200, 1);
    let run = produce(config(endpoint.clone(), &stream), &records).await;
    report("kinesis-mock, 4 shards, strict", &run);
    assert_exact(&run, &records);
    assert_eq!(ProducerMetrics::get(&run.metrics.shards), 4);
    delete_stream(&admin, &stream).await;

    // Batched ordering without faults keeps order too (and needs far fewer calls).
    let stream = unique("batched");
    create_stream(&admin, &stream, 4).await;
    let records = workload(5_000, 20, 2);
    let run = produce(
        KinesisConfig {
            ordering: OrderingMode::Batched,
            ..config(endpoint, &stream)
        },
        &records,
    )
    .await;
    report("kinesis-mock, 4 shards, batched", &run);
    assert_exact(&run, &records);
    delete_stream(&admin, &stream).await;
}

/// KPL aggregation: the stream holds aggregates (read back and deaggregated above), every user
/// record arrives once, in send order per key, and the watermark covers them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_in_order() {
    let endpoint = env("CDCD_TEST_KINESIS_ENDPOINT");
    let admin = admin().await;
    for ordering in [OrderingMode::Strict, OrderingMode::Batched] {
        let stream = unique_in("cdcd-kpl", "aggregated");
        create_stream(&admin, &stream, 4).await;
        let records = workload(20_000, 200, 6);
        let run = produce(
            KinesisConfig {
                aggregate: true,
                ordering,
                ..config(endpoint.clone(), &stream)
            },
            &records,
        )
        .await;
        report(
            &format!("kinesis-mock, 4 shards, aggregated, {ordering:?}"),
            &run,
        );
        let aggregates = ProducerMetrics::get(&run.metrics.aggregates_put);
        println!("{aggregates} aggregated Kinesis records carried the records");
        assert_exact(&run, &records);
        assert!(aggregates > 0 && aggregates < records.len() as u64 / 10);
        delete_stream(&admin, &stream).await;
    }
}

/// Resets the fault proxy when dropped, even when the test panics.
struct Faults(String);

impl Faults {
    fn set(&self, knobs: &str) {
        // Atomically: the proxy re-reads the file when it changes.
        let temporary = format!("{}.tmp-{}", self.0, std::process::id());
        std::fs::write(&temporary, knobs).expect("write the fault control file");
        std::fs::rename(&temporary, &self.0).expect("rename the fault control file");
        println!("fault proxy knobs: {knobs}");
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        self.set("{}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_proxy() {
    let proxy = env("CDCD_TEST_KINESIS_FAULT_PROXY_ENDPOINT");
    let faults = Faults(env("CDCD_TEST_FAULT_CONTROL_FILE"));
    let admin = admin().await;

    // 10% of the records of every PutRecords call throttled.
    let stream = unique("throttled");
    create_stream(&admin, &stream, 4).await;
    faults.set(r#"{"put_fraction":0.1}"#);
    let records = workload(8_000, 200, 3);
    let run = produce(config(proxy.clone(), &stream), &records).await;
    faults.set("{}");
    report("fault proxy put_fraction 0.1, strict", &run);
    assert_exact(&run, &records);
    assert!(ProducerMetrics::get(&run.metrics.records_retried) > 0);
    assert!(ProducerMetrics::get(&run.metrics.record_failures_throughput_exceeded) > 400);
    delete_stream(&admin, &stream).await;

    // Whole calls refused: every 7th call throttled (HTTP 400), every 11th an HTTP 500.
    let stream = unique("calls");
    create_stream(&admin, &stream, 4).await;
    faults.set(r#"{"call_every":7,"fivexx_every":11}"#);
    let records = workload(8_000, 200, 4);
    let run = produce(config(proxy.clone(), &stream), &records).await;
    faults.set("{}");
    report("fault proxy call_every 7, fivexx_every 11, strict", &run);
    assert_exact(&run, &records);
    assert!(ProducerMetrics::get(&run.metrics.call_failures_throttled) > 0);
    assert!(ProducerMetrics::get(&run.metrics.call_failures_server) > 0);
    assert!(ProducerMetrics::get(&run.metrics.records_retried) > 0);
    delete_stream(&admin, &stream).await;

    // Batched ordering under per-record throttling: every record arrives, but a key can be
    // reordered; every reorder seen in the stream was counted by the producer.
    let stream = unique("batched-throttled");
    create_stream(&admin, &stream, 4).await;
    faults.set(r#"{"put_fraction":0.1}"#);
    let records = workload(5_000, 20, 5);
    let run = produce(
        KinesisConfig {
            ordering: OrderingMode::Batched,
            ..config(proxy.clone(), &stream)
        },
        &records,
    )
    .await;
    faults.set("{}");
    report("fault proxy put_fraction 0.1, batched", &run);
    assert_eq!(run.verdict.records, records.len());
    assert_eq!(run.verdict.missing, 0);
    assert_eq!(run.verdict.duplicates, 0);
    assert_eq!(run.watermark, Some(records.len() as u64 - 1));
    assert!(
        run.verdict.out_of_order as u64 <= ProducerMetrics::get(&run.metrics.reordered),
        "every reorder is counted"
    );
    delete_stream(&admin, &stream).await;

    // Aggregated, strict, with half of the Kinesis records (aggregates) throttled: a user record
    // is acknowledged only with its aggregate, and a failed aggregate's records are sent again
    // before any later record of their keys.
    let stream = unique_in("cdcd-kpl", "aggregated-throttled");
    create_stream(&admin, &stream, 4).await;
    faults.set(r#"{"put_fraction":0.5}"#);
    let records = workload(8_000, 200, 7);
    let run = produce(
        KinesisConfig {
            aggregate: true,
            ..config(proxy, &stream)
        },
        &records,
    )
    .await;
    faults.set("{}");
    report("fault proxy put_fraction 0.5, aggregated, strict", &run);
    assert_exact(&run, &records);
    assert!(ProducerMetrics::get(&run.metrics.record_failures_throughput_exceeded) > 0);
    assert!(ProducerMetrics::get(&run.metrics.aggregates_put) > 0);
    delete_stream(&admin, &stream).await;
    drop(faults);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_over_the_limit_is_refused() {
    let endpoint = env("CDCD_TEST_KINESIS_ENDPOINT");
    let admin = admin().await;
    let stream = unique("large");
    create_stream(&admin, &stream, 2).await;
    let (mut producer, acks) = Producer::start(config(endpoint, &stream))
        .await
        .expect("start");
    let limit = producer.record_limit();
    assert_eq!(
        limit,
        1 << 20,
        "kinesis-mock reports no MaxRecordSizeInKiB: 1 MiB"
    );
    let mut sent = workload(100, 10, 6);
    // Exactly at the limit: data + key = 1 MiB. Goes through.
    let key = "shop.orders.big";
    let mut data = format!("{key}|0|").into_bytes();
    data.resize(limit - key.len(), b'y');
    sent.push(Record::new(key, data, 100));
    for record in &sent {
        producer.send(record.clone()).await.expect("send");
    }
    // One byte over.
    let mut data = format!("{key}|1|").into_bytes();
    data.resize(limit - key.len() + 1, b'z');
    let error = producer
        .send(Record::new(key, data, 101).with_event_id("uuid:42:0"))
        .await
        .expect_err("a record over the limit is refused");
    let message = error.to_string();
    println!("refused: {message}");
    assert_eq!(
        error,
        ProducerError::RecordTooLarge {
            partition_key: key.into(),
            size: limit + 1,
            limit,
            event_id: Some("uuid:42:0".into()),
        }
    );
    assert!(message.contains("uuid:42:0") && message.contains(key));
    assert!(
        message.len() < 400 && !message.contains("zzzz"),
        "no payload in the message"
    );
    // Nothing after it is accepted.
    let after = producer
        .send(Record::new(
            "shop.orders.0",
            b"shop.orders.0|999|after".to_vec(),
            102,
        ))
        .await
        .expect_err("nothing after a refused record");
    assert_eq!(after, error);
    // The records before it are all in.
    producer.flush().await.expect("flush");
    assert_eq!(acks.watermark(), Some(100));
    producer.shutdown().await.expect("shutdown");
    let read = read_back(&admin, &stream).await;
    let verdict = verify(&sent, &read);
    println!(
        "read back {} records (the 1 MiB one included), none after the refused one; {verdict:?}",
        read.len()
    );
    assert_eq!(verdict.records, 101);
    assert_eq!(
        (verdict.missing, verdict.duplicates, verdict.out_of_order),
        (0, 0, 0)
    );

    // The other refusals: a token not above the previous one, an empty partition key.
    let endpoint = env("CDCD_TEST_KINESIS_ENDPOINT");
    let (mut producer, acks) = Producer::start(config(endpoint.clone(), &stream))
        .await
        .expect("start");
    producer
        .send(Record::new("k", b"a".to_vec(), 7))
        .await
        .unwrap();
    let error = producer
        .send(Record::new("k", b"b".to_vec(), 7))
        .await
        .unwrap_err();
    println!("refused: {error}");
    assert_eq!(
        error,
        ProducerError::TokenOrder {
            token: 7,
            previous: 7
        }
    );
    producer
        .shutdown()
        .await
        .expect("the record before it is in");
    assert_eq!(acks.watermark(), Some(7));
    let (mut producer, _) = Producer::start(config(endpoint, &stream))
        .await
        .expect("start");
    let error = producer
        .send(Record::new("", b"c".to_vec(), 1).with_event_id("uuid:43:0"))
        .await
        .unwrap_err();
    println!("refused: {error}");
    assert!(matches!(error, ProducerError::InvalidPartitionKey { .. }));
    delete_stream(&admin, &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_stream_and_unreachable_endpoint() {
    let endpoint = env("CDCD_TEST_KINESIS_ENDPOINT");
    let stream = unique("missing");
    let error = Producer::start(config(endpoint.clone(), &stream))
        .await
        .err()
        .expect("no such stream");
    let message = error.to_string();
    println!("missing stream: {message}");
    assert!(matches!(error, ProducerError::StreamNotFound { .. }));
    assert!(message.contains(&stream) && message.contains("create it"));
    assert!(message.contains(&endpoint) && message.contains("region"));

    // Nothing listens on port 9: connection refused, retried for retry_seconds, then a clear error.
    let started = Instant::now();
    let error = Producer::start(KinesisConfig {
        retry_seconds: 1,
        ..config("http://127.0.0.1:9".into(), &stream)
    })
    .await
    .err()
    .expect("unreachable");
    let message = error.to_string();
    println!(
        "unreachable endpoint ({:.1} s): {message}",
        started.elapsed().as_secs_f64()
    );
    assert!(matches!(error, ProducerError::GaveUp { .. }));
    assert!(message.contains("kinesis.endpoint") && message.contains(&stream));

    // A permanent PutRecords error (the stream was deleted under the producer) stops it at once.
    let admin = admin().await;
    let stream = unique("deleted");
    create_stream(&admin, &stream, 1).await;
    let (mut producer, mut acks) = Producer::start(config(endpoint, &stream))
        .await
        .expect("start");
    producer
        .send(Record::new("k", b"a".to_vec(), 1))
        .await
        .unwrap();
    producer.flush().await.unwrap();
    delete_stream(&admin, &stream).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "{stream} still there after 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    producer
        .send(Record::new("k", b"b".to_vec(), 2))
        .await
        .unwrap();
    let error = producer.flush().await.expect_err("the stream is gone");
    println!(
        "deleted stream ({:.1} s): {error}",
        started.elapsed().as_secs_f64()
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no retrying");
    assert!(matches!(
        error,
        ProducerError::Aws {
            operation: "PutRecords",
            ..
        }
    ));
    assert!(error.to_string().contains("ResourceNotFoundException"));
    assert!(error.to_string().contains("create it"));
    assert_eq!(acks.watermark(), Some(1));
    let stopped = loop {
        if let Err(stopped) = acks.changed().await {
            break stopped;
        }
    };
    assert_eq!(stopped, error);
    assert_eq!(
        producer.send(Record::new("k", b"c".to_vec(), 3)).await,
        Err(error)
    );

    // An empty stream name never reaches AWS.
    let error = Producer::start(KinesisConfig::default())
        .await
        .err()
        .unwrap();
    assert!(error.to_string().starts_with("kinesis.stream:"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_is_followed_in_order() {
    let endpoint = env("CDCD_TEST_KINESIS_ENDPOINT");
    let admin = admin().await;
    let stream = unique("reshard");
    create_stream(&admin, &stream, 2).await;
    let (mut producer, acks) = Producer::start(config(endpoint, &stream))
        .await
        .expect("start");
    let metrics = producer.metrics();
    assert_eq!(ProducerMetrics::get(&metrics.shards), 2);
    let records = workload(8_000, 100, 7);
    for record in &records[..2_000] {
        producer.send(record.clone()).await.expect("send");
    }
    admin
        .update_shard_count()
        .stream_name(&stream)
        .target_shard_count(4)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    // Keep records flowing (paced) until the producer has regrouped, and 1,000 more after that.
    let mut sent = 2_000;
    let mut regrouped_at = None;
    for chunk in records[2_000..].chunks(100) {
        for record in chunk {
            producer.send(record.clone()).await.expect("send");
        }
        sent += chunk.len();
        if regrouped_at.is_none() && ProducerMetrics::get(&metrics.shard_map_changes) > 0 {
            regrouped_at = Some(sent);
        }
        if regrouped_at.is_some_and(|at| sent >= at + 1_000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    producer.flush().await.expect("flush");
    let changes = ProducerMetrics::get(&metrics.shard_map_changes);
    let shards = ProducerMetrics::get(&metrics.shards);
    let watermark = acks.watermark();
    producer.shutdown().await.expect("shutdown");
    let read = read_back(&admin, &stream).await;
    let verdict = verify(&records[..sent], &read);
    println!(
        "resharding 2 -> 4 shards: regrouped after {regrouped_at:?} of {sent} records, shard map \
         changes {changes}, groups now {shards}, watermark {watermark:?}; read back {verdict:?}"
    );
    assert!(changes >= 1, "the producer noticed the new shards");
    assert_eq!(shards, 4);
    assert_eq!(watermark, Some(sent as u64 - 1));
    assert_eq!(verdict.records, sent);
    assert_eq!(
        (verdict.missing, verdict.duplicates, verdict.out_of_order),
        (0, 0, 0)
    );
    delete_stream(&admin, &stream).await;
}
