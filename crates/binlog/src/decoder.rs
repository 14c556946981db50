//! The binlog state machine: events in, change events and transaction boundaries out.
//!
//! Invariants:
//! * Rows are emitted as soon as their rows event is decoded; nothing buffers a transaction, so
//!   memory is bounded by the largest single event, whatever the transaction's size.
//! * A [`Record::Commit`] is emitted exactly at transaction boundaries (XID, COMMIT, a DDL
//!   statement, XA PREPARE) and carries the position *after* the transaction: the only kind of
//!   position a checkpoint may hold.
//! * Every row of a transaction gets a 0-based index, counted over all rows including those the
//!   table filter drops, so `event_id`s do not change when the filter does.
//! * Events are never skipped silently: an event type without a meaning here is an error, and so
//!   are statement-based row changes and compressed MariaDB events, which cdcd cannot turn into rows.
//! * TRANSACTION_PAYLOAD: the events inside the payload must add up to its uncompressed size,
//!   which catches a payload that failed to decompress (the network client drops those silently).

use std::collections::HashMap;
use std::sync::Arc;

use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::{
    Event, EventData, GtidEvent, QueryEvent, RotateEvent, RowsEventData, TableMapEvent,
    TransactionPayloadEvent,
};
use mysql_common::binlog::jsondiff::JsonDiff;
use mysql_common::io::ParseBuf;

use cdcd_event::{ChangeEvent, DdlEvent, Flavor, Op, Source, TableSchema, Transaction, Value};

use crate::ddl::{classify_statement, Statement};
use crate::error::{Error, Location, Result};
use crate::filter::TableFilter;
use crate::gtid::{format_uuid, GtidSet, MariaGtidList};
use crate::json::{apply_diffs, diffs_to_text};
use crate::row::{decode_image, present_columns, Cursor};
use crate::table::TableDecoder;

/// What the decoder produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Change(ChangeEvent),
    Ddl(DdlEvent),
    /// The end of a transaction; `position` is where the next one starts.
    Commit(Position),
    /// The server said it is alive and has nothing new (replication connections only).
    Heartbeat,
}

/// The GTID state of a flavor.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Gtids {
    #[default]
    None,
    MySql(GtidSet),
    MariaDb(MariaGtidList),
}

impl std::fmt::Display for Gtids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gtids::None => Ok(()),
            Gtids::MySql(set) => set.fmt(f),
            Gtids::MariaDb(list) => list.fmt(f),
        }
    }
}

/// A resumable position: always a transaction boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub file: String,
    pub pos: u64,
    pub gtids: Gtids,
}

/// The transaction being decoded.
#[derive(Debug)]
struct OpenTransaction {
    /// What its change events share.
    info: Arc<Transaction>,
    gtid: GtidOf,
    rows: u64,
    /// A BEGIN was seen: the transaction ends at XID/COMMIT, not after one statement.
    began: bool,
}

/// A transaction's GTID, to add to the position at its commit.
#[derive(Debug, Default)]
enum GtidOf {
    #[default]
    None,
    /// Source uuid, tag, number.
    MySql(String, String, u64),
    /// Domain, server, sequence.
    MariaDb(u32, u32, u64),
}

/// A payload whose inner events are still arriving.
#[derive(Debug)]
struct Payload {
    pos: u64,
    end: u64,
    remaining: u64,
}

/// Decodes binlog events into [`Record`]s.
#[derive(Debug)]
pub struct Decoder {
    flavor: Flavor,
    server_id: u32,
    server_uuid: Option<Arc<str>>,
    file: Arc<str>,
    /// Start of the next event when the stream does not say (files say; the network does).
    next_pos: u64,
    /// End of the event being handled (for inner payload events, the end of the payload).
    event_end: u64,
    gtids: Gtids,
    txn: Option<OpenTransaction>,
    payload: Option<Payload>,
    /// Per table id: the TABLE_MAP body (to reuse the plan when it repeats), the plan, and
    /// whether the table filter keeps the table.
    tables: HashMap<u64, (Vec<u8>, Arc<TableDecoder>, bool)>,
    /// Rows decoded since the shared metadata was last copied (see [`RENEW_SHARED_EVERY`]).
    rows_since_renewal: usize,
    /// The schema cache: `None` marks a table that `information_schema` no longer has.
    schemas: HashMap<(String, String), Option<Arc<TableSchema>>>,
    filter: TableFilter,
    skip_types: Vec<u8>,
    /// Whether `handle` checks event checksums (the file reader checks raw bytes before parsing).
    verify_checksums: bool,
    /// Refuse row images that leave columns out (live streams: the server's global setting was
    /// checked, but a session can override it).
    require_full_images: bool,
    /// No FORMAT_DESCRIPTION seen yet on this stream.
    fde_pending: bool,
}

impl Decoder {
    pub fn new(flavor: Flavor, file: &str, filter: TableFilter) -> Self {
        Decoder {
            flavor,
            server_id: 0,
            server_uuid: None,
            file: file.into(),
            next_pos: 4,
            event_end: 4,
            gtids: Gtids::None,
            txn: None,
            payload: None,
            tables: HashMap::new(),
            rows_since_renewal: 0,
            schemas: HashMap::new(),
            filter,
            skip_types: Vec::new(),
            verify_checksums: true,
            require_full_images: false,
            fde_pending: true,
        }
    }

    /// Starts from a known position (resumption); the GTIDs are those already applied.
    pub fn with_position(mut self, position: &Position) -> Self {
        self.file = position.file.as_str().into();
        self.next_pos = position.pos;
        self.gtids = position.gtids.clone();
        self
    }

    /// Refuse rows events whose images leave columns out (`binlog_row_image` MINIMAL or NOBLOB).
    pub fn requiring_full_images(mut self) -> Self {
        self.require_full_images = true;
        self
    }

    /// For readers that verified each event's checksum on its raw bytes already.
    pub fn without_checksum_verification(mut self) -> Self {
        self.verify_checksums = false;
        self
    }

    pub fn with_server_uuid(mut self, uuid: Option<String>) -> Self {
        self.server_uuid = uuid.map(Into::into);
        self
    }

    /// Event types the user chose to skip (they are still counted and logged by the caller).
    pub fn with_skipped_types(mut self, types: Vec<u8>) -> Self {
        self.skip_types = types;
        self
    }

    /// Continues with the next file of a multi-file read (files do not announce their names).
    pub fn set_file(&mut self, name: &str) {
        self.file = name.into();
        self.next_pos = 4;
        self.tables.clear();
    }

    /// The position after the last complete transaction.
    pub fn position(&self) -> Position {
        Position {
            file: self.file.to_string(),
            pos: self.next_pos,
            gtids: self.gtids.clone(),
        }
    }

    pub fn in_transaction(&self) -> bool {
        self.txn.is_some() || self.payload.is_some()
    }

    /// For TABLE_MAP events without column names: the table whose definition the caller should
    /// look up in `information_schema` and hand over with [`Decoder::put_schema`].
    pub fn wants_schema(&self, event: &Event) -> Option<(String, String)> {
        if event.header().event_type_raw() != EventType::TABLE_MAP_EVENT as u8 {
            return None;
        }
        let tme: TableMapEvent<'_> = event.read_event().ok()?;
        let key = (
            tme.database_name().into_owned(),
            tme.table_name().into_owned(),
        );
        if !self.filter.matches(&key.0, &key.1) || self.schemas.contains_key(&key) {
            return None;
        }
        // MariaDB's metadata cannot say JSON, UUID or INET4/6 (they are text and binary on the
        // wire), so its tables are always looked up; MySQL's only when the names are missing.
        (self.flavor == Flavor::MariaDb || !crate::table::has_column_names(&tme)).then_some(key)
    }

    /// Hands over the definition [`Decoder::wants_schema`] asked for (`None`: no such table).
    pub fn put_schema(&mut self, schema: &str, table: &str, definition: Option<TableSchema>) {
        let key = (schema.to_string(), table.to_string());
        self.schemas.insert(key, definition.map(Arc::new));
    }

    /// Decodes one event, appending what it produced to `out`.
    pub fn handle(&mut self, event: &Event, out: &mut Vec<Record>) -> Result<()> {
        let header = event.header();
        let size = u64::from(header.event_size());
        let log_pos = u64::from(header.log_pos());
        let inner = self.payload.is_some();
        let at_pos = match &self.payload {
            Some(p) => p.pos,
            None if log_pos >= size && log_pos > 0 => log_pos - size,
            None => self.next_pos,
        };
        let at = Location {
            file: self.file.to_string(),
            pos: at_pos,
        };
        if let Some(payload) = &mut self.payload {
            if log_pos != payload.end && log_pos != 0 || size > payload.remaining {
                return Err(Error::decode(
                    &at,
                    "TRANSACTION_PAYLOAD",
                    format!(
                        "{} bytes of the decompressed payload are missing: it could not be \
                         decompressed",
                        payload.remaining
                    ),
                ));
            }
            payload.remaining -= size;
        }
        if !inner {
            if self.verify_checksums {
                self.verify_checksum(event, &at)?;
            }
            self.server_id = header.server_id();
        }
        self.event_end = match &self.payload {
            Some(p) => p.end,
            None if log_pos > 0 => log_pos,
            None => self.next_pos,
        };
        let type_code = header.event_type_raw();
        self.dispatch(event, type_code, &at, out)?;
        if let Some(payload) = &self.payload {
            if payload.remaining == 0 && inner {
                self.payload = None;
            }
        }
        if !inner && log_pos > 0 && self.payload.is_none() {
            self.next_pos = log_pos;
        }
        Ok(())
    }

    fn verify_checksum(&self, event: &Event, at: &Location) -> Result<()> {
        let (Some(stored), Ok(Some(alg))) = (event.checksum(), event.footer().get_checksum_alg())
        else {
            return Ok(());
        };
        if alg == mysql_common::binlog::consts::BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_OFF {
            return Ok(());
        }
        let stored = u32::from_le_bytes(stored);
        let computed = event.calc_checksum(alg);
        if stored != computed {
            return Err(Error::Checksum {
                at: at.clone(),
                stored,
                computed,
            });
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        event: &Event,
        type_code: u8,
        at: &Location,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let type_name = event_type_name(type_code);
        let read_err = |e: std::io::Error| Error::decode(at, type_name, e);
        // MariaDB event types are unknown to mysql_common; handle them by code first.
        match type_code {
            160 | 161 => return Ok(()), // ANNOTATE_ROWS (SQL text), BINLOG_CHECKPOINT
            162 => return self.mariadb_gtid(event, at),
            163 => return self.mariadb_gtid_list(event.data(), at),
            // mysql_common sizes its vectors from the counts inside this event; check them against
            // the event's length first so a damaged event is an error, not an allocation abort.
            35 => {
                check_previous_gtids(event.data()).map_err(|e| Error::decode(at, type_name, e))?
            }
            164 => {
                return Err(Error::decode(
                    at,
                    "START_ENCRYPTION",
                    "the binlog file is encrypted; read it through the server instead",
                ))
            }
            165..=171 => {
                return Err(Error::decode(
                    at,
                    format!("compressed event (type {type_code})"),
                    "MariaDB log_bin_compress is ON; cdcd does not decode compressed events. \
                     Set log_bin_compress=OFF on the server",
                ))
            }
            _ => {}
        }
        let Some(data) = event.read_data().map_err(read_err)? else {
            return self.unknown(type_code, at);
        };
        match data {
            EventData::FormatDescriptionEvent(fde) => {
                self.fde_pending = false;
                if fde.server_version().contains("MariaDB") {
                    self.flavor = Flavor::MariaDb;
                }
                self.tables.clear();
            }
            EventData::RotateEvent(rotate) => self.rotate(&rotate, event),
            EventData::StopEvent => {}
            EventData::PreviousGtidsEvent(prev) => {
                // Every transaction before this file: the base that GTID tracking needs when the
                // reading did not start from a GTID set.
                if self.gtids == Gtids::None {
                    let mut set = GtidSet::default();
                    for sid in prev.sids() {
                        let uuid = format_uuid(&sid.uuid());
                        let tag = sid.tag().map(|t| t.to_string()).unwrap_or_default();
                        for interval in sid.intervals() {
                            set.add_interval(&uuid, &tag, interval.start(), interval.end());
                        }
                    }
                    self.gtids = Gtids::MySql(set);
                }
            }
            EventData::GtidEvent(gtid) => self.mysql_gtid(&gtid, event, at)?,
            EventData::AnonymousGtidEvent(_) => {
                // A transaction without a GTID (gtid_mode OFF or PERMISSIVE): GTID sets no longer
                // describe the position, which is then its file and offset only.
                self.gtids = Gtids::None;
                self.begin(GtidOf::None, None, event, at, false)?;
            }
            EventData::QueryEvent(query) => self.query(&query, event, at, out)?,
            EventData::TableMapEvent(tme) => self.table_map(&tme, event.data(), at)?,
            EventData::RowsEvent(rows) => self.rows(&rows, type_code, event, at, out)?,
            EventData::XidEvent(_) | EventData::XaPrepareLogEvent(_) => self.commit(out),
            EventData::TransactionPayloadEvent(tpe) => self.payload_start(&tpe, event, at)?,
            EventData::HeartbeatEvent => out.push(Record::Heartbeat),
            EventData::RowsQueryEvent(_)
            | EventData::IntvarEvent(_)
            | EventData::RandEvent(_)
            | EventData::UserVarEvent(_)
            | EventData::IgnorableEvent(_)
            | EventData::TransactionContextEvent(_)
            | EventData::ViewChangeEvent(_) => {}
            EventData::IncidentEvent(incident) => {
                return Err(Error::decode(
                    at,
                    "INCIDENT",
                    format!(
                        "the server recorded an incident ({}): changes may be missing from the \
                         binlog around this point; verify the tables before resuming past it",
                        incident.message()
                    ),
                ))
            }
            EventData::UnknownEvent => {
                // HEARTBEAT_V2 (41) is "unknown" to mysql_common's EventData.
                if type_code == 41 {
                    out.push(Record::Heartbeat);
                } else {
                    return self.unknown(type_code, at);
                }
            }
            _ => {
                // Statement-era LOAD DATA, pre-GA rows events and other legacy types cannot be
                // turned into rows; say so instead of skipping them.
                if !self.skip_types.contains(&type_code) {
                    return Err(Error::decode(
                        at,
                        type_name,
                        "this event type carries changes cdcd cannot decode into rows; use \
                         binlog_format=ROW",
                    ));
                }
            }
        }
        Ok(())
    }

    fn unknown(&self, type_code: u8, at: &Location) -> Result<()> {
        if self.skip_types.contains(&type_code) {
            return Ok(());
        }
        Err(Error::UnknownEvent {
            at: at.clone(),
            type_code,
        })
    }

    fn rotate(&mut self, rotate: &RotateEvent<'_>, event: &Event) {
        let mut name = rotate.name_raw();
        // A replication stream starts with an artificial ROTATE sent before any FORMAT_DESCRIPTION,
        // so the parser does not know whether it carries a CRC32; when it does (MariaDB), the
        // checksum ends up in the name. Recognise it by checking it.
        if self.fde_pending && name.len() > 4 && ends_with_own_crc32(event) {
            name = &name[..name.len() - 4];
        }
        let name = String::from_utf8_lossy(name).into_owned();
        if name.is_empty() {
            return;
        }
        if *self.file != *name {
            self.tables.clear();
        }
        self.file = name.into();
        self.next_pos = rotate.position();
    }

    /// Opens a transaction at `at`. `commit_ts_us` is the server's commit time when it gives one;
    /// otherwise the event's timestamp (seconds) stands in.
    fn begin(
        &mut self,
        gtid: GtidOf,
        commit_ts_us: Option<i64>,
        event: &Event,
        at: &Location,
        began: bool,
    ) -> Result<()> {
        if let Some(open) = &self.txn {
            return Err(Error::decode(
                at,
                "GTID",
                format!(
                    "a new transaction starts while the one at offset {} of {} never committed; \
                     the binlog is incomplete there",
                    open.info.pos, open.info.file
                ),
            ));
        }
        self.txn = Some(self.new_transaction(gtid, commit_ts_us, event, at, began));
        Ok(())
    }

    /// The open transaction, or a new one starting at `at` (changes outside any transaction
    /// marker, as non-transactional engines write them, are a transaction of their own).
    fn ensure_transaction(
        &mut self,
        event: &Event,
        at: &Location,
        began: bool,
    ) -> &mut OpenTransaction {
        let txn = match self.txn.take() {
            Some(txn) => txn,
            None => self.new_transaction(GtidOf::None, None, event, at, began),
        };
        self.txn.insert(txn)
    }

    fn new_transaction(
        &self,
        gtid: GtidOf,
        commit_ts_us: Option<i64>,
        event: &Event,
        at: &Location,
        began: bool,
    ) -> OpenTransaction {
        let text = match &gtid {
            GtidOf::None => None,
            GtidOf::MySql(uuid, tag, gno) if tag.is_empty() => Some(format!("{uuid}:{gno}")),
            GtidOf::MySql(uuid, tag, gno) => Some(format!("{uuid}:{tag}:{gno}")),
            GtidOf::MariaDb(domain, server, seq) => Some(format!("{domain}-{server}-{seq}")),
        };
        let info = Transaction {
            flavor: self.flavor,
            server_id: event.header().server_id(),
            server_uuid: self.server_uuid.clone(),
            gtid: text,
            file: self.file.to_string(),
            pos: at.pos,
            commit_ts_us: commit_ts_us
                .unwrap_or_else(|| i64::from(event.header().timestamp()) * 1_000_000),
        };
        OpenTransaction {
            info: Arc::new(info),
            gtid,
            rows: 0,
            began,
        }
    }

    fn mysql_gtid(&mut self, gtid: &GtidEvent, event: &Event, at: &Location) -> Result<()> {
        let uuid = format_uuid(&gtid.sid());
        let tag = gtid.tag().map(|t| t.to_string()).unwrap_or_default();
        let ts = gtid.immediate_commit_timestamp();
        let commit_ts = (ts > 0).then_some(ts as i64);
        self.begin(
            GtidOf::MySql(uuid, tag, gtid.gno()),
            commit_ts,
            event,
            at,
            false,
        )
    }

    fn mariadb_gtid(&mut self, event: &Event, at: &Location) -> Result<()> {
        let data = event.data();
        if data.len() < 13 {
            return Err(Error::decode(at, "MariaDB GTID", "event is too short"));
        }
        let seq = u64::from_le_bytes(data[0..8].try_into().expect("8 bytes"));
        let domain = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
        let flags = data[12];
        let server = event.header().server_id();
        // Without FL_STANDALONE, MariaDB's GTID event takes the place of BEGIN.
        let began = flags & 1 == 0;
        self.begin(GtidOf::MariaDb(domain, server, seq), None, event, at, began)
    }

    fn mariadb_gtid_list(&mut self, data: &[u8], at: &Location) -> Result<()> {
        let bad = || Error::decode(at, "MariaDB GTID_LIST", "event is truncated");
        let count = u32::from_le_bytes(data.get(0..4).ok_or_else(bad)?.try_into().expect("4"))
            & 0x0fff_ffff;
        // The GTID state before this file: the base of GTID tracking, as PREVIOUS_GTIDS for MySQL.
        if self.gtids == Gtids::None {
            let mut list = MariaGtidList::default();
            for i in 0..count as usize {
                let e = data.get(4 + i * 16..4 + (i + 1) * 16).ok_or_else(bad)?;
                list.set(
                    u32::from_le_bytes(e[0..4].try_into().expect("4")),
                    u32::from_le_bytes(e[4..8].try_into().expect("4")),
                    u64::from_le_bytes(e[8..16].try_into().expect("8")),
                );
            }
            self.gtids = Gtids::MariaDb(list);
        }
        Ok(())
    }

    fn query(
        &mut self,
        query: &QueryEvent<'_>,
        event: &Event,
        at: &Location,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let text = query.query();
        let statement = classify_statement(&text, &query.schema());
        match statement {
            Statement::Begin => match &mut self.txn {
                Some(txn) => txn.began = true,
                None => self.begin(GtidOf::None, None, event, at, true)?,
            },
            Statement::Commit => self.commit(out),
            Statement::RowChange => {
                return Err(Error::decode(
                    at,
                    "QUERY",
                    format!(
                        "statement-based change `{}`: its rows are not in the binlog. Set \
                         binlog_format=ROW on the server",
                        truncate(&text, 80)
                    ),
                ));
            }
            Statement::RollbackToSavepoint => {
                return Err(Error::decode(
                    at,
                    "QUERY",
                    "ROLLBACK TO SAVEPOINT in a transaction that changed non-transactional tables: \
                     the binlog holds rows that were rolled back and does not say which; resume \
                     after this transaction with --from",
                ));
            }
            Statement::Ddl { operation, tables } => {
                let txn = self.ensure_transaction(event, at, false);
                let source = Self::source(txn, at.pos, u64::from(event.header().log_pos()));
                // The DDL record has a row index of its own, so ids stay unique in the
                // transaction.
                txn.rows += 1;
                // MySQL 8.0.21+ logs CREATE TABLE … SELECT atomically: the statement opens a
                // transaction whose rows follow, ended by an XID.
                if text
                    .trim_end()
                    .to_ascii_uppercase()
                    .ends_with("START TRANSACTION")
                {
                    txn.began = true;
                }
                let ends_transaction = !txn.began;
                // Any DDL can change any cached definition (renames, swaps, multi-table drops):
                // reload them all as they are used next.
                self.schemas.clear();
                let table = tables.first().cloned();
                let keep = table
                    .as_ref()
                    .is_none_or(|(s, t)| self.filter.matches(s, t));
                if keep {
                    out.push(Record::Ddl(DdlEvent {
                        schema: query.schema().as_ref().into(),
                        table,
                        operation,
                        query: text.into_owned(),
                        definition: None,
                        source,
                    }));
                }
                if ends_transaction {
                    self.commit(out);
                }
            }
            Statement::Other => {
                // Statements that change no rows (GRANT, CREATE USER, FLUSH, …) are transactions
                // of their own when no BEGIN preceded them.
                if self.txn.as_ref().is_some_and(|t| !t.began) {
                    self.commit(out);
                }
            }
        }
        Ok(())
    }

    fn table_map(&mut self, tme: &TableMapEvent<'_>, body: &[u8], at: &Location) -> Result<()> {
        let id = tme.table_id();
        if let Some((raw, _, _)) = self.tables.get(&id) {
            if raw.as_slice() == body {
                return Ok(());
            }
        }
        let (schema, table) = (tme.database_name(), tme.table_name());
        let included = self.filter.matches(&schema, &table);
        let cached = match self.schemas.get(&(schema.to_string(), table.to_string())) {
            Some(None) if included && !crate::table::has_column_names(tme) => {
                return Err(Error::Schema {
                    at: at.clone(),
                    schema: schema.to_string(),
                    table: table.to_string(),
                    message: "the table no longer exists and the binlog has no column names for \
                              it; set binlog_row_metadata=FULL on the server, or leave the table \
                              out with --tables"
                        .into(),
                })
            }
            Some(cached) => cached.clone(),
            None => None,
        };
        let decoder =
            TableDecoder::new(tme, cached.as_deref(), self.flavor).map_err(|message| {
                Error::Schema {
                    at: at.clone(),
                    schema: schema.to_string(),
                    table: table.to_string(),
                    message,
                }
            })?;
        self.tables
            .insert(id, (body.to_vec(), Arc::new(decoder), included));
        Ok(())
    }

    fn rows(
        &mut self,
        rows: &RowsEventData<'_>,
        type_code: u8,
        event: &Event,
        at: &Location,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let op = match type_code {
            23 | 30 => Op::Insert,
            24 | 31 | 39 => Op::Update,
            25 | 32 => Op::Delete,
            _ => return self.unknown(type_code, at),
        };
        let columns = rows.num_columns() as usize;
        let before_bits = rows
            .columns_before_image()
            .map(|b| present_columns(b.iter().by_vals(), columns));
        let after_bits = rows
            .columns_after_image()
            .map(|b| present_columns(b.iter().by_vals(), columns));
        self.renew_shared_metadata(rows.table_id());
        let Some((_, table, included)) = self.tables.get(&rows.table_id()).cloned() else {
            return Err(Error::decode(
                at,
                event_type_name(type_code),
                format!(
                    "no TABLE_MAP for table id {} precedes this rows event; start reading at a \
                     transaction boundary",
                    rows.table_id()
                ),
            ));
        };
        // Only the captured tables need full images: another application may write MINIMAL
        // images to tables cdcd leaves out.
        if self.require_full_images && included {
            let partial = [&before_bits, &after_bits]
                .into_iter()
                .flatten()
                .find(|image| image.count < columns);
            if let Some(image) = partial {
                return Err(Error::decode(
                    at,
                    event_type_name(type_code),
                    format!(
                        "the row image of `{}`.`{}` holds {} of {columns} columns: the writing \
                         session used binlog_row_image=MINIMAL or NOBLOB. cdcd needs FULL images \
                         of the tables it captures; make sure no session writing them overrides \
                         binlog_row_image",
                        table.schema.schema, table.schema.table, image.count
                    ),
                ));
            }
        }
        if table.plans.len() != columns {
            return Err(Error::Schema {
                at: at.clone(),
                schema: table.schema.schema.to_string(),
                table: table.schema.table.to_string(),
                message: format!(
                    "rows event has {columns} columns, its TABLE_MAP {}",
                    table.plans.len()
                ),
            });
        }
        // Inside a TRANSACTION_PAYLOAD the inner events have no offsets; the payload's end is
        // where reading continues.
        let next_pos = self.event_end;
        let mut cursor = Cursor {
            data: rows.rows_data(),
        };
        let err = |e: String| Error::decode(at, event_type_name(type_code), e);
        // Partial updates flag their JSON columns by position among the table's JSON columns.
        let json_columns: Vec<usize> = if type_code == 39 {
            table
                .plans
                .iter()
                .enumerate()
                .filter(|(_, p)| matches!(p.layout, crate::table::Layout::Jsonb { .. }))
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        };
        let mut diffs: Vec<(usize, &[u8])> = Vec::new();
        let txn = self.ensure_transaction(event, at, true);
        let first_row = txn.rows;
        while !cursor.data.is_empty() {
            let before = match &before_bits {
                Some(bits) => {
                    Some(decode_image(&mut cursor, bits, &table, &[], &mut diffs).map_err(err)?)
                }
                None => None,
            };
            let after = match &after_bits {
                Some(bits) => {
                    let partial = if type_code == 39 {
                        partial_json_columns(&mut cursor, &json_columns, columns).map_err(err)?
                    } else {
                        Vec::new()
                    };
                    diffs.clear();
                    let mut image = decode_image(&mut cursor, bits, &table, &partial, &mut diffs)
                        .map_err(err)?;
                    for &(column, raw) in &diffs {
                        image[column] =
                            apply_partial(before.as_deref(), column, raw).map_err(|e| {
                                err(format!(
                                    "column {} `{}`: {e}",
                                    column + 1,
                                    table.schema.columns[column].name
                                ))
                            })?;
                    }
                    Some(image)
                }
                None => None,
            };
            let source = Self::source(txn, at.pos, next_pos);
            txn.rows += 1;
            if !included {
                // Decoded only to keep row indexes (and so event ids) independent of the filter.
                continue;
            }
            out.push(Record::Change(ChangeEvent {
                op,
                table: table.schema.clone(),
                before,
                after,
                source,
            }));
        }
        self.rows_since_renewal += (txn.rows - first_row) as usize;
        Ok(())
    }

    /// Gives the events that follow their own copies of the table and transaction metadata every
    /// [`RENEW_SHARED_EVERY`] rows. Events hold `Arc`s to both; when a consumer drops them on
    /// another thread, its reference-count decrements and our increments fight over one cache
    /// line, which cost `cdcd tail` a tenth of its time. Fresh copies keep each batch's counts
    /// apart.
    fn renew_shared_metadata(&mut self, table_id: u64) {
        if self.rows_since_renewal < RENEW_SHARED_EVERY {
            return;
        }
        self.rows_since_renewal = 0;
        if let Some(txn) = &mut self.txn {
            txn.info = Arc::new(Transaction::clone(&txn.info));
        }
        if let Some((_, table, _)) = self.tables.get_mut(&table_id) {
            let mut copy = TableDecoder::clone(table);
            copy.schema = Arc::new(TableSchema::clone(&copy.schema));
            *table = Arc::new(copy);
        }
    }

    /// Where the next row of the open transaction comes from.
    fn source(txn: &OpenTransaction, pos: u64, next_pos: u64) -> Source {
        Source {
            transaction: txn.info.clone(),
            pos,
            next_pos,
            row: txn.rows,
        }
    }

    fn commit(&mut self, out: &mut Vec<Record>) {
        let Some(txn) = self.txn.take() else {
            return;
        };
        match (&mut self.gtids, txn.gtid) {
            (Gtids::MySql(set), GtidOf::MySql(uuid, tag, gno)) => set.add(&uuid, &tag, gno),
            (Gtids::MariaDb(list), GtidOf::MariaDb(domain, server, seq)) => {
                list.set(domain, server, seq)
            }
            _ => {}
        }
        // A commit is the last event of its transaction: resume right after it.
        let mut position = self.position();
        position.pos = self.event_end;
        out.push(Record::Commit(position));
    }

    fn payload_start(
        &mut self,
        tpe: &TransactionPayloadEvent<'_>,
        event: &Event,
        at: &Location,
    ) -> Result<()> {
        self.payload = Some(Payload {
            pos: at.pos,
            end: u64::from(event.header().log_pos()),
            remaining: tpe.uncompressed_size(),
        });
        Ok(())
    }
}

/// In PARTIAL_UPDATE_ROWS, the after image starts with `binlog_row_value_options` and, when
/// partial JSON is on, one bit per JSON column of the table saying whether it holds a diff.
fn partial_json_columns(
    cursor: &mut Cursor<'_>,
    json_columns: &[usize],
    columns: usize,
) -> Result<Vec<bool>, String> {
    let options = cursor.packed_int()?;
    let mut partial = vec![false; columns];
    if options & 1 == 1 {
        let bits = cursor.take(json_columns.len().div_ceil(8))?;
        for (k, &column) in json_columns.iter().enumerate() {
            partial[column] = bits[k / 8] >> (k % 8) & 1 == 1;
        }
    }
    Ok(partial)
}

/// The new document of a partial JSON update: the diffs applied to the before image, or — when the
/// before image does not hold the document (`binlog_row_image` MINIMAL or NOBLOB) — the diffs
/// themselves, since the new document is then not in the binlog at all.
fn apply_partial(before: Option<&[Value]>, column: usize, raw: &[u8]) -> Result<Value, String> {
    let mut buf = ParseBuf(raw);
    let mut diffs: Vec<JsonDiff<'_>> = Vec::new();
    while !buf.is_empty() {
        diffs.push(
            buf.parse(())
                .map_err(|e| format!("invalid JSON diff: {e}"))?,
        );
    }
    match before.and_then(|b| b.get(column)) {
        Some(Value::Json(document)) => apply_diffs(document, &diffs).map(Value::Json),
        None | Some(Value::Absent) => diffs_to_text(&diffs).map(Value::JsonDiff),
        Some(other) => Err(format!("partial JSON update of a non-JSON value {other:?}")),
    }
}

/// Whether the last 4 bytes of an event's body are the CRC32 of the event before them.
fn ends_with_own_crc32(event: &Event) -> bool {
    let header = event.header();
    let data = event.data();
    let Some(split) = data.len().checked_sub(4) else {
        return false;
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header.timestamp().to_le_bytes());
    hasher.update(&[header.event_type_raw()]);
    hasher.update(&header.server_id().to_le_bytes());
    hasher.update(&header.event_size().to_le_bytes());
    hasher.update(&header.log_pos().to_le_bytes());
    hasher.update(&header.flags_raw().to_le_bytes());
    hasher.update(&data[..split]);
    hasher.finalize().to_le_bytes() == data[split..]
}

fn check_previous_gtids(data: &[u8]) -> Result<(), String> {
    let header = u64::from_le_bytes(
        data.get(..8)
            .ok_or("event is too short")?
            .try_into()
            .expect("8 bytes"),
    );
    let tagged = header >> 56 != 0;
    let sids = if tagged {
        (header >> 8) & ((1 << 48) - 1)
    } else {
        header & ((1 << 56) - 1)
    };
    let mut rest = ParseBuf(&data[8..]);
    if sids.saturating_mul(24) > rest.len() as u64 {
        return Err(format!(
            "{sids} GTID sources cannot fit in {} bytes",
            rest.len()
        ));
    }
    let truncated = || "event is truncated".to_string();
    for _ in 0..sids {
        rest.checked_eat(16).ok_or_else(truncated)?;
        if tagged {
            let tag_len =
                mysql_common::misc::read_varlen_uint(&mut rest).map_err(|e| e.to_string())?;
            rest.checked_eat(usize::try_from(tag_len).map_err(|_| truncated())?)
                .ok_or_else(truncated)?;
        }
        let count = rest.checked_eat_u64_le().ok_or_else(truncated)?;
        if count.saturating_mul(16) > rest.len() as u64 {
            return Err(format!("{count} GTID intervals cannot fit in the event"));
        }
        rest.checked_eat(count as usize * 16)
            .ok_or_else(truncated)?;
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// How many rows share one copy of their table's and transaction's metadata.
const RENEW_SHARED_EVERY: usize = 1024;

/// The name MySQL gives an event type, for error messages.
pub fn event_type_name(code: u8) -> &'static str {
    match EventType::try_from(code) {
        Ok(t) => match t {
            EventType::QUERY_EVENT => "QUERY",
            EventType::TABLE_MAP_EVENT => "TABLE_MAP",
            EventType::WRITE_ROWS_EVENT | EventType::WRITE_ROWS_EVENT_V1 => "WRITE_ROWS",
            EventType::UPDATE_ROWS_EVENT | EventType::UPDATE_ROWS_EVENT_V1 => "UPDATE_ROWS",
            EventType::DELETE_ROWS_EVENT | EventType::DELETE_ROWS_EVENT_V1 => "DELETE_ROWS",
            EventType::PARTIAL_UPDATE_ROWS_EVENT => "PARTIAL_UPDATE_ROWS",
            EventType::TRANSACTION_PAYLOAD_EVENT => "TRANSACTION_PAYLOAD",
            EventType::FORMAT_DESCRIPTION_EVENT => "FORMAT_DESCRIPTION",
            EventType::GTID_EVENT | EventType::GTID_TAGGED_LOG_EVENT => "GTID",
            EventType::ROTATE_EVENT => "ROTATE",
            EventType::XID_EVENT => "XID",
            EventType::LOAD_EVENT
            | EventType::NEW_LOAD_EVENT
            | EventType::CREATE_FILE_EVENT
            | EventType::APPEND_BLOCK_EVENT
            | EventType::EXEC_LOAD_EVENT
            | EventType::DELETE_FILE_EVENT
            | EventType::BEGIN_LOAD_QUERY_EVENT
            | EventType::EXECUTE_LOAD_QUERY_EVENT => "LOAD DATA (statement-based)",
            _ => "event",
        },
        Err(_) => "event",
    }
}
