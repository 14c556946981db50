//! Errors of the binlog reader. Every error says what went wrong, where (file and offset, table and
//! column, server setting) and, where there is one, what the user can do about it.

use std::fmt;

/// A place in the binlog: file name and byte offset of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub pos: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.file, self.pos)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An event or value could not be decoded.
    #[error("cannot decode {what} in {at}: {message}")]
    Decode {
        at: Location,
        what: String,
        message: String,
    },
    /// An event type we do not understand; skipping it could lose data.
    #[error("unknown binlog event type {type_code} in {at}; refusing to skip it (upgrade cdcd, or pass --skip-event-type {type_code} if you are sure it carries no row changes)")]
    UnknownEvent { at: Location, type_code: u8 },
    /// The checksum of an event does not match its bytes.
    #[error("binlog event checksum mismatch in {at}: stored {stored:#010x}, computed {computed:#010x}; the binlog is corrupt or was modified")]
    Checksum {
        at: Location,
        stored: u32,
        computed: u32,
    },
    /// A TABLE_MAP does not match what we know of the table.
    #[error("table `{schema}`.`{table}` in {at}: {message}")]
    Schema {
        at: Location,
        schema: String,
        table: String,
        message: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file ended inside an event or is not a binlog.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// The server refused or failed a request.
    #[error("{context}: {source}")]
    Server {
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    /// The server is not set up for change data capture, or the request cannot be served.
    #[error("{0}")]
    Setup(String),
    /// The replication connection broke, went silent or was closed by the server.
    #[error("{0}")]
    ConnectionLost(String),
}

impl Error {
    pub(crate) fn decode(
        at: &Location,
        what: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        Error::Decode {
            at: at.clone(),
            what: what.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn server(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> Self {
        let context = context.into();
        move |source| Error::Server { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
