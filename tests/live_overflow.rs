//! `kinesis.oversize = "s3"` end to end: a 2 MiB row on MariaDB goes through `cdcd run` into
//! kinesis-mock (limit 1 MiB) as a pointer record, its payload into SeaweedFS.
//!
//! Oracles: the source table (`SELECT`) for the payload's row value, SHA-256 and length computed
//! here over the object as boto3 reads it from SeaweedFS, and the binlog order of the three rows
//! for the stream's order.

mod support;

use std::process::Command;

use mysql_async::prelude::Queryable;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use support::Server;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/services.sh start and source /tmp/cdcd-services.env")
    })
}

/// Runs an inline Python program (boto3, from the venv of scripts/aws.sh); its stdout.
fn python(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(env("CDCD_TEST_DUCKDB_PYTHON"))
        .args(["-c", program])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const KINESIS: &str = r#"
import json, os, sys, time, boto3
c = boto3.client("kinesis", endpoint_url=os.environ["CDCD_TEST_KINESIS_ENDPOINT"])
op, stream = sys.argv[1], sys.argv[2]
if op == "create":
    c.create_stream(StreamName=stream, ShardCount=1)
    while c.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        time.sleep(0.1)
elif op == "delete":
    c.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
else:
    shard = c.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    it = c.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        page = c.get_records(ShardIterator=it, Limit=10000)
        for r in page["Records"]:
            print(json.dumps({"key": r["PartitionKey"], "data": r["Data"].decode()}))
        if not page["Records"]:
            break
        it = page.get("NextShardIterator")
"#;

const S3_GET: &str = r#"
import os, sys, boto3
from urllib.parse import urlparse
u = urlparse(sys.argv[1])
s3 = boto3.client("s3", endpoint_url=os.environ["CDCD_TEST_S3_ENDPOINT"])
sys.stdout.buffer.write(s3.get_object(Bucket=u.netloc, Key=u.path.lstrip("/"))["Body"].read())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_row_over_the_limit_goes_to_s3_behind_a_pointer() {
    let server = Server::from_env("MARIADB");
    let mut conn = server.conn().await;
    let db = "cdcd_kpl_overflow";
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let run = format!("{}-{nanos}", std::process::id());
    let stream = format!("cdcd-kpl-overflow-{run}");
    let bucket = env("CDCD_TEST_S3_BUCKET");
    let overflow = format!("s3://{bucket}/kpl/overflow-{run}");
    python(KINESIS, &["create", &stream]);
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};
         CREATE TABLE {db}.docs (id INT PRIMARY KEY, body LONGTEXT)"
    ))
    .await
    .unwrap();
    let start: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    // 2 MiB of hex digits that differ on every run; small rows before and after.
    conn.query_drop(format!(
        "INSERT INTO {db}.docs VALUES (1, 'before');
         INSERT INTO {db}.docs VALUES (2, REPEAT(MD5(RAND()), 65536));
         INSERT INTO {db}.docs VALUES (3, 'after')"
    ))
    .await
    .unwrap();
    let body: String = conn
        .query_first(format!("SELECT body FROM {db}.docs WHERE id = 2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body.len(), 2 << 20);

    let config = std::env::temp_dir().join(format!("cdcd-kpl-overflow-{run}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[source]
url = "{url}"
tables = "{db}.*"
server_id = 7450
[run]
start = "gtid:{start}"
kinesis_format = "native"
[metrics]
listen = ""
[lake]
url = "s3://{bucket}/kpl/lake-{run}"
[lake.s3]
endpoint = "{s3}"
force_path_style = true
[kinesis]
stream = "{stream}"
endpoint = "{kinesis}"
oversize = "s3"
overflow_url = "{overflow}"
"#,
            url = server.repl_url,
            s3 = env("CDCD_TEST_S3_ENDPOINT"),
            kinesis = env("CDCD_TEST_KINESIS_ENDPOINT"),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cdcd"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--until-end"])
        .env("CDCD_LOG", "info")
        .env_remove("CDCD_SOURCE_PASSWORD")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cdcd run failed: {log}");

    let records: Vec<Json> = String::from_utf8(python(KINESIS, &["read", &stream]))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    python(KINESIS, &["delete", &stream]);
    assert_eq!(records.len(), 3, "three records on the stream");
    let datas: Vec<&str> = records
        .iter()
        .map(|r| r["data"].as_str().unwrap())
        .collect();
    assert!(datas[0].contains("\"before\"") && datas[2].contains("\"after\""));
    assert!(
        records.iter().all(|r| r["key"] == records[0]["key"]),
        "one partition key (schema-table)"
    );
    // The middle record is the pointer, in the row's place.
    let pointer = cdcd_kinesis::overflow::parse(datas[1].as_bytes())
        .unwrap()
        .expect("the second record is an overflow pointer");
    println!("pointer record ({} bytes): {}", datas[1].len(), datas[1]);
    let gtid_row = pointer.event_id.rsplit_once(':').unwrap().1;
    assert_eq!(gtid_row, "0", "the event id names row 0 of its transaction");
    assert!(
        pointer.url.starts_with(&format!("{overflow}/")),
        "{}",
        pointer.url
    );

    let payload = python(S3_GET, &[&pointer.url]);
    let sha256: String = Sha256::digest(&payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(payload.len() as u64, pointer.bytes, "length");
    assert_eq!(sha256, pointer.sha256, "SHA-256");
    let record: Json = serde_json::from_slice(&payload).unwrap();
    assert_eq!(record["event_id"].as_str(), Some(pointer.event_id.as_str()));
    assert_eq!(
        record["after"]["id"], 2,
        "the payload is the change record of row 2"
    );
    assert!(
        record["after"]["body"] == body.as_str(),
        "the payload's row value equals SELECT"
    );
    println!(
        "2 MiB row: pointer on {stream} between its neighbours; object {} in SeaweedFS, {} bytes, \
         sha256 {sha256}, equal to the pointer; row value equal to SELECT",
        pointer.url,
        payload.len()
    );
}
