//! The lake: row changes as Hive-partitioned objects that Athena queries.
//!
//! ```text
//! <prefix>/<schema>/<table>/year=YYYY/month=MM/day=DD/hour=HH/<first event id>.parquet
//! ```
//!
//! [`Lake`] buffers rows and decides object boundaries; it neither reads the binlog nor talks to
//! the object store (that is [`crate::store`]), so the same lake serves `cdcd run` and `cdcd sink`.
//!
//! # Exactly-once objects
//!
//! A crash between writing objects and advancing the checkpoint makes the next run read the same
//! changes again. They must land in objects with the same names, replacing what the crashed run
//! wrote, rather than in new objects that duplicate its rows. Three rules give that:
//!
//! - An object is named after its first row's event id, and lies in the partition of its rows'
//!   commit hour, both properties of the binlog rather than of the run. Where rows arrive from
//!   several independently ordered sources (`cdcd sink`'s shards), each source is a *lane* and
//!   objects never mix lanes, so the interleaving of the sources does not change any object.
//! - Objects are written in *flushes*; a flush writes every buffered row of every committed
//!   transaction, and the caller records the checkpoint (the flush's transaction boundary) only
//!   after all its objects are durable, and writes the next flush's objects only after that: the
//!   objects of at most one flush ever lie past the checkpoint. After a checkpoint nothing is buffered, so whichever run
//!   continues from it starts each table's next object at the same row. Where the crashed run
//!   flushed later than the new one (a timer fired at another moment), the new run's object of
//!   the same name holds a prefix of the old one's rows and replaces it; the rest follow in a
//!   later object, once.
//! - A transaction too large to buffer is written in parts before it commits. The caller first
//!   flushes and checkpoints everything before it ([`Lake::transaction_overflows`]), and records
//!   each part in the checkpoint before writing it; a run that resumes there removes the recorded
//!   parts first, because it may cut the transaction elsewhere (another `max_rows`).
//!
//! Ingest-time partitioning (Glue's `ingest_year=…`) takes the partition from the clock, so after
//! a crash replayed rows can land in a second partition: at-least-once, as with Glue.
//!
//! A schema change starts new objects: rows are grouped by the exact column list they were
//! decoded with, and every object has one schema.

mod jsonl;
mod parquet;
mod types;

pub mod athena;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use cdcd_event::{ChangeEvent, Op, Source, TableSchema, Transaction, Value};

/// `[lake]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// `s3://bucket/prefix`, `file:///absolute/path`, or a local path.
    pub url: String,
    /// `parquet` or `jsonl` (gzip-compressed JSON lines).
    pub format: String,
    /// Parquet compression: `zstd`, `snappy` or `none`.
    pub compression: String,
    /// How Parquet stores string and binary values: `delta-length` (lengths apart from the
    /// bytes; smaller and faster to compress) or `plain` (for readers that lack the former).
    pub text_encoding: String,
    /// `commit-time` (`year=/month=/day=/hour=` of the commit) or `ingest-time` (Glue's
    /// `ingest_year=/…` of the moment cdcd wrote the row).
    pub partitioning: String,
    /// Flush buffered rows once the oldest has waited this long: how fresh the lake is.
    pub flush_seconds: f64,
    /// Flush once this many rows are buffered; also the largest part of a big transaction.
    pub max_rows: usize,
    /// Flush once the buffered rows hold about this many bytes.
    pub max_bytes: usize,
    /// S3 settings, for `s3://` URLs.
    pub s3: crate::store::S3Config,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            url: "lake".into(),
            format: "parquet".into(),
            compression: "zstd".into(),
            text_encoding: "delta-length".into(),
            partitioning: "commit-time".into(),
            flush_seconds: 5.0,
            max_rows: 50_000,
            max_bytes: 64 << 20,
            s3: Default::default(),
        }
    }
}

/// What can go wrong turning rows into objects.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake.{key}: {message}")]
    Config { key: &'static str, message: String },
    #[error("column {column} of {table}: {detail}")]
    Value {
        table: String,
        column: String,
        detail: String,
    },
    #[error("encoding Parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    #[error("encoding Parquet: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("compressing JSON lines: {0}")]
    Io(#[from] std::io::Error),
}

/// An encoded object, ready for the store.
#[derive(Debug)]
pub struct Object {
    /// Key relative to the lake's root.
    pub key: String,
    pub body: Vec<u8>,
    pub rows: usize,
}

/// One row as the lake stores it: the after image of inserts and updates, the before image of
/// deletes (so that the latest row of a deleted key says `delete`).
pub(crate) struct Row {
    pub op: Op,
    pub values: Vec<Value>,
    pub source: Source,
}

/// `_cdc_seq`: binlog file number, transaction offset and row index, as one number that grows
/// with every change of a source: `file × 10²⁴ + offset × 10¹² + row`.
pub(crate) fn sequence(row: &Row) -> i128 {
    transaction_sequence(&row.source.transaction) + i128::from(row.source.row)
}

/// The part of [`sequence`] that all rows of a transaction share.
pub(crate) fn transaction_sequence(txn: &Transaction) -> i128 {
    let digits = txn.file.len()
        - txn
            .file
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .len();
    let file: i128 = txn.file[txn.file.len() - digits..].parse().unwrap_or(0);
    file * 10i128.pow(24) + i128::from(txn.pos) * 10i128.pow(12)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet(parquet::Options),
    JsonLines,
}

/// Which object a row goes to: its table, partition and exact shape.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SegmentKey {
    /// Rows of different lanes (`cdcd sink`'s shards) never share an object.
    lane: Option<Arc<str>>,
    schema: Arc<str>,
    table: Arc<str>,
    /// Hours since the epoch, UTC.
    hour: i64,
    shape: u64,
}

struct Segment {
    key: SegmentKey,
    table: Arc<TableSchema>,
    rows: Vec<Row>,
}

/// Rows grouped by object, in arrival order.
#[derive(Default)]
struct Batch {
    segments: Vec<Segment>,
    index: HashMap<SegmentKey, usize>,
    /// The segment of the last row: the next row usually goes there too, and finding it
    /// without the key saves hashing two names per row.
    last: Option<usize>,
    rows: usize,
    bytes: usize,
    since: Option<Instant>,
}

impl Batch {
    /// Adds `row` of `table` to the segment of its `lane` and `hour`.
    fn push(
        &mut self,
        (lane, hour): (Option<Arc<str>>, i64),
        table: &Arc<TableSchema>,
        shape: u64,
        row: Row,
        bytes: usize,
    ) {
        let same_segment = self.last.filter(|&i| {
            let segment = &self.segments[i];
            // One table definition means one shape.
            Arc::ptr_eq(&segment.table, table)
                && segment.key.hour == hour
                && segment.key.lane == lane
        });
        let i = match same_segment {
            Some(i) => i,
            None => {
                let key = SegmentKey {
                    lane,
                    schema: table.schema.clone(),
                    table: table.table.clone(),
                    hour,
                    shape,
                };
                let next = self.segments.len();
                let i = *self.index.entry(key.clone()).or_insert(next);
                if i == next {
                    self.segments.push(Segment {
                        key,
                        table: table.clone(),
                        rows: Vec::new(),
                    });
                }
                i
            }
        };
        self.last = Some(i);
        self.segments[i].rows.push(row);
        self.rows += 1;
        self.bytes += bytes;
        self.since.get_or_insert_with(Instant::now);
    }

    fn append(&mut self, other: Batch) {
        for segment in other.segments {
            match self.index.get(&segment.key) {
                Some(&i) => self.segments[i].rows.extend(segment.rows),
                None => {
                    self.index.insert(segment.key.clone(), self.segments.len());
                    self.segments.push(segment);
                }
            }
        }
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.since = match (self.since, other.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Buffers masked row changes and cuts them into objects; see the module documentation for
/// when objects are cut and why.
pub struct Lake {
    format: Format,
    ingest_time: bool,
    flush_after: Duration,
    max_rows: usize,
    max_bytes: usize,
    /// Rows of committed transactions.
    committed: Batch,
    /// Rows of the transaction being read.
    open: Batch,
    /// The shape fingerprint of the last table seen, by pointer.
    last_shape: Option<(Arc<TableSchema>, u64)>,
}

impl Lake {
    pub fn new(config: &LakeConfig) -> Result<Lake, LakeError> {
        use ::parquet::basic::{Compression, ZstdLevel};
        let bad = |key, message: &str| LakeError::Config {
            key,
            message: message.into(),
        };
        let compression = match config.compression.as_str() {
            "zstd" => Compression::ZSTD(ZstdLevel::default()),
            "snappy" => Compression::SNAPPY,
            "none" => Compression::UNCOMPRESSED,
            _ => return Err(bad("compression", "use zstd, snappy or none")),
        };
        let text_encoding = match config.text_encoding.as_str() {
            "delta-length" => ::parquet::basic::Encoding::DELTA_LENGTH_BYTE_ARRAY,
            "plain" => ::parquet::basic::Encoding::PLAIN,
            _ => return Err(bad("text_encoding", "use delta-length or plain")),
        };
        let format = match config.format.as_str() {
            "parquet" => Format::Parquet(parquet::Options {
                compression,
                text_encoding,
            }),
            "jsonl" => Format::JsonLines,
            _ => return Err(bad("format", "use parquet or jsonl")),
        };
        let ingest_time = match config.partitioning.as_str() {
            "commit-time" => false,
            "ingest-time" => true,
            _ => return Err(bad("partitioning", "use commit-time or ingest-time")),
        };
        if !(config.flush_seconds > 0.0 && config.flush_seconds <= 86_400.0) {
            return Err(bad(
                "flush_seconds",
                "use a number of seconds above 0, up to 86400",
            ));
        }
        if config.max_rows == 0 || config.max_bytes < 1024 {
            return Err(bad(
                "max_rows",
                "max_rows must be at least 1 and max_bytes at least 1024",
            ));
        }
        Ok(Lake {
            format,
            ingest_time,
            flush_after: Duration::from_secs_f64(config.flush_seconds),
            max_rows: config.max_rows,
            max_bytes: config.max_bytes,
            committed: Batch::default(),
            open: Batch::default(),
            last_shape: None,
        })
    }

    /// Buffers one (masked) row change of the open transaction.
    pub fn push(&mut self, event: ChangeEvent) {
        self.push_in(event, None);
    }

    /// Buffers one (masked) row change of the open transaction in a lane of its own: rows of
    /// different lanes go to different objects, so that each object holds rows of one ordered
    /// source (a Kinesis shard) and a replay of that source alone recreates it under its name.
    pub fn push_in(&mut self, event: ChangeEvent, lane: Option<Arc<str>>) {
        let shape = self.shape(&event.table);
        let hour = if self.ingest_time {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            (now.as_secs() / 3600) as i64
        } else {
            event
                .source
                .transaction
                .commit_ts_us
                .div_euclid(3_600_000_000)
        };
        let values = match (event.op, event.after, event.before) {
            (Op::Delete, _, Some(before)) => before,
            (_, Some(after), _) => after,
            (_, None, before) => before.unwrap_or_default(),
        };
        let bytes = 64 + values.iter().map(value_size).sum::<usize>();
        let row = Row {
            op: event.op,
            values,
            source: event.source,
        };
        self.open
            .push((lane, hour), &event.table, shape, row, bytes);
    }

    /// Marks the end of the open transaction: its rows become part of the next flush.
    pub fn commit(&mut self) {
        let open = std::mem::take(&mut self.open);
        self.committed.append(open);
    }

    /// Whether the open transaction alone has reached the row or byte limit. The caller then
    /// flushes the committed rows (and checkpoints), and writes the transaction's rows so far
    /// with [`Lake::take_transaction_part`].
    pub fn transaction_overflows(&self) -> bool {
        self.open.rows >= self.max_rows || self.open.bytes >= self.max_bytes
    }

    /// Whether committed rows should be flushed now: a limit is reached, or the oldest row has
    /// waited `flush_seconds`.
    pub fn flush_due(&self) -> bool {
        self.committed.rows >= self.max_rows
            || self.committed.bytes >= self.max_bytes
            || self
                .committed
                .since
                .is_some_and(|since| since.elapsed() >= self.flush_after)
    }

    /// When [`Lake::flush_due`] becomes true by the clock alone, if nothing else arrives.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.committed.since.map(|since| since + self.flush_after)
    }

    /// Rows of committed transactions waiting for a flush.
    pub fn committed_rows(&self) -> usize {
        self.committed.rows
    }

    /// Takes every committed row, to be encoded into objects ([`Pending::encode`], which can
    /// run on another thread).
    pub fn take_committed(&mut self) -> Pending {
        let batch = std::mem::take(&mut self.committed);
        self.pending(batch)
    }

    /// Takes the open transaction's rows so far, to be encoded into objects.
    pub fn take_transaction_part(&mut self) -> Pending {
        let batch = std::mem::take(&mut self.open);
        self.pending(batch)
    }

    fn pending(&self, batch: Batch) -> Pending {
        Pending {
            batch,
            format: self.format,
            ingest_time: self.ingest_time,
        }
    }

    fn shape(&mut self, table: &Arc<TableSchema>) -> u64 {
        if let Some((last, shape)) = &self.last_shape {
            if Arc::ptr_eq(last, table) {
                return *shape;
            }
        }
        // Everything that decides how values are rendered: a changed ENUM list or DECIMAL scale
        // must not be encoded with the definition of the segment's first row.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for column in &table.columns {
            format!("{column:?}").hash(&mut hasher);
        }
        let shape = hasher.finish();
        self.last_shape = Some((table.clone(), shape));
        shape
    }
}

/// Rows taken from the lake and not encoded yet.
pub struct Pending {
    batch: Batch,
    format: Format,
    ingest_time: bool,
}

impl Pending {
    /// Rows in these objects-to-be.
    pub fn rows(&self) -> usize {
        self.batch.rows
    }

    /// Encodes one object per segment (table, partition and shape), named after its first row.
    /// The rows come back too, to be dropped on the thread that allocated them (a free from
    /// another thread costs the allocator several times more, on both threads).
    pub fn encode(self) -> Result<(Vec<Object>, Spent), LakeError> {
        let (format, ingest_time) = (self.format, self.ingest_time);
        let objects = self
            .batch
            .segments
            .iter()
            .map(|segment| {
                let first = segment.rows.first().expect("segments are never empty");
                let key = object_key(format, ingest_time, &segment.key, &first.source);
                let body = match format {
                    Format::Parquet(options) => {
                        parquet::encode(&segment.table, &segment.rows, options)?
                    }
                    Format::JsonLines => jsonl::encode(&segment.table, &segment.rows)?,
                };
                let rows = segment.rows.len();
                Ok(Object { key, body, rows })
            })
            .collect::<Result<_, LakeError>>()?;
        let spent = Spent {
            _rows: self.batch.segments,
        };
        Ok((objects, spent))
    }
}

/// Rows that have been encoded, held only to be dropped where they were allocated.
pub struct Spent {
    _rows: Vec<Segment>,
}

fn object_key(format: Format, ingest_time: bool, key: &SegmentKey, first: &Source) -> String {
    let time = cdcd_event::timestamp_to_datetime(key.hour * 3_600_000_000);
    let prefix = if ingest_time { "ingest_" } else { "" };
    let name = first.event_id().replace(':', "_");
    let extension = match format {
        Format::Parquet(_) => "parquet",
        Format::JsonLines => "json.gz",
    };
    format!(
        "{}/{}/{prefix}year={:04}/{prefix}month={:02}/{prefix}day={:02}/{prefix}hour={:02}/{name}.{extension}",
        key.schema,
        key.table,
        time.date.year,
        time.date.month,
        time.date.day,
        time.hour,
    )
}

/// About how much memory a buffered value holds.
fn value_size(value: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match value {
            Value::Decimal(s) | Value::String(s) | Value::Json(s) | Value::JsonDiff(s) => s.len(),
            Value::Bytes(b) | Value::Geometry(b) => b.len(),
            _ => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let lake = |compression: &str, text_encoding: &str| {
            Lake::new(&LakeConfig {
                compression: compression.into(),
                text_encoding: text_encoding.into(),
                ..LakeConfig::default()
            })
            .err()
            .map(|err| err.to_string())
        };
        assert_eq!(
            lake("zstd", "delta").as_deref(),
            Some("lake.text_encoding: use delta-length or plain")
        );
        assert_eq!(
            lake("lz4", "plain").as_deref(),
            Some("lake.compression: use zstd, snappy or none")
        );
        assert_eq!(lake("zstd", "delta-length"), None);
        assert_eq!(lake("snappy", "plain"), None);
    }
}
