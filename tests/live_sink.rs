//! `cdcd sink` against the real servers (MariaDB 10.11, Oracle MySQL 9.7), kinesis-mock and
//! SeaweedFS: `cdcd run` puts every change on a Kinesis stream, `cdcd sink` reads it back, masks
//! it and writes the lake, and DuckDB reads the lake the way Athena does.
//!
//! Oracles: the source tables themselves (`SELECT`, compared value by value through the `_latest`
//! view `cdcd athena-ddl` prints), masking recomputed here from the source values, and `cdcd tail`
//! for the set of changes that must be in the lake exactly once.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use support::lake::*;
use support::{assert_table_matches, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_run_kinesis_sink_lake() {
    let server = Server::from_env("MARIADB");
    scenarios(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_run_kinesis_sink_lake() {
    let server = Server::from_env("MYSQL");
    scenarios(&server).await;
}

async fn scenarios(server: &Server) {
    let mut conn = server.conn().await;
    let db = format!("cdcd_sink_{}", server.name.to_ascii_lowercase());
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET utf8mb4"
    ))
    .await
    .unwrap();
    let start = gtid_start(server, &mut conn).await;
    workload(server, &mut conn, &db).await;
    for format in ["native", "dms"] {
        sink_reproduces_tables(server, &mut conn, &db, &start, format).await;
    }
    if !server.mariadb {
        // Once: DMS records without control records, typed from the source database.
        sink_reproduces_tables(server, &mut conn, &db, &start, "dms-without-control").await;
    }
    if server.mariadb {
        // Once each, on one server: the stream, not the source, is what is under test.
        resharding_and_kill_lose_and_duplicate_nothing(server, &mut conn, &db).await;
    } else {
        replicas_split_the_shards(server, &mut conn, &db).await;
    }
}

/// Every column type (the binlog tests' table), a schema change, and a users table full of
/// personal data for the sink to mask.
async fn workload(server: &Server, conn: &mut Conn, db: &str) {
    conn.query_drop(format!("USE {db}")).await.unwrap();
    types_and_users_workload(server, conn).await;
    // Over the stream's 1 MiB record limit: `cdcd run` puts an overflow pointer in its place.
    conn.query_drop("INSERT INTO all_types (id, c_longtext) VALUES (30, REPEAT('big ', 524288))")
        .await
        .unwrap();
}

/// Replica server ids (and metrics ports) of this file: 7400-7449.
fn sink_id(server: &Server, scenario: u32) -> u32 {
    7400 + if server.mariadb { 0 } else { 20 } + scenario
}

/// `cdcd run` (unmasked, `kinesis_format`) into a stream of 3 shards, then `cdcd sink`
/// (masking) into SeaweedFS: the lake equals the source tables, masked. DMS records are typed by
/// the control records `cdcd run` writes for CREATE and ALTER TABLE; `dms-without-control`
/// turns those off, and the sink reads the types from the source (`sink.source_types`).
async fn sink_reproduces_tables(
    server: &Server,
    conn: &mut Conn,
    db: &str,
    start: &str,
    format: &str,
) {
    let name = format!(
        "{}-{format}-{}",
        server.name.to_lowercase(),
        std::process::id()
    );
    let stream = format!("cdcd-sink-{name}");
    kinesis_stream(&["create", &stream, "3"]);
    let run_id = sink_id(
        server,
        match format {
            "native" => 1,
            "dms" => 2,
            _ => 5,
        },
    );
    let control = format != "dms-without-control";
    let run_lake = std::env::temp_dir().join(format!("cdcd-sink-run-{name}"));
    let _ = std::fs::remove_dir_all(&run_lake);
    let run_config = write_config(
        &format!("run-{name}"),
        &format!(
            r#"
[source]
url = "{url}"
tables = "{db}.*"
server_id = {run_id}
[run]
start = "{start}"
kinesis_format = "{kinesis_format}"
[dms]
partition_key_type = "{key_type}"
include_control_details = {control}
[lake]
url = "{lake}"
[kinesis]
stream = "{stream}"
endpoint = "{endpoint}"
# Native records go as KPL aggregates, which the sink deaggregates (DMS records never are).
aggregate = {aggregate}
# The 2 MiB row goes to the overflow store, a pointer on the stream.
oversize = "s3"
[metrics]
listen = ""
"#,
            url = server.repl_url,
            lake = run_lake.display(),
            aggregate = format == "native",
            kinesis_format = if format == "native" { "native" } else { "dms" },
            // Native records spread over the shards by primary key. DMS records keep DMS's CDC
            // default, schema-table keys, which keep a table's control records (its column
            // types) on the shard of its data records.
            key_type = if format == "dms" {
                "schema-table"
            } else {
                "primary-key"
            },
            endpoint = env("CDCD_TEST_KINESIS_ENDPOINT"),
        ),
    );
    run_until_end(&run_config);

    let lake = s3_lake(&name);
    let sink_config = sink_config(server, db, &lake, &stream, "");
    let out = cdcd_command(&sink_config, &["sink", "--until-caught-up"])
        .env("CDCD_SINK__SOURCE_TYPES", (!control).to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cdcd sink --until-caught-up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kinesis_stream(&["delete", &stream]);
    // Only now: the sink read the oversized row from the run's overflow store in it.
    let _ = std::fs::remove_dir_all(&run_lake);

    let changes = server.tail(start, &format!("{db}.*"), &[]);
    let expected = assert_each_change_once(&changes, &lake, db);
    let replayed = latest_rows(conn, &sink_config, &lake, db, "all_types").await;
    let compared = assert_table_matches(conn, db, "all_types", &replayed).await;
    println!(
        "{}: {format} records{} (a 2 MiB row through the overflow store), run -> Kinesis (3 shards) -> sink: {expected} changes once each in \
         {}; the latest view equals SELECT * of all_types ({compared} values)",
        server.name,
        if format == "native" { " in KPL aggregates" } else { "" },
        lake.url
    );
    assert_users_masked(server, conn, &sink_config, &lake, db).await;
}

/// A `cdcd sink` config: the stream, the lake in S3, the tests' masking rules, and the source
/// (for `cdcd athena-ddl`, and the column types of DMS records).
fn sink_config(server: &Server, db: &str, lake: &Lake, stream: &str, extra: &str) -> PathBuf {
    write_config(
        &lake.name,
        &format!(
            r#"
[source]
url = "{url}"
tables = "{db}.*"
[sink]
stream = "{stream}"
list_shards_seconds = 1
poll_ms = 200
# Short leases: a killed sink's shards are free again soon.
lease_seconds = 4
[checkpoint]
interval_seconds = 1
[kinesis]
endpoint = "{kinesis}"
[lake]
url = "{lake}"
flush_seconds = 0.5
max_rows = 1000
[lake.s3]
endpoint = "{s3}"
force_path_style = true
retry_seconds = 30
[metrics]
listen = ""
{masking}
{extra}
"#,
            url = server.repl_url,
            kinesis = env("CDCD_TEST_KINESIS_ENDPOINT"),
            lake = lake.url,
            s3 = env("CDCD_TEST_S3_ENDPOINT"),
            masking = masking_rules(db),
        ),
    )
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("cdcd-sink-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Records as real AWS DMS writes them (tests/fixtures/dms, no `cdcd` key), typed by their control
/// record's table-def: the lake holds the rows listed here, each once, also after a second run.
#[test]
fn recorded_dms_records_reach_the_lake() {
    let name = format!("fixture-{}", std::process::id());
    let stream = format!("cdcd-sink-{name}");
    // One shard: DMS keys control records by task and data records by primary key; one shard
    // keeps the table-def before the rows it types.
    kinesis_stream(&["create", &stream, "1"]);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/dms/aurora-mysql-retail.jsonl");
    let put = kinesis_stream(&["put", &stream, "dms-task", &fixture.display().to_string()]);
    let lake = local_lake(&name);
    let config = local_sink_config(&lake, &stream, "");
    for run in 1..=2 {
        let out = cdcd_command(&config, &["sink", "--until-caught-up"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cdcd sink run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    kinesis_stream(&["delete", &stream]);
    let rows = query(
        &lake,
        "SELECT trans_id, _cdc_op AS op, CAST(amount AS VARCHAR) AS amount, device, \
         CAST(trans_datetime AS VARCHAR) AS at, CAST(big_counter AS VARCHAR) AS big, is_gift, \
         hex(receipt) AS receipt, _cdc_event_id AS id \
         FROM \"cdcd\".\"testdb_retail_trans\" ORDER BY _cdc_seq, trans_id",
    );
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {} {} {}",
                r["trans_id"],
                r["op"],
                r["amount"],
                r["device"],
                r["at"],
                r["big"],
                r["is_gift"],
                r["receipt"]
            )
        })
        .collect();
    let expected = [
        r#"1 "load" "12.50" "pc" "2023-01-16 06:10:01" "18446744073709551615" 0 "DEADBEEF""#,
        r#"6 "insert" "1.00" "pc" "2023-01-16 06:18:32" null null null"#,
        r#"7 "insert" "99.99" "mobile" "2023-01-16 06:19:10" null 1 null"#,
        r#"6 "update" "1.00" "tablet" "2023-01-16 06:18:32" null null null"#,
        r#"1 "delete" "12.50" "pc" "2023-01-16 06:10:01" "18446744073709551615" 0 "DEADBEEF""#,
        r#"8 "insert" "-99.99" "mobile" "2023-01-16 06:29:59" "42" null null"#,
    ];
    assert_eq!(got, expected, "the lake's rows of the DMS fixture");
    // Real DMS records have no event id: their place in the stream names them, once each.
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let mut named: Vec<&str> = ids
        .iter()
        .map(|id| {
            assert!(id.starts_with("shardId-000000000000:"), "{id}");
            id.split(':').nth(1).unwrap()
        })
        .collect();
    // The data records: all but the three control records (lines 1, 2 and 8 of the fixture).
    let mut data_sequences: Vec<&str> = put
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 1, 7].contains(i))
        .map(|(_, p)| p["sequence"].as_str().unwrap())
        .collect();
    named.sort();
    data_sequences.sort();
    assert_eq!(
        named, data_sequences,
        "event ids name the records' sequence numbers"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), expected.len(), "every event id once");
    println!(
        "DMS fixture: {} records ({} data) on a stream -> cdcd sink twice -> the lake holds the \
         {} expected rows once each, typed by the control record's table-def",
        put.len(),
        expected.len(),
        expected.len()
    );
}

/// Bad input stops `cdcd sink` with one clear line naming what and where, and nothing is skipped:
/// an unknown stream, a DMS table without column types, a record that is not JSON.
#[test]
fn bad_input_is_named_and_nothing_is_skipped() {
    let name = format!("bad-{}", std::process::id());
    let lake = local_lake(&name);

    let config = local_sink_config(&lake, "cdcd-sink-no-such-stream", "");
    let err = sink_fails(&config);
    assert!(
        err.contains("cdcd-sink-no-such-stream") && err.contains("does not exist"),
        "{err}"
    );
    println!("unknown stream -> {err}");

    let stream = format!("cdcd-sink-{name}");
    kinesis_stream(&["create", &stream, "1"]);
    let records = std::env::temp_dir().join(format!("cdcd-sink-{name}.jsonl"));
    std::fs::write(
        &records,
        concat!(
            r#"{"data":{"id":1},"metadata":{"timestamp":"2023-01-16T06:25:34.444953Z","record-type":"data","operation":"insert","partition-key-type":"schema-table","schema-name":"shop","table-name":"orders","transaction-id":12884904641}}"#,
            "\n"
        ),
    )
    .unwrap();
    kinesis_stream(&[
        "put",
        &stream,
        "shop.orders",
        &records.display().to_string(),
    ]);
    let config = local_sink_config(&lake, &stream, "");
    let err = sink_fails(&config);
    for needle in [
        "shop.orders",
        "IncludeControlDetails",
        "sink.source_types",
        "shardId-000000000000",
    ] {
        assert!(err.contains(needle), "`{needle}` in: {err}");
    }
    println!("DMS record without column types -> {err}");

    // A record that is not JSON stops the sink with its shard and sequence number, and the
    // checkpoint stays before it.
    kinesis_stream(&["delete", &stream]);
    let stream = format!("cdcd-sink-{name}-json");
    kinesis_stream(&["create", &stream, "1"]);
    std::fs::write(&records, "{\"op\":\"insert\",\"event_id\":\n").unwrap();
    let put = kinesis_stream(&["put", &stream, "k", &records.display().to_string()]);
    let sequence = put[0]["sequence"].as_str().unwrap();
    let config = local_sink_config(&lake, &stream, "");
    let err = sink_fails(&config);
    assert!(
        err.contains(sequence) && err.contains("shardId-000000000000") && err.contains("not JSON"),
        "{err}"
    );
    let checkpoint = std::fs::read_to_string(Path::new(&lake.url).join(format!(
        "_cdcd/sink-{stream}/shard-shardId-000000000000.json"
    )))
    .unwrap();
    assert!(
        !checkpoint.contains(sequence),
        "the checkpoint does not pass the bad record: {checkpoint}"
    );
    kinesis_stream(&["delete", &stream]);
    println!("malformed record -> {err}; the checkpoint stays before it");
}

fn sink_fails(config: &Path) -> String {
    let out = cdcd_command(config, &["sink", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "cdcd sink should have failed");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

/// The sink's lake for test `name`, under `sink/` in the shared bucket.
fn s3_lake(name: &str) -> Lake {
    Lake {
        url: format!("s3://{}/sink/{name}", env("CDCD_TEST_S3_BUCKET")),
        name: format!("sink-{name}"),
        s3_endpoint: None,
        text_encoding: "delta-length",
    }
}

fn local_lake(name: &str) -> Lake {
    let dir = std::env::temp_dir().join(format!("cdcd-sink-lake-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    Lake {
        url: dir.display().to_string(),
        name: format!("sink-{name}"),
        s3_endpoint: None,
        text_encoding: "plain",
    }
}

/// A `cdcd sink` config without a source, into a local lake.
fn local_sink_config(lake: &Lake, stream: &str, extra: &str) -> PathBuf {
    write_config(
        &format!("{}-{stream}", lake.name),
        &format!(
            r#"
[sink]
stream = "{stream}"
list_shards_seconds = 1
poll_ms = 200
[kinesis]
endpoint = "{kinesis}"
retry_seconds = 5
[lake]
url = "{lake}"
text_encoding = "{text_encoding}"
flush_seconds = 0.5
[metrics]
listen = ""
{extra}
"#,
            kinesis = env("CDCD_TEST_KINESIS_ENDPOINT"),
            lake = lake.url,
            text_encoding = lake.text_encoding,
        ),
    )
}

/// Rows for the resharding and replica scenarios: `rows` inserts into `table` from `first`, then
/// an update of every other one of them (so keys have several versions).
async fn churn(conn: &mut Conn, db: &str, table: &str, first: u32, rows: u32) {
    let values: Vec<String> = (first..first + rows)
        .map(|id| format!("({id}, 'v{id}', {id})"))
        .collect();
    for chunk in values.chunks(250) {
        conn.query_drop(format!(
            "INSERT INTO {db}.{table} (id, v, n) VALUES {}",
            chunk.join(",")
        ))
        .await
        .unwrap();
    }
    conn.query_drop(format!(
        "UPDATE {db}.{table} SET n = n + 1, v = CONCAT('u', id) WHERE id >= {first} AND id % 2 = 0"
    ))
    .await
    .unwrap();
}

/// The stream is split while `cdcd sink` reads it, and the sink is killed with SIGKILL while
/// records of the children flow; a new sink takes the shards over when the dead one's leases
/// expire. The lake has every change exactly once and the latest view equals the table.
async fn resharding_and_kill_lose_and_duplicate_nothing(
    server: &Server,
    conn: &mut Conn,
    db: &str,
) {
    let name = format!(
        "reshard-{}-{}",
        server.name.to_lowercase(),
        std::process::id()
    );
    let stream = format!("cdcd-sink-{name}");
    kinesis_stream(&["create", &stream, "2"]);
    conn.query_drop(format!(
        "CREATE TABLE {db}.churn (id INT PRIMARY KEY, v VARCHAR(20), n INT)"
    ))
    .await
    .unwrap();
    let start = gtid_start(server, conn).await;
    let run_config = native_run_config(server, db, &name, &start, &stream, 3);
    let lake = s3_lake(&name);
    let sink_config = sink_config(server, db, &lake, &stream, "");

    churn(conn, db, "churn", 0, 1000).await;
    let mut sink = cdcd_command(&sink_config, &["sink"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    run_until_end(&run_config);
    let split = kinesis_stream(&["split", &stream, "shardId-000000000000"]);
    println!("{}: split while the sink reads: {}", server.name, split[0]);
    churn(conn, db, "churn", 1000, 1000).await;
    let mut run = cdcd_command(&run_config, &["run", "--until-end"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    libc_kill::send(sink.id(), libc_kill::KILL);
    let _ = sink.wait();
    let at_kill = query(
        &lake,
        &format!("SELECT count(*) AS n FROM \"cdcd\".\"{db}_churn\""),
    );
    println!(
        "{}: cdcd sink killed with SIGKILL while cdcd run put the second half; the lake then \
         held {} changes (the first half is 1500)",
        server.name, at_kill[0]["n"]
    );
    assert!(run.wait().unwrap().success(), "cdcd run --until-end");
    let out = cdcd_command(&sink_config, &["sink", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the restarted sink: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    kinesis_stream(&["delete", &stream]);

    let expected = server
        .tail(&start, &format!("{db}.churn"), &[])
        .iter()
        .filter(|e| e["op"] != "ddl")
        .count();
    let stored = query(
        &lake,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT _cdc_event_id) AS ids FROM \"cdcd\".\"{db}_churn\""
        ),
    );
    assert_eq!(stored[0]["n"], expected, "rows in the lake");
    assert_eq!(stored[0]["ids"], expected, "distinct event ids in the lake");
    let replayed = latest_rows(conn, &sink_config, &lake, db, "churn").await;
    let compared = assert_table_matches(conn, db, "churn", &replayed).await;
    let parent = query(
        &lake,
        &format!(
            "SELECT content FROM read_text('{}/_cdcd/sink-{stream}/shard-shardId-000000000000.json')",
            lake.url
        ),
    );
    let parent: serde_json::Value =
        serde_json::from_str(parent[0]["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        parent["finished"], true,
        "the split parent is read to its end"
    );
    println!(
        "{}: split + SIGKILL + takeover: {expected} changes once each in {}; the latest view \
         equals SELECT * of churn ({compared} values); the parent shard is finished",
        server.name, lake.url
    );
}

/// A `cdcd run` (unmasked, native records keyed by primary key) onto `stream`, with a
/// throwaway local lake.
fn native_run_config(
    server: &Server,
    db: &str,
    name: &str,
    start: &str,
    stream: &str,
    scenario: u32,
) -> PathBuf {
    let run_lake = std::env::temp_dir().join(format!("cdcd-sink-run-{name}"));
    let _ = std::fs::remove_dir_all(&run_lake);
    write_config(
        &format!("run-{name}"),
        &format!(
            r#"
[source]
url = "{url}"
tables = "{db}.*"
server_id = {id}
[run]
start = "{start}"
kinesis_format = "native"
[dms]
partition_key_type = "primary-key"
[lake]
url = "{lake}"
[kinesis]
stream = "{stream}"
endpoint = "{endpoint}"
[metrics]
listen = ""
"#,
            url = server.repl_url,
            id = sink_id(server, scenario),
            lake = run_lake.display(),
            endpoint = env("CDCD_TEST_KINESIS_ENDPOINT"),
        ),
    )
}

/// Two `cdcd sink` replicas on one stream of 4 shards: they split the shards (one takes them all
/// at first and hands half back when it sees the other), no shard is held by both at once, and
/// the lake is complete and duplicate-free.
async fn replicas_split_the_shards(server: &Server, conn: &mut Conn, db: &str) {
    let name = format!(
        "replicas-{}-{}",
        server.name.to_lowercase(),
        std::process::id()
    );
    let stream = format!("cdcd-sink-{name}");
    kinesis_stream(&["create", &stream, "4"]);
    conn.query_drop(format!(
        "CREATE TABLE {db}.pairs (id INT PRIMARY KEY, v VARCHAR(20), n INT)"
    ))
    .await
    .unwrap();
    let start = gtid_start(server, conn).await;
    churn(conn, db, "pairs", 0, 1500).await;
    let run_config = native_run_config(server, db, &name, &start, &stream, 4);
    let lake = s3_lake(&name);
    let sink_config = sink_config(server, db, &lake, &stream, "");
    let logs: Vec<PathBuf> = (1..=2)
        .map(|i| std::env::temp_dir().join(format!("cdcd-sink-{name}-{i}.log")))
        .collect();
    // Metrics on ports 10430 and 10431 (`http_get` adds 10000 to the id it is given).
    let metrics_ids = [430, 431];
    let mut replicas: Vec<std::process::Child> = logs
        .iter()
        .zip(metrics_ids)
        .map(|(log, id)| {
            cdcd_command(&sink_config, &["sink"])
                .env("CDCD_LOG", "cdcd=info")
                .env("CDCD_METRICS__LISTEN", metrics_listen(id))
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    run_until_end(&run_config);
    let expected = server
        .tail(&start, &format!("{db}.pairs"), &[])
        .iter()
        .filter(|e| e["op"] != "ddl")
        .count();
    let count_sql = format!(
        "SELECT count(*) AS n, count(DISTINCT _cdc_event_id) AS ids FROM \"cdcd\".\"{db}_pairs\""
    );
    let mut stored = Vec::new();
    for _ in 0..30 {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        stored = query(&lake, &count_sql);
        if stored.first().is_some_and(|r| r["n"] == expected) {
            break;
        }
    }
    for id in metrics_ids {
        let (status, text) = http_get(id, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        promtool_check_metrics(&text);
        for name in [
            "cdcd_sink_records_total{shard=\"shardId-",
            "cdcd_sink_millis_behind_latest{shard=\"shardId-",
            "cdcd_lake_objects_written_total",
        ] {
            assert!(text.contains(name), "{name} in:\n{text}");
        }
    }
    println!(
        "{}: both replicas serve /metrics (records and lag per shard, objects); promtool accepts them",
        server.name
    );
    for replica in &mut replicas {
        libc_kill::send(replica.id(), libc_kill::TERM);
        assert!(
            replica.wait().unwrap().success(),
            "SIGTERM stops a replica cleanly"
        );
    }
    kinesis_stream(&["delete", &stream]);
    assert_eq!(stored[0]["n"], expected, "rows in the lake");
    assert_eq!(stored[0]["ids"], expected, "distinct event ids in the lake");

    // Who held which shard when, from each replica's log: (time, shard, taken or handed back).
    let events: Vec<Vec<(String, String, bool)>> = logs
        .iter()
        .map(|log| {
            std::fs::read_to_string(log)
                .unwrap()
                .lines()
                .filter_map(|line| {
                    let time = line.split_whitespace().next()?.to_string();
                    if line.contains("stopped; shard leases released") {
                        // Every shard still held is released at the stop.
                        return Some((time, "*".to_string(), false));
                    }
                    // Not "another replica took the shard first".
                    let taken = line.contains("cdcd::sink: took the shard");
                    let back = line.contains("shard handed back");
                    if !taken && !back {
                        return None;
                    }
                    let shard = line.split("shard=").nth(1)?.split_whitespace().next()?;
                    Some((time, shard.to_string(), taken))
                })
                .collect()
        })
        .collect();
    for (i, mine) in events.iter().enumerate() {
        let taken = mine.iter().filter(|e| e.2).count();
        assert!(taken > 0, "replica {} took no shard: {mine:?}", i + 1);
    }
    // A shard both took was handed back by the first before the second took it.
    let held = |events: &[(String, String, bool)], shard: &str| -> Vec<(String, Option<String>)> {
        let mut spans = Vec::new();
        for (time, s, taken) in events {
            if s != shard && s != "*" {
                continue;
            }
            if *taken {
                spans.push((time.clone(), None));
            } else if let Some(last) = spans.last_mut() {
                last.1.get_or_insert_with(|| time.clone());
            }
        }
        spans
    };
    for shard in (0..4).map(|i| format!("shardId-00000000000{i}")) {
        let (a, b) = (held(&events[0], &shard), held(&events[1], &shard));
        assert!(!a.is_empty() || !b.is_empty(), "{shard} was read by nobody");
        for (a_from, a_to) in &a {
            for (b_from, b_to) in &b {
                let a_before_b = a_to.as_ref().is_some_and(|end| end <= b_from);
                let b_before_a = b_to.as_ref().is_some_and(|end| end <= a_from);
                assert!(
                    a_before_b || b_before_a,
                    "{shard} held by both replicas at once: {a:?} / {b:?}"
                );
            }
        }
    }
    println!(
        "{}: two replicas on 4 shards: replica 1 took {:?}, replica 2 took {:?} (never one shard \
         at once); {expected} changes once each in {}",
        server.name,
        events[0]
            .iter()
            .filter(|e| e.2)
            .map(|e| &e.1[14..])
            .collect::<Vec<_>>(),
        events[1]
            .iter()
            .filter(|e| e.2)
            .map(|e| &e.1[14..])
            .collect::<Vec<_>>(),
        lake.url
    );
}
