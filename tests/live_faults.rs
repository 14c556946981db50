//! `cdcd run` under faults: nothing lost, nothing duplicated in the lake, and the process keeps
//! going through every fault it can outlast.
//!
//! - 20 `kill -9` at random moments (seeded, seed printed) of a randomized workload: every column
//!   type, small and large transactions (larger than `lake.max_rows`), ALTER TABLE in between;
//!   after each restart and catch-up the lake holds every change exactly once; at the end the
//!   `_latest` views equal the tables, and Kinesis holds every change, duplicates only as
//!   identical records with the same event id (sent, not yet acknowledged, when killed).
//! - The source server restarted, and the replication connection cut mid-transaction by a proxy
//!   of our own; then a failover behind the same endpoint to a replica that has the GTIDs
//!   (continues), and back to a server that lacks them (stops, naming both servers and the
//!   missing GTIDs); binlogs purged past the checkpoint while cdcd is stopped (it refuses to
//!   start, naming them). Private MariaDB instances; the lag returns to 0. The cut also on MySQL
//!   (GTID event ids), through the proxy in front of the shared server. The failover also on
//!   MySQL 9.7 (private instances from `scripts/mysql.sh`): told apart by server_uuid, the error
//!   names the missing GTID set.
//! - S3 (a private SeaweedFS) killed for 30 s and started again, and Kinesis throttling and 5xx
//!   (a private fault proxy in front of kinesis-mock): cdcd stalls, retries, recovers, and
//!   `/metrics` counts it.
//!
//! Oracles: `cdcd tail` over the same binlog range for the set of event ids that must be in the
//! lake, the source tables themselves (`SELECT`) for the `_latest` views, the servers' GTID state.
//! Ports: proxies 10500-10549, metrics 10550-10599, replica server ids 7500-7549; the MySQL
//! failover: servers 3430-3431, proxy 10700, metrics 10710-10719, replica server ids 7700-7709.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::Value as Json;

use support::faults::{KinesisFaults, PrivateMariaDb, PrivateMySql, PrivateS3, Rng, TcpProxy};
use support::lake::{cdcd_command, event_id_counts, latest_rows, walk, Lake};
use support::Server;

/// One `cdcd run` configuration of a scenario.
struct Pipeline {
    name: String,
    config: PathBuf,
    server_id: u32,
    lake: String,
    s3_endpoint: Option<String>,
}

impl Pipeline {
    /// A config following `source` over `db.*` from `start` into `lake` (`s3_endpoint` for an
    /// `s3://` lake) and, with `kinesis` (stream, endpoint), onto Kinesis as native records.
    fn new(
        name: &str,
        (source, db, start): (&str, &str, &str),
        server_id: u32,
        lake: &str,
        s3_endpoint: Option<&str>,
        kinesis: Option<(&str, &str)>,
    ) -> Pipeline {
        let config = std::env::temp_dir().join(format!("cdcd-faults-{name}.toml"));
        let endpoint = s3_endpoint
            .map(str::to_string)
            .unwrap_or_else(|| std::env::var("CDCD_TEST_S3_ENDPOINT").unwrap_or_default());
        let kinesis = kinesis.map_or(String::new(), |(stream, endpoint)| {
            format!("[kinesis]\nstream = \"{stream}\"\nendpoint = \"{endpoint}\"\n")
        });
        std::fs::write(
            &config,
            format!(
                r#"
[source]
url = "{source}"
tables = "{db}.*"
server_id = {server_id}
heartbeat_seconds = 1

[run]
start = "{start}"
kinesis_format = "native"

[metrics]
listen = "127.0.0.1:{metrics}"

[checkpoint]
interval_seconds = 1

[lake]
url = "{lake}"
flush_seconds = 0.5
max_rows = 300

[lake.s3]
endpoint = "{endpoint}"
force_path_style = true

# Keys spread over the shards, so that catching up is not one record per request.
[dms]
partition_key_type = "primary-key"

{kinesis}
"#,
                metrics = metrics_port(server_id),
            ),
        )
        .unwrap();
        Pipeline {
            name: name.to_string(),
            config,
            server_id,
            lake: lake.to_string(),
            s3_endpoint: s3_endpoint.map(str::to_string),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = cdcd_command(&self.config, args);
        command.stdin(Stdio::null());
        command
    }

    /// `cdcd run` in the background, its log in a file ([`Pipeline::log`]).
    fn spawn(&self) -> Running {
        let log = std::fs::File::create(self.log_path()).unwrap();
        Running(
            self.command(&["run"])
                .env("CDCD_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn log_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("cdcd-faults-{}.log", self.name))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `cdcd run --until-end`: a restart that catches up and stops (within 3 minutes).
    fn catch_up(&self) {
        let log = self.log_path().with_extension("catch-up.log");
        let mut child = self
            .command(&["run", "--until-end"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cdcd run --until-end did not catch up within 180 s: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "cdcd run --until-end: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    fn lake(&self) -> Lake {
        Lake::at(&self.lake, self.s3_endpoint.as_deref())
    }

    /// The `/metrics` text of the running `cdcd run`.
    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", metrics_port(self.server_id))).unwrap();
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: cdcd\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split_once("\r\n\r\n").unwrap().1.to_string()
    }
}

/// A `cdcd run` that is killed when the test ends, also when it fails (it would otherwise
/// reconnect forever to a proxy that is gone).
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metrics_port(server_id: u32) -> u16 {
    // Server ids 7500-7549 map to metrics ports 10550-10599, 7700-7709 to 10710-10719.
    let port = match server_id {
        7700..=7709 => 10_710 + server_id - 7700,
        _ => 10_550 + server_id - 7500,
    };
    port as u16
}

/// A sample's value in a metrics text (`name` with its labels as rendered), 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `done` every 300 ms until it holds; panics with `what` after `limit`.
async fn wait_until<F: FnMut() -> bool>(what: &str, limit: Duration, mut done: F) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The event ids of the row changes of `db`'s `tables` that `cdcd tail` reads from `source`
/// after `start`, by table: what the lake must hold, each once. The tail registers as replica
/// `server_id` (7540-7549: one per test, as they run at the same time).
fn expected_ids(
    (source, start, db): (&str, &str, &str),
    tables: &[&str],
    server_id: u32,
) -> BTreeMap<String, BTreeSet<String>> {
    let filter: Vec<String> = tables.iter().map(|t| format!("{db}.{t}")).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_cdcd"))
        .args(["tail", "--until-end", "--source", source, "--from", start])
        .args(["--tables", &filter.join(",")])
        .env("CDCD_SOURCE__SERVER_ID", server_id.to_string())
        .env_remove("CDCD_SOURCE_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cdcd tail from {start}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ids: BTreeMap<String, BTreeSet<String>> = tables
        .iter()
        .map(|t| (t.to_string(), BTreeSet::new()))
        .collect();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let event: Json = serde_json::from_str(line).unwrap();
        if event["op"] != "ddl" {
            ids.get_mut(event["table"].as_str().unwrap())
                .unwrap()
                .insert(event["event_id"].as_str().unwrap().to_string());
        }
    }
    ids
}

/// Compares the lake's event ids of `db`'s `tables` with what `cdcd tail` (as replica
/// `tail_id`) reads from `source` after `start`: (missing, duplicated, extra) per table, and the
/// number of changes.
fn compare_ids(
    lake: &Lake,
    range: (&str, &str, &str),
    tables: &[&str],
    tail_id: u32,
) -> (BTreeMap<String, (usize, usize, usize)>, usize) {
    let stored = event_id_counts(lake, range.2, tables);
    let mut changes = 0;
    let mut found = BTreeMap::new();
    for (table, expected) in expected_ids(range, tables, tail_id) {
        let stored = &stored[&table];
        let missing = expected
            .iter()
            .filter(|id| !stored.contains_key(*id))
            .count();
        let duplicated = stored.values().filter(|&&n| n > 1).count();
        let extra = stored.keys().filter(|id| !expected.contains(*id)).count();
        changes += expected.len();
        found.insert(table, (missing, duplicated, extra));
    }
    (found, changes)
}

/// Whether the lake holds exactly the changes `cdcd tail` reads (each once).
fn exactly_once(lake: &Lake, range: (&str, &str, &str), tables: &[&str], tail_id: u32) -> bool {
    compare_ids(lake, range, tables, tail_id)
        .0
        .values()
        .all(|found| *found == (0, 0, 0))
}

async fn gtid_pos(conn: &mut Conn, mariadb: bool) -> String {
    let query = if mariadb {
        "SELECT @@gtid_binlog_pos"
    } else {
        "SELECT REPLACE(@@gtid_executed, '\\n', '')"
    };
    conn.query_first(query).await.unwrap().unwrap()
}

fn kill(child: &mut Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
    let _ = child.wait();
}

// ------------------------------------------------------------------------------------------
// 20 × kill -9

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_twenty_times_loses_and_duplicates_nothing() {
    let server = Server::from_env("MARIADB");
    let mut rng = Rng::from_env("kill -9");
    let db = "cdcd_faults_kill";
    let mut conn = server.conn().await;
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET utf8mb4; USE {db};
         CREATE TABLE digits (n INT PRIMARY KEY);
         INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);
         CREATE TABLE churn (id BIGINT PRIMARY KEY, v VARCHAR(40), n BIGINT)"
    ))
    .await
    .unwrap();
    conn.query_drop(support::all_types_ddl(&server))
        .await
        .unwrap();
    let start = format!("gtid:{}", gtid_pos(&mut conn, true).await);
    let lake_dir = std::env::temp_dir().join("cdcd-faults-kill-lake");
    let _ = std::fs::remove_dir_all(&lake_dir);
    let stream = format!("cdcd-faults-kill-{}", std::process::id());
    kinesis_stream(&["create", &stream, "2"]);
    let kinesis_endpoint = std::env::var("CDCD_TEST_KINESIS_ENDPOINT").unwrap();
    let pipeline = Pipeline::new(
        "kill",
        (&server.repl_url, db, &start),
        7500,
        &lake_dir.display().to_string(),
        None,
        Some((&stream, &kinesis_endpoint)),
    );

    let mut workload = Workload::new(&server, db, rng.below(u64::MAX)).await;
    let mut statements = 0;
    let mut killed_at = Vec::new();
    // The checkpoint each kill left behind: what was acknowledged end to end by then.
    let mut checkpoints_at_kills = Vec::new();
    for round in 0..20 {
        let mut child = pipeline.spawn();
        let moment = Duration::from_millis(200 + rng.below(1800));
        let deadline = Instant::now() + moment;
        // The workload runs until the kill, at least a few statements per round.
        let mut ran = 0;
        while Instant::now() < deadline || ran < 5 {
            workload.step().await;
            ran += 1;
        }
        statements += ran;
        kill(&mut child, "KILL");
        killed_at.push(moment.as_millis());
        checkpoints_at_kills.push(checkpointed_gtids(
            &lake_dir.join("_cdcd/checkpoint-7500.json"),
        ));
        pipeline.catch_up();
        let (found, changes) = compare_ids(
            &pipeline.lake(),
            (&server.repl_url, &start, db),
            &["churn", "all_types"],
            7540,
        );
        assert!(
            found.values().all(|f| *f == (0, 0, 0)),
            "round {round}: (missing, duplicated, extra) by table {found:?} of {changes} changes \
             after kill -9 at {moment:?}; log:\n{}",
            pipeline.log()
        );
        println!(
            "kill -9 #{}: at {moment:?} after start, {ran} statements; after the restart caught \
             up, the lake holds all {changes} changes once",
            round + 1
        );
    }

    // The latest view equals the source tables, value by value.
    let lake = pipeline.lake();
    let mut compared = 0;
    for table in ["churn", "all_types"] {
        let replayed = latest_rows(&mut conn, &pipeline.config, &lake, db, table).await;
        compared += support::assert_table_matches(&mut conn, db, table, &replayed).await;
    }

    // Kinesis: every change at least once; a record sent twice is the same record.
    let records = kinesis_stream(&["read", &stream]);
    kinesis_stream(&["delete", &stream]);
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in &records {
        let data: Json = serde_json::from_str(record["data"].as_str().unwrap()).unwrap();
        if data["op"] == "ddl" {
            continue;
        }
        by_id
            .entry(data["event_id"].as_str().unwrap().to_string())
            .or_default()
            .push(record["data"].as_str().unwrap().to_string());
    }
    let expected: BTreeSet<String> = expected_ids(
        (&server.repl_url, &start, db),
        &["churn", "all_types"],
        7540,
    )
    .into_values()
    .flatten()
    .collect();
    let changes = expected.len();
    let missing = expected
        .iter()
        .filter(|id| !by_id.contains_key(*id))
        .count();
    let extra = by_id.keys().filter(|id| !expected.contains(*id)).count();
    assert_eq!(
        (missing, extra),
        (0, 0),
        "Kinesis (missing, extra) of {} changes",
        expected.len()
    );
    let mut duplicates = 0;
    for (id, datas) in &by_id {
        assert!(
            datas.iter().all(|d| d == &datas[0]),
            "Kinesis records of {id} differ: {datas:?}"
        );
        // A record is sent again only by the restart after a kill that found it past the
        // checkpoint (sent, not yet acknowledged end to end).
        let (domain, seq) = mariadb_gtid_of(id);
        let windows = checkpoints_at_kills
            .iter()
            .filter(|checkpoint| match checkpoint {
                Some(checkpoint) => checkpoint.get(&domain).is_none_or(|&done| seq > done),
                None => true,
            })
            .count();
        assert!(
            datas.len() - 1 <= windows,
            "{id} is on Kinesis {} times, but only {windows} kills left it past the checkpoint",
            datas.len()
        );
        duplicates += datas.len() - 1;
    }
    println!(
        "kill -9 ×20 (moments {killed_at:?} ms), {statements} statements, {} DDL, {} large \
         transactions: {changes} changes in the lake exactly once after every restart; \
         _latest equals SELECT * ({compared} values); Kinesis: {} records, every change, {duplicates} \
         re-sent after a kill that left them past the checkpoint, each identical with the same \
         event_id",
        workload.ddl,
        workload.large,
        records.len()
    );
}

/// The MariaDB GTID list of a checkpoint file as domain → last sequence number; `None` before
/// the first checkpoint.
fn checkpointed_gtids(path: &Path) -> Option<BTreeMap<u32, u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let checkpoint: Json = serde_json::from_str(&text).unwrap();
    let gtids = checkpoint["gtids"].as_str().unwrap_or_default();
    Some(
        gtids
            .split(',')
            .filter(|gtid| !gtid.is_empty())
            .map(|gtid| {
                let parts: Vec<&str> = gtid.split('-').collect();
                (parts[0].parse().unwrap(), parts[2].parse().unwrap())
            })
            .collect(),
    )
}

/// The domain and sequence number of a MariaDB event id (`domain-server-seq:row`).
fn mariadb_gtid_of(event_id: &str) -> (u32, u64) {
    let gtid = event_id.split(':').next().unwrap();
    let parts: Vec<&str> = gtid.split('-').collect();
    (parts[0].parse().unwrap(), parts[2].parse().unwrap())
}

/// A randomized writer: every column type, small and large transactions, ALTER TABLE.
struct Workload {
    conn: Conn,
    extremes: String,
    rng: Rng,
    round: u64,
    extra_column: bool,
    ddl: usize,
    large: usize,
}

impl Workload {
    async fn new(server: &Server, db: &str, seed: u64) -> Workload {
        let mut conn = server.conn().await;
        conn.query_drop(format!("USE {db}")).await.unwrap();
        Workload {
            conn,
            extremes: support::extremes_row(server),
            rng: Rng::seeded(seed),
            round: 0,
            extra_column: false,
            ddl: 0,
            large: 0,
        }
    }

    async fn step(&mut self) {
        self.round += 1;
        let round = self.round;
        let id = self.rng.below(300);
        let statement = match self.rng.below(60) {
            0 => {
                // Larger than lake.max_rows (300): written in parts before it commits.
                self.large += 1;
                format!(
                    "INSERT INTO churn (id, v, n) SELECT 100000 + a.n + 10 * b.n + 100 * c.n, \
                     'bulk-{round}', {round} FROM digits a, digits b, digits c WHERE c.n < 4 \
                     ON DUPLICATE KEY UPDATE v = 'bulk-{round}', n = churn.n + 1"
                )
            }
            2 => {
                self.ddl += 1;
                self.extra_column = !self.extra_column;
                if self.extra_column {
                    // Without a default: an ALTER writes no row events, so the rows it would
                    // fill would differ from the lake's (as in any binlog reader).
                    "ALTER TABLE churn ADD COLUMN extra VARCHAR(20)".to_string()
                } else {
                    "ALTER TABLE churn DROP COLUMN extra".to_string()
                }
            }
            3..=8 => self
                .extremes
                .replacen("VALUES (1,", &format!("VALUES ({},", 1000 + id), 1)
                .replacen("INSERT", "REPLACE", 1),
            9..=12 => format!(
                "INSERT INTO all_types (id, c_int, c_varchar, c_dec, c_datetime6, c_json) VALUES \
                 ({}, {round}, 'r{round}', {round}.25, '2026-01-02 03:04:05.{:06}', '{{\"r\": {round}}}') \
                 ON DUPLICATE KEY UPDATE c_int = c_int + 1, c_text = 'u{round}', c_bit = b'101'",
                2000 + id,
                round % 1_000_000
            ),
            13..=15 => format!("DELETE FROM all_types WHERE id IN ({}, {})", 1000 + id, 2000 + id),
            16..=35 => format!(
                "INSERT INTO churn (id, v, n) VALUES ({id}, 'v{round}', {round}) \
                 ON DUPLICATE KEY UPDATE v = 'u{round}', n = n + 1"
            ),
            36..=45 => format!(
                "UPDATE churn SET v = 'w{round}', n = n * 2 WHERE id BETWEEN {id} AND {id} + 4"
            ),
            46..=50 => format!("DELETE FROM churn WHERE id BETWEEN {id} AND {id} + 3"),
            _ => format!(
                "BEGIN; INSERT INTO churn (id, v, n) VALUES ({}, 'a', 1) ON DUPLICATE KEY UPDATE n = n + 1; \
                 UPDATE churn SET v = 'b{round}' WHERE id = {id}; \
                 UPDATE all_types SET c_varchar = 'b{round}' WHERE id = {}; COMMIT",
                id + 500,
                2000 + id
            ),
        };
        self.conn
            .query_drop(&statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        tokio::time::sleep(Duration::from_millis(10 + self.rng.below(20))).await;
    }
}

fn kinesis_stream(args: &[&str]) -> Vec<Json> {
    let script = support::faults::repo_root().join("tests/support/kinesis_stream.py");
    let out = Command::new(std::env::var("CDCD_TEST_DUCKDB_PYTHON").unwrap())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kinesis_stream.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ------------------------------------------------------------------------------------------
// Source restart, connection cut mid-transaction, failover

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_restart_cut_and_failover() {
    let primary = PrivateMariaDb::start("/tmp/cdcd-faults-mariadb", 3410, "");
    // The replica: another server id, its own GTID domain for its own transactions, and the
    // primary's transactions in its binlog with their GTIDs.
    let replica = PrivateMariaDb::start(
        "/tmp/cdcd-faults-mariadb-b",
        3411,
        "--server-id=2 --gtid-domain-id=2 --log-slave-updates",
    );
    let mut replica_conn = replica.conn().await;
    replica_conn
        .query_drop(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = 3410, MASTER_USER = 'repl', \
             MASTER_PASSWORD = 'replpw', MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = slave_pos; \
             START SLAVE",
        )
        .await
        .unwrap();
    let db = "cdcd_faults_source";
    let mut conn = primary.conn().await;
    conn.query_drop(format!(
        "CREATE DATABASE {db}; USE {db};
         CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR(300), n BIGINT);
         CREATE TABLE digits (n INT PRIMARY KEY);
         INSERT INTO digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)"
    ))
    .await
    .unwrap();
    let start = format!("gtid:{}", gtid_pos(&mut conn, true).await);
    let proxy = TcpProxy::start(10500, primary.port);
    let source = format!("mysql://repl:replpw@127.0.0.1:{}", proxy.port);
    let lake_dir = std::env::temp_dir().join("cdcd-faults-source-lake");
    let _ = std::fs::remove_dir_all(&lake_dir);
    let pipeline = Pipeline::new(
        "source",
        (&source, db, &start),
        7501,
        &lake_dir.display().to_string(),
        None,
        None,
    );
    let mut child = pipeline.spawn();
    let mut insert = row_inserts(db, 'r');
    for _ in 0..20 {
        conn.query_drop(insert(5)).await.unwrap();
    }
    let lake = pipeline.lake();
    let caught_up = |source_url: &str| exactly_once(&lake, (source_url, &start, db), &["t"], 7541);
    wait_until(
        "the first rows in the lake",
        Duration::from_secs(60),
        || caught_up(&primary.repl_url()),
    )
    .await;

    // 1. The replication connection cut in the middle of a transaction.
    cut_mid_transaction(&proxy, &mut conn, db, (&pipeline, &mut child), || {
        caught_up(&primary.repl_url())
    })
    .await;

    // 2. The server restarted while cdcd follows it, with writes before and after.
    for _ in 0..5 {
        conn.query_drop(insert(3)).await.unwrap();
    }
    drop(conn);
    let restart = Instant::now();
    primary.restart();
    println!(
        "injected: source server restarted (down {:.1} s)",
        restart.elapsed().as_secs_f64()
    );
    let mut conn = primary.conn().await;
    for _ in 0..5 {
        conn.query_drop(insert(3)).await.unwrap();
    }
    wait_until(
        "the rows around the restart in the lake",
        Duration::from_secs(120),
        || caught_up(&primary.repl_url()),
    )
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "cdcd exited: {}",
        pipeline.log()
    );
    let mut metrics = String::new();
    wait_until("the lag back at 0", Duration::from_secs(30), || {
        metrics = pipeline.metrics();
        sample(&metrics, "cdcd_replication_lag_seconds") < 2.0
    })
    .await;
    let reconnects = sample(&metrics, "cdcd_reconnects_total");
    let errors = sample(&metrics, "cdcd_errors_total{kind=\"source\"}");
    assert!(
        reconnects >= 2.0,
        "cdcd_reconnects_total {reconnects}:\n{metrics}"
    );
    assert!(errors >= 2.0, "cdcd_errors_total source {errors}");
    println!(
        "verified: cdcd kept running through the restart; every row once in the lake; \
         cdcd_reconnects_total {reconnects}, cdcd_errors_total{{kind=\"source\"}} {errors}, lag {} s",
        sample(&metrics, "cdcd_replication_lag_seconds")
    );

    // 3, 4. Failover to the replica, which has every GTID read so far; then back to the old
    //       primary, which lacks the new primary's transactions: cdcd stops.
    let objects_before = fail_over_and_back(
        &proxy,
        (&pipeline, &mut child),
        Side {
            port: primary.port,
            repl_url: primary.repl_url(),
            identity: "server_id 1".into(),
            conn: &mut conn,
        },
        Side {
            port: replica.port,
            repl_url: replica.repl_url(),
            identity: "server_id 2".into(),
            conn: &mut replica_conn,
        },
        (true, &mut insert, &caught_up),
        |_| "domain 2".to_string(),
    )
    .await;

    // 5. While cdcd is stopped, the new primary purges binlogs past its checkpoint: it refuses
    //    to start, names the purged transactions, and writes nothing.
    proxy.retarget(replica.port);
    for _ in 0..3 {
        replica_conn.query_drop(insert(2)).await.unwrap();
    }
    let purged_to = gtid_pos(&mut replica_conn, true).await;
    let as_server = Server {
        name: "MARIADB (private replica)",
        root_url: replica.root_url(),
        repl_url: replica.repl_url(),
        norepl_url: String::new(),
        tls_ca: String::new(),
        mariadb: true,
    };
    as_server.purge_all_but_current(&mut replica_conn).await;
    println!("injected: binlogs purged on server_id 2 up to {purged_to} while cdcd was stopped");
    let checkpoint = std::fs::read_to_string(lake_dir.join("_cdcd/checkpoint-7501.json")).unwrap();
    let out = pipeline.command(&["run", "--until-end"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    let seq = |gtids: &str| -> u64 {
        let entry = gtids.split(',').find(|e| e.starts_with("2-")).unwrap();
        entry.rsplit('-').next().unwrap().parse().unwrap()
    };
    let checkpointed: Json = serde_json::from_str(&checkpoint).unwrap();
    let missing = format!(
        "domain 2 seq_no {} to {}",
        seq(checkpointed["gtids"].as_str().unwrap()) + 1,
        seq(&purged_to)
    );
    assert!(
        !out.status.success() && last.contains("purged") && last.contains(&missing),
        "a checkpoint behind purged binlogs must stop cdcd naming {missing}: {stderr}"
    );
    assert_eq!(
        walk(&lake_dir).len(),
        objects_before.len(),
        "nothing written"
    );
    assert_eq!(
        std::fs::read_to_string(lake_dir.join("_cdcd/checkpoint-7501.json")).unwrap(),
        checkpoint,
        "the checkpoint did not move"
    );
    println!("verified: cdcd refused to start, nothing written: {last}");
}

/// One server of a failover: its port (behind the proxy), its replication URL (for the oracle),
/// how cdcd's errors name it, and a root connection.
struct Side<'a> {
    port: u16,
    repl_url: String,
    identity: String,
    conn: &'a mut Conn,
}

/// `INSERT`s of `n` new rows into `db.t (id, v, n)`: ids counting up from 1, `v` 250 × `fill`.
fn row_inserts(db: &str, fill: char) -> impl FnMut(usize) -> String {
    let (db, mut next_id) = (db.to_string(), 0);
    move |n| {
        let rows: Vec<String> = (0..n)
            .map(|_| {
                next_id += 1;
                format!("({next_id}, REPEAT('{fill}', 250), {next_id})")
            })
            .collect();
        format!("INSERT INTO {db}.t VALUES {}", rows.join(", "))
    }
}

/// The proxy, so far leading to `old`, retargeted to `new`, a GTID replica of `old` (MariaDB
/// with `mariadb`, else MySQL) once it has every transaction of `old` and replication stopped:
/// cdcd continues on `new` (rows from `insert` written there reach the lake once each,
/// `cdcd_failovers_total` 1). Then back to `old`, which lacks them: cdcd stops, naming both
/// servers and `missing(new's GTID position)`, and writes nothing. Returns the lake's files then.
async fn fail_over_and_back(
    proxy: &TcpProxy,
    (pipeline, child): (&Pipeline, &mut Running),
    old: Side<'_>,
    new: Side<'_>,
    (mariadb, insert, caught_up): (
        bool,
        &mut impl FnMut(usize) -> String,
        &impl Fn(&str) -> bool,
    ),
    missing: impl Fn(&str) -> String,
) -> Vec<PathBuf> {
    let position = gtid_pos(old.conn, mariadb).await;
    let (wait, stop) = if mariadb {
        ("MASTER_GTID_WAIT", "STOP SLAVE")
    } else {
        ("WAIT_FOR_EXECUTED_GTID_SET", "STOP REPLICA")
    };
    let waited: i64 = new
        .conn
        .query_first(format!("SELECT {wait}('{position}', 60)"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waited, 0, "the replica caught up with {position}");
    new.conn.query_drop(stop).await.unwrap();
    proxy.retarget(new.port);
    println!(
        "injected: failover: the endpoint now leads to the replica ({}), which has {position}",
        new.identity
    );
    for _ in 0..5 {
        new.conn.query_drop(insert(4)).await.unwrap();
    }
    wait_until(
        "the new primary's rows in the lake",
        Duration::from_secs(90),
        || caught_up(&new.repl_url),
    )
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "cdcd exited: {}",
        pipeline.log()
    );
    let metrics = pipeline.metrics();
    assert_eq!(sample(&metrics, "cdcd_failovers_total"), 1.0, "{metrics}");
    println!(
        "verified: cdcd continued on {} by GTID; every row (old and new primary) once in the \
         lake; cdcd_failovers_total 1",
        new.identity
    );

    let lake_dir = Path::new(&pipeline.lake);
    let objects_before = walk(lake_dir);
    let new_position = gtid_pos(new.conn, mariadb).await;
    let missing = missing(&new_position);
    proxy.retarget(old.port);
    println!(
        "injected: the endpoint leads back to {}, which lacks {missing} of {new_position}",
        old.identity
    );
    let mut status = None;
    wait_until("cdcd to stop", Duration::from_secs(120), || {
        status = child.try_wait().unwrap();
        status.is_some()
    })
    .await;
    let log = pipeline.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(!status.unwrap().success(), "cdcd must fail: {log}");
    for needle in [&old.identity, &new.identity, &missing] {
        assert!(
            last.contains(needle.as_str()),
            "the error names {needle}: {last}"
        );
    }
    assert_eq!(
        walk(lake_dir).len(),
        objects_before.len(),
        "nothing written"
    );
    assert!(
        caught_up(&new.repl_url),
        "the lake still holds every row once"
    );
    println!("verified: cdcd stopped with: {last}");
    objects_before
}

/// Cuts the replication connection in the middle of a 4,000-row transaction (~1 MiB) into
/// `db.t` (with `db.digits` holding 0-9), and checks that cdcd reconnects, drops what it read
/// twice, and gets the lake to hold every change once.
async fn cut_mid_transaction(
    proxy: &TcpProxy,
    conn: &mut Conn,
    db: &str,
    (pipeline, child): (&Pipeline, &mut Running),
    caught_up: impl Fn() -> bool,
) {
    proxy.cut_after(300_000);
    conn.query_drop(format!(
        "INSERT INTO {db}.t SELECT 1000000 + a.n + 10 * b.n + 100 * c.n + 1000 * d.n, \
         REPEAT('big', 80), 0 FROM {db}.digits a, {db}.digits b, {db}.digits c, {db}.digits d \
         WHERE d.n < 4"
    ))
    .await
    .unwrap();
    wait_until("the proxy's cut", Duration::from_secs(30), || {
        proxy.cut_fired()
    })
    .await;
    println!("injected: replication connection cut after 300,000 bytes of a 4,000-row transaction");
    wait_until(
        "the cut transaction in the lake",
        Duration::from_secs(90),
        caught_up,
    )
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "cdcd exited: {}",
        pipeline.log()
    );
    let log = pipeline.log();
    let dropped = log
        .lines()
        .find(|l| l.contains("the cut-off transaction was read again"))
        .unwrap_or_else(|| panic!("the cut was not mid-transaction: {log}"));
    println!("verified: cdcd reconnected; the transaction is in the lake exactly once ({dropped})");
}

/// The connection cut mid-transaction on MySQL (GTID event ids), through the proxy in front of
/// the shared server (nothing on it is stopped or changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connection_cut_mid_transaction() {
    let server = Server::from_env("MYSQL");
    let db = "cdcd_faults_mysqlcut";
    let mut conn = server.conn().await;
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};
         CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, v VARCHAR(300), n BIGINT);
         CREATE TABLE {db}.digits (n INT PRIMARY KEY);
         INSERT INTO {db}.digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);
         INSERT INTO {db}.t VALUES (1, 'first', 1)"
    ))
    .await
    .unwrap();
    let start = format!("gtid:{}", gtid_pos(&mut conn, false).await);
    let port: u16 = server.repl_url.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = TcpProxy::start(10502, port);
    let source = server
        .repl_url
        .replace(&format!(":{port}"), &format!(":{}", proxy.port));
    let lake_dir = std::env::temp_dir().join("cdcd-faults-mysqlcut-lake");
    let _ = std::fs::remove_dir_all(&lake_dir);
    let pipeline = Pipeline::new(
        "mysqlcut",
        (&source, db, &start),
        7503,
        &lake_dir.display().to_string(),
        None,
        None,
    );
    let mut child = pipeline.spawn();
    let lake = pipeline.lake();
    let caught_up = || exactly_once(&lake, (&server.repl_url, &start, db), &["t"], 7543);
    conn.query_drop(format!("INSERT INTO {db}.t VALUES (2, 'second', 2)"))
        .await
        .unwrap();
    wait_until(
        "the first rows in the lake",
        Duration::from_secs(60),
        caught_up,
    )
    .await;
    cut_mid_transaction(&proxy, &mut conn, db, (&pipeline, &mut child), caught_up).await;
}

/// The failover on MySQL 9.7: private primary A and its GTID replica B (scripts/mysql.sh), cdcd
/// through the proxy to A, then to B (it has A's GTIDs: cdcd continues), then back to A, which
/// lacks what was written on B: cdcd stops naming both server_uuids and B's missing GTIDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_failover_by_server_uuid() {
    let primary = PrivateMySql::start("fail-a", 3430, 1);
    let replica = PrivateMySql::start("fail-b", 3431, 2);
    replica.replicate_from(&primary).await;
    let db = "cdcd_mfail_source";
    let mut conn = primary.conn().await;
    let mut replica_conn = replica.conn().await;
    let uuid_query = "SELECT @@server_uuid";
    let uuid_a: String = conn.query_first(uuid_query).await.unwrap().unwrap();
    let uuid_b: String = replica_conn.query_first(uuid_query).await.unwrap().unwrap();
    assert_ne!(uuid_a, uuid_b, "fresh datadirs, fresh server_uuids");
    conn.query_drop(format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, v VARCHAR(300), n BIGINT)"
    ))
    .await
    .unwrap();
    let start = format!("gtid:{}", gtid_pos(&mut conn, false).await);
    let proxy = TcpProxy::start(10700, primary.port);
    let source = format!("mysql://repl:replpw@127.0.0.1:{}", proxy.port);
    let lake_dir = std::env::temp_dir().join("cdcd-mfail-lake");
    let _ = std::fs::remove_dir_all(&lake_dir);
    let pipeline = Pipeline::new(
        "mfail",
        (&source, db, &start),
        7700,
        &lake_dir.display().to_string(),
        None,
        None,
    );
    let mut child = pipeline.spawn();
    let mut insert = row_inserts(db, 'm');
    for _ in 0..20 {
        conn.query_drop(insert(5)).await.unwrap();
    }
    println!(
        "injected: 20 transactions of 5 rows on A (server_uuid {uuid_a}), read through the proxy"
    );
    let lake = pipeline.lake();
    let caught_up = |source_url: &str| exactly_once(&lake, (source_url, &start, db), &["t"], 7701);
    wait_until(
        "the first rows in the lake",
        Duration::from_secs(60),
        || caught_up(&primary.repl_url()),
    )
    .await;
    println!("verified: the lake holds A's 100 rows once each");
    // What A lacks after the writes on B: every transaction B ran itself (its users, then the
    // rows), i.e. B's own uuid's entry in its gtid_executed.
    let own_of_b = |position: &str| {
        position
            .split(',')
            .find(|entry| entry.starts_with(uuid_b.as_str()))
            .unwrap_or_else(|| panic!("no {uuid_b} in {position}"))
            .to_string()
    };
    fail_over_and_back(
        &proxy,
        (&pipeline, &mut child),
        Side {
            port: primary.port,
            repl_url: primary.repl_url(),
            identity: format!("server_uuid {uuid_a}"),
            conn: &mut conn,
        },
        Side {
            port: replica.port,
            repl_url: replica.repl_url(),
            identity: format!("server_uuid {uuid_b}"),
            conn: &mut replica_conn,
        },
        (false, &mut insert, &caught_up),
        own_of_b,
    )
    .await;
}

// ------------------------------------------------------------------------------------------
// S3 down for 30 s; Kinesis throttling and 5xx

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_and_kinesis_faults_stall_and_recover() {
    let server = Server::from_env("MARIADB");
    let db = "cdcd_faults_outage";
    let mut conn = server.conn().await;
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};
         CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, v VARCHAR(100))"
    ))
    .await
    .unwrap();
    let start = format!("gtid:{}", gtid_pos(&mut conn, true).await);
    let mut s3 = PrivateS3::new(Path::new("/tmp/cdcd-faults-s3"), 8340, "cdcd-faults");
    let kinesis = KinesisFaults::start(10501, Path::new("/tmp/cdcd-faults-kinesis"));
    let stream = format!("cdcd-faults-outage-{}", std::process::id());
    kinesis_stream(&["create", &stream, "2"]);
    let endpoint = s3.endpoint();
    let pipeline = Pipeline::new(
        "outage",
        (&server.repl_url, db, &start),
        7502,
        "s3://cdcd-faults/faults/outage",
        Some(&endpoint),
        Some((&stream, &kinesis.endpoint)),
    );
    let mut child = pipeline.spawn();
    let mut next_id = 0;
    let mut insert = |n: usize| {
        let rows: Vec<String> = (0..n)
            .map(|_| {
                next_id += 1;
                format!("({next_id}, 'row {next_id}')")
            })
            .collect();
        format!("INSERT INTO {db}.t VALUES {}", rows.join(", "))
    };
    let lake = pipeline.lake();
    let caught_up = || exactly_once(&lake, (&server.repl_url, &start, db), &["t"], 7542);
    for _ in 0..10 {
        conn.query_drop(insert(10)).await.unwrap();
    }
    wait_until(
        "the first rows in the lake",
        Duration::from_secs(60),
        caught_up,
    )
    .await;

    // 1. S3 down for 30 s while rows keep coming.
    s3.stop();
    let outage = Instant::now();
    println!("injected: S3 (private SeaweedFS) killed");
    while outage.elapsed() < Duration::from_secs(30) {
        conn.query_drop(insert(10)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "cdcd exited: {}",
        pipeline.log()
    );
    let during = pipeline.metrics();
    let retries = sample(&during, "cdcd_s3_retries_total{kind=\"transport\"}");
    assert!(retries > 0.0, "S3 retries counted:\n{during}");
    assert!(
        sample(&during, "cdcd_checkpoint_age_seconds") > 10.0,
        "the checkpoint stood still"
    );
    s3.start();
    println!(
        "injected: S3 started again after {:.0} s",
        outage.elapsed().as_secs_f64()
    );
    wait_until(
        "the outage's rows in the lake",
        Duration::from_secs(120),
        caught_up,
    )
    .await;
    let after = pipeline.metrics();
    println!(
        "verified: cdcd stalled and kept running; cdcd_s3_retries_total{{kind=\"transport\"}} {retries}, \
         cdcd_errors_total{{kind=\"s3\"}} {}; every row once in the lake after S3 returned",
        sample(&after, "cdcd_errors_total{kind=\"s3\"}")
    );

    // 2. Kinesis throttling (per record and whole calls) and 5xx, each until cdcd has met it
    // (a pipeline slowed by the outage before may put a phase's rows in one late call).
    for (knobs, what, counter) in [
        (
            r#"{"put_fraction": 0.5}"#,
            "half the records throttled",
            "cdcd_kinesis_records_failed_total{code=\"ProvisionedThroughputExceededException\"}",
        ),
        (
            r#"{"call_every": 2}"#,
            "every 2nd call throttled (HTTP 400)",
            "cdcd_kinesis_call_failures_total{kind=\"throttled\"}",
        ),
        (
            r#"{"fivexx_every": 2}"#,
            "every 2nd call answered 500",
            "cdcd_kinesis_call_failures_total{kind=\"server\"}",
        ),
    ] {
        let before = sample(&pipeline.metrics(), counter);
        kinesis.set(knobs);
        println!("injected: Kinesis {what}");
        // Spread out, so that the rows go in several calls.
        let started = Instant::now();
        while sample(&pipeline.metrics(), counter) <= before {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "cdcd met no {what} in 90 s:\n{}",
                pipeline.metrics()
            );
            conn.query_drop(insert(20)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    kinesis.set("{}");
    wait_until("the rows in the lake", Duration::from_secs(120), caught_up).await;
    let metrics = pipeline.metrics();
    assert!(
        child.try_wait().unwrap().is_none(),
        "cdcd exited: {}",
        pipeline.log()
    );
    kill(&mut child, "TERM");
    let throttled = sample(
        &metrics,
        "cdcd_kinesis_records_failed_total{code=\"ProvisionedThroughputExceededException\"}",
    );
    let calls_throttled = sample(
        &metrics,
        "cdcd_kinesis_call_failures_total{kind=\"throttled\"}",
    );
    let calls_5xx = sample(
        &metrics,
        "cdcd_kinesis_call_failures_total{kind=\"server\"}",
    );
    assert!(
        throttled > 0.0 && calls_throttled > 0.0 && calls_5xx > 0.0,
        "Kinesis faults counted:\n{metrics}"
    );
    let records = kinesis_stream(&["read", &stream]);
    kinesis_stream(&["delete", &stream]);
    let put: BTreeSet<String> = records
        .iter()
        .map(|r| {
            let data: Json = serde_json::from_str(r["data"].as_str().unwrap()).unwrap();
            data["event_id"].as_str().unwrap().to_string()
        })
        .collect();
    let expected = expected_ids((&server.repl_url, &start, db), &["t"], 7542)
        .remove("t")
        .unwrap();
    let missing = expected.iter().filter(|id| !put.contains(*id)).count();
    assert_eq!(missing, 0, "every change on Kinesis");
    println!(
        "verified: Kinesis stalled and recovered: records failed (throttled) {throttled}, calls \
         throttled {calls_throttled}, calls 5xx {calls_5xx}; {} of {} changes on the stream, \
         none missing",
        expected.len() - missing,
        expected.len()
    );
}
