//! `cdcd tail` against the real servers: a private MariaDB 10.11 and an Oracle MySQL 9.7, both with
//! row-based binlogs, started by `scripts/services.sh`.
//!
//! The oracle is the tables' own contents: every change event of a workload over all column types
//! is replayed by primary key, and the result must equal `SELECT *` of each table, value by value.
//! The scenarios of one server run in sequence (some flip global server settings and restore them);
//! the two servers run in parallel.

mod support;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use support::{assert_table_matches, expect_failure, replay, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_tail_reproduces_tables_and_rejects_bad_input() {
    run_all(Server::from_env("MARIADB")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_tail_reproduces_tables_and_rejects_bad_input() {
    run_all(Server::from_env("MYSQL")).await;
}

async fn run_all(server: Server) {
    let mut conn = server.conn().await;
    let db = format!("cdcd_live_{}", server.name.to_ascii_lowercase());
    conn.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
    conn.query_drop(format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"))
        .await
        .unwrap();

    all_types_workload(&server, &mut conn, &db).await;
    large_transaction_and_large_row(&server, &mut conn, &db).await;
    tls_verification(&server, &mut conn, &db).await;
    silent_connection_is_replaced(&server, &mut conn, &db).await;
    gtid_start(&server, &mut conn, &db).await;
    checkpoint_resumes_exactly(&server, &mut conn, &db).await;
    masking_applies_before_output(&server, &mut conn, &db).await;
    schema_cache_without_full_metadata(&server, &mut conn, &db).await;
    bad_input(&server, &mut conn, &db).await;
    purged_start_is_refused(&server, &mut conn).await;
    if server.mariadb {
        // Restarting the shared MySQL chroot server takes longer; one flavor proves the mechanism.
        server_restart_is_survived(&server, conn, &db).await;
    }
}

/// `cdcd tail` following a server that restarts: the connection is lost, retried with backoff
/// and resumed at the last commit; changes made before and after the restart all arrive.
async fn server_restart_is_survived(server: &Server, mut conn: Conn, db: &str) {
    conn.query_drop(format!("CREATE TABLE {db}.restart (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let from = server.binlog_end(&mut conn).await;
    let output = std::env::temp_dir().join(format!("cdcd-restart-{}.jsonl", std::process::id()));
    let mut tail = std::process::Command::new(env!("CARGO_BIN_EXE_cdcd"))
        .args([
            "tail",
            "--source",
            &server.repl_url,
            "--from",
            &from,
            "--tables",
        ])
        .arg(format!("{db}.restart"))
        .env("CDCD_SOURCE__HEARTBEAT_SECONDS", "1")
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = |wanted: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let lines = std::fs::read_to_string(&output)
                .unwrap_or_default()
                .lines()
                .count();
            if lines >= wanted || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    conn.query_drop(format!("INSERT INTO {db}.restart VALUES (1), (2), (3)"))
        .await
        .unwrap();
    assert_eq!(seen(3), 3, "rows before the restart");
    drop(conn);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mariadb.sh");
    for action in ["stop", "start"] {
        let status = std::process::Command::new(script)
            .arg(action)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "scripts/mariadb.sh {action}");
    }
    let mut conn = server.conn().await;
    conn.query_drop(format!("INSERT INTO {db}.restart VALUES (4), (5)"))
        .await
        .unwrap();
    let lines = seen(5);
    let _ = tail.kill();
    let _ = tail.wait();
    let ids: std::collections::BTreeSet<u64> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Json>(l).unwrap()["after"]["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5],
        "every row, before and after the restart ({lines} lines)"
    );
    println!(
        "{}: the server restarted under cdcd tail; it reconnected and all 5 rows arrived",
        server.name
    );
}

async fn all_types_workload(server: &Server, conn: &mut Conn, db: &str) {
    conn.query_drop(format!("USE {db}")).await.unwrap();
    conn.query_drop("SET SESSION sql_mode = ''").await.unwrap();
    let from = server.binlog_end(conn).await;
    conn.query_drop(support::all_types_ddl(server))
        .await
        .unwrap();
    conn.query_drop(support::extremes_row(server))
        .await
        .unwrap();
    // Every column NULL but the key.
    conn.query_drop("INSERT INTO all_types (id) VALUES (2)")
        .await
        .unwrap();
    // Zero dates and the zero YEAR (sql_mode='' allows them), small values.
    conn.query_drop(
        "INSERT INTO all_types (id, c_tinyint, c_date, c_datetime, c_ts, c_year, c_time6, c_bit1, c_dec_big, c_enum, c_set)
         VALUES (3, 0, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', 0, '-12:34:56.000001', b'0',
                 -0.000000000000000000000000000001, '', '')",
    )
    .await
    .unwrap();
    if !server.mariadb {
        // MySQL: the next transactions are zstd-compressed (TRANSACTION_PAYLOAD) and JSON updates
        // are logged as partial updates (PARTIAL_UPDATE_ROWS) that must be applied to the before
        // image.
        compress_and_log_partial_json(conn, true).await;
    }
    // A multi-statement transaction with insert, update and delete of the same rows.
    conn.query_drop(
        "BEGIN;
         INSERT INTO all_types (id, c_varchar, c_int) VALUES (10, 'ten', 10), (11, 'eleven', 11), (12, 'twelve', 12);
         UPDATE all_types SET c_varchar = 'TEN', c_bigint_u = 18446744073709551614 WHERE id = 10;
         DELETE FROM all_types WHERE id = 11;
         COMMIT",
    )
    .await
    .unwrap();
    // Composite primary key.
    conn.query_drop(
        "CREATE TABLE composite (a INT, b VARCHAR(10), v DECIMAL(5,1), PRIMARY KEY (b, a));
         INSERT INTO composite VALUES (1, 'x', 1.5), (2, 'x', -2.5), (1, 'y', 0.0);
         UPDATE composite SET a = 3 WHERE b = 'y';
         DELETE FROM composite WHERE a = 2",
    )
    .await
    .unwrap();
    // CREATE TABLE … SELECT: DDL and rows in one transaction (MySQL 8.0.21+ logs it atomically).
    conn.query_drop("CREATE TABLE ctas (PRIMARY KEY (b, a)) AS SELECT a, b, v FROM composite")
        .await
        .unwrap();
    // ALTER TABLE in the middle of the stream, then changes that use the new column; every row is
    // updated after it so the final image of each row has the new schema.
    conn.query_drop("ALTER TABLE all_types ADD COLUMN added VARCHAR(10) DEFAULT 'x' AFTER c_int")
        .await
        .unwrap();
    conn.query_drop(
        "INSERT INTO all_types (id, added, c_varchar) VALUES (20, 'new', 'after alter');
         UPDATE all_types SET added = CONCAT('v', id), c_smallint = -7 WHERE id <> 20;
         UPDATE all_types SET c_json = JSON_SET(c_json, '$.a[1]', 99) WHERE id = 1;
         DELETE FROM all_types WHERE id = 12",
    )
    .await
    .unwrap();

    if !server.mariadb {
        // Compressed transactions are held whole in memory while they are decoded (the
        // replication client decompresses a payload at once); the bounded-memory check of the
        // 1,000,000-row transaction below is about uncompressed ones.
        compress_and_log_partial_json(conn, false).await;
    }
    let tables = format!("{db}.*");
    let events = server.tail(&from, &tables, &[]);
    let changes = events.iter().filter(|e| e["op"] != "ddl").count();
    let ddl: Vec<&str> = events
        .iter()
        .filter(|e| e["op"] == "ddl")
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ddl,
        [
            "create-table",
            "create-table",
            "create-table",
            "change-columns"
        ],
        "DDL events"
    );
    let mut ids = std::collections::HashSet::new();
    for event in &events {
        assert_eq!(event["schema"], db);
        let id = event["event_id"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "event id {id} appears twice");
    }
    let replayed = replay(&events);
    let mut compared = 0;
    for table in ["all_types", "composite", "ctas"] {
        let rows = replayed
            .get(&format!("{db}.{table}"))
            .cloned()
            .unwrap_or_default();
        compared += assert_table_matches(conn, db, table, &rows).await;
    }
    println!(
        "{}: {changes} change events replayed; {compared} values equal SELECT * of all_types, composite and ctas",
        server.name
    );

    // The same stream in DMS format: one data record per change, same operations, DMS rendering.
    let dms = server.tail(&from, &tables, &["--format", "dms"]);
    let data: Vec<&Json> = dms
        .iter()
        .filter(|r| r["metadata"]["record-type"] == "data")
        .collect();
    let native_ops: Vec<&str> = events
        .iter()
        .filter(|e| e["op"] != "ddl")
        .map(|e| e["op"].as_str().unwrap())
        .collect();
    let dms_ops: Vec<&str> = data
        .iter()
        .map(|r| r["metadata"]["operation"].as_str().unwrap())
        .collect();
    assert_eq!(native_ops, dms_ops);
    let first = data.iter().find(|r| r["data"]["id"] == 1).unwrap();
    assert_eq!(
        first["data"]["c_bigint_u"].to_string(),
        "18446744073709551615"
    );
    assert_eq!(first["data"]["c_datetime6"], "9999-12-31T23:59:59.999999Z");
    assert_eq!(first["data"]["c_varbinary"], "0x00FF00FF");
    assert_eq!(first["data"]["c_set"], "a,c");
    assert_eq!(first["data"]["c_bit1"], true);
    assert!(
        first["data"]["c_json"].is_string(),
        "DMS carries JSON as a string"
    );
    assert_eq!(first["metadata"]["schema-name"], db);
    let nulls = data.iter().find(|r| r["data"]["id"] == 2).unwrap();
    assert_eq!(
        nulls["data"].as_object().unwrap().len(),
        1,
        "NULL columns are omitted in DMS mode"
    );
    assert_eq!(
        dms.iter()
            .filter(|r| r["metadata"]["record-type"] == "control")
            .count(),
        4,
        "one control record per DDL statement"
    );
    let create_composite = dms
        .iter()
        .find(|r| {
            r["metadata"]["operation"] == "create-table"
                && r["metadata"]["table-name"] == "composite"
        })
        .expect("a create-table control record for composite");
    let def = &create_composite["control"]["table-def"];
    assert_eq!(def["primary-key"], serde_json::json!(["b", "a"]));
    assert_eq!(def["columns"]["a"]["type"], "INT4");
    assert_eq!(def["columns"]["a"]["nullable"], false);
    assert_eq!(def["columns"]["v"]["type"], "NUMERIC");
    assert_eq!(def["columns"]["v"]["precision"], 5);
    assert_eq!(def["columns"]["v"]["scale"], 1);
    println!("{}: {} DMS records check out", server.name, dms.len());
}

/// MySQL session settings: zstd transaction compression and partial JSON updates, on or off.
async fn compress_and_log_partial_json(conn: &mut Conn, on: bool) {
    let (compression, json) = if on {
        ("ON", "PARTIAL_JSON")
    } else {
        ("OFF", "")
    };
    conn.query_drop(format!(
        "SET SESSION binlog_transaction_compression = {compression}; \
         SET SESSION binlog_row_value_options = '{json}'"
    ))
    .await
    .unwrap();
}

async fn large_transaction_and_large_row(server: &Server, conn: &mut Conn, db: &str) {
    conn.query_drop(format!("USE {db}")).await.unwrap();
    conn.query_drop(
        "CREATE TABLE digits (n INT PRIMARY KEY);
         INSERT INTO digits SELECT a.n + 10 * b.n + 100 * c.n FROM
           (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5
            UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) a,
           (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5
            UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) b,
           (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5
            UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) c;
         CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(40), d DECIMAL(12,2));
         CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)",
    )
    .await
    .unwrap();
    let from = server.binlog_end(conn).await;
    // One transaction of 1,000,000 rows.
    conn.query_drop(
        "INSERT INTO big SELECT a.n * 1000 + b.n, CONCAT('row-', a.n, '-', b.n), a.n / 7
         FROM digits a, digits b",
    )
    .await
    .unwrap();
    // A single row of 20 MiB, larger than one 16 MiB protocol packet.
    conn.query_drop(
        "INSERT INTO blobs VALUES (1, REPEAT(CONCAT(CHAR(0), 'cdc', CHAR(255)), 4 * 1024 * 1024))",
    )
    .await
    .unwrap();

    let big = format!("{db}.big");
    let measured = support::cdcd_measured(&[
        "tail",
        "--until-end",
        "--source",
        &server.repl_url,
        "--from",
        &from,
        "--tables",
        &big,
    ]);
    assert!(measured.success, "{}", measured.stderr);
    let mut count = 0u64;
    let mut id_sum = 0u64;
    let mut txn = None;
    let stdout = std::io::BufReader::new(std::fs::File::open(&measured.stdout).unwrap());
    for line in std::io::BufRead::lines(stdout) {
        let event: Json = serde_json::from_str(&line.unwrap()).unwrap();
        assert_eq!(event["op"], "insert");
        id_sum += event["after"]["id"].as_u64().unwrap();
        let gtid = event["source"]["gtid"].as_str().unwrap().to_string();
        assert_eq!(txn.get_or_insert(gtid.clone()), &gtid, "one transaction");
        assert_eq!(
            event["source"]["row"].as_u64(),
            Some(count),
            "row index within the transaction"
        );
        count += 1;
    }
    assert_eq!(count, 1_000_000);
    assert_eq!(id_sum, (0..1_000_000u64).sum::<u64>());
    // Bounded memory: the transaction's binlog is tens of MB and its JSON hundreds; the reader
    // must not hold it.
    let peak = measured.peak_rss_mib;
    assert!(
        peak < 200.0,
        "peak RSS of cdcd tail was {peak:.0} MiB for a 1,000,000-row transaction"
    );
    println!(
        "{}: 1,000,000-row transaction streamed; cdcd peak RSS {peak:.0} MiB",
        server.name
    );
    std::fs::remove_file(&measured.stdout).unwrap();

    let events = server.tail(&from, &format!("{db}.blobs"), &[]);
    assert_eq!(events.len(), 1);
    let ours = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        events[0]["after"]["b"].as_str().unwrap(),
    )
    .unwrap();
    let (length, sha): (u64, String) = conn
        .query_first("SELECT LENGTH(b), SHA2(b, 256) FROM blobs WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ours.len() as u64, length);
    assert_eq!(format!("{:x}", Sha256::digest(&ours)), sha);
    println!(
        "{}: {length}-byte row arrived intact (sha256 {sha})",
        server.name
    );
    conn.query_drop("DROP TABLE big, blobs").await.unwrap();
}

async fn tls_verification(server: &Server, conn: &mut Conn, db: &str) {
    let from = server.binlog_end(conn).await;
    conn.query_drop(format!("INSERT INTO {db}.composite VALUES (9, 'tls', 9.9)"))
        .await
        .unwrap();
    let tables = format!("{db}.composite");
    let events = server.tail(
        &from,
        &tables,
        &["--tls-mode", "verify-identity", "--tls-ca", &server.tls_ca],
    );
    assert_eq!(events.len(), 1);
    println!(
        "{}: verify-identity TLS with the test CA works",
        server.name
    );
    // A CA that did not sign the server's certificate must be refused.
    let wrong_ca = unrelated_ca();
    expect_failure(
        &[
            "tail",
            "--until-end",
            "--source",
            &server.repl_url,
            "--from",
            &from,
            "--tls-mode",
            "verify-ca",
            "--tls-ca",
            wrong_ca.to_str().unwrap(),
        ],
        "cannot connect",
    );
}

/// A replication connection that goes silent mid-stream is detected by the heartbeat timeout and
/// replaced; the stream resumes at the last commit, so every row arrives, and rows of the
/// interrupted transaction that arrive twice carry the same event ids.
async fn silent_connection_is_replaced(server: &Server, conn: &mut Conn, db: &str) {
    conn.query_drop(format!(
        "CREATE TABLE {db}.stream (id INT PRIMARY KEY, pad VARCHAR(200))"
    ))
    .await
    .unwrap();
    let from = server.binlog_end(conn).await;
    for batch in 0..20 {
        conn.query_drop(format!(
            "INSERT INTO {db}.stream SELECT n + {batch} * 1000, REPEAT('x', 200) FROM {db}.digits"
        ))
        .await
        .unwrap_or_else(|e| panic!("insert batch {batch}: {e}"));
    }
    let port: u16 = server.repl_url.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = support::FreezingProxy::start(port, 2_000_000);
    let source = server
        .repl_url
        .replace(&format!(":{port}"), &format!(":{}", proxy.port));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdcd"))
        .args([
            "tail",
            "--until-end",
            "--source",
            &source,
            "--from",
            &from,
            "--tables",
        ])
        .arg(format!("{db}.stream"))
        .args(["--tls-mode", "disabled"])
        .env("CDCD_SOURCE__HEARTBEAT_SECONDS", "1")
        .env("CDCD_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cdcd failed: {stderr}");
    assert!(
        proxy.frozen.load(std::sync::atomic::Ordering::SeqCst),
        "the proxy never froze"
    );
    assert!(stderr.contains("silent"), "no silence detected: {stderr}");
    let mut seen: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let mut duplicates = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let event: Json = serde_json::from_str(line).unwrap();
        let id = event["after"]["id"].as_u64().unwrap();
        let event_id = event["event_id"].as_str().unwrap().to_string();
        if let Some(previous) = seen.insert(id, event_id.clone()) {
            assert_eq!(previous, event_id, "a re-read row must keep its event id");
            duplicates += 1;
        }
    }
    assert_eq!(seen.len(), 20_000, "every row arrives");
    println!(
        "{}: connection frozen mid-stream, detected as silent and replaced; 20,000 rows arrived ({duplicates} re-read with the same event ids)",
        server.name
    );
    conn.query_drop(format!("DROP TABLE {db}.stream"))
        .await
        .unwrap();
}

/// `--from gtid:` with the server's own GTID state (MySQL `gtid_executed`, MariaDB
/// `gtid_binlog_pos`) starts right after those transactions: exactly the later ones arrive.
async fn gtid_start(server: &Server, conn: &mut Conn, db: &str) {
    let variable = if server.mariadb {
        "@@gtid_binlog_pos"
    } else {
        "@@gtid_executed"
    };
    let state: String = conn
        .query_first(format!("SELECT {variable}"))
        .await
        .unwrap()
        .unwrap();
    let state = state.replace('\n', "");
    conn.query_drop(format!(
        "INSERT INTO {db}.composite VALUES (100, 'gtid', 1.0); \
         INSERT INTO {db}.composite VALUES (101, 'gtid', 2.0)"
    ))
    .await
    .unwrap();
    let from = format!("gtid:{state}");
    let tables = format!("{db}.composite");
    let events = server.tail(&from, &tables, &[]);
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e["after"]["a"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [100, 101], "exactly the transactions after {state}");
    println!(
        "{}: --from gtid:{state} gave exactly the 2 later transactions",
        server.name
    );
}

/// `--checkpoint FILE`: each run resumes after the last transaction the previous one printed, so
/// consecutive runs print every row exactly once; a file-position checkpoint of another server is
/// refused.
async fn checkpoint_resumes_exactly(server: &Server, conn: &mut Conn, db: &str) {
    conn.query_drop(format!("CREATE TABLE {db}.cp (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let from = server.binlog_end(conn).await;
    let path = std::env::temp_dir().join(format!(
        "cdcd-{}-{}.checkpoint",
        server.name,
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let checkpoint = path.to_str().unwrap();
    let tables = format!("{db}.cp");
    let ids = |events: Vec<Json>| -> Vec<u64> {
        events
            .iter()
            .map(|e| e["after"]["id"].as_u64().unwrap())
            .collect()
    };
    for id in 1..=3 {
        conn.query_drop(format!("INSERT INTO {db}.cp VALUES ({id})"))
            .await
            .unwrap();
    }
    let first = ids(server.tail(&from, &tables, &["--checkpoint", checkpoint]));
    assert_eq!(first, [1, 2, 3]);
    conn.query_drop(format!("INSERT INTO {db}.cp VALUES (4), (5)"))
        .await
        .unwrap();
    // `--from` is the position of the first run; the checkpoint takes precedence.
    let second = ids(server.tail(&from, &tables, &["--checkpoint", checkpoint]));
    assert_eq!(second, [4, 5], "exactly the rows after the checkpoint");
    let third = ids(server.tail(&from, &tables, &["--checkpoint", checkpoint]));
    assert!(third.is_empty(), "nothing new: {third:?}");
    let saved: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Started from a file position, the checkpoint is one too (GTID tracking needs a GTID base).
    assert!(
        saved["file"].is_string() && saved["pos"].as_u64() > Some(4),
        "{saved}"
    );
    if !server.mariadb {
        let foreign = serde_json::json!({
            "version": 1, "flavor": "mysql", "server_uuid": "00000000-0000-0000-0000-000000000001",
            "file": "binlog.000001", "pos": 4, "gtids": null
        });
        std::fs::write(&path, foreign.to_string()).unwrap();
        expect_failure(
            &[
                "tail",
                "--until-end",
                "--source",
                &server.repl_url,
                "--checkpoint",
                checkpoint,
            ],
            "cannot be carried to another server",
        );
    }
    println!(
        "{}: --checkpoint runs printed 3, then exactly 2, then 0 rows",
        server.name
    );
}

/// Masking rules from the config change what `cdcd tail` prints: hashed, redacted and dropped
/// columns, checked against hashes computed here from the table's own values.
async fn masking_applies_before_output(server: &Server, conn: &mut Conn, db: &str) {
    let from = server.binlog_end(conn).await;
    conn.query_drop(format!(
        "INSERT INTO {db}.composite VALUES (200, 'secret-200', 9.5)"
    ))
    .await
    .unwrap();
    let config = std::env::temp_dir().join(format!(
        "cdcd-masking-{}-{}.toml",
        server.name,
        std::process::id()
    ));
    std::fs::write(
        &config,
        format!(
            "[masking]\n\
             [[masking.rules]]\ncolumns = \"{db}.composite.b\"\naction = \"sha256\"\n\
             [[masking.rules]]\ncolumns = \"{db}.composite.v\"\naction = \"drop\"\n"
        ),
    )
    .unwrap();
    let tables = format!("{db}.composite");
    let events = server.tail(&from, &tables, &["--config", config.to_str().unwrap()]);
    assert_eq!(events.len(), 1);
    let after = events[0]["after"].as_object().unwrap();
    let expected = format!("{:x}", Sha256::digest(b"secret-200"));
    assert_eq!(after["b"], expected.as_str());
    assert!(!after.contains_key("v"), "dropped column: {after:?}");
    assert_eq!(after["a"], 200);
    println!(
        "{}: masking rules from the config hashed and dropped columns before output",
        server.name
    );
}

/// With `binlog_row_metadata=MINIMAL` the binlog has no column names: they come from
/// `information_schema`, and a TABLE_MAP that no longer matches the table (read after a later
/// ALTER) is refused with the reason, never decoded into shifted columns.
async fn schema_cache_without_full_metadata(server: &Server, conn: &mut Conn, db: &str) {
    let previous: String = conn
        .query_first("SELECT @@GLOBAL.binlog_row_metadata")
        .await
        .unwrap()
        .unwrap();
    conn.query_drop("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
        .await
        .unwrap();
    // New sessions pick up the global setting.
    let mut minimal = server.conn().await;
    minimal
        .query_drop(format!(
            "CREATE TABLE {db}.minimal (id INT PRIMARY KEY, v VARCHAR(10), n BIGINT UNSIGNED)"
        ))
        .await
        .unwrap();
    let from = server.binlog_end(&mut minimal).await;
    minimal
        .query_drop(format!(
            "INSERT INTO {db}.minimal VALUES (1, 'one', 18446744073709551615), (2, 'two', 2)"
        ))
        .await
        .unwrap();
    drop(minimal);
    conn.query_drop(format!("SET GLOBAL binlog_row_metadata = '{previous}'"))
        .await
        .unwrap();
    let tables = format!("{db}.minimal");
    let events = server.tail(&from, &tables, &[]);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["after"]["v"], "one");
    assert_eq!(
        events[0]["after"]["n"].to_string(),
        "18446744073709551615",
        "unsigned from the schema cache"
    );
    assert_eq!(events[0]["primary_key"], serde_json::json!(["id"]));
    // The table changes after those events were written: reading them now must fail loudly.
    conn.query_drop(format!("ALTER TABLE {db}.minimal ADD COLUMN extra INT"))
        .await
        .unwrap();
    server.tail_fails(&from, &tables, "columns");
    println!(
        "{}: MINIMAL metadata decoded through information_schema; a stale TABLE_MAP is refused",
        server.name
    );
}

async fn bad_input(server: &Server, conn: &mut Conn, db: &str) {
    let tail = |source: &str| {
        vec!["tail", "--until-end", "--from", "end", "--source", source]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, needle: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_failure(&args, needle);
    };
    run(
        tail("mysql://repl:replpw@127.0.0.1:1"),
        "cannot connect to 127.0.0.1:1",
    );
    let wrong_password = server.repl_url.replace("replpw", "wrong");
    let message = expect_failure(
        &["tail", "--until-end", "--source", &wrong_password],
        "wrong user or password",
    );
    assert!(
        !message.contains("wrong@"),
        "the password must not be echoed: {message}"
    );
    run(tail(&server.norepl_url), "GRANT REPLICATION");
    run(tail("mysql//repl@127.0.0.1"), "not a mysql:// URL");
    run(
        vec![
            "tail".into(),
            "--source".into(),
            server.repl_url.clone(),
            "--from".into(),
            "gtid:nonsense".into(),
        ],
        "nonsense",
    );
    for (setting, value, needle) in [
        ("binlog_format", "STATEMENT", "binlog_format is STATEMENT"),
        ("binlog_format", "MIXED", "binlog_format is MIXED"),
        ("binlog_row_image", "MINIMAL", "binlog_row_image is MINIMAL"),
    ] {
        let previous: String = conn
            .query_first(format!("SELECT @@GLOBAL.{setting}"))
            .await
            .unwrap()
            .unwrap();
        conn.query_drop(format!("SET GLOBAL {setting} = '{value}'"))
            .await
            .unwrap();
        let result = std::panic::catch_unwind(|| {
            run(tail(&server.repl_url), needle);
            // `cdcd check` names the same setting, and fails.
            let out = support::cdcd(&["check", "--source", &server.repl_url]);
            let report = String::from_utf8_lossy(&out.stdout);
            assert!(
                !out.status.success(),
                "cdcd check passed with {setting}={value}: {report}"
            );
            assert!(
                report
                    .lines()
                    .any(|l| l.starts_with("FAIL") && l.contains(setting)),
                "cdcd check does not name {setting}: {report}"
            );
        });
        conn.query_drop(format!("SET GLOBAL {setting} = '{previous}'"))
            .await
            .unwrap();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
    // `cdcd check` passes on the server as set up, and names missing privileges.
    let out = support::cdcd(&["check", "--source", &server.repl_url]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cdcd check failed on a good server: {report}"
    );
    assert!(report.lines().all(|l| !l.starts_with("FAIL")), "{report}");
    let out = support::cdcd(&["check", "--source", &server.norepl_url]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        report.lines().any(|l| l.starts_with("FAIL")
            && l.contains("privileges")
            && l.contains("REPLICATION SLAVE")),
        "{report}"
    );
    println!(
        "{}: cdcd check passes here, and names each wrong setting and missing privilege",
        server.name
    );
    // A session can still write partial images under a FULL global setting: refused at the event.
    let from = server.binlog_end(conn).await;
    conn.query_drop(format!(
        "SET SESSION binlog_row_image = 'MINIMAL'; \
         UPDATE {db}.composite SET v = v + 1 WHERE a = 1; \
         SET SESSION binlog_row_image = 'FULL'"
    ))
    .await
    .unwrap();
    let tables = format!("{db}.composite");
    // The error names the table.
    let needle = format!("row image of `{db}`.`composite` holds 2 of 3 columns");
    server.tail_fails(&from, &tables, &needle);
}

async fn purged_start_is_refused(server: &Server, conn: &mut Conn) {
    // Purge every binlog but the current one; a start before them must be refused by name.
    let from_before = if server.mariadb {
        let pos: String = conn
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .unwrap()
            .unwrap();
        let first = pos.split(',').next().unwrap().to_string();
        let mut parts = first.split('-');
        let (d, s) = (parts.next().unwrap(), parts.next().unwrap());
        format!("gtid:{d}-{s}-1")
    } else {
        let uuid: String = conn
            .query_first("SELECT @@server_uuid")
            .await
            .unwrap()
            .unwrap();
        format!("gtid:{uuid}:1")
    };
    server.purge_all_but_current(conn).await;
    let needle = "purged";
    let message = expect_failure(
        &[
            "tail",
            "--until-end",
            "--source",
            &server.repl_url,
            "--from",
            &from_before,
        ],
        needle,
    );
    if !server.mariadb {
        assert!(
            message.contains(":2-") || message.contains(":1-"),
            "names the missing GTIDs: {message}"
        );
    }
}

/// Writes a freshly generated CA that signed nothing the servers use.
fn unrelated_ca() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cdcd-wrong-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=unrelated",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(&ca)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    ca
}
