//! `cdcd run` against the real servers (MariaDB 10.11, Oracle MySQL 9.7), writing the lake to
//! SeaweedFS (a real S3 API) and to a local directory, read back with DuckDB the way Athena reads
//! it: Hive partitions, and the `_latest` views that `cdcd athena-ddl` prints.
//!
//! Oracles: the source tables themselves (`SELECT`, compared value by value), masking recomputed
//! here from the source values, the server's own GTID state, and `cdcd tail` for the set of
//! changes that must be in the lake exactly once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::Value as Json;

use support::lake::*;
use support::{assert_table_matches, Server};

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
    // The changes, as `cdcd tail --format dms` renders them (its values are checked against
    // SELECT by the binlog tests).
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
    // Run it in the background long enough to scrape the producer's metrics.
    let mut child = cdcd_command(&config, &["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Scrape until every change the tail found is acknowledged, then stop it.
    let put_total = |text: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix("cdcd_kinesis_records_put_total "))
            .and_then(|n| n.parse().ok())
    };
    let (mut put_metric, mut text) = (None, String::new());
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if std::net::TcpStream::connect(metrics_listen(id)).is_err() {
            continue;
        }
        text = http_get(id, "/metrics").1;
        put_metric = put_total(&text);
        if put_metric == Some(expected.len() as u64) {
            break;
        }
    }
    promtool_check_metrics(&text);
    libc_kill::send(child.id(), libc_kill::TERM);
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM stops cdcd cleanly"
    );

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
    // purge what cdcd no longer needs), and write nothing, even with the partial row images of an
    // application that writes them with binlog_row_image=MINIMAL.
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {db}_other;
         CREATE DATABASE {db}_other;
         CREATE TABLE {db}_other.t (id INT PRIMARY KEY AUTO_INCREMENT, v INT);
         INSERT INTO {db}_other.t (v) VALUES (1), (2);
         SET SESSION binlog_row_image = 'MINIMAL';
         UPDATE {db}_other.t SET v = v + 1;
         DELETE FROM {db}_other.t WHERE v = 2;
         SET SESSION binlog_row_image = 'FULL'"
    ))
    .await
    .unwrap();
    // Filtered transactions advance the checkpoint too.
    let checkpoint = run_until_end_caught_up(server, conn, &config, &lake, id).await;
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

/// A replica server id (and metrics port) per server and scenario, as the servers' tests run at
/// the same time.
fn replica_id(server: &Server, scenario: u32) -> u32 {
    7300 + if server.mariadb { 10 } else { 20 } + scenario
}

/// The workload of the first scenario: every column type (the binlog tests' table), a schema
/// change, and a users table full of personal data to mask.
async fn lake_reproduces_tables(server: &Server, conn: &mut Conn, db: &str, lake: &Lake) {
    let lake = lake.child("types");
    conn.query_drop(format!("USE {db}")).await.unwrap();
    let start = gtid_start(server, conn).await;
    types_and_users_workload(server, conn).await;

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
    let checkpoint = run_until_end_caught_up(server, conn, &config, &lake, id).await;
    // The checkpoint knows every captured table's definition (a fingerprint per table).
    let captured: BTreeSet<String> = conn
        .exec::<String, _, _>(
            "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ?",
            (db,),
        )
        .await
        .unwrap()
        .into_iter()
        .collect();
    let fingerprinted: BTreeSet<String> = checkpoint["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|t| t.starts_with(&format!("{db}.")))
        .cloned()
        .collect();
    assert_eq!(
        fingerprinted, captured,
        "schema fingerprints in the checkpoint"
    );

    // Every change is one row: 3 inserts + 3 updates … counted against `cdcd tail`.
    let changes = server.tail(&start, &format!("{db}.*"), &[]);
    let expected = assert_each_change_once(&changes, &lake, db);

    let replayed = latest_rows(conn, &config, &lake, db, "all_types").await;
    let compared = assert_table_matches(conn, db, "all_types", &replayed).await;
    println!(
        "{}: {} changes in {}; the latest view equals SELECT * of all_types ({compared} values)",
        server.name, expected, lake.url
    );

    assert_users_masked(server, conn, &config, &lake, db).await;

    assert!(
        checkpoint["owner"].is_null(),
        "a clean stop releases the checkpoint"
    );
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
    run_until_end_caught_up(server, conn, &config, &lake, id).await;

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
    println!(
        "{}: {stops:?} during the workload; {} changes in the lake exactly once (0 missing, 0 \
         duplicated), latest view equals the table ({compared} values), checkpoint caught up with the server's GTIDs",
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
    let missing = Lake::at("s3://cdcd-no-such-bucket/lake", None);
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
