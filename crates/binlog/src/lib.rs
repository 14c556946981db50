//! The binlog reader of cdcd: MySQL and MariaDB replication streams and binlog files in, change
//! events out.
//!
//! * [`Decoder`] is the state machine shared by every input: binlog events in, [`Record`]s out —
//!   row changes, DDL, and transaction boundaries with the [`Position`] to resume from.
//! * [`FileReader`] reads binlog files from disk.
//! * [`Replica`] connects to a server as a replica (GTID auto-positioning, TLS, heartbeats).
//!
//! Values are decoded with per-TABLE_MAP plans ([`table`]) and our own row loop; see `row.rs` for
//! the mysql_common traps this avoids. Nothing is skipped silently: an event that cannot be decoded
//! stops the stream with an [`Error`] that names its file and offset.

mod charset;
mod check;
mod ddl;
mod decoder;
mod error;
mod file;
mod filter;
mod gtid;
mod json;
mod replica;
mod retention;
mod row;
mod schema;
mod table;

pub use charset::max_bytes_per_char;
pub use check::{check_source, Finding, Status};
pub use decoder::{event_type_name, Decoder, Gtids, Position, Record};
pub use error::{Error, Location, Result};
pub use file::FileReader;
pub use filter::TableFilter;
pub use gtid::{GtidSet, MariaGtidList};
pub use replica::{
    redact_url, Replica, ReplicaCounters, ReplicaOptions, SchemaReader, ServerInfo, StartFrom,
    TlsMode,
};
pub use retention::{headroom, Retention};
