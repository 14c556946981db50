//! Following a server as a replica.
//!
//! Resumption: the stream is requested from a [`Position`] that is a transaction boundary — by GTID
//! set (MySQL, COM_BINLOG_DUMP_GTID), GTID list (MariaDB, `@slave_connect_state`) or file:pos. When a
//! connection is lost or goes silent (no event and no heartbeat for three heartbeat periods), the
//! replica reconnects from the last commit it emitted; rows of the transaction that was cut off
//! are emitted again with the same `event_id`s, so consumers can deduplicate.
//!
//! Before streaming, the server's settings are checked: a binlog that cannot give complete row
//! images (`binlog_format` not ROW, `binlog_row_image` not FULL) is refused with the setting to fix.

use std::path::PathBuf;
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
    /// How often to retry a lost connection before giving up (0 = fail at once).
    pub reconnect_attempts: u32,
    /// Event type codes to skip instead of stopping on them (`--skip-event-type`).
    pub skip_event_types: Vec<u8>,
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
            reconnect_attempts: 10,
            skip_event_types: Vec::new(),
        }
    }
}

/// What the server told us about itself.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub flavor: Flavor,
    pub version: String,
    pub server_uuid: Option<String>,
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
    finished: bool,
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
            match self.next_event().await {
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
                    if let Some(Record::Commit(position)) = records[start..]
                        .iter()
                        .rev()
                        .find(|r| matches!(r, Record::Commit(_)))
                    {
                        self.committed = position.clone();
                    }
                    self.describe_tables(&mut records[start..]).await?;
                    if records.len() > start {
                        return Ok(true);
                    }
                }
                Ok(None) if self.options.until_end => {
                    self.finished = true;
                    if self.decoder.in_transaction() {
                        return Err(Error::Setup(
                            "the server ended the stream inside a transaction".into(),
                        ));
                    }
                }
                Ok(None) => {
                    // Without --until-end the stream never ends by itself: the server went away.
                    self.stream = None;
                    failures += 1;
                    if failures > self.options.reconnect_attempts {
                        return Err(Error::ConnectionLost(
                            "the server keeps closing the replication stream".into(),
                        ));
                    }
                    self.reconnect(failures, "the server closed the replication stream")
                        .await;
                }
                Err(e) if is_connection_loss(&e) && failures < self.options.reconnect_attempts => {
                    failures += 1;
                    self.reconnect(failures, &e.to_string()).await;
                }
                Err(e) => return Err(e),
            }
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

    /// Waits (with backoff) and opens a new stream from the last commit. A failure leaves the
    /// replica without a stream, which the next read reports as a lost connection, so every
    /// attempt counts against `reconnect_attempts`.
    async fn reconnect(&mut self, attempt: u32, reason: &str) {
        let wait = Duration::from_millis(500 * 2u64.pow(attempt.min(6)));
        tracing::warn!(
            reason,
            attempt,
            ?wait,
            "replication connection lost; reconnecting from the last commit"
        );
        tokio::time::sleep(wait).await;
        self.decoder = new_decoder(&self.info, &self.options, &self.committed);
        if let Ok(conn) = connect(&self.opts).await {
            self.schema_conn = conn;
        }
        if let Err(e) = self.open_stream().await {
            tracing::warn!(error = %e, attempt, "reconnect failed");
            self.stream = None;
        }
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
    Ok(ServerInfo {
        flavor,
        version,
        server_uuid,
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

/// Refuses to start from GTIDs whose binlogs the server no longer has.
async fn check_not_purged(conn: &mut Conn, info: &ServerInfo, position: &Position) -> Result<()> {
    if let (Flavor::MySql, Gtids::MySql(have)) = (info.flavor, &position.gtids) {
        let purged = first_value(conn, "SELECT @@gtid_purged")
            .await?
            .unwrap_or_default();
        let purged: GtidSet = purged.parse().map_err(Error::Setup)?;
        let missing = purged.difference(have);
        if !missing.is_empty() {
            return Err(Error::Setup(format!(
                "the server has purged binlogs holding transactions {missing} that come after the \
                 start position; they cannot be read any more, and nothing has been read. To \
                 recover, reload the tables from a snapshot and start after it (cdcd tail --from \
                 end; cdcd run: remove the checkpoint, run.start = \"end\"), or accept the gap \
                 (--from start; run.start = \"start\")"
            )));
        }
    }
    Ok(())
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
    fn passwords_never_reach_messages() {
        assert_eq!(redact_url("mysql://u:secret@h:1"), "mysql://u:***@h:1");
        assert_eq!(redact_url("u:p@ss@h"), "u:***@h");
        let err = connection_opts(&ReplicaOptions::new("mysql//u:secret@h")).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("mysql://USER"));
    }
}
