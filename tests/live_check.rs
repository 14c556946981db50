//! `cdcd check` and `cdcd run`'s preflight against real servers, and `/metrics` scraped by a real
//! Prometheus server.
//!
//! Wrong server settings are made on a PRIVATE MariaDB (scripts/mariadb.sh, BASE=/tmp/cdcd-ops-
//! mariadb, 127.0.0.1:3420): other tests use the shared servers at the same time, so nothing here
//! sets a global variable on them. The MySQL-only items (gtid_mode, binlog_row_value_options) are
//! read from the shared MySQL and compared with what the server itself says, and changed on a
//! private MySQL 9.7 (scripts/mysql.sh, INSTANCE=fail-check, 127.0.0.1:3430). Outputs: a missing
//! bucket and a key without rights on SeaweedFS, a missing and an existing Kinesis stream on
//! kinesis-mock. Oracles: the server's own variables, the binlog file's modification time in the
//! private datadir, `SELECT COUNT(*)`, and Prometheus's own view of the scrape.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use serde_json::Value as Json;

use support::faults::PrivateMySql;
use support::Server;

/// The private MariaDB of these tests.
const PRIVATE_PORT: u16 = 3420;
const PRIVATE_BASE: &str = "/tmp/cdcd-ops-mariadb";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/services.sh start and source /tmp/cdcd-services.env")
    })
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A private MariaDB on 127.0.0.1:3420, stopped when dropped.
struct PrivateMariaDb;

impl PrivateMariaDb {
    /// Starts it on a fresh datadir, with `extra` server flags.
    fn reset(extra: &str) -> PrivateMariaDb {
        Self::script("reset", extra);
        PrivateMariaDb
    }

    /// Restarts it (same datadir) with `extra` server flags.
    fn restart(&self, extra: &str) {
        Self::script("stop", "");
        Self::script("start", extra);
    }

    fn script(command: &str, extra: &str) {
        let out = Command::new(repo().join("scripts/mariadb.sh"))
            .arg(command)
            .env("BASE", PRIVATE_BASE)
            .env("PORT", PRIVATE_PORT.to_string())
            .env("MARIADBD_EXTRA", extra)
            .output()
            .expect("run scripts/mariadb.sh");
        assert!(
            out.status.success(),
            "scripts/mariadb.sh {command} (MARIADBD_EXTRA={extra}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(user: &str) -> String {
        format!("mysql://{user}@127.0.0.1:{PRIVATE_PORT}")
    }

    async fn root(&self) -> Conn {
        Conn::new(Opts::from_url(&Self::url("root")).unwrap())
            .await
            .expect("connect to the private MariaDB as root")
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        Self::script("stop", "");
    }
}

/// A config for `cdcd check` / `cdcd run` with `source_url`, replica id `server_id`, a lake in a
/// fresh local directory (unless `extra` sets one) and `extra` TOML appended.
fn config(name: &str, source_url: &str, server_id: u32, extra: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cdcd-ops-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let lake = if extra.contains("[lake]") {
        String::new()
    } else {
        format!("[lake]\nurl = \"{}\"\n", dir.join("lake").display())
    };
    let text = format!(
        r#"
[source]
url = "{source_url}"
server_id = {server_id}
heartbeat_seconds = 1

[metrics]
listen = "127.0.0.1:{metrics}"

[checkpoint]
interval_seconds = 1
lease_seconds = 5

{lake}
{extra}
"#,
        metrics = metrics_port(server_id),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Replica ids 7550-7599 listen on 10600-10649, the private MySQL's 7702-7709 on 10712-10719.
fn metrics_port(server_id: u32) -> u32 {
    match server_id {
        7700..=7709 => 10_710 + server_id - 7700,
        _ => 10_600 + server_id - 7550,
    }
}

fn cdcd(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cdcd"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CDCD_LOG", "warn")
        .env_remove("CDCD_SOURCE_PASSWORD")
        .stdin(Stdio::null());
    command
}

/// `cdcd check`: its exit status and stdout lines.
fn check(config: &Path, env: &[(&str, &str)]) -> (bool, Vec<String>, String) {
    let out = cdcd(config, &["check"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.success(),
        stdout.lines().map(str::to_string).collect(),
        stderr,
    )
}

/// The line of `item`, which must have `status`.
fn line_of<'a>(lines: &'a [String], status: &str, item: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some(item.split_whitespace().next().unwrap()))
        .filter(|l| l.starts_with(status) && l.contains(item))
        .unwrap_or_else(|| panic!("no {status} line for {item} in:\n{}", lines.join("\n")))
}

/// `cdcd check` names `item` with FAIL (and its fix) and exits non-zero; `cdcd run` refuses with
/// the same line before writing anything.
fn fails(config: &Path, env: &[(&str, &str)], item: &str, needle: &str, injected: &str) {
    let lake = config.parent().unwrap().join("lake");
    let _ = std::fs::remove_dir_all(&lake);
    let (ok, lines, stderr) = check(config, env);
    assert!(
        !ok,
        "{injected}: cdcd check succeeded:\n{}",
        lines.join("\n")
    );
    let line = line_of(&lines, "FAIL", item);
    assert!(
        line.contains(needle),
        "{injected}: `{needle}` not in `{line}`"
    );
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cdcd: ") && last.contains(item),
        "{stderr}"
    );
    let run = cdcd(config, &["run", "--until-end"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let run_err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{injected}: cdcd run started");
    assert!(
        run_err.lines().any(|l| same_line(l, line)),
        "{injected}: cdcd run did not print `{line}`:\n{run_err}"
    );
    // The probe of the lake leaves its directories; no file may be there.
    let written = files(&lake);
    assert!(written.is_empty(), "{injected}: cdcd run wrote {written:?}");
    println!(
        "{injected} -> cdcd check: {line}; cdcd run refused with the same line, wrote nothing"
    );
}

/// Equal lines, but for the process id in the name of a lake probe object.
fn same_line(a: &str, b: &str) -> bool {
    let without_pid = |l: &str| {
        let mut out = String::new();
        let mut rest = l;
        while let Some(at) = rest.find("probe-") {
            out.push_str(&rest[..at + 6]);
            rest = rest[at + 6..].trim_start_matches(|c: char| c.is_ascii_digit());
        }
        out + rest
    };
    without_pid(a) == without_pid(b)
}

/// `cdcd check` names `item` with WARN and exits 0; `cdcd run --until-end` logs it and runs.
fn warns(config: &Path, env: &[(&str, &str)], item: &str, needle: &str, injected: &str) {
    let (ok, lines, stderr) = check(config, env);
    assert!(
        ok,
        "{injected}: cdcd check failed: {stderr}\n{}",
        lines.join("\n")
    );
    let line = line_of(&lines, "WARN", item);
    assert!(
        line.contains(needle),
        "{injected}: `{needle}` not in `{line}`"
    );
    let run = cdcd(config, &["run", "--until-end"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let run_err = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "{injected}: cdcd run refused: {run_err}"
    );
    assert!(
        run_err.contains("WARN") && run_err.contains(item),
        "{injected}: cdcd run did not log the warning: {run_err}"
    );
    println!("{injected} -> cdcd check: {line}; cdcd run logged it and ran");
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                files(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

async fn set_global(conn: &mut Conn, assignment: &str) {
    conn.query_drop(format!("SET GLOBAL {assignment}"))
        .await
        .unwrap_or_else(|e| panic!("SET GLOBAL {assignment}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_wrong_setting_and_run_refuses() {
    let server = PrivateMariaDb::reset("");
    let mut root = server.root().await;
    let repl = PrivateMariaDb::url("repl:replpw");
    let good = config("good", &repl, 7560, "");

    let (ok, lines, stderr) = check(&good, &[]);
    assert!(ok, "{stderr}\n{}", lines.join("\n"));
    for item in [
        "log_bin",
        "binlog_format",
        "binlog_row_image",
        "binlog_row_metadata",
        "binlog_checksum",
        "gtid_strict_mode",
        "log_bin_compress",
        "server_id",
        "privileges",
        "binlog retention",
        "lake",
    ] {
        line_of(&lines, "OK", item);
    }
    println!("a correctly set up MariaDB passes:\n{}", lines.join("\n"));

    // Settings that stop cdcd, one at a time, each put back afterwards.
    let failing = [
        (
            "binlog_format = 'STATEMENT'",
            "binlog_format = 'ROW'",
            "binlog_format",
            "set binlog_format=ROW",
        ),
        (
            "binlog_row_image = 'MINIMAL'",
            "binlog_row_image = 'FULL'",
            "binlog_row_image",
            "set binlog_row_image=FULL",
        ),
        (
            "log_bin_compress = ON",
            "log_bin_compress = OFF",
            "log_bin_compress",
            "set log_bin_compress=OFF",
        ),
        (
            "binlog_expire_logs_seconds = 600",
            "binlog_expire_logs_seconds = 259200",
            "binlog retention",
            "binlog_expire_logs_seconds = 259200",
        ),
    ];
    for (bad, fix, item, needle) in failing {
        set_global(&mut root, bad).await;
        fails(&good, &[], item, needle, &format!("SET GLOBAL {bad}"));
        set_global(&mut root, fix).await;
    }
    // Recommendations: reported, not fatal.
    let warning = [
        (
            "binlog_row_metadata = 'MINIMAL'",
            "binlog_row_metadata = 'FULL'",
            "binlog_row_metadata",
            "set binlog_row_metadata=FULL",
        ),
        (
            "binlog_checksum = 'NONE'",
            "binlog_checksum = 'CRC32'",
            "binlog_checksum",
            "set binlog_checksum=CRC32",
        ),
        (
            "gtid_strict_mode = OFF",
            "gtid_strict_mode = ON",
            "gtid_strict_mode",
            "set gtid_strict_mode=ON",
        ),
        (
            "binlog_expire_logs_seconds = 7200",
            "binlog_expire_logs_seconds = 259200",
            "binlog retention",
            "keep at least a day",
        ),
    ];
    for (bad, fix, item, needle) in warning {
        set_global(&mut root, bad).await;
        warns(&good, &[], item, needle, &format!("SET GLOBAL {bad}"));
        set_global(&mut root, fix).await;
    }

    // A user without REPLICATION SLAVE; cdcd's replica id equal to the server's own.
    root.query_drop(
        "CREATE USER cdcd_ops_noslave IDENTIFIED BY 'pw'; \
         GRANT BINLOG MONITOR, SELECT ON *.* TO cdcd_ops_noslave",
    )
    .await
    .unwrap();
    let noslave = config(
        "noslave",
        &PrivateMariaDb::url("cdcd_ops_noslave:pw"),
        7561,
        "",
    );
    fails(
        &noslave,
        &[],
        "privileges",
        "missing REPLICATION SLAVE",
        "a user with BINLOG MONITOR and SELECT only",
    );
    let same_id = config("same-id", &repl, 1, "");
    fails(
        &same_id,
        &[],
        "server_id",
        "change source.server_id",
        "source.server_id = 1, the server's own id",
    );
    warns(
        &good,
        &[("CDCD_SOURCE__TLS_MODE", "disabled")],
        "tls",
        "not encrypted",
        "source.tls_mode = disabled",
    );

    // Outputs: a bucket that does not exist, a key without rights, a missing Kinesis stream.
    let s3 = format!(
        "[lake.s3]\nendpoint = \"{}\"\nforce_path_style = true\nretry_seconds = 2\n",
        env("CDCD_TEST_S3_ENDPOINT")
    );
    let no_bucket = config(
        "no-bucket",
        &repl,
        7560,
        &format!("[lake]\nurl = \"s3://cdcd-ops-no-such-bucket/lake\"\n{s3}"),
    );
    fails(
        &no_bucket,
        &[],
        "lake",
        "NoSuchBucket",
        "lake.url in a bucket that does not exist",
    );
    let denied = config(
        "denied",
        &repl,
        7560,
        &format!(
            "[lake]\nurl = \"s3://{}/ops/check-denied\"\n{s3}",
            env("CDCD_TEST_S3_BUCKET")
        ),
    );
    let denied_env = [
        (
            "AWS_ACCESS_KEY_ID",
            env("CDCD_TEST_S3_DENIED_ACCESS_KEY_ID"),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            env("CDCD_TEST_S3_DENIED_SECRET_ACCESS_KEY"),
        ),
    ];
    let denied_env: Vec<(&str, &str)> = denied_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fails(
        &denied,
        &denied_env,
        "lake",
        "AccessDenied",
        "S3 credentials without rights on the bucket",
    );
    let stream = format!("cdcd-ops-check-{}", std::process::id());
    let kinesis = |stream: &str| {
        format!(
            "[kinesis]\nstream = \"{stream}\"\nendpoint = \"{}\"\nretry_seconds = 2\n",
            env("CDCD_TEST_KINESIS_ENDPOINT")
        )
    };
    let missing = config("no-stream", &repl, 7560, &kinesis(&stream));
    fails(
        &missing,
        &[],
        "kinesis",
        "create it",
        "kinesis.stream that does not exist",
    );
    kinesis_stream(&["create", &stream, "1"]);
    let (ok, lines, stderr) = check(&missing, &[]);
    kinesis_stream(&["delete", &stream]);
    assert!(ok, "{stderr}");
    let line = line_of(&lines, "OK", "kinesis");
    assert!(line.contains("ACTIVE with 1 open shards"), "{line}");
    println!("after creating the stream -> {line}");

    // Binlog off: the server restarted with --skip-log-bin.
    server.restart("--skip-log-bin");
    fails(
        &good,
        &[],
        "log_bin",
        "--log-bin",
        "the server restarted with --skip-log-bin",
    );
    server.restart("");

    retention_headroom_counts_down_from_the_file_time(&server, &repl).await;
    drop(root);
}

/// `cdcd_binlog_retention_headroom_seconds` for a checkpoint in a binlog file that has been
/// rotated: the retention period less the file's age, the age taken from the file's modification
/// time in the datadir (what the server's expiry itself looks at).
async fn retention_headroom_counts_down_from_the_file_time(server: &PrivateMariaDb, repl: &str) {
    let mut root = server.root().await;
    set_global(&mut root, "binlog_expire_logs_seconds = 7200").await;
    let (file, pos): (String, u64) = {
        let row: mysql_async::Row = root
            .query_first("SHOW MASTER STATUS")
            .await
            .unwrap()
            .unwrap();
        (row.get(0).unwrap(), row.get(1).unwrap())
    };
    root.query_drop("FLUSH BINARY LOGS").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let written = std::fs::metadata(Path::new(PRIVATE_BASE).join("data").join(&file))
        .unwrap()
        .modified()
        .unwrap();
    let config = config(
        "headroom",
        repl,
        7562,
        &format!("[run]\nstart = \"file:{file}:{pos}\"\n"),
    );
    let mut child = cdcd(&config, &["run"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metric = "cdcd_binlog_retention_headroom_seconds";
    let deadline = Instant::now() + Duration::from_secs(30);
    let headroom = loop {
        assert!(Instant::now() < deadline, "no {metric} within 30 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some(text) = scrape(10_612) else { continue };
        if let Some(value) = sample(&text, metric) {
            break value;
        }
    };
    let age = SystemTime::now()
        .duration_since(written)
        .unwrap()
        .as_secs_f64();
    read_counters_match_the_binlog(&mut root).await;
    stop(&mut child);
    let expected = 7200.0 - age;
    assert!(
        (headroom - expected).abs() <= 3.0,
        "{metric} = {headroom}, expected 7200 s less the age of {file} ({age:.1} s) = {expected:.0}"
    );
    println!(
        "checkpoint in {file} (rotated {age:.1} s ago), binlog_expire_logs_seconds = 7200 -> \
         {metric} = {headroom} (expected {expected:.1})"
    );
    set_global(&mut root, "binlog_expire_logs_seconds = 259200").await;
}

/// While the headroom scenario's `cdcd run` (metrics on 10612) follows the private server from a
/// rotated file: rows, row events and binlog bytes as the server's own binlog tells them (SHOW
/// BINLOG EVENTS, SHOW MASTER STATUS).
async fn read_counters_match_the_binlog(root: &mut Conn) {
    root.query_drop(
        "CREATE TABLE cdc.ops_counted (id INT PRIMARY KEY); \
         INSERT INTO cdc.ops_counted VALUES (1), (2), (3); \
         INSERT INTO cdc.ops_counted VALUES (4)",
    )
    .await
    .unwrap();
    let row: mysql_async::Row = root
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .unwrap();
    let (file, end): (String, u64) = (row.get(0).unwrap(), row.get(1).unwrap());
    let types: Vec<String> = root
        .query_map(
            format!("SHOW BINLOG EVENTS IN '{file}'"),
            |row: mysql_async::Row| row.get::<String, _>(2).unwrap(),
        )
        .await
        .unwrap();
    let rows_events = types.iter().filter(|t| t.starts_with("Write_rows")).count();
    let expected = [
        (
            r#"cdcd_rows_total{op="insert",table="cdc.ops_counted"}"#,
            4.0,
        ),
        (
            r#"cdcd_events_total{op="insert",table="cdc.ops_counted"}"#,
            rows_events as f64,
        ),
        // cdcd started in an earlier file, which ends after its last transaction (a ROTATE):
        // all of `file` up to its end counts, less its 4-byte magic number.
        ("cdcd_binlog_bytes_read_total", end as f64 - 4.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = scrape(10_612).unwrap_or_default();
        let got: Vec<Option<f64>> = expected
            .iter()
            .map(|(name, _)| sample(&text, name))
            .collect();
        if expected
            .iter()
            .zip(&got)
            .all(|((_, want), got)| *got == Some(*want))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected {expected:?}, /metrics says {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!(
        "3 + 1 rows inserted in 2 statements -> cdcd_rows_total 4, cdcd_events_total \
         {rows_events} (Write_rows events in SHOW BINLOG EVENTS), cdcd_binlog_bytes_read_total \
         {} (SHOW MASTER STATUS: {file} at {end}, less the 4-byte magic)",
        end - 4
    );
}

/// The MySQL-only items, read from the shared MySQL: gtid_mode and binlog_row_value_options as
/// the server reports them, and a user without replication rights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_mysql_gtid_mode_and_row_value_options() {
    let mysql = Server::from_env("MYSQL");
    let mut root = mysql.conn().await;
    let gtid_mode: String = root
        .query_first("SELECT @@GLOBAL.gtid_mode")
        .await
        .unwrap()
        .unwrap();
    let value_options: String = root
        .query_first("SELECT @@GLOBAL.binlog_row_value_options")
        .await
        .unwrap()
        .unwrap();
    let repl = config("mysql", &mysql.repl_url, 7563, "");
    let (ok, lines, stderr) = check(&repl, &[]);
    assert!(ok, "{stderr}\n{}", lines.join("\n"));
    let status = if gtid_mode == "ON" { "OK" } else { "WARN" };
    let line = line_of(&lines, status, "gtid_mode");
    assert!(line.contains(&gtid_mode), "{line}");
    let options_line = line_of(&lines, "OK", "binlog_row_value_options");
    if !value_options.is_empty() {
        assert!(options_line.contains(&value_options), "{options_line}");
    }
    line_of(&lines, "OK", "privileges");
    let expire: u64 = root
        .query_first("SELECT @@GLOBAL.binlog_expire_logs_seconds")
        .await
        .unwrap()
        .unwrap();
    let retention = line_of(&lines, "OK", "binlog retention");
    assert!(
        retention.contains(&format!("{} hours", expire / 3600)),
        "binlog_expire_logs_seconds = {expire}: {retention}"
    );
    println!("MySQL says binlog_expire_logs_seconds = {expire} -> `{retention}`");
    println!(
        "MySQL says gtid_mode = {gtid_mode}, binlog_row_value_options = '{value_options}' -> \
         `{line}`, `{options_line}`"
    );
    let norepl = config("mysql-norepl", &mysql.norepl_url, 7564, "");
    fails(
        &norepl,
        &[],
        "privileges",
        "missing REPLICATION SLAVE, REPLICATION CLIENT",
        "MySQL user with SELECT only",
    );
}

/// The MySQL-only settings changed on a private MySQL 9.7: `binlog_row_value_options=PARTIAL_JSON`
/// is OK and named (cdcd applies the diffs to the before image); `gtid_mode` stepped down from ON
/// to OFF (one step at a time, as MySQL requires) is a WARN naming each mode, `cdcd check` exits
/// 0 and `cdcd run` logs it and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_mysql_gtid_mode_and_row_value_options_as_changed() {
    let server = PrivateMySql::start("fail-check", 3430, 1);
    let mut root = server.conn().await;
    let config = config("mysql-private", &server.repl_url(), 7702, "");
    let (ok, lines, stderr) = check(&config, &[]);
    assert!(ok, "{stderr}\n{}", lines.join("\n"));
    let gtid_line = line_of(&lines, "OK", "gtid_mode");
    let options_line = line_of(&lines, "OK", "binlog_row_value_options");
    assert!(options_line.contains("''"), "{options_line}");
    println!("fresh private MySQL -> `{gtid_line}`, `{options_line}`");

    set_global(&mut root, "binlog_row_value_options = 'PARTIAL_JSON'").await;
    let said: String = root
        .query_first("SELECT @@GLOBAL.binlog_row_value_options")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(said, "PARTIAL_JSON");
    let (ok, lines, stderr) = check(&config, &[]);
    assert!(ok, "{stderr}\n{}", lines.join("\n"));
    let options_line = line_of(&lines, "OK", "binlog_row_value_options");
    assert!(
        options_line.contains("PARTIAL_JSON") && options_line.contains("before image"),
        "{options_line}"
    );
    println!(
        "injected: SET GLOBAL binlog_row_value_options = 'PARTIAL_JSON' (the server says {said}) \
         -> cdcd check exits 0: `{options_line}`"
    );

    for mode in ["ON_PERMISSIVE", "OFF_PERMISSIVE", "OFF"] {
        set_global(&mut root, &format!("gtid_mode = '{mode}'")).await;
        let said: String = root
            .query_first("SELECT @@GLOBAL.gtid_mode")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(said, mode);
        warns(
            &config,
            &[],
            "gtid_mode",
            &format!("{mode}: positions are file offsets only"),
            &format!("SET GLOBAL gtid_mode = '{mode}' (the server says {said})"),
        );
    }
}

/// A real Prometheus server scrapes a running `cdcd run`: the target is up, the lag metric is
/// there and 0 once cdcd has caught up with an idle source, and the rows counted match the
/// table; the scrape passes `promtool check metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_cdcd_run() {
    let mariadb = Server::from_env("MARIADB");
    let mut conn = mariadb.conn().await;
    let db = "cdcd_ops_prometheus";
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; \
         CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))"
    ))
    .await
    .unwrap();
    let server_id = 7570;
    let metrics_port = 10_620;
    let config = config("prometheus", &mariadb.repl_url, server_id, "");
    let mut cdcd_run = cdcd(&config, &["run"])
        .env("CDCD_SOURCE__TABLES", format!("{db}.*"))
        // A transaction of more rows than this is written in parts: a large transaction.
        .env("CDCD_LAKE__MAX_ROWS", "20")
        .spawn()
        .unwrap();
    // run.start = "end": the rows go in once cdcd follows the source.
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(metrics_port, "/readyz").is_none() {
        assert!(Instant::now() < deadline, "cdcd run not ready within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = config.parent().unwrap().to_path_buf();
    let prometheus_config = dir.join("prometheus.yml");
    std::fs::write(
        &prometheus_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cdcd\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", prometheus_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg("--web.listen-address=127.0.0.1:9490")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("start prometheus (Debian package prometheus, installed by scripts/bootstrap.sh)");

    for id in 1..=50 {
        conn.query_drop(format!("INSERT INTO {db}.t VALUES ({id}, 'v{id}')"))
            .await
            .unwrap();
    }
    // One transaction of 30 rows, over lake.max_rows = 20.
    let values: Vec<String> = (51..=80).map(|id| format!("({id}, 'v{id}')")).collect();
    conn.query_drop(format!("INSERT INTO {db}.t VALUES {}", values.join(", ")))
        .await
        .unwrap();
    let rows: u64 = conn
        .query_first(format!("SELECT COUNT(*) FROM {db}.t"))
        .await
        .unwrap()
        .unwrap();
    let up = wait_for(r#"up{job="cdcd"}"#, |v| v == "1");
    let counted = wait_for(
        &format!(r#"cdcd_rows_total{{job="cdcd",table="{db}.t",op="insert"}}"#),
        |v| v == rows.to_string(),
    );
    // Caught up and idle: heartbeats every second bring the lag to 0 and keep it there.
    let lag = wait_for(r#"cdcd_replication_lag_seconds{job="cdcd"}"#, |v| v == "0");
    let large = wait_for(r#"cdcd_large_transactions_total{job="cdcd"}"#, |v| v == "1");
    let headroom = wait_for(
        r#"cdcd_binlog_retention_headroom_seconds{job="cdcd"}"#,
        |v| !v.is_empty(),
    );
    let text = scrape(metrics_port).expect("scrape cdcd run");
    promtool_check_metrics(&text);
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    stop(&mut cdcd_run);
    conn.query_drop(format!("DROP DATABASE {db}"))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "Prometheus scraped cdcd run: up = {up}, cdcd_rows_total (insert) = {counted} = \
         SELECT COUNT(*) ({rows}), large transactions = {large} (one of 30 rows, max_rows 20), \
         lag once idle = {lag} s, retention headroom = {headroom}; \
         promtool check metrics passes on the live scrape"
    );
}

/// Asks the Prometheus on 9490 for `query` until its (single) value satisfies `done`; returns it.
fn wait_for(query: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Json::Null;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let Some(body) = http_get(9490, &format!("/api/v1/query?query={}", percent(query))) else {
            continue;
        };
        last = serde_json::from_str(&body).unwrap_or(Json::Null);
        if let Some(value) = last["data"]["result"][0]["value"][1].as_str() {
            if done(value) {
                return value.to_string();
            }
        }
    }
    panic!("Prometheus: {query} did not reach the expected value in 60 s; last answer: {last}");
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// GET `path` on 127.0.0.1:`port`: the body of a 200 answer, `None` otherwise.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.to_string())
}

fn scrape(port: u16) -> Option<String> {
    http_get(port, "/metrics")
}

/// The value of an unlabelled sample.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// SIGTERM, then waits; cdcd exits 0 on SIGTERM.
fn stop(child: &mut Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "cdcd run exited with {status} on SIGTERM");
}

fn promtool_check_metrics(text: &str) {
    let promtool = Path::new(&env("CDCD_TEST_TOOLS_BIN")).join("promtool");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", promtool.display()));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out: Output = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// tests/support/kinesis_stream.py with the test venv's Python (boto3).
fn kinesis_stream(args: &[&str]) {
    let out = Command::new(env("CDCD_TEST_DUCKDB_PYTHON"))
        .arg(repo().join("tests/support/kinesis_stream.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kinesis_stream.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
