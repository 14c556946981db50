//! `cdcd run` against the real servers (MariaDB 10.11, Oracle MySQL 9.7), writing the lake to
//! SeaweedFS (a real S3 API) and to a local directory, read back with DuckDB the way Athena reads
//! it: Hive partitions, and the `_latest` views that `cdcd athena-ddl` prints.
//!
//! Oracles: the source tables themselves (`SELECT`, compared value by value), masking recomputed
//! here from the source values, the server's own GTID state, and `cdcd tail` for the set of
//! changes that must be in the lake exactly once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hmac::{Hmac, Mac};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use support::{assert_table_matches, Rows, Server};

const MASKING_KEY: &str = "test-masking-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_run_writes_the_lake_exactly_once() {
    let server = Server::from_env("MARIADB");
    let lake = Lake::s3(&server);
    scenarios(&server, &lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_run_writes_the_lake_exactly_once() {
    let server = Server::from_env("MYSQL");
    let lake = Lake::directory(&server);
    scenarios(&server, &lake).await;
}

async fn scenarios(server: &Server, lake: &Lake) {
    let mut conn = server.conn().await;
    let db = format!("cdcd_run_{}", server.name.to_ascii_lowercase());
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET utf8mb4"
    ))
    .await
    .unwrap();
    lake_reproduces_tables(server, &mut conn, &db, lake).await;
    restarts_lose_and_duplicate_nothing(server, &mut conn, &db, lake).await;
    bad_input_is_refused_before_data_moves(server, &mut conn, &db).await;
    systemd_sees_ready_and_watchdog(server, &mut conn, &db, lake).await;
    kinesis_receives_every_change(server, &mut conn, &db, lake).await;
    purged_binlogs_stop_the_restart(server, &mut conn, &db, lake).await;
}

/// With `kinesis.stream` set, `cdcd run` also puts every masked change on Kinesis as AWS DMS
/// would: the stream holds exactly the records `cdcd tail --format dms` prints for the same range
/// (whose values the binlog tests check against `SELECT`), each once, in order per partition key.
async fn kinesis_receives_every_change(server: &Server, conn: &mut Conn, db: &str, lake: &Lake) {
    let lake = lake.child("kinesis");
    let stream = format!("cdcd-{}", lake.name);
    kinesis_stream(&["create", &stream, "2"]);
    let start = gtid_start(server, conn).await;
    conn.query_drop(format!(
        "INSERT INTO {db}.users (id, name, email, phone, ssn, card, address, note) VALUES
           (10, 'Kay', 'kay@example.com', '+1 555 0100', '111-22-3333', '4111111111111111', 'x', 'mail kay@example.com');
         UPDATE {db}.users SET name = 'Kay K' WHERE id = 10;
         ALTER TABLE {db}.users ADD COLUMN vip BOOL DEFAULT 0;
         UPDATE {db}.users SET vip = 1;
         DELETE FROM {db}.users WHERE id = 10;
         INSERT INTO {db}.churn (id, v, n) SELECT -1000 - seq, 'k', seq FROM
           (SELECT a.n + 10 * b.n + 100 * c.n AS seq FROM {db}.digits a, {db}.digits b, {db}.digits c) s"
    ))
    .await
    .unwrap();
    let extra = format!(
        "[kinesis]\nstream = \"{stream}\"\nendpoint = \"{}\"\n",
        env("CDCD_TEST_KINESIS_ENDPOINT")
    );
    let id = replica_id(server, 6);
    let config = config(server, db, &lake, &start, id, &extra);
    // Run it in the background long enough to scrape the producer's metrics.
    let mut child = cdcd_command(&config, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Scrape until the count stops growing (caught up), then stop it.
    let put_total = |text: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix("cdcd_kinesis_records_put_total "))
            .and_then(|n| n.parse().ok())
    };
    let (mut put_metric, mut stable, mut text) = (None, 0, String::new());
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if std::net::TcpStream::connect(metrics_listen(id)).is_err() {
            continue;
        }
        text = http_get(id, "/metrics").1;
        let now = put_total(&text);
        stable = if now.is_some_and(|n| n > 0) && now == put_metric {
            stable + 1
        } else {
            0
        };
        if stable == 3 {
            break;
        }
        put_metric = now;
    }
    promtool_check_metrics(&text);
    libc_kill::send(child.id(), libc_kill::TERM);
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM stops cdcd cleanly"
    );

    let tail = cdcd_command(
        &config,
        &["tail", "--until-end", "--format", "dms", "--from", &start],
    )
    .output()
    .unwrap();
    assert!(
        tail.status.success(),
        "{}",
        String::from_utf8_lossy(&tail.stderr)
    );
    // DMS stamps each record with the time it was written; the rest must be identical.
    let comparable = |text: &str| {
        let mut record: Json = serde_json::from_str(text).unwrap();
        record["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("timestamp");
        record.to_string()
    };
    let expected: Vec<String> = String::from_utf8(tail.stdout)
        .unwrap()
        .lines()
        .map(comparable)
        .collect();
    let mut records: Vec<Json> = kinesis_stream(&["read", &stream]);
    kinesis_stream(&["delete", &stream]);
    for record in &mut records {
        record["data"] = Json::String(comparable(record["data"].as_str().unwrap()));
    }
    let mut put: Vec<String> = records
        .iter()
        .map(|r| r["data"].as_str().unwrap().to_string())
        .collect();
    let mut want = expected.clone();
    put.sort();
    want.sort();
    assert_eq!(put.len(), want.len(), "records on the stream");
    assert_eq!(
        put_metric,
        Some(put.len() as u64),
        "cdcd_kinesis_records_put_total counts them"
    );
    assert!(
        put == want,
        "the stream holds other records than cdcd tail --format dms prints"
    );
    // Per partition key, the stream's order is the binlog's.
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in &records {
        by_key
            .entry(record["key"].as_str().unwrap().to_string())
            .or_default()
            .push(record["data"].as_str().unwrap().to_string());
    }
    for (key, datas) in &by_key {
        let order: Vec<&String> = expected
            .iter()
            .filter(|line| datas.contains(line))
            .collect();
        assert_eq!(
            datas.iter().collect::<Vec<_>>(),
            order,
            "order of key {key}"
        );
    }
    let control = records
        .iter()
        .filter(|r| {
            r["data"]
                .as_str()
                .unwrap()
                .contains("\"record-type\":\"control\"")
        })
        .count();
    assert!(control >= 1, "a control record for the ALTER TABLE");
    assert!(
        !records
            .iter()
            .any(|r| r["data"].as_str().unwrap().contains("kay@example.com")),
        "masking applies before Kinesis"
    );
    println!(
        "{}: {} DMS records on Kinesis ({} keys, {control} control), equal to cdcd tail --format dms, in order per key, masked",
        server.name,
        records.len(),
        by_key.len()
    );
}

fn kinesis_stream(args: &[&str]) -> Vec<Json> {
    support_python("kinesis_stream.py", args)
}

/// Under systemd (`Type=notify`, `WatchdogSec=`), `cdcd run` says READY=1 once connected and
/// resumed, pings the watchdog in time, and says STOPPING=1 and exits 0 on SIGTERM. The listener
/// stands in for systemd's notify socket.
async fn systemd_sees_ready_and_watchdog(server: &Server, conn: &mut Conn, db: &str, lake: &Lake) {
    let lake = lake.child("systemd");
    let start = gtid_start(server, conn).await;
    let config = config(server, db, &lake, &start, replica_id(server, 5), "");
    let listener = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/notify-listener.py");
    let command = cdcd_command(&config, &["run"]);
    let cdcd = command.get_program().to_owned();
    let out = Command::new("python3")
        .arg(listener)
        .args(["--watchdog-usec", "1000000", "--check-watchdog"])
        .args(["--expect", "READY=1", "--expect", "STOPPING=1"])
        .args(["--term-after-ready", "3", "--expect-exit", "0", "--"])
        .arg(cdcd)
        .args(command.get_args())
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "notify listener: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{}: under a notify socket: {}",
        server.name,
        report.lines().last().unwrap_or_default()
    );
}

/// Binlogs purged past the checkpoint while cdcd was stopped: it refuses to start, names the
/// missing transactions, and writes nothing.
async fn purged_binlogs_stop_the_restart(server: &Server, conn: &mut Conn, db: &str, lake: &Lake) {
    let lake = lake.child("purged");
    let start = gtid_start(server, conn).await;
    let id = replica_id(server, 4);
    let config = config(server, db, &lake, &start, id, "");
    conn.query_drop(format!(
        "INSERT INTO {db}.churn (id, v, n) VALUES (-1, 'before', 0)"
    ))
    .await
    .unwrap();
    run_until_end(&config);
    // Transactions the table filter leaves out still move the checkpoint (so the server can
    // purge what cdcd no longer needs), and write nothing.
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS {db}_other;
         CREATE TABLE IF NOT EXISTS {db}_other.t (id INT PRIMARY KEY AUTO_INCREMENT);
         INSERT INTO {db}_other.t VALUES (NULL), (NULL)"
    ))
    .await
    .unwrap();
    run_until_end(&config);
    let checkpoint = lake.checkpoint(id);
    assert_eq!(
        checkpoint["gtids"],
        server_gtids(server, conn).await,
        "filtered transactions advance the checkpoint"
    );
    conn.query_drop(format!(
        "INSERT INTO {db}.churn (id, v, n) VALUES (-2, 'purged', 0)"
    ))
    .await
    .unwrap();
    server.purge_all_but_current(conn).await;
    let out = cdcd_command(&config, &["run", "--until-end"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("purged"),
        "a checkpoint behind purged binlogs must stop cdcd: {stderr}"
    );
    let after = lake.checkpoint(id);
    for field in ["file", "pos", "gtids"] {
        assert_eq!(
            after[field], checkpoint[field],
            "the checkpoint did not move"
        );
    }
    let rows = query(
        &lake,
        &format!("SELECT count(*) AS n FROM \"cdcd\".\"{db}_churn\""),
    );
    assert_eq!(
        rows[0]["n"], 1,
        "only the row before the purge is in the lake"
    );
    println!(
        "{}: purged past the checkpoint -> {}",
        server.name,
        stderr.trim()
    );
}

/// Where a test's lake lives.
struct Lake {
    url: String,
    name: String,
}

impl Lake {
    fn s3(server: &Server) -> Lake {
        let bucket = env("CDCD_TEST_S3_BUCKET");
        let name = format!("{}-{}", server.name.to_lowercase(), std::process::id());
        Lake {
            url: format!("s3://{bucket}/{name}"),
            name,
        }
    }

    fn directory(server: &Server) -> Lake {
        let name = format!("{}-{}", server.name.to_lowercase(), std::process::id());
        let dir = std::env::temp_dir().join(format!("cdcd-lake-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        Lake {
            url: dir.display().to_string(),
            name,
        }
    }

    /// A sub-lake for one scenario.
    fn child(&self, scenario: &str) -> Lake {
        Lake {
            url: format!("{}/{scenario}", self.url),
            name: format!("{}-{scenario}", self.name),
        }
    }

    /// The checkpoint as the JSON cdcd wrote (with the default location inside the lake).
    fn checkpoint(&self, server_id: u32) -> Json {
        let sql = format!(
            "SELECT content FROM read_text('{}/_cdcd/checkpoint-{server_id}.json')",
            self.url
        );
        let rows = query(self, &sql);
        serde_json::from_str(rows[0]["content"].as_str().unwrap()).unwrap()
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/services.sh start and source /tmp/cdcd-services.env")
    })
}

/// Writes a config for `cdcd run` over the tables of `db`, into `lake`.
fn config(
    server: &Server,
    db: &str,
    lake: &Lake,
    start: &str,
    server_id: u32,
    extra: &str,
) -> PathBuf {
    let path = std::env::temp_dir().join(format!("cdcd-run-{}.toml", lake.name));
    let text = format!(
        r#"
[source]
url = "{url}"
tables = "{db}.*"
server_id = {server_id}
heartbeat_seconds = 1

[run]
start = "{start}"

[metrics]
listen = "{metrics}"

[lake]
url = "{lake}"
flush_seconds = 0.5
max_rows = 1000

[lake.s3]
endpoint = "{endpoint}"
force_path_style = true
retry_seconds = 30
# S3's smallest part: objects above it (the 12 MiB row below) go up as multipart uploads.
multipart_bytes = 5242880

[masking]
hmac_key_env = "CDCD_TEST_MASKING_KEY"

[[masking.rules]]
columns = "{db}.users.email"
action = "hmac"

[[masking.rules]]
columns = "{db}.users.phone"
action = "partial"
keep_right = 4

[[masking.rules]]
columns = "{db}.users.ssn"
action = "redact"

[[masking.rules]]
columns = "{db}.users.card"
action = "sha256"

[[masking.rules]]
columns = "{db}.users.address"
action = "drop"

[[masking.detect]]
columns = "{db}.users.note"
kinds = ["email", "phone", "credit-card", "ssn", "ip"]
{extra}
"#,
        url = server.repl_url,
        lake = lake.url,
        endpoint = std::env::var("CDCD_TEST_S3_ENDPOINT").unwrap_or_default(),
        metrics = metrics_listen(server_id),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A replica server id (and metrics port) per server and scenario, as the servers' tests run at
/// the same time.
fn replica_id(server: &Server, scenario: u32) -> u32 {
    7300 + if server.mariadb { 10 } else { 20 } + scenario
}

/// Each test's `cdcd run` serves its metrics on a port of its own.
fn metrics_listen(server_id: u32) -> String {
    format!("127.0.0.1:{}", 10_000 + server_id)
}

/// GET `path` from a `cdcd run`'s metrics endpoint: status line and body.
fn http_get(server_id: u32, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(metrics_listen(server_id)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: cdcd\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn cdcd_command(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cdcd"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("CDCD_TEST_MASKING_KEY", MASKING_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("CDCD_SOURCE_PASSWORD");
    command
}

/// `cdcd run --until-end`: catches up and exits; its stderr on failure.
fn run_until_end(config: &Path) {
    let out = cdcd_command(config, &["run", "--until-end"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cdcd run --until-end failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs SQL over the lake in DuckDB; the last statement's rows.
fn query(lake: &Lake, sql: &str) -> Vec<Json> {
    let file = std::env::temp_dir().join(format!("cdcd-query-{}.sql", lake.name));
    std::fs::write(&file, sql).unwrap();
    support_python("lake_query.py", &[&lake.url, &file.display().to_string()])
}

/// Runs a helper of `tests/support` with the stand-ins' Python (boto3, DuckDB); its JSON lines.
fn support_python(script: &str, args: &[&str]) -> Vec<Json> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/support")
        .join(script);
    let out = Command::new(env("CDCD_TEST_DUCKDB_PYTHON"))
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `CREATE OR REPLACE VIEW … _latest` statement `cdcd athena-ddl` prints for `table`.
fn latest_view(config: &Path, lake: &Lake, db: &str, table: &str) -> String {
    let location = if lake.url.starts_with("s3://") {
        lake.url.clone()
    } else {
        format!("s3://copy-of/{}", lake.name)
    };
    let out = cdcd_command(config, &["athena-ddl", "--location", &location])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "athena-ddl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ddl = String::from_utf8(out.stdout).unwrap();
    check_athena_grammar(&ddl, &location);
    let start = format!("CREATE OR REPLACE VIEW \"cdcd\".\"{db}_{table}_latest\"");
    let from = ddl
        .find(&start)
        .unwrap_or_else(|| panic!("no {start} in:\n{ddl}"));
    let end = from + ddl[from..].find(';').unwrap();
    ddl[from..=end].to_string()
}

/// What Athena's documentation requires of the DDL that DuckDB cannot run: `CREATE EXTERNAL
/// TABLE` with only Athena's Hive types, string partition columns, Parquet storage, and partition
/// projection over every partition column with a storage template under the table's location.
fn check_athena_grammar(ddl: &str, location: &str) {
    const TYPES: &[&str] = &[
        "int",
        "bigint",
        "float",
        "double",
        "string",
        "binary",
        "date",
        "timestamp",
    ];
    let mut tables = 0;
    for statement in ddl.split(';').map(str::trim) {
        let body: String = statement
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let body = body.trim();
        if !body.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS `cdcd`.`") {
            continue;
        }
        tables += 1;
        let name = body.split('`').nth(3).unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "Athena table names are lower case: {name}"
        );
        let columns = &body[body.find("(\n").unwrap() + 2..body.find("\n)\n").unwrap()];
        for column in columns.split(",\n") {
            let (name, kind) = column.trim().rsplit_once(' ').unwrap();
            assert!(name.starts_with('`') && name.ends_with('`'), "{column}");
            let decimal = kind
                .strip_prefix("decimal(")
                .and_then(|k| k.strip_suffix(')'));
            let ok = TYPES.contains(&kind)
                || decimal.is_some_and(|ps| {
                    let (p, s) = ps.split_once(',').unwrap();
                    let (p, s): (u32, u32) = (p.parse().unwrap(), s.parse().unwrap());
                    (1..=38).contains(&p) && s <= p
                });
            assert!(ok, "`{kind}` is not an Athena type ({column})");
        }
        assert!(body.contains(
            "PARTITIONED BY (`year` string, `month` string, `day` string, `hour` string)"
        ));
        assert!(body.contains("STORED AS PARQUET"));
        assert!(body.contains(&format!("LOCATION '{location}/")));
        assert!(body.contains("'projection.enabled'='true'"));
        for part in ["year", "month", "day", "hour"] {
            for property in ["type'='integer'", "range'=", "digits'="] {
                assert!(
                    body.contains(&format!("'projection.{part}.{property}")),
                    "projection.{part}.{property} in {name}"
                );
            }
        }
        assert!(body.contains("year=${year}/month=${month}/day=${day}/hour=${hour}/'"));
    }
    assert!(tables > 0, "no CREATE EXTERNAL TABLE in:\n{ddl}");
}

/// The current rows of `table` as the lake's latest view gives them, in cdcd's native encoding
/// (so the oracle comparison of the binlog tests applies), keyed by primary key.
async fn latest_rows(conn: &mut Conn, config: &Path, lake: &Lake, db: &str, table: &str) -> Rows {
    let view = latest_view(config, lake, db, table);
    let rows = query(
        lake,
        &format!("{view}\nSELECT * FROM \"cdcd\".\"{db}_{table}_latest\";"),
    );
    let columns: Vec<(String, String, Option<u64>, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, DATETIME_PRECISION, COLUMN_KEY FROM \
             information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .unwrap();
    let mut out = Rows::new();
    for row in rows {
        let mut native = serde_json::Map::new();
        let mut key = Vec::new();
        for (name, data_type, precision, column_key) in &columns {
            let value = row
                .get(name.to_lowercase().as_str())
                .unwrap_or_else(|| panic!("{table}: the lake has no column {name}: {row}"));
            let value = to_native(data_type, precision.unwrap_or(0), value);
            if column_key == "PRI" {
                key.push(value.to_string());
            }
            native.insert(name.clone(), value);
        }
        out.insert(key.join("|"), native);
    }
    out
}

/// A DuckDB value (as `lake_query.py` prints it) in cdcd's native JSON encoding.
fn to_native(data_type: &str, precision: u64, value: &Json) -> Json {
    if value.is_null() {
        return Json::Null;
    }
    let text = || match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    match data_type {
        // Unsigned BIGINT arrives as DECIMAL(20,0), printed as text.
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "year" => {
            serde_json::from_str(&text()).unwrap()
        }
        "bit" => {
            let bits: u64 = text().parse().unwrap();
            Json::String(format!("{bits:b}"))
        }
        "datetime" | "timestamp" => {
            // DuckDB prints microseconds; the column has `precision` fractional digits.
            let full = text();
            let cut = match precision {
                0 => full.split('.').next().unwrap().to_string(),
                p => full[..full.find('.').unwrap() + 1 + p as usize].to_string(),
            };
            let suffix = if data_type == "timestamp" { "Z" } else { "" };
            Json::String(format!("{}{suffix}", cut.replacen(' ', "T", 1)))
        }
        "set" => Json::Array(
            text()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| Json::String(s.into()))
                .collect(),
        ),
        "json" => serde_json::from_str(&text()).unwrap(),
        "longtext" if text().starts_with('{') => serde_json::from_str(&text()).unwrap(),
        _ => match value {
            Json::Object(bytes) => bytes["base64"].clone(),
            Json::Number(_) => value.clone(),
            _ => Json::String(text()),
        },
    }
}

/// The workload of the first scenario: every column type (the binlog tests' table), a schema
/// change, and a users table full of personal data to mask.
async fn lake_reproduces_tables(server: &Server, conn: &mut Conn, db: &str, lake: &Lake) {
    let lake = lake.child("types");
    conn.query_drop(format!("USE {db}")).await.unwrap();
    let start = gtid_start(server, conn).await;
    conn.query_drop(support::all_types_ddl(server))
        .await
        .unwrap();
    conn.query_drop(support::extremes_row(server))
        .await
        .unwrap();
    conn.query_drop(
        "INSERT INTO all_types (id) VALUES (2);
         BEGIN;
         INSERT INTO all_types (id, c_varchar, c_int, c_dec) VALUES (10, 'ten', 10, 1.5), (11, 'eleven', 11, 2.5);
         UPDATE all_types SET c_varchar = 'TEN', c_bigint_u = 18446744073709551614 WHERE id = 10;
         DELETE FROM all_types WHERE id = 11;
         COMMIT;
         ALTER TABLE all_types ADD COLUMN added VARCHAR(10) DEFAULT 'x' AFTER c_int;
         INSERT INTO all_types (id, added, c_varchar) VALUES (20, 'new', 'after alter');
         UPDATE all_types SET added = CONCAT('v', id), c_smallint = -7 WHERE id <> 20;",
    )
    .await
    .unwrap();
    conn.query_drop(
        "CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200),
           phone VARCHAR(30), ssn CHAR(11), card VARCHAR(19), address VARCHAR(200), note TEXT);
         INSERT INTO users VALUES
           (1, 'Ada Lovelace', 'ada@example.com', '+44 20 7946 0958', '078-05-1120',
            '4111111111111111', '12 St James''s Square, London', 'call me at +1 415 555 0100 or ada@example.com'),
           (2, 'Alan Turing', 'alan@example.org', '+44 161 496 0000', '219-09-9999',
            '5500005555555559', 'Bletchley Park', 'card 4012888888881881, from 10.1.2.3'),
           (3, 'Grace Hopper', 'grace@example.net', '555-0199', '123-45-6789',
            '340000000000009', 'Arlington', 'nothing personal');
         UPDATE users SET email = 'ada.l@example.com', note = 'ssn 078-05-1120' WHERE id = 1;
         DELETE FROM users WHERE id = 3;",
    )
    .await
    .unwrap();

    // A 12 MiB value of incompressible text: its object is larger than a multipart part.
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let big: String = (0..12 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b"0123456789abcdef"[(state % 16) as usize])
        })
        .collect();
    conn.exec_drop(
        "INSERT INTO all_types (id, c_longtext) VALUES (30, ?)",
        (big,),
    )
    .await
    .unwrap();

    let id = replica_id(server, 1);
    let config = config(server, db, &lake, &start, id, "");
    run_until_end(&config);

    // Every change is one row: 3 inserts + 3 updates … counted against `cdcd tail`.
    let changes = server.tail(&start, &format!("{db}.*"), &[]);
    let expected = changes.iter().filter(|e| e["op"] != "ddl").count();
    let stored = query(
        &lake,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT _cdc_event_id) AS ids FROM \
             (SELECT _cdc_event_id FROM \"cdcd\".\"{db}_all_types\" UNION ALL \
              SELECT _cdc_event_id FROM \"cdcd\".\"{db}_users\")"
        ),
    );
    assert_eq!(stored[0]["n"], expected, "rows in the lake");
    assert_eq!(stored[0]["ids"], expected, "distinct event ids in the lake");

    let replayed = latest_rows(conn, &config, &lake, db, "all_types").await;
    let compared = assert_table_matches(conn, db, "all_types", &replayed).await;
    println!(
        "{}: {} changes in {}; the latest view equals SELECT * of all_types ({compared} values)",
        server.name, expected, lake.url
    );

    // Masked columns hold what the rules make of the source values; the rest is exact.
    let source: Vec<(i32, String, String, String, String, String, String)> = conn
        .query("SELECT id, name, email, phone, ssn, card, note FROM users ORDER BY id")
        .await
        .unwrap();
    let view = latest_view(&config, &lake, db, "users");
    let masked = query(
        &lake,
        &format!("{view}\nSELECT * FROM \"cdcd\".\"{db}_users_latest\" ORDER BY id;"),
    );
    assert_eq!(masked.len(), source.len(), "users rows");
    for ((id, name, email, phone, _ssn, card, note), lake_row) in source.iter().zip(&masked) {
        let mut mac = Hmac::<Sha256>::new_from_slice(MASKING_KEY.as_bytes()).unwrap();
        mac.update(email.as_bytes());
        let hmac_hex = hex(&mac.finalize().into_bytes());
        let partial = format!(
            "{}{}",
            "*".repeat(phone.chars().count() - 4),
            &phone[phone.len() - 4..]
        );
        assert_eq!(lake_row["id"], *id);
        assert_eq!(
            lake_row["name"],
            name.as_str(),
            "unmasked columns are exact"
        );
        assert_eq!(lake_row["email"], hmac_hex.as_str(), "hmac of the email");
        assert_eq!(lake_row["phone"], partial.as_str(), "phone keeps 4 digits");
        assert_eq!(lake_row["ssn"], "*****", "ssn redacted");
        assert_eq!(
            lake_row["card"],
            hex(&Sha256::digest(card.as_bytes())).as_str()
        );
        assert!(lake_row.get("address").is_none(), "address is dropped");
        let note_out = lake_row["note"].as_str().unwrap();
        for secret in [
            "ada@example.com",
            "415 555 0100",
            "4012888888881881",
            "10.1.2.3",
            "078-05-1120",
        ] {
            assert!(!note_out.contains(secret), "{secret} left in {note_out}");
        }
        if note == "nothing personal" {
            assert_eq!(note_out, note);
        }
    }
    // Deleted and superseded rows keep their masking in the change history too.
    let history = query(
        &lake,
        &format!("SELECT email, ssn FROM \"cdcd\".\"{db}_users\""),
    );
    assert!(history
        .iter()
        .all(|r| r["ssn"] == "*****" && !r["email"].as_str().unwrap().contains('@')));
    println!(
        "{}: masked columns hold hmac/partial/redact/sha256 of the source, address dropped, PII in notes found",
        server.name
    );

    let checkpoint = lake.checkpoint(id);
    assert_eq!(
        checkpoint["gtids"],
        server_gtids(server, conn).await,
        "checkpoint GTIDs"
    );
    assert!(
        checkpoint["owner"].is_null(),
        "a clean stop releases the checkpoint"
    );
}

/// A start position that knows the GTID state, so that checkpoints carry GTIDs.
async fn gtid_start(server: &Server, conn: &mut Conn) -> String {
    format!("gtid:{}", server_gtids(server, conn).await)
}

/// The server's GTID state: what a checkpoint at the end of the binlog must hold.
async fn server_gtids(server: &Server, conn: &mut Conn) -> String {
    let query = if server.mariadb {
        "SELECT @@gtid_binlog_pos"
    } else {
        "SELECT REPLACE(@@gtid_executed, '\\n', '')"
    };
    conn.query_first(query).await.unwrap().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that keeps changing the tables while cdcd is killed and restarted under it.
async fn workload(server: &Server, db: &str, rounds: u32, seed: u64) {
    let mut conn = server.conn().await;
    conn.query_drop(format!("USE {db}")).await.unwrap();
    let mut state = seed;
    let mut random = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for round in 0..rounds {
        let id = random(400) as i64;
        let statement = match random(40) {
            0 => {
                // A transaction larger than lake.max_rows: written in parts before it commits.
                format!(
                    "INSERT INTO churn (id, v, n) SELECT 100000 + seq, CONCAT('bulk-', seq), seq FROM \
                     (SELECT a.n + 10 * b.n + 100 * c.n + 1000 * d.n AS seq FROM digits a, digits b, \
                     digits c, (SELECT 0 n UNION SELECT 1) d) s \
                     ON DUPLICATE KEY UPDATE v = 'bulk-{round}', n = churn.n + 1"
                )
            }
            1..=16 => format!(
                "INSERT INTO churn (id, v, n) VALUES ({id}, 'v{round}', {round}) \
                 ON DUPLICATE KEY UPDATE v = 'u{round}', n = n + 1"
            ),
            17..=26 => format!("UPDATE churn SET v = 'w{round}', n = n * 2 WHERE id BETWEEN {id} AND {id} + 20"),
            27..=30 => format!("DELETE FROM churn WHERE id BETWEEN {id} AND {id} + 5"),
            _ => format!(
                "BEGIN; INSERT INTO churn (id, v, n) VALUES ({}, 'a', 1) ON DUPLICATE KEY UPDATE n = n + 1; \
                 UPDATE churn SET v = 'b{round}' WHERE id = {id}; COMMIT",
                id + 1000
            ),
        };
        conn.query_drop(statement).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `cdcd run` stopped by SIGTERM and killed with SIGKILL at random moments of a running workload:
/// after it catches up, every change is in the lake exactly once, the latest view equals the
/// table, and the checkpoint equals the server's GTID state.
async fn restarts_lose_and_duplicate_nothing(
    server: &Server,
    conn: &mut Conn,
    db: &str,
    lake: &Lake,
) {
    let lake = lake.child("restarts");
    conn.query_drop(format!(
        "USE {db};
         CREATE TABLE digits (n INT PRIMARY KEY);
         INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);
         CREATE TABLE churn (id BIGINT PRIMARY KEY, v VARCHAR(40), n BIGINT)"
    ))
    .await
    .unwrap();
    let start = gtid_start(server, conn).await;
    let id = replica_id(server, 2);
    // A short lease, so that a restart after kill -9 waits seconds, not a minute.
    let config = config(
        server,
        db,
        &lake,
        &start,
        id,
        "[checkpoint]\ninterval_seconds = 1\nlease_seconds = 3\n",
    );

    let writer = {
        let server = Server::from_env(server.name);
        let db = db.to_string();
        tokio::spawn(async move { workload(&server, &db, 800, 0x9e37_79b9_7f4a_7c15).await })
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut stops = Vec::new();
    for round in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Each run cuts large transactions at another size: a restart must remove the parts
        // the last run wrote past the checkpoint instead of leaving them beside its own.
        let mut child: Child = cdcd_command(&config, &["run"])
            .env("CDCD_LAKE__MAX_ROWS", ["700", "1000", "1300"][round % 3])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(800 + seed % 2000)).await;
        if round == 0 {
            scrape_metrics(server, id, db);
            // A second process on the same source and checkpoint is refused while one runs.
            let second = cdcd_command(&config, &["run"]).output().unwrap();
            let message = String::from_utf8_lossy(&second.stderr);
            assert!(
                !second.status.success()
                    && (message.contains("held by another cdcd")
                        || message.contains("locked by another cdcd")
                        || message.contains("written by another process")),
                "a second cdcd run must be refused: {message}"
            );
            println!(
                "{}: second process refused: {}",
                server.name,
                message.trim()
            );
        }
        let signal = if round % 2 == 0 {
            libc_kill::KILL
        } else {
            libc_kill::TERM
        };
        libc_kill::send(child.id(), signal);
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        if signal == libc_kill::TERM {
            assert!(status.success(), "SIGTERM must stop cdcd cleanly: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        if signal == libc_kill::KILL {
            // The killed process's lease must run out before another may take over.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        stops.push(if signal == libc_kill::KILL {
            "kill -9"
        } else {
            "SIGTERM"
        });
    }
    writer.await.unwrap();
    run_until_end(&config);

    let changes = server.tail(&start, &format!("{db}.churn"), &[]);
    let expected: BTreeSet<String> = changes
        .iter()
        .filter(|e| e["op"] != "ddl")
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    let stored = query(
        &lake,
        &format!("SELECT _cdc_event_id AS id FROM \"cdcd\".\"{db}_churn\""),
    );
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for row in &stored {
        *seen
            .entry(row["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let duplicates = seen.values().filter(|&&n| n > 1).count();
    let missing = expected.iter().filter(|id| !seen.contains_key(*id)).count();
    let extra = seen.keys().filter(|id| !expected.contains(*id)).count();
    assert_eq!(
        (missing, duplicates, extra),
        (0, 0, 0),
        "after {stops:?}: {} changes expected, {} rows stored",
        expected.len(),
        stored.len()
    );
    let replayed = latest_rows(conn, &config, &lake, db, "churn").await;
    let compared = assert_table_matches(conn, db, "churn", &replayed).await;
    let checkpoint = lake.checkpoint(id);
    assert_eq!(
        checkpoint["gtids"],
        server_gtids(server, conn).await,
        "checkpoint GTIDs"
    );
    println!(
        "{}: {stops:?} during the workload; {} changes in the lake exactly once (0 missing, 0 \
         duplicated), latest view equals the table ({compared} values), checkpoint at the server's GTIDs",
        server.name,
        expected.len()
    );
}

/// A running `cdcd run`'s endpoints: alive, ready, and metrics that promtool accepts and that
/// count the workload's rows by table without row values in labels.
fn scrape_metrics(server: &Server, server_id: u32, db: &str) {
    assert_eq!(http_get(server_id, "/healthz").0, "HTTP/1.1 200 OK");
    let (status, why) = http_get(server_id, "/readyz");
    assert_eq!(status, "HTTP/1.1 200 OK", "{why}");
    let (status, text) = http_get(server_id, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    promtool_check_metrics(&text);
    let rows = format!("cdcd_rows_total{{op=\"insert\",table=\"{db}.churn\"}}");
    assert!(text.contains(&rows), "{rows} in:\n{text}");
    for name in [
        "cdcd_replication_lag_seconds",
        "cdcd_checkpoint_age_seconds",
        "cdcd_lake_objects_written_total",
    ] {
        assert!(text.contains(name), "{name} in:\n{text}");
    }
    println!(
        "{}: /healthz and /readyz answer 200; /metrics passes promtool check metrics",
        server.name
    );
}

fn promtool_check_metrics(text: &str) {
    let promtool = Path::new(&env("CDCD_TEST_TOOLS_BIN")).join("promtool");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each bad setting stops `cdcd run` with one clear line naming it, before anything is written.
async fn bad_input_is_refused_before_data_moves(server: &Server, conn: &mut Conn, db: &str) {
    let start = gtid_start(server, conn).await;
    let id = replica_id(server, 3);
    let local = Lake::directory(server).child("bad");
    let refused = |lake: &Lake, extra: &str, env: &[(&str, &str)], needle: &str| {
        let config = config(server, db, lake, &start, id, extra);
        let mut command = cdcd_command(&config, &["run", "--until-end"]);
        command.env("CDCD_LAKE__S3__RETRY_SECONDS", "2");
        for (key, value) in env {
            command.env(key, value);
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.trim().lines().last().unwrap_or_default().to_string();
        assert!(
            !out.status.success() && last.starts_with("cdcd: ") && last.contains(needle),
            "expected an error containing `{needle}`, got: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        if !lake.url.starts_with("s3://") {
            let written: Vec<_> = walk(Path::new(&lake.url))
                .into_iter()
                .filter(|p| !p.to_string_lossy().ends_with(".lock"))
                .collect();
            assert!(written.is_empty(), "{needle}: data moved: {written:?}");
        }
        println!("bad input ({needle}) -> {last}");
    };
    refused(
        &local,
        "[checkpoint]\nintervl_seconds = 1\n",
        &[],
        "intervl_seconds",
    );
    refused(
        &local,
        "",
        &[("CDCD_TEST_MASKING_KEY", "")],
        "hmac action needs a key",
    );
    let typo = format!("[[masking.rules]]\ncolumns = \"{db}.users.emial\"\naction = \"null\"\n");
    refused(&local, &typo, &[], "selects no column");
    let s3 = Lake::s3(server).child("bad");
    refused(
        &s3,
        "",
        &[("CDCD_LAKE__S3__ENDPOINT", "http://127.0.0.1:1")],
        "cannot write there",
    );
    let missing = Lake {
        url: "s3://cdcd-no-such-bucket/lake".into(),
        name: s3.name.clone(),
    };
    refused(&missing, "", &[], "NoSuchBucket");
    refused(
        &s3,
        "",
        &[
            (
                "AWS_ACCESS_KEY_ID",
                &env("CDCD_TEST_S3_DENIED_ACCESS_KEY_ID"),
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                &env("CDCD_TEST_S3_DENIED_SECRET_ACCESS_KEY"),
            ),
        ],
        "AccessDenied",
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Signals for the restart test, without a libc dependency: `kill` from procps.
mod libc_kill {
    pub const KILL: &str = "KILL";
    pub const TERM: &str = "TERM";

    pub fn send(pid: u32, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }
}
