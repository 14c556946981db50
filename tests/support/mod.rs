//! Shared helpers for the end-to-end tests: the real servers started by `scripts/services.sh`, the
//! `cdcd` binary, and the oracle that turns a table's own contents (`SELECT`) into the values a
//! change stream must reproduce.

#![allow(dead_code)]

pub mod lake;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Value as SqlValue};
use serde_json::Value as Json;

/// One of the live servers, from the environment `scripts/services.sh` writes.
pub struct Server {
    pub name: &'static str,
    pub root_url: String,
    pub repl_url: String,
    pub norepl_url: String,
    pub tls_ca: String,
    pub mariadb: bool,
}

impl Server {
    /// The server named `MARIADB` or `MYSQL`; panics with instructions when it is not configured,
    /// so that a missing server fails the test instead of skipping it.
    pub fn from_env(name: &'static str) -> Server {
        let var = |suffix: &str| {
            let key = format!("CDCD_TEST_{name}_{suffix}");
            std::env::var(&key).unwrap_or_else(|_| {
                panic!(
                    "{key} is not set: start the test servers with `scripts/services.sh start` \
                     and `. /tmp/cdcd-services.env` (or run scripts/test.sh)"
                )
            })
        };
        Server {
            name,
            root_url: var("URL"),
            repl_url: var("REPL_URL"),
            norepl_url: var("NOREPL_URL"),
            tls_ca: var("TLS_CA"),
            mariadb: name == "MARIADB",
        }
    }

    pub async fn conn(&self) -> Conn {
        let opts = Opts::from_url(&self.root_url).expect("root url");
        let mut conn = Conn::new(opts).await.expect("connect as root");
        // The workload must be row-logged even while a scenario flips the global format.
        conn.query_drop("SET SESSION binlog_format = 'ROW'")
            .await
            .expect("session binlog_format");
        conn.query_drop("SET SESSION time_zone = '+00:00'")
            .await
            .expect("time zone");
        conn
    }

    /// `cdcd tail --until-end` from `from` over the tables `tables` selects, plus `extra` options,
    /// as the replication user.
    pub fn tail(&self, from: &str, tables: &str, extra: &[&str]) -> Vec<Json> {
        let mut args = vec![
            "--source",
            &self.repl_url,
            "--from",
            from,
            "--tables",
            tables,
        ];
        args.extend_from_slice(extra);
        tail_json(&args)
    }

    /// Expects `cdcd tail --until-end` from `from` over `tables` to fail with `needle`.
    pub fn tail_fails(&self, from: &str, tables: &str, needle: &str) -> String {
        expect_failure(
            &[
                "tail",
                "--until-end",
                "--source",
                &self.repl_url,
                "--from",
                from,
                "--tables",
                tables,
            ],
            needle,
        )
    }

    /// The current end of the binlog as `file:NAME:POS` for `--from`.
    /// Rotates the binlog and purges every binlog but the new current one.
    pub async fn purge_all_but_current(&self, conn: &mut Conn) {
        conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
        let status = if self.mariadb {
            "SHOW MASTER STATUS"
        } else {
            "SHOW BINARY LOG STATUS"
        };
        let row: mysql_async::Row = conn.query_first(status).await.unwrap().unwrap();
        let current: String = row.get(0).unwrap();
        // A server keeps a binlog that a dump thread is still reading (MariaDB silently): end the
        // dump threads earlier scenarios left behind, and purge until the server reports it done.
        for attempt in 0.. {
            let dumps: Vec<u64> = conn
            .query(
                "SELECT id FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'",
            )
            .await
            .unwrap();
            for id in dumps {
                let _ = conn.query_drop(format!("KILL {id}")).await;
            }
            conn.query_drop(format!("PURGE BINARY LOGS TO '{current}'"))
                .await
                .unwrap();
            let oldest: mysql_async::Row =
                conn.query_first("SHOW BINARY LOGS").await.unwrap().unwrap();
            if oldest.get::<String, _>(0).unwrap() == current {
                break;
            }
            assert!(
                attempt < 50,
                "{}: PURGE BINARY LOGS kept older logs",
                self.name
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn binlog_end(&self, conn: &mut Conn) -> String {
        let statement = if self.mariadb {
            "SHOW MASTER STATUS"
        } else {
            "SHOW BINARY LOG STATUS"
        };
        let row: Row = conn.query_first(statement).await.unwrap().unwrap();
        let file: String = row.get(0).unwrap();
        let pos: u64 = row.get(1).unwrap();
        format!("file:{file}:{pos}")
    }
}

/// A table with a column of every type, as each flavor spells them.
pub fn all_types_ddl(server: &Server) -> String {
    let flavor_columns = if server.mariadb {
        // MariaDB: JSON is LONGTEXT with a json_valid check; UUID and INET types exist.
        "c_json JSON, c_uuid UUID, c_inet4 INET4, c_inet6 INET6"
    } else {
        "c_json JSON, c_point POINT SRID 4326"
    };
    format!(
        "CREATE TABLE all_types (
          id INT UNSIGNED NOT NULL PRIMARY KEY,
          c_tinyint TINYINT, c_tinyint_u TINYINT UNSIGNED,
          c_smallint SMALLINT, c_smallint_u SMALLINT UNSIGNED,
          c_mediumint MEDIUMINT, c_mediumint_u MEDIUMINT UNSIGNED,
          c_int INT, c_int_u INT UNSIGNED,
          c_bigint BIGINT, c_bigint_u BIGINT UNSIGNED,
          c_dec DECIMAL(10,2), c_dec_big DECIMAL(65,30),
          c_float FLOAT, c_double DOUBLE,
          c_bit1 BIT(1), c_bit BIT(13), c_bit64 BIT(64),
          c_date DATE, c_datetime DATETIME, c_datetime3 DATETIME(3), c_datetime6 DATETIME(6),
          c_ts TIMESTAMP NULL, c_ts6 TIMESTAMP(6) NULL,
          c_time TIME, c_time1 TIME(1), c_time6 TIME(6), c_year YEAR,
          c_char CHAR(10), c_char_latin1 CHAR(10) CHARACTER SET latin1,
          c_varchar VARCHAR(300), c_varchar_latin1 VARCHAR(20) CHARACTER SET latin1,
          c_binary BINARY(4), c_varbinary VARBINARY(300),
          c_text TEXT, c_longtext LONGTEXT, c_blob BLOB,
          c_enum ENUM('small','medium','large'), c_set SET('a','b','c','d'),
          c_geom GEOMETRY,
          {flavor_columns}
        ) ENGINE=InnoDB"
    )
}

const EXTREMES: &str = "INSERT INTO all_types VALUES (1,
    -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
    -9223372036854775808, 18446744073709551615,
    -12345678.91, 12345678901234567890123456789012345.123456789012345678901234567890,
    3.5, -2.2250738585072014e-308,
    b'1', b'1010101010101', b'1111111111111111111111111111111111111111111111111111111111111111',
    '2024-02-29', '1000-01-01 00:00:00', '2024-01-02 03:04:05.678', '9999-12-31 23:59:59.999999',
    '1970-01-01 00:00:01', '2038-01-19 03:14:07.999999',
    '-838:59:59', '-00:00:00.5', '838:59:58.999999', 2155,
    'héllo', 'café', 'varchar ✓ ünïcödé 🙂', 'latin1 ä€',
    X'DEAD', X'00FF00FF', 'text body', REPEAT('long ', 1000), X'0001FEFF',
    'medium', 'a,c', ST_GeomFromText('LINESTRING(0 0, 1 1, 2 5)')";

/// One row of `all_types` with the extreme value of every column.
pub fn extremes_row(server: &Server) -> String {
    let tail = if server.mariadb {
        r#", '{"a": [1, 2.5, "x"], "big": 18446744073709551615, "neg": -9223372036854775808}',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.1.20', '2001:db8::ff00:42:8329')"#
    } else {
        r#", '{"a": [1, 2.5, "x"], "big": 18446744073709551615, "neg": -9223372036854775808, "d": 1.25}',
            ST_GeomFromText('POINT(59.3 18.1)', 4326))"#
    };
    format!("{EXTREMES}{tail}")
}

/// Runs `cdcd` with `args`, returning its output; `CDCD_SOURCE_PASSWORD` is cleared so only the
/// URL's password counts.
pub fn cdcd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cdcd"))
        .args(args)
        .env_remove("CDCD_SOURCE_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .expect("run cdcd")
}

/// Runs `cdcd tail … --until-end` and returns its JSON lines; panics with stderr on failure.
pub fn tail_json(args: &[&str]) -> Vec<Json> {
    let mut full = vec!["tail", "--until-end"];
    full.extend_from_slice(args);
    let out = cdcd(&full);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cdcd {} failed: {stderr}",
        full.join(" ")
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// Expects `cdcd` to fail with a one-line error containing `needle`, and no panic.
pub fn expect_failure(args: &[&str], needle: &str) -> String {
    let out = cdcd(args);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(
        !out.status.success(),
        "cdcd {args:?} succeeded, expected `{needle}`"
    );
    assert!(!stderr.contains("panicked"), "cdcd panicked: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cdcd: ") && last.contains(needle),
        "cdcd {args:?}: expected an error containing `{needle}`, got: {stderr}"
    );
    println!("bad input {args:?} -> {last}");
    last.to_string()
}

/// Table contents keyed by primary key, as replayed from change events.
pub type Rows = BTreeMap<String, serde_json::Map<String, Json>>;

/// Applies native change events to per-table row maps, keyed by the primary key values.
pub fn replay(events: &[Json]) -> BTreeMap<String, Rows> {
    let mut tables: BTreeMap<String, Rows> = BTreeMap::new();
    for event in events {
        let op = event["op"].as_str().unwrap();
        if op == "ddl" {
            continue;
        }
        let table = format!(
            "{}.{}",
            event["schema"].as_str().unwrap(),
            event["table"].as_str().unwrap()
        );
        let keys: Vec<String> = event["primary_key"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        let key_of = |image: &Json| -> String {
            keys.iter()
                .map(|k| image[k].to_string())
                .collect::<Vec<_>>()
                .join("|")
        };
        let rows = tables.entry(table.clone()).or_default();
        match op {
            "insert" => {
                let after = &event["after"];
                let previous = rows.insert(key_of(after), after.as_object().unwrap().clone());
                assert!(
                    previous.is_none(),
                    "{table}: insert of an existing key {}",
                    key_of(after)
                );
            }
            "update" => {
                let before = &event["before"];
                assert!(
                    rows.remove(&key_of(before)).is_some(),
                    "{table}: update of a missing row"
                );
                rows.insert(
                    key_of(&event["after"]),
                    event["after"].as_object().unwrap().clone(),
                );
            }
            "delete" => {
                assert!(
                    rows.remove(&key_of(&event["before"])).is_some(),
                    "{table}: delete of a missing row"
                );
            }
            other => panic!("unexpected op {other}"),
        }
    }
    tables
}

/// Reads a table through the oracle: every column as the text MySQL itself renders, keyed the way
/// [`replay`] keys rows, and compares it with the replayed rows column by column.
pub async fn assert_table_matches(
    conn: &mut Conn,
    schema: &str,
    table: &str,
    replayed: &Rows,
) -> usize {
    let columns: Vec<(String, String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_KEY FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await
        .unwrap();
    let keys: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND \
             TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (schema, table),
        )
        .await
        .unwrap();
    let select: Vec<String> = columns
        .iter()
        .map(|(name, data_type, _)| oracle_expression(&format!("`{name}`"), data_type))
        .collect();
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT {} FROM `{schema}`.`{table}`",
            select.join(", ")
        ))
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        replayed.len(),
        "{schema}.{table}: the table has {} rows, the change stream reproduces {}",
        rows.len(),
        replayed.len()
    );
    let mut compared = 0;
    for row in rows {
        let texts: Vec<Option<String>> = (0..row.len())
            .map(|i| match row.as_ref(i).unwrap() {
                SqlValue::NULL => None,
                SqlValue::Bytes(b) => {
                    Some(String::from_utf8(b.clone()).expect("oracle text is utf-8"))
                }
                other => Some(other.as_sql(true).trim_matches('\'').to_string()),
            })
            .collect();
        let ours_key: Vec<&String> = keys.iter().collect();
        // Find the replayed row with the same key values (compared through the oracle too).
        let replayed_row = replayed
            .values()
            .find(|r| {
                ours_key.iter().all(|k| {
                    let i = columns.iter().position(|c| &c.0 == *k).unwrap();
                    value_matches(
                        &columns[i].1,
                        texts[i].as_deref(),
                        r.get(*k).unwrap_or(&Json::Null),
                    )
                    .is_ok()
                })
            })
            .unwrap_or_else(|| {
                panic!("{schema}.{table}: row {texts:?} is not in the change stream")
            });
        for (i, (name, data_type, _)) in columns.iter().enumerate() {
            let ours = replayed_row.get(name).unwrap_or_else(|| {
                panic!("{schema}.{table}: column {name} is missing from the replayed row")
            });
            if let Err(e) = value_matches(data_type, texts[i].as_deref(), ours) {
                panic!("{schema}.{table} row {texts:?}, column {name} ({data_type}): {e}");
            }
            compared += 1;
        }
    }
    compared
}

/// The SQL that renders a column as comparable text.
fn oracle_expression(column: &str, data_type: &str) -> String {
    match data_type {
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => format!("HEX({column})"),
        "bit" => format!("BIN({column})"),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            format!("CONVERT({column} USING utf8mb4)")
        }
        _ => format!("CAST({column} AS CHAR)"),
    }
}

/// Compares the oracle's text for a value with the native JSON encoding of the same value.
pub fn value_matches(data_type: &str, oracle: Option<&str>, ours: &Json) -> Result<(), String> {
    let Some(expected) = oracle else {
        return if ours.is_null() {
            Ok(())
        } else {
            Err(format!("expected NULL, got {ours}"))
        };
    };
    let mismatch = || Err(format!("expected `{expected}`, got {ours}"));
    let ok = match data_type {
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint" => json_text(ours) == expected,
        // YEAR 0 is displayed as 0000.
        "year" => json_text(ours) == expected || (expected == "0000" && ours == 0),
        "decimal" => ours.as_str() == Some(expected),
        "float" => ours.to_string().parse::<f32>().ok() == expected.parse::<f32>().ok(),
        "double" => ours.to_string().parse::<f64>().ok() == expected.parse::<f64>().ok(),
        "bit" => {
            ours.as_str()
                .map(|b| b.trim_start_matches('0'))
                .map(|b| if b.is_empty() { "0" } else { b })
                == Some(expected)
        }
        "date" | "time" => ours.as_str() == Some(expected),
        "datetime" => ours.as_str().map(|s| s.replacen('T', " ", 1)).as_deref() == Some(expected),
        "timestamp" => {
            ours.as_str()
                .and_then(|s| s.strip_suffix('Z'))
                .map(|s| s.replacen('T', " ", 1))
                .as_deref()
                == Some(expected)
        }
        "set" => {
            ours.as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or("?"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .as_deref()
                == Some(expected)
        }
        "json" => json_equal(
            &serde_json::from_str(expected).map_err(|e| e.to_string())?,
            ours,
        ),
        "longtext" if ours.is_object() || ours.is_array() => json_equal(
            &serde_json::from_str(expected).map_err(|e| e.to_string())?,
            ours,
        ),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" => {
            ours.as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(hex_upper)
                .as_deref()
                == Some(expected)
        }
        _ => ours.as_str() == Some(expected),
    };
    if ok {
        Ok(())
    } else {
        mismatch()
    }
}

/// JSON equality where numbers compare by value (MySQL and cdcd may spell a double differently)
/// but integers must be exact.
fn json_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            let (x, y) = (x.to_string(), y.to_string());
            x == y
                || (x.parse::<i128>().is_err() || y.parse::<i128>().is_err())
                    && x.parse::<f64>().ok() == y.parse::<f64>().ok()
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// A JSON value as its JSON text (numbers keep their exact digits).
fn json_text(value: &Json) -> String {
    value.to_string()
}

pub fn hex_upper(bytes: Vec<u8>) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// What [`cdcd_measured`] observed: the file holding stdout (read it as a stream; it can be far
/// larger than the process that wrote it), stderr, success and peak resident memory in MiB.
pub struct Measured {
    pub stdout: std::path::PathBuf,
    pub stderr: String,
    pub success: bool,
    pub peak_rss_mib: f64,
}

/// Runs `cdcd` and measures its peak resident memory from `VmHWM` in `/proc/<pid>/status`.
///
/// Not from `wait4`'s rusage: Linux seeds a child's `ru_maxrss` with the parent's high-water mark
/// when the child execs (the parent here is the test binary, which other tests make large), so
/// rusage reports the test's memory, not cdcd's. `VmHWM` belongs to the exec'd image alone and
/// only grows, so polling it misses at most the growth of the last poll interval.
pub fn cdcd_measured(args: &[&str]) -> Measured {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("cdcd-measured-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_cdcd"))
        .args(args)
        .env_remove("CDCD_SOURCE_PASSWORD")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run cdcd");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        // A zombie has no VmHWM line; the last reading before it is kept.
        if let Some(kib) = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait for cdcd") {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(peak_kib > 0, "never read VmHWM of cdcd");
    Measured {
        stdout: out_path,
        stderr: std::fs::read_to_string(&err_path).unwrap(),
        success: status.success(),
        peak_rss_mib: peak_kib as f64 / 1024.0,
    }
}

/// A TCP proxy to a server that, once, stops forwarding a connection in both directions after it
/// has carried `freeze_after` bytes from the server (without closing it): a silent connection, as
/// a dead NAT entry or a hung network leaves behind. Later connections are forwarded normally.
pub struct FreezingProxy {
    pub port: u16,
    pub frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FreezingProxy {
    pub fn start(upstream_port: u16, freeze_after: usize) -> FreezingProxy {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let flag = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    return;
                };
                let flag = flag.clone();
                // Only the first connection that carries enough data freezes.
                let pipe = |mut from: TcpStream,
                            mut to: TcpStream,
                            count: Option<Arc<AtomicBool>>| {
                    move || {
                        let mut carried = 0usize;
                        let mut buf = [0u8; 16384];
                        loop {
                            let Ok(n) = from.read(&mut buf) else { return };
                            if n == 0 {
                                let _ = to.shutdown(std::net::Shutdown::Write);
                                return;
                            }
                            carried += n;
                            if let Some(flag) = &count {
                                if carried > freeze_after && !flag.swap(true, Ordering::SeqCst) {
                                    // Hold both sockets open and forward nothing, for good.
                                    std::thread::sleep(std::time::Duration::from_secs(3600));
                                    return;
                                }
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(pipe(client, server, None));
                std::thread::spawn(pipe(s2, c2, Some(flag)));
            }
        });
        FreezingProxy { port, frozen }
    }
}
