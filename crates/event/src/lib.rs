//! The change-event model of cdcd and its wire formats.
//!
//! A [`ChangeEvent`] is one row change, exactly as MySQL committed it: typed values that never pass
//! through a lossy representation (u64 stays u64, DECIMAL stays decimal text, times keep their
//! microseconds and their sign). Everything downstream — the Kinesis producer, the lake writer,
//! `cdcd tail` — consumes this model, and the two wire formats live here so that every output
//! renders a value the same way:
//!
//! * [`native`]: cdcd's own JSON, lossless, one object per line (documented in `docs/formats.md`).
//! * [`dms`]: the records AWS DMS writes to Kinesis, so that consumers written for DMS keep working.
//!
//! [`native_read`] and [`dms_read`] read records back into change events (`cdcd sink`).
//!
//! Invariants the rest of the system relies on:
//! * [`ChangeEvent::event_id`] is stable across replays of the same binlog: it derives from the
//!   transaction's GTID (or its binlog position when there is none) and the row's index inside the
//!   transaction, never from wall-clock time.
//! * Table metadata is shared (`Arc<TableSchema>`), so a row costs its values and nothing more.

mod decode;
mod json;
mod model;
mod text;
mod value;

pub mod dms;
pub mod dms_read;
pub mod native;
pub mod native_read;
pub mod pattern;

pub use decode::DecodeError;
pub use model::{ChangeEvent, DdlEvent, Flavor, Op, Source, Transaction};
pub use text::parse_utc;
pub use value::{
    datetime_to_timestamp, timestamp_to_datetime, write_bits, write_time, Column, ColumnType, Date,
    DateTime, TableSchema, Value,
};
