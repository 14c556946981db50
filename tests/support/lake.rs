//! Helpers of the lake tests (`cdcd run`, `cdcd sink`): where a test's lake lives, the configs
//! and commands, DuckDB queries over the lake, the `_latest` view `cdcd athena-ddl` prints, and the
//! oracle comparison of its rows with the source tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::Value as Json;

use super::{Rows, Server};

pub const MASKING_KEY: &str = "test-masking-key";

/// Where a test's lake lives.
pub struct Lake {
    pub url: String,
    pub name: String,
    /// The S3 endpoint of a private SeaweedFS (`None`: the shared one, or a directory).
    pub s3_endpoint: Option<String>,
    /// `lake.text_encoding`: directory lakes are written `plain`, S3 lakes with the default
    /// (`delta-length`), so that the oracle comparisons cover both.
    pub text_encoding: &'static str,
}

impl Lake {
    pub fn s3(server: &Server) -> Lake {
        let bucket = env("CDCD_TEST_S3_BUCKET");
        let name = format!("{}-{}", server.name.to_lowercase(), std::process::id());
        Lake {
            url: format!("s3://{bucket}/{name}"),
            name,
            s3_endpoint: None,
            text_encoding: "delta-length",
        }
    }

    /// The lake at `url`, on the S3 endpoint given (a private SeaweedFS) or the shared one.
    pub fn at(url: &str, s3_endpoint: Option<&str>) -> Lake {
        let name: String = url
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Lake {
            url: url.to_string(),
            name,
            s3_endpoint: s3_endpoint.map(str::to_string),
            text_encoding: "delta-length",
        }
    }

    pub fn directory(server: &Server) -> Lake {
        let name = format!("{}-{}", server.name.to_lowercase(), std::process::id());
        let dir = std::env::temp_dir().join(format!("cdcd-lake-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        Lake {
            url: dir.display().to_string(),
            name,
            s3_endpoint: None,
            text_encoding: "plain",
        }
    }

    /// A sub-lake for one scenario.
    pub fn child(&self, scenario: &str) -> Lake {
        Lake {
            url: format!("{}/{scenario}", self.url),
            name: format!("{}-{scenario}", self.name),
            s3_endpoint: self.s3_endpoint.clone(),
            text_encoding: self.text_encoding,
        }
    }

    /// The checkpoint as the JSON cdcd wrote (with the default location inside the lake).
    pub fn checkpoint(&self, server_id: u32) -> Json {
        let sql = format!(
            "SELECT content FROM read_text('{}/_cdcd/checkpoint-{server_id}.json')",
            self.url
        );
        let rows = query(self, &sql);
        serde_json::from_str(rows[0]["content"].as_str().unwrap()).unwrap()
    }
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/services.sh start and source /tmp/cdcd-services.env")
    })
}

/// Writes a config for `cdcd run` over the tables of `db`, into `lake`.
pub fn config(
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
text_encoding = "{text_encoding}"
flush_seconds = 0.5
max_rows = 1000

[lake.s3]
endpoint = "{endpoint}"
force_path_style = true
retry_seconds = 30
# S3's smallest part: objects above it (the 12 MiB row below) go up as multipart uploads.
multipart_bytes = 5242880

{masking}
{extra}
"#,
        url = server.repl_url,
        lake = lake.url,
        text_encoding = lake.text_encoding,
        endpoint = std::env::var("CDCD_TEST_S3_ENDPOINT").unwrap_or_default(),
        metrics = metrics_listen(server_id),
        masking = masking_rules(db),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Each test's `cdcd run` serves its metrics on a port of its own.
pub fn metrics_listen(server_id: u32) -> String {
    format!("127.0.0.1:{}", 10_000 + server_id)
}

/// GET `path` from a `cdcd run`'s metrics endpoint: status line and body.
pub fn http_get(server_id: u32, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(metrics_listen(server_id)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: cdcd\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

pub fn cdcd_command(config: &Path, args: &[&str]) -> Command {
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
pub fn run_until_end(config: &Path) {
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
pub fn query(lake: &Lake, sql: &str) -> Vec<Json> {
    try_query(lake, sql).unwrap_or_else(|e| panic!("lake_query.py {} {sql}: {e}", lake.url))
}

/// Runs SQL over the lake in DuckDB: the last statement's rows, or DuckDB's error.
pub fn try_query(lake: &Lake, sql: &str) -> Result<Vec<Json>, String> {
    let file = std::env::temp_dir().join(format!("cdcd-query-{}.sql", lake.name));
    std::fs::write(&file, sql).unwrap();
    let mut command = support_python_command("lake_query.py");
    command.arg(&lake.url).arg(&file);
    if let Some(endpoint) = &lake.s3_endpoint {
        command.env("CDCD_TEST_S3_ENDPOINT", endpoint);
    }
    json_lines(command)
}

/// How often each `_cdc_event_id` occurs in the lake's objects of each of `db`'s `tables`
/// (a table without objects has none). One scan of every object under `<lake>/<db>/`.
pub fn event_id_counts(
    lake: &Lake,
    db: &str,
    tables: &[&str],
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = tables
        .iter()
        .map(|t| (t.to_string(), BTreeMap::new()))
        .collect();
    let sql = format!(
        "SELECT regexp_extract(filename, '/{db}/([^/]+)/', 1) AS t, _cdc_event_id AS id, \
         count(*) AS n FROM read_parquet('{}/{db}/*/*/*/*/*/*.parquet', union_by_name = true, \
         filename = true) GROUP BY 1, 2",
        lake.url.trim_end_matches('/')
    );
    // A SeaweedFS just restarted (the fault tests) answers 500 until its volumes are back.
    let mut attempts = 0;
    let rows = loop {
        match try_query(lake, &sql) {
            Ok(rows) => break rows,
            // Nothing written yet.
            Err(e) if e.contains("No files found") => return counts,
            Err(e) if e.contains("HTTP 5") && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(e) => panic!("lake_query.py {}: {e}", lake.url),
        }
    };
    for row in rows {
        if let Some(table) = counts.get_mut(row["t"].as_str().unwrap()) {
            table.insert(
                row["id"].as_str().unwrap().to_string(),
                row["n"].as_u64().unwrap() as usize,
            );
        }
    }
    counts
}

/// Runs a helper of `tests/support` with the stand-ins' Python (boto3, DuckDB); its JSON lines.
pub fn support_python(script: &str, args: &[&str]) -> Vec<Json> {
    let mut command = support_python_command(script);
    command.args(args);
    json_lines(command).unwrap_or_else(|e| panic!("{script} {args:?}: {e}"))
}

fn support_python_command(script: &str) -> Command {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/support")
        .join(script);
    let mut command = Command::new(env("CDCD_TEST_DUCKDB_PYTHON"));
    command.arg(path);
    command
}

/// The command's stdout as JSON lines, or its stderr when it fails.
fn json_lines(mut command: Command) -> Result<Vec<Json>, String> {
    let out = command.output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect())
}

/// The `CREATE OR REPLACE VIEW … _latest` statement `cdcd athena-ddl` prints for `table`.
pub fn latest_view(config: &Path, lake: &Lake, db: &str, table: &str) -> String {
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
pub fn check_athena_grammar(ddl: &str, location: &str) {
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
pub async fn latest_rows(
    conn: &mut Conn,
    config: &Path,
    lake: &Lake,
    db: &str,
    table: &str,
) -> Rows {
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
pub fn to_native(data_type: &str, precision: u64, value: &Json) -> Json {
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
            let bits: u64 = match value {
                // BIT(64) from DMS records, whose type for it is BYTES(8): the bits, big-endian.
                Json::Object(binary) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(binary["base64"].as_str().unwrap())
                        .unwrap();
                    bytes.iter().fold(0, |acc, b| acc << 8 | u64::from(*b))
                }
                _ => text().parse().unwrap(),
            };
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

/// Asserts that the lake holds every row change of `changes` (`cdcd tail` records of the
/// types-and-users workload's tables) exactly once, by event id; returns how many there are.
pub fn assert_each_change_once(changes: &[Json], lake: &Lake, db: &str) -> usize {
    let expected = changes.iter().filter(|e| e["op"] != "ddl").count();
    let stored = query(
        lake,
        &format!(
            "SELECT count(*) AS n, count(DISTINCT _cdc_event_id) AS ids FROM \
             (SELECT _cdc_event_id FROM \"cdcd\".\"{db}_all_types\" UNION ALL \
              SELECT _cdc_event_id FROM \"cdcd\".\"{db}_users\")"
        ),
    );
    assert_eq!(stored[0]["n"], expected, "rows in the lake");
    assert_eq!(stored[0]["ids"], expected, "distinct event ids in the lake");
    expected
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// The lake tests' workload in the current database: every column type (the binlog tests'
/// table) with updates, deletes and an ALTER TABLE, and a users table full of personal data to
/// mask.
pub async fn types_and_users_workload(server: &Server, conn: &mut Conn) {
    conn.query_drop(super::all_types_ddl(server)).await.unwrap();
    conn.query_drop(super::extremes_row(server)).await.unwrap();
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
}

/// A start position that knows the GTID state, so that checkpoints carry GTIDs.
pub async fn gtid_start(server: &Server, conn: &mut Conn) -> String {
    format!("gtid:{}", server_gtids(server, conn).await)
}

/// The server's GTID state: what a checkpoint at the end of the binlog must hold.
pub async fn server_gtids(server: &Server, conn: &mut Conn) -> String {
    let query = if server.mariadb {
        "SELECT @@gtid_binlog_pos"
    } else {
        "SELECT REPLACE(@@gtid_executed, '\\n', '')"
    };
    conn.query_first(query).await.unwrap().unwrap()
}

/// `cdcd run --until-end`, then the checkpoint it left: it must hold every transaction the server
/// had committed when the run started, and nothing the server does not have. Other tests write to
/// the same server meanwhile, so equality with the server's state would be a race.
pub async fn run_until_end_caught_up(
    server: &Server,
    conn: &mut Conn,
    config: &Path,
    lake: &Lake,
    server_id: u32,
) -> Json {
    let before = server_gtids(server, conn).await;
    run_until_end(config);
    let after = server_gtids(server, conn).await;
    let checkpoint = lake.checkpoint(server_id);
    let stored = checkpoint["gtids"].as_str().unwrap_or_default().to_string();
    assert!(
        gtids_within(server, conn, &before, &stored).await
            && gtids_within(server, conn, &stored, &after).await,
        "checkpoint GTIDs {stored}: not between the server's state before the run ({before}) \
         and after it ({after})"
    );
    checkpoint
}

/// Whether GTID state `a` is contained in `b`: MySQL's `GTID_SUBSET`; for MariaDB's GTID lists
/// (one position per domain), every domain of `a` is in `b` at the same or a later seq_no.
async fn gtids_within(server: &Server, conn: &mut Conn, a: &str, b: &str) -> bool {
    if !server.mariadb {
        let subset: i64 = conn
            .exec_first("SELECT GTID_SUBSET(?, ?)", (a, b))
            .await
            .unwrap()
            .unwrap();
        return subset == 1;
    }
    let seq_nos = |list: &str| -> BTreeMap<u64, u64> {
        list.split(',')
            .filter(|g| !g.is_empty())
            .map(|g| {
                let parts: Vec<u64> = g.trim().split('-').map(|n| n.parse().unwrap()).collect();
                (parts[0], parts[2])
            })
            .collect()
    };
    let b = seq_nos(b);
    seq_nos(a)
        .iter()
        .all(|(domain, seq_no)| b.get(domain).is_some_and(|&later| later >= *seq_no))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn promtool_check_metrics(text: &str) {
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

pub fn kinesis_stream(args: &[&str]) -> Vec<Json> {
    support_python("kinesis_stream.py", args)
}

/// Signals for the restart test, without a libc dependency: `kill` from procps.
pub mod libc_kill {
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

/// The masking rules of the lake tests: every action on `db.users`, and the PII detectors on
/// its free-text column.
pub fn masking_rules(db: &str) -> String {
    format!(
        r#"
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
"#
    )
}

/// The users table's latest rows in the lake hold what the masking rules make of the source's
/// values (recomputed here), the unmasked columns exactly, and no PII in the change history.
pub async fn assert_users_masked(
    server: &Server,
    conn: &mut Conn,
    config: &Path,
    lake: &Lake,
    db: &str,
) {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    // Masked columns hold what the rules make of the source values; the rest is exact.
    let source: Vec<(i32, String, String, String, String, String, String)> = conn
        .query("SELECT id, name, email, phone, ssn, card, note FROM users ORDER BY id")
        .await
        .unwrap();
    let view = latest_view(config, lake, db, "users");
    let masked = query(
        lake,
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
        lake,
        &format!("SELECT email, ssn FROM \"cdcd\".\"{db}_users\""),
    );
    assert!(history
        .iter()
        .all(|r| r["ssn"] == "*****" && !r["email"].as_str().unwrap().contains('@')));
    println!(
        "{}: masked columns hold hmac/partial/redact/sha256 of the source, address dropped, PII in notes found",
        server.name
    );
}
