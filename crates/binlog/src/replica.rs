//! Following a server as a replica.
//!
//! Resumption: the stream is requested from a [`Position`] that is a transaction boundary — by GTID
//! set (MySQL, COM_BINLOG_DUMP_GTID), GTID list (MariaDB, `@slave_connect_state`) or file:pos.
//!
//! # Faults
//!
//! Invariant: every record is handed out once, in binlog order, across any number of reconnects;
//! a fault either heals or stops the replica with an error, never with a gap.
//!
//! - A connection that is lost, closed or silent (no event and no heartbeat for three heartbeat
//!   periods) is replaced by a new one from the last commit handed out, with backoff (doubling
//!   from 1 s, capped at 30 s) and without limit: a server restart or a network
//!   outage only stalls the stream. Errors the server gives deliberately (privileges, purged
//!   binlogs, a GTID it does not have) stop the replica instead.
//! - The transaction that was cut off is read again from its start; its records already handed
//!   out are recognized by count and checked by `event_id`, and dropped, so the caller sees each
//!   row once. A binlog that does not repeat them is an error, not a silent divergence.
//! - Failover: a reconnect that finds a different server behind the same endpoint (another
//!   `server_uuid` on MySQL, another `server_id` on MariaDB) continues by GTID only if that
//!   server has every transaction already handed out (and has not purged the ones still to
//!   come); otherwise it stops with an error naming both servers and the missing GTIDs. A file
//!   position cannot be carried over to another server, so without GTIDs a failover stops.
//! - [`ReplicaCounters`] counts reconnects, connection errors and failovers for metrics.
//!
//! Before streaming, the server's settings are checked: a binlog that cannot give complete row
//! images (`binlog_format` not ROW, `binlog_row_image` not FULL) is refused with the setting to fix.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use mysql_async::binlog::events::Event;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, OptsBuilder, SslOpts};

use cdcd_event::{Flavor, TableSchema};

use crate::decoder::{Decoder, Gtids, Position, Record};
use crate::error::{Error, Result};
use crate::filter::TableFilter;
use crate::gtid::{GtidSet, MariaGtidList};
use crate::schema::load_table;

/// TLS modes, as the MySQL clients name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disabled,
    /// TLS if the server offers it, without verification; plain otherwise.
    Preferred,
    /// TLS without certificate verification.
    Required,
    /// TLS; the certificate must chain to the CA.
    VerifyCa,
    /// TLS; the certificate must chain to the CA and name the host.
    VerifyIdentity,
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "disabled" => TlsMode::Disabled,
            "preferred" => TlsMode::Preferred,
            "required" => TlsMode::Required,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-identity" => TlsMode::VerifyIdentity,
            other => {
                return Err(format!(
                    "unknown TLS mode `{other}`; use disabled, preferred, required, verify-ca or \
                     verify-identity"
                ))
            }
        })
    }
}

/// Where to start reading.
#[derive(Debug, Clone, PartialEq)]
pub enum StartFrom {
    /// The oldest binlog the server still has.
    Start,
    /// The server's current end: only changes made from now on.
    End,
    /// After the transactions of this GTID set (MySQL) or GTID list (MariaDB).
    Gtid(String),
    /// A binlog file and offset (which must be a transaction boundary).
    File(String, u64),
    /// A checkpoint, taken on the server with this `server_uuid` (when known).
    Position(Position, Option<String>),
}

/// How to connect and what to read.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// `mysql://user[:password]@host[:port]`.
    pub url: String,
    /// Overrides the URL's password (from an environment variable or a file).
    pub password: Option<String>,
    pub tls_mode: TlsMode,
    pub tls_ca: Option<PathBuf>,
    /// The replica server id we register with; must differ from every other replica's.
    pub server_id: u32,
    pub heartbeat: Duration,
    pub start: StartFrom,
    pub filter: TableFilter,
    /// Stop at the end of the binlog instead of waiting for new events.
    pub until_end: bool,
    /// Event type codes to skip instead of stopping on them (`--skip-event-type`).
    pub skip_event_types: Vec<u8>,
    /// Where the replica counts its faults (shared with whoever exports them).
    pub counters: Arc<ReplicaCounters>,
}

/// Faults of the replication connection, counted as they happen.
#[derive(Debug, Default)]
pub struct ReplicaCounters {
    /// Attempts to open a new replication stream after one was lost.
    pub reconnects: AtomicU64,
    /// Replication connections lost (broken, closed by the server, silent) and reconnect
    /// attempts that failed.
    pub connection_errors: AtomicU64,
    /// Reconnects that found another server behind the endpoint and continued on it by GTID.
    pub failovers: AtomicU64,
}

impl ReplicaCounters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl ReplicaOptions {
    pub fn new(url: impl Into<String>) -> Self {
        ReplicaOptions {
            url: url.into(),
            password: None,
            tls_mode: TlsMode::Preferred,
            tls_ca: None,
            server_id: 0xCDC0,
            heartbeat: Duration::from_secs(5),
            start: StartFrom::End,
            filter: TableFilter::default(),
            until_end: false,
            skip_event_types: Vec::new(),
            counters: Arc::default(),
        }
    }
}

/// What the server told us about itself.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub flavor: Flavor,
    pub version: String,
    pub server_uuid: Option<String>,
    pub server_id: u32,
}

impl ServerInfo {
    /// What tells two servers apart: the `server_uuid` (MySQL; MariaDB has none), else the
    /// `server_id`.
    pub fn identity(&self) -> String {
        match &self.server_uuid {
            Some(uuid) => format!("server_uuid {uuid}"),
            None => format!("server_id {}", self.server_id),
        }
    }
}

/// A replication connection producing [`Record`]s.
pub struct Replica {
    options: ReplicaOptions,
    opts: Opts,
    info: ServerInfo,
    stream: Option<BinlogStream>,
    /// A second connection for `information_schema` lookups.
    schema_conn: Conn,
    decoder: Decoder,
    /// The last transaction boundary handed out.
    committed: Position,
    /// Change and DDL records handed out since `committed`, and the event id of the last change
    /// among them: what a reconnect reads again and must not hand out twice.
    open_records: usize,
    open_last_id: Option<String>,
    /// Records still to drop after a reconnect (they were handed out before it).
    replay: Option<Replay>,
    finished: bool,
}

/// The part of a cut-off transaction that is read again after a reconnect.
struct Replay {
    skip: usize,
    last_id: Option<String>,
}

/// Table definitions from `information_schema`, without a replication stream: `cdcd sink` reads
/// the column types of DMS records that carry none from the source database.
pub struct SchemaReader {
    opts: Opts,
    conn: Conn,
}

impl SchemaReader {
    pub async fn connect(options: &ReplicaOptions) -> Result<Self> {
        let opts = connection_opts(options)?;
        let conn = connect(&opts).await?;
        Ok(SchemaReader { opts, conn })
    }

    /// The table's definition now; `None` when it does not exist.
    pub async fn table(&mut self, schema: &str, table: &str) -> Result<Option<TableSchema>> {
        match load_table(&mut self.conn, schema, table).await {
            Err(e) if is_connection_loss(&e) => {
                self.conn = connect(&self.opts).await?;
                load_table(&mut self.conn, schema, table).await
            }
            result => result,
        }
    }
}

impl Replica {
    /// Connects, checks the server's settings, resolves the start position and opens the stream.
    pub async fn connect(options: ReplicaOptions) -> Result<Self> {
        let opts = connection_opts(&options)?;
        let mut conn = connect(&opts).await?;
        let info = check_server(&mut conn).await?;
        if let StartFrom::Position(position, taken_on) = &options.start {
            check_resumable(&info, position, taken_on.as_deref())?;
            let previous = match taken_on {
                Some(uuid) if info.server_uuid.as_deref() != Some(uuid.as_str()) => {
                    format!("server_uuid {uuid}")
                }
                _ => "the server the checkpoint was taken on".to_string(),
            };
            check_has_read_gtids(&mut conn, &info, position, &previous).await?;
        }
        let start = resolve_start(&mut conn, &info, &options.start).await?;
        let decoder = new_decoder(&info, &options, &start);
        let mut replica = Replica {
            options,
            opts,
            info,
            stream: None,
            schema_conn: conn,
            decoder,
            committed: start,
            open_records: 0,
            open_last_id: None,
            replay: None,
            finished: false,
        };
        replica.open_stream().await?;
        Ok(replica)
    }

    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    /// The last transaction boundary handed out; right after [`Replica::connect`], the resolved
    /// start position (`end` becomes the server's position at that moment).
    pub fn position(&self) -> &Position {
        &self.committed
    }

    async fn open_stream(&mut self) -> Result<()> {
        let mut conn = connect(&self.opts).await?;
        let from = self.committed.clone();
        let nanos = self.options.heartbeat.as_nanos().to_string();
        let mut setup = vec![
            format!("SET @master_heartbeat_period = {nanos}"),
            format!("SET @source_heartbeat_period = {nanos}"),
        ];
        if self.info.flavor == Flavor::MariaDb {
            setup.push("SET @mariadb_slave_capability = 4".into());
            if let Gtids::MariaDb(list) = &from.gtids {
                setup.push(format!("SET @slave_connect_state = '{list}'"));
                setup.push("SET @slave_gtid_strict_mode = 1".into());
            }
        }
        for statement in &setup {
            // @source_heartbeat_period only exists on MySQL 8.4+; the others are always accepted.
            if let Err(e) = conn.query_drop(statement).await {
                if !statement.contains("source_heartbeat") {
                    return Err(Error::Server {
                        context: format!("preparing the replication connection (`{statement}`)"),
                        source: e,
                    });
                }
            }
        }
        let file = from.file.clone().into_bytes();
        let mut request = BinlogStreamRequest::new(self.options.server_id);
        if self.options.until_end {
            request = request.with_non_blocking();
        }
        let sids: Vec<mysql_async::Sid<'static>>;
        request = match &from.gtids {
            Gtids::MySql(set) if !from.file.is_empty() || !set.is_empty() => {
                sids = set
                    .entries()
                    .map(|e| e.parse())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| Error::Setup(format!("GTID set {set} cannot be sent: {e}")))?;
                request.with_gtid().with_gtid_set(sids)
            }
            _ => request.with_filename(&file).with_pos(from.pos),
        };
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(|e| explain_dump_error(e, &from))?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Waits for the next event and appends everything decoded so far to `records` (at least one
    /// record); `false` once the end of the binlog is reached with `until_end`.
    pub async fn next_records(&mut self, records: &mut Vec<Record>) -> Result<bool> {
        let mut failures = 0;
        loop {
            if self.finished {
                return Ok(false);
            }
            let lost = match self.next_event().await {
                Ok(Some(event)) => {
                    failures = 0;
                    if let Some((schema, table)) = self.decoder.wants_schema(&event) {
                        let definition = self.table_definition(&schema, &table).await?;
                        self.decoder.put_schema(&schema, &table, definition);
                    }
                    // Records go straight into the caller's batch; on an error, none of this
                    // event's records are handed out.
                    let start = records.len();
                    if let Err(e) = self.decoder.handle(&event, records) {
                        records.truncate(start);
                        return Err(e);
                    }
                    if let Err(e) = self.drop_replayed(records, start) {
                        records.truncate(start);
                        return Err(e);
                    }
                    self.note_handed_out(&records[start..]);
                    self.describe_tables(&mut records[start..]).await?;
                    if records.len() > start {
                        return Ok(true);
                    }
                    continue;
                }
                Ok(None) if self.options.until_end => {
                    self.finished = true;
                    if self.decoder.in_transaction() {
                        return Err(Error::Setup(
                            "the server ended the stream inside a transaction".into(),
                        ));
                    }
                    continue;
                }
                // Without --until-end the stream never ends by itself: the server went away.
                Ok(None) => {
                    Error::ConnectionLost("the server closed the replication stream".into())
                }
                Err(e) if is_connection_loss(&e) => e,
                Err(e) => return Err(e),
            };
            self.stream = None;
            ReplicaCounters::count(&self.options.counters.connection_errors);
            failures += 1;
            self.reconnect(failures, &lost.to_string()).await?;
        }
    }

    /// Drops the records of `records[start..]` that were handed out before a reconnect (the
    /// start of the transaction that was cut off), checking that they are the same rows.
    fn drop_replayed(&mut self, records: &mut Vec<Record>, start: usize) -> Result<()> {
        let Some(replay) = &mut self.replay else {
            return Ok(());
        };
        let mut end = start;
        while end < records.len() && replay.skip > 0 {
            match &records[end] {
                Record::Commit(position) => {
                    return Err(Error::Setup(format!(
                        "after reconnecting, the binlog from {} does not repeat the transaction \
                         that was cut off: it ends at {} with {} fewer rows than were read \
                         before. Stopping instead of guessing; the server's binlog changed under \
                         cdcd",
                        describe(&self.committed),
                        describe(position),
                        replay.skip
                    )));
                }
                Record::Change(event) if replay.skip == 1 => {
                    let id = event.event_id();
                    if replay.last_id.as_ref().is_some_and(|last| *last != id) {
                        return Err(Error::Setup(format!(
                            "after reconnecting, the binlog does not repeat the transaction that \
                             was cut off: its last row read before was {}, now {id}. Stopping \
                             instead of guessing; the server's binlog changed under cdcd",
                            replay.last_id.as_deref().unwrap_or_default()
                        )));
                    }
                    replay.skip = 0;
                }
                Record::Change(_) | Record::Ddl(_) => replay.skip -= 1,
                Record::Heartbeat => {}
            }
            end += 1;
        }
        records.drain(start..end);
        if replay.skip == 0 {
            self.replay = None;
            tracing::info!(
                records = self.open_records,
                "the cut-off transaction was read again; its records handed out before the \
                 reconnect were dropped"
            );
        }
        Ok(())
    }

    /// Follows the transaction boundary and what of the open transaction has been handed out.
    fn note_handed_out(&mut self, handed_out: &[Record]) {
        let open = match handed_out
            .iter()
            .rposition(|r| matches!(r, Record::Commit(_)))
        {
            Some(commit) => {
                if let Record::Commit(position) = &handed_out[commit] {
                    self.committed = position.clone();
                }
                self.open_records = 0;
                self.open_last_id = None;
                &handed_out[commit + 1..]
            }
            None => handed_out,
        };
        self.open_records += open
            .iter()
            .filter(|r| matches!(r, Record::Change(_) | Record::Ddl(_)))
            .count();
        if let Some(Record::Change(event)) =
            open.iter().rev().find(|r| matches!(r, Record::Change(_)))
        {
            self.open_last_id = Some(event.event_id());
        }
    }

    /// A table's definition from `information_schema`. The lookup connection sits idle between
    /// DDL statements and can be closed by the server (`wait_timeout`): one reconnect and retry.
    async fn table_definition(&mut self, schema: &str, table: &str) -> Result<Option<TableSchema>> {
        match load_table(&mut self.schema_conn, schema, table).await {
            Err(e) if is_connection_loss(&e) => {
                self.schema_conn = connect(&self.opts).await?;
                load_table(&mut self.schema_conn, schema, table).await
            }
            result => result,
        }
    }

    /// The definitions of the existing base tables the filter selects, system schemas left out.
    pub async fn captured_tables(&mut self) -> Result<Vec<TableSchema>> {
        let names: Vec<(String, String)> = self
            .schema_conn
            .query(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
                 ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1, 2",
            )
            .await
            .map_err(Error::server(
                "listing tables in information_schema (grant SELECT on them to the replication user)",
            ))?;
        let mut tables = Vec::new();
        for (schema, table) in names {
            if self.options.filter.matches(&schema, &table) {
                tables.extend(self.table_definition(&schema, &table).await?);
            }
        }
        Ok(tables)
    }

    /// Gives DDL records the definition of the table they leave behind, from
    /// `information_schema`: as it is when the statement is read, which while catching up on old
    /// binlogs can already include later changes.
    async fn describe_tables(&mut self, records: &mut [Record]) -> Result<()> {
        for record in records {
            let Record::Ddl(ddl) = record else { continue };
            let Some((schema, table)) = ddl.table.clone() else {
                continue;
            };
            if matches!(ddl.operation, "create-table" | "change-columns") {
                ddl.definition = self
                    .table_definition(&schema, &table)
                    .await?
                    .map(std::sync::Arc::new);
            }
        }
        Ok(())
    }

    /// Waits (with backoff) and opens a new stream from the last commit. A transient failure
    /// leaves the replica without a stream, which the next read reports as one more lost
    /// connection; a deliberate refusal by the server, or a failover that cannot continue, is an
    /// error.
    async fn reconnect(&mut self, attempt: u32, reason: &str) -> Result<()> {
        ReplicaCounters::count(&self.options.counters.reconnects);
        let wait = Duration::from_secs(1 << attempt.saturating_sub(1).min(5)).min(MAX_BACKOFF);
        tracing::warn!(
            reason,
            attempt,
            ?wait,
            "replication connection lost; reconnecting from the last commit"
        );
        tokio::time::sleep(wait).await;
        let failed = |e: &Error| tracing::warn!(error = %e, attempt, "reconnect failed");
        let mut conn = match connect(&self.opts).await {
            Ok(conn) => conn,
            Err(e) => {
                failed(&e);
                return Ok(());
            }
        };
        let info = match check_server(&mut conn).await {
            Ok(info) => info,
            Err(e) if is_transient(&e) => {
                failed(&e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if info.identity() != self.info.identity() || info.flavor != self.info.flavor {
            self.fail_over(&mut conn, info).await?;
        }
        self.schema_conn = conn;
        self.decoder = new_decoder(&self.info, &self.options, &self.committed);
        self.replay = (self.open_records > 0).then(|| Replay {
            skip: self.open_records,
            last_id: self.open_last_id.clone(),
        });
        match self.open_stream().await {
            Ok(()) => Ok(()),
            Err(e) if is_transient(&e) => {
                failed(&e);
                self.stream = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Continues on another server found behind the source endpoint, if it has every
    /// transaction read so far and still has the ones to come.
    async fn fail_over(&mut self, conn: &mut Conn, info: ServerInfo) -> Result<()> {
        let (old, new) = (self.info.identity(), info.identity());
        if info.flavor != self.info.flavor {
            return Err(Error::Setup(format!(
                "the source endpoint now leads to a {} server ({new}) instead of the {} server \
                 ({old}) cdcd was following: a position cannot be carried to another kind of \
                 server. Stopping; start again from a snapshot",
                info.flavor.as_str(),
                self.info.flavor.as_str()
            )));
        }
        if self.committed.gtids == Gtids::None {
            return Err(Error::Setup(format!(
                "the source endpoint now leads to {new} instead of {old} (a failover?): cdcd \
                 follows {old} by the file position {}, which means nothing on another server. \
                 Stopping; follow the source by GTID to survive failovers (MySQL gtid_mode=ON, \
                 and a gtid: start), or start again from a snapshot",
                describe(&self.committed)
            )));
        }
        check_has_read_gtids(conn, &info, &self.committed, &old).await?;
        check_not_purged(conn, &info, &self.committed).await?;
        tracing::warn!(
            from = %old,
            to = %new,
            gtids = %self.committed.gtids,
            "the source endpoint leads to another server (a failover); it has every transaction \
             read so far: continuing there by GTID"
        );
        ReplicaCounters::count(&self.options.counters.failovers);
        self.info = info;
        Ok(())
    }

    async fn next_event(&mut self) -> Result<Option<Event>> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Error::ConnectionLost("no replication connection".into()));
        };
        let silence = self.options.heartbeat * 3;
        // Most events are already buffered; only arm the silence timer when we have to wait.
        // (Polling `next` and dropping it is safe: the stream keeps its own read state.)
        let next = match stream.next().now_or_never() {
            Some(next) => Ok(next),
            None => tokio::time::timeout(silence, stream.next()).await,
        };
        match next {
            Err(_) => {
                self.stream = None;
                Err(Error::ConnectionLost(format!(
                    "no event and no heartbeat from the server for {silence:?}: the connection is silent"
                )))
            }
            Ok(None) => Ok(None),
            Ok(Some(Ok(event))) => Ok(Some(event)),
            Ok(Some(Err(e))) => {
                self.stream = None;
                // MariaDB reports a start position it no longer has once streaming begins.
                Err(explain_dump_error(e, &self.committed))
            }
        }
    }
}

/// A decoder that continues from `position` (a transaction boundary).
fn new_decoder(info: &ServerInfo, options: &ReplicaOptions, position: &Position) -> Decoder {
    Decoder::new(info.flavor, &position.file, options.filter.clone())
        .with_position(position)
        .with_server_uuid(info.server_uuid.clone())
        .with_skipped_types(options.skip_event_types.clone())
        .requiring_full_images()
}

/// The first row of a query as text columns (NULL as `None`). Typed `FromRow` conversions panic
/// on a type surprise, and a server's answer is input: it must not crash us.
pub(crate) async fn first_row(conn: &mut Conn, query: &str) -> Result<Option<Vec<Option<String>>>> {
    let row: Option<mysql_async::Row> = conn
        .query_first(query)
        .await
        .map_err(Error::server(format!("running `{query}`")))?;
    Ok(row.map(|row| {
        (0..row.len())
            .map(|i| match row.as_ref(i) {
                None | Some(mysql_async::Value::NULL) => None,
                Some(mysql_async::Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                Some(other) => Some(other.as_sql(true).trim_matches('\'').to_string()),
            })
            .collect()
    }))
}

/// One variable (or the first column of the first row) as text.
pub(crate) async fn first_value(conn: &mut Conn, query: &str) -> Result<Option<String>> {
    Ok(first_row(conn, query)
        .await?
        .and_then(|row| row.into_iter().next().flatten()))
}

/// The longest wait between two reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A failure that a later attempt can overcome: the connection broke, or the server is starting,
/// stopping or full.
fn is_transient(error: &Error) -> bool {
    match error {
        Error::Server {
            source: mysql_async::Error::Server(e),
            ..
        } => matches!(
            e.code,
            // Too many connections, shutdown in progress, connection killed, server gone away,
            // lost connection.
            1040 | 1053 | 1927 | 2006 | 2013
        ),
        error => is_connection_loss(error),
    }
}

fn is_connection_loss(error: &Error) -> bool {
    match error {
        Error::ConnectionLost(_) => true,
        Error::Server { source, .. } => matches!(
            source,
            mysql_async::Error::Io(_) | mysql_async::Error::Driver(_)
        ),
        _ => false,
    }
}

pub(crate) fn connection_opts(options: &ReplicaOptions) -> Result<Opts> {
    let url = options.url.trim();
    if !url.starts_with("mysql://") {
        return Err(Error::Setup(format!(
            "source `{}` is not a mysql:// URL; write it as mysql://USER[:PASSWORD]@HOST[:PORT]",
            redact_url(url)
        )));
    }
    let opts = Opts::from_url(url).map_err(|e| {
        Error::Setup(format!(
            "source `{}` is not a valid URL ({e}); write it as mysql://USER[:PASSWORD]@HOST[:PORT]",
            redact_url(url)
        ))
    })?;
    let mut builder = OptsBuilder::from_opts(opts).prefer_socket(false);
    if let Some(password) = &options.password {
        builder = builder.pass(Some(password.clone()));
    }
    let ssl = match options.tls_mode {
        TlsMode::Disabled => None,
        TlsMode::Preferred | TlsMode::Required => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        TlsMode::VerifyCa | TlsMode::VerifyIdentity => {
            let mut ssl = SslOpts::default();
            if let Some(ca) = &options.tls_ca {
                if !ca.exists() {
                    return Err(Error::Setup(format!(
                        "TLS CA file {} does not exist (--tls-ca / source.tls_ca)",
                        ca.display()
                    )));
                }
                ssl = ssl.with_root_certs(vec![ca.clone().into()]);
            }
            Some(ssl.with_danger_skip_domain_validation(options.tls_mode == TlsMode::VerifyCa))
        }
    };
    Ok(builder.ssl_opts(ssl).into())
}

pub(crate) async fn connect(opts: &Opts) -> Result<Conn> {
    // mysql_async's rustls needs a process-wide crypto provider; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let target = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
    let user = opts.user().unwrap_or("").to_string();
    match tokio::time::timeout(Duration::from_secs(10), Conn::new(opts.clone())).await {
        Err(_) => Err(Error::Setup(format!(
            "cannot connect to {target}: no answer within 10 s; check the host, port and firewall"
        ))),
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let hint = match &e {
                mysql_async::Error::Server(s) if s.code == 1045 => {
                    format!("the server rejected user `{user}`: wrong user or password")
                }
                mysql_async::Error::Io(_) => format!(
                    "cannot connect to {target}: is the server running and reachable? (with TLS \
                     verification, is --tls-ca the CA that signed the server's certificate?)"
                ),
                _ => format!("cannot connect to {target}"),
            };
            Err(Error::Server {
                context: hint,
                source: e,
            })
        }
    }
}

/// Checks that the binlog can give complete row images.
async fn check_server(conn: &mut Conn) -> Result<ServerInfo> {
    let row = first_row(
        conn,
        "SELECT @@version, @@log_bin, @@binlog_format, @@binlog_row_image",
    )
    .await?
    .ok_or_else(|| Error::Setup("the server returned no settings".into()))?;
    let setting = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let (version, log_bin, format, image) = (setting(0), setting(1), setting(2), setting(3));
    let flavor = if version.contains("MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    if log_bin != "1" {
        return Err(Error::Setup(
            "the server's binary log is off (log_bin=0): start it with --log-bin".into(),
        ));
    }
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(Error::Setup(format!(
            "binlog_format is {format}: row changes are only in the binlog with \
             binlog_format=ROW (SET PERSIST binlog_format='ROW', or in the server's config)"
        )));
    }
    if !image.eq_ignore_ascii_case("FULL") {
        return Err(Error::Setup(format!(
            "binlog_row_image is {image}: cdcd needs complete before and after images; set \
             binlog_row_image=FULL"
        )));
    }
    let server_uuid = match flavor {
        Flavor::MySql => first_value(conn, "SELECT @@server_uuid").await?,
        Flavor::MariaDb => None,
    };
    let server_id = first_value(conn, "SELECT @@server_id")
        .await?
        .and_then(|id| id.parse().ok())
        .unwrap_or_default();
    Ok(ServerInfo {
        flavor,
        version,
        server_uuid,
        server_id,
    })
}

/// The server's current end: file, offset and GTID state.
async fn binlog_end(conn: &mut Conn, info: &ServerInfo) -> Result<Position> {
    let mut status = None;
    for statement in ["SHOW BINARY LOG STATUS", "SHOW MASTER STATUS"] {
        match first_row(conn, statement).await {
            Ok(row) => {
                status = row;
                break;
            }
            Err(Error::Server {
                source: mysql_async::Error::Server(e),
                ..
            }) if e.code == 1227 => {
                return Err(Error::Setup(format!(
                    "the replication user may not read the binlog position ({}); GRANT \
                     REPLICATION CLIENT (MariaDB: BINLOG MONITOR) and REPLICATION SLAVE to it",
                    e.message
                )))
            }
            Err(_) => continue,
        }
    }
    let row = status.ok_or_else(|| {
        Error::Setup("SHOW BINARY LOG STATUS returned nothing: is log_bin on?".into())
    })?;
    let file = row.first().cloned().flatten().unwrap_or_default();
    let pos = row
        .get(1)
        .cloned()
        .flatten()
        .and_then(|p| p.parse().ok())
        .unwrap_or(4);
    let gtids = match info.flavor {
        Flavor::MySql => {
            let executed = first_value(conn, "SELECT @@gtid_executed")
                .await?
                .unwrap_or_default();
            Gtids::MySql(executed.parse().map_err(Error::Setup)?)
        }
        Flavor::MariaDb => {
            let current = first_value(conn, "SELECT @@gtid_binlog_pos")
                .await?
                .unwrap_or_default();
            Gtids::MariaDb(current.parse().map_err(Error::Setup)?)
        }
    };
    Ok(Position { file, pos, gtids })
}

async fn gtid_mode_on(conn: &mut Conn) -> Result<bool> {
    let mode = first_value(conn, "SELECT @@gtid_mode").await?;
    Ok(mode.is_some_and(|m| m.eq_ignore_ascii_case("ON")))
}

async fn resolve_start(conn: &mut Conn, info: &ServerInfo, start: &StartFrom) -> Result<Position> {
    let end = binlog_end(conn, info).await?;
    let mysql_gtids = info.flavor == Flavor::MySql && gtid_mode_on(conn).await?;
    match start {
        StartFrom::End => Ok(if mysql_gtids || info.flavor == Flavor::MariaDb {
            end
        } else {
            Position {
                gtids: Gtids::None,
                ..end
            }
        }),
        StartFrom::Position(p, _) => {
            check_not_purged(conn, info, p).await?;
            Ok(p.clone())
        }
        StartFrom::File(file, pos) => Ok(Position {
            file: file.clone(),
            pos: *pos,
            gtids: Gtids::None,
        }),
        StartFrom::Start => {
            if mysql_gtids {
                let purged = first_value(conn, "SELECT @@gtid_purged")
                    .await?
                    .unwrap_or_default();
                let set: GtidSet = purged.parse().map_err(Error::Setup)?;
                return Ok(Position {
                    file: String::new(),
                    pos: 4,
                    gtids: Gtids::MySql(set),
                });
            }
            let first = first_value(conn, "SHOW BINARY LOGS").await?;
            Ok(Position {
                file: first.unwrap_or(end.file),
                pos: 4,
                gtids: Gtids::None,
            })
        }
        StartFrom::Gtid(text) => {
            let position = match info.flavor {
                Flavor::MySql => Position {
                    file: String::new(),
                    pos: 4,
                    gtids: Gtids::MySql(
                        text.parse()
                            .map_err(|e| Error::Setup(format!("--from gtid:{text}: {e}")))?,
                    ),
                },
                Flavor::MariaDb => Position {
                    file: String::new(),
                    pos: 4,
                    gtids: Gtids::MariaDb(
                        text.parse::<MariaGtidList>()
                            .map_err(|e| Error::Setup(format!("--from gtid:{text}: {e}")))?,
                    ),
                },
            };
            check_not_purged(conn, info, &position).await?;
            Ok(position)
        }
    }
}

/// Refuses a position taken on another kind of server, or on another server when only a file and
/// offset say where to resume (they mean nothing on a different server; GTIDs do).
fn check_resumable(info: &ServerInfo, position: &Position, taken_on: Option<&str>) -> Result<()> {
    let other_flavor = matches!(
        (&position.gtids, info.flavor),
        (Gtids::MySql(_), Flavor::MariaDb) | (Gtids::MariaDb(_), Flavor::MySql)
    );
    if other_flavor {
        return Err(Error::Setup(format!(
            "the start position {} was taken on another kind of server than this {} server",
            describe(position),
            info.flavor.as_str()
        )));
    }
    if let (Some(ours), Some(theirs)) = (taken_on, info.server_uuid.as_deref()) {
        if ours != theirs && position.gtids == Gtids::None {
            return Err(Error::Setup(format!(
                "the start position {} is a file position on server {ours}, but the source is \
                 server {theirs}; a file position cannot be carried to another server (a GTID \
                 position could): start again with --from, or connect to {ours}",
                describe(position)
            )));
        }
    }
    Ok(())
}

/// Refuses to start from GTIDs whose binlogs the server no longer has, naming them.
async fn check_not_purged(conn: &mut Conn, info: &ServerInfo, position: &Position) -> Result<()> {
    let missing = match (info.flavor, &position.gtids) {
        (Flavor::MySql, Gtids::MySql(have)) => {
            let purged = first_value(conn, "SELECT @@gtid_purged")
                .await?
                .unwrap_or_default();
            let purged: GtidSet = purged.parse().map_err(Error::Setup)?;
            purged.difference(have).to_string()
        }
        (Flavor::MariaDb, Gtids::MariaDb(have)) => match oldest_binlog_gtid_list(conn).await? {
            // Everything up to the GTID list at the start of the oldest binlog is purged.
            Some(purged) => missing_transactions(&purged, have),
            None => String::new(),
        },
        _ => String::new(),
    };
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Setup(format!(
        "the server has purged binlogs holding transactions {missing} that come after the start \
         position; they cannot be read any more, and nothing has been read. To recover, reload \
         the tables from a snapshot and start after it (cdcd tail --from end; cdcd run: remove \
         the checkpoint, run.start = \"end\"), or accept the gap (--from start; run.start = \
         \"start\")"
    )))
}

/// MariaDB: the GTID list at the start of the oldest binlog the server has (the last
/// transactions of every domain before it); `None` when it cannot be read.
async fn oldest_binlog_gtid_list(conn: &mut Conn) -> Result<Option<MariaGtidList>> {
    let Some(oldest) = first_value(conn, "SHOW BINARY LOGS").await? else {
        return Ok(None);
    };
    let events: Vec<mysql_async::Row> = conn
        .query(format!(
            "SHOW BINLOG EVENTS IN '{}' LIMIT 4",
            oldest.replace('\'', "")
        ))
        .await
        .map_err(Error::server(format!(
            "reading the GTID list of the oldest binlog {oldest} (SHOW BINLOG EVENTS; grant \
             BINLOG MONITOR to the replication user)"
        )))?;
    for event in events {
        let (Some(Ok(kind)), Some(Ok(info))) = (
            event.get_opt::<String, _>("Event_type"),
            event.get_opt::<String, _>("Info"),
        ) else {
            continue;
        };
        if kind == "Gtid_list" {
            let list = info.trim().trim_start_matches('[').trim_end_matches(']');
            return list.parse().map(Some).map_err(Error::Setup);
        }
    }
    Ok(None)
}

/// The MariaDB transactions of `wanted` (per domain: up to its sequence number) that `reached`
/// has not reached, as `first to last` ranges; empty when there are none.
fn missing_transactions(wanted: &MariaGtidList, reached: &MariaGtidList) -> String {
    wanted
        .domains()
        .filter_map(|(domain, server, seq)| {
            let from = reached.get(domain).map_or(0, |(_, seq)| seq) + 1;
            (from <= seq).then(|| match from == seq {
                true => format!("domain {domain} seq_no {seq} ({domain}-{server}-{seq})"),
                false => format!(
                    "domain {domain} seq_no {from} to {seq} (up to {domain}-{server}-{seq})"
                ),
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses a server that lacks transactions of `position`, which cdcd read from `previous`:
/// reading on there would skip or repeat changes without a word.
async fn check_has_read_gtids(
    conn: &mut Conn,
    info: &ServerInfo,
    position: &Position,
    previous: &str,
) -> Result<()> {
    let missing = match (&position.gtids, info.flavor) {
        (Gtids::MySql(read), Flavor::MySql) => {
            let executed: GtidSet = first_value(conn, "SELECT @@gtid_executed")
                .await?
                .unwrap_or_default()
                .parse()
                .map_err(Error::Setup)?;
            read.difference(&executed).to_string()
        }
        (Gtids::MariaDb(read), Flavor::MariaDb) => {
            let has: MariaGtidList = first_value(conn, "SELECT @@gtid_binlog_pos")
                .await?
                .unwrap_or_default()
                .parse()
                .map_err(Error::Setup)?;
            missing_transactions(read, &has)
        }
        _ => return Ok(()),
    };
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Setup(format!(
        "the source ({}) lacks transactions that cdcd has already read from {previous}: \
         {missing}. It is not a replica of that server, or it lost them: reading on there could \
         skip or repeat changes, so nothing more is read. Point the source at a server that has \
         them, or start again from a snapshot (remove the checkpoint; run.start / --from)",
        info.identity()
    )))
}

fn explain_dump_error(error: mysql_async::Error, from: &Position) -> Error {
    let context = match &error {
        mysql_async::Error::Server(e) if e.code == 1227 || e.code == 1045 => {
            "the user may not replicate: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO \
             the replication user"
                .to_string()
        }
        mysql_async::Error::Server(e)
            if e.code == 1236 && e.message.contains("same server_uuid/server_id") =>
        {
            "another replica is connected with the same server id: give this cdcd a server id \
             of its own (source.server_id, unique among the server's replicas)"
                .to_string()
        }
        mysql_async::Error::Server(e) if e.code == 1236 => format!(
            "the server cannot send the binlog from {}: the binlogs may have been purged; start \
             again from a snapshot (cdcd tail --from start, or a new run.start and checkpoint)",
            describe(from)
        ),
        _ => format!("reading the binlog from {}", describe(from)),
    };
    Error::Server {
        context,
        source: error,
    }
}

/// A position as a user would write it for `--from`.
fn describe(position: &Position) -> String {
    match &position.gtids {
        Gtids::None => format!("file:{}:{}", position.file, position.pos),
        gtids => format!("gtid:{gtids}"),
    }
}

/// The URL with its password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_string();
    };
    let start = url.find("://").map_or(0, |i| i + 3).min(at);
    match url[start..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..start], &url[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_mariadb_transactions_are_named_by_domain() {
        let list = |text: &str| text.parse::<MariaGtidList>().unwrap();
        let wanted = list("0-1-44,2-2-17");
        assert_eq!(missing_transactions(&wanted, &wanted), "");
        assert_eq!(missing_transactions(&wanted, &list("0-1-50,2-2-17")), "");
        assert_eq!(
            missing_transactions(&wanted, &list("0-1-44,2-2-16")),
            "domain 2 seq_no 17 (2-2-17)"
        );
        assert_eq!(
            missing_transactions(&wanted, &list("0-1-40")),
            "domain 0 seq_no 41 to 44 (up to 0-1-44), domain 2 seq_no 1 to 17 (up to 2-2-17)"
        );
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact_url("mysql://u:secret@h:1"), "mysql://u:***@h:1");
        assert_eq!(redact_url("u:p@ss@h"), "u:***@h");
        let err = connection_opts(&ReplicaOptions::new("mysql//u:secret@h")).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("mysql://USER"));
    }
}
