//! Change events, DDL events and where they came from.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::value::{TableSchema, Value};

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Update,
    Delete,
    /// A row read by a snapshot rather than from the binlog.
    Load,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Load => "load",
        }
    }
}

/// The server family, which decides the GTID syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MySql,
    MariaDb,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::MySql => "mysql",
            Flavor::MariaDb => "mariadb",
        }
    }
}

/// What every change of one transaction shares. It is allocated once per transaction and shared
/// by its rows, which then cost one reference count each.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub flavor: Flavor,
    pub server_id: u32,
    /// MySQL `server_uuid`, when known (live connections; files do not carry it).
    pub server_uuid: Option<Arc<str>>,
    /// The transaction's GTID: `uuid[:tag]:gno` (MySQL) or `domain-server-seq` (MariaDB).
    pub gtid: Option<String>,
    /// Binlog file holding the transaction.
    pub file: String,
    /// Offset of the transaction's first event (its GTID or BEGIN) in `file`.
    pub pos: u64,
    /// Commit time in microseconds since the epoch: MySQL's `immediate_commit_timestamp`, or the
    /// event header's seconds when the server gives nothing finer.
    pub commit_ts_us: i64,
}

/// Where in the binlog a change came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub transaction: Arc<Transaction>,
    /// Offset of the rows event that carried this row (for a compressed transaction, of its
    /// TRANSACTION_PAYLOAD event).
    pub pos: u64,
    /// Offset just past the rows event (the binlog's `end_log_pos`).
    pub next_pos: u64,
    /// 0-based index of the row within its transaction.
    pub row: u64,
}

impl Source {
    /// The stable identity of the row change at `self.row` in its transaction.
    ///
    /// `<gtid>:<row>` with a GTID; `<file>:<transaction pos>:<row>` without one.
    pub fn event_id(&self) -> String {
        let txn = &self.transaction;
        let mut id = String::with_capacity(64);
        match &txn.gtid {
            Some(gtid) => {
                let _ = write!(id, "{gtid}:{}", self.row);
            }
            None => {
                let _ = write!(id, "{}:{}:{}", txn.file, txn.pos, self.row);
            }
        }
        id
    }
}

/// One row change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    pub table: Arc<TableSchema>,
    /// The old row (update, delete); `None` for inserts and loads.
    pub before: Option<Vec<Value>>,
    /// The new row (insert, update, load); `None` for deletes.
    pub after: Option<Vec<Value>>,
    pub source: Source,
}

impl ChangeEvent {
    pub fn event_id(&self) -> String {
        self.source.event_id()
    }

    /// The row image that identifies the row: after for inserts and updates, before for deletes.
    pub fn key_image(&self) -> &[Value] {
        self.after
            .as_deref()
            .or(self.before.as_deref())
            .unwrap_or(&[])
    }
}

/// A statement that changed a table definition (or any other non-row statement worth reporting).
#[derive(Debug, Clone, PartialEq)]
pub struct DdlEvent {
    /// The default database of the statement.
    pub schema: Arc<str>,
    /// The table it names, when it names exactly one (`ALTER TABLE db.t …`).
    pub table: Option<(Arc<str>, Arc<str>)>,
    /// DMS's name for what it does: `create-table`, `drop-table`, `rename-table`, `change-columns`…
    pub operation: &'static str,
    pub query: String,
    /// The table definition after the statement, when it is known.
    pub definition: Option<Arc<TableSchema>>,
    pub source: Source,
}
