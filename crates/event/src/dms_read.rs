//! Reading DMS records back into [`ChangeEvent`]s: the inverse of [`crate::dms::DmsWriter`], and
//! of what real AWS DMS writes (shared/reference/dms-format.md), for `cdcd sink`.
//!
//! DMS data records carry no column types. The caller supplies the table's definition: from the
//! `control.table-def` of a CREATE/ALTER control record ([`table_from_def`]), or from the source
//! database. Values are then read by the column's type: integers from their digits (u64 exact;
//! the scientific notation of DMS without `UseLargeIntegerValue` is read through f64, as DMS
//! already rounded it), DECIMAL numbers as exact text padded to the column's scale, `0x` hex (or
//! bare hex with `NoHexPrefix`) as bytes, `…Z` times, BIT as `true`/`false`/number/hex, ENUM and
//! SET by name, JSON from the string that holds its text.
//!
//! What DMS records cannot carry, so the lake cannot have it either:
//! - zero dates (`0000-00-00`, `0000-00-00 00:00:00`, the zero TIMESTAMP): DMS writes `null`;
//! - NULL versus "left out": without `IncludeNullAndEmpty` NULL columns are omitted, so every
//!   column missing from `data` reads as NULL (never as "not in the image");
//! - a `table-def`'s DMS types are coarser than MySQL's: MEDIUMINT and INT are both INT4,
//!   DATETIME and TIMESTAMP both DATETIME (read as DATETIME, in UTC as DMS converts TIMESTAMP),
//!   ENUM/SET/TIME are strings, BIT(n < 64) is BOOLEAN (read as a number) and BIT(64) is BYTES(8)
//!   (read as 8 bytes), FLOAT is REAL8 (a double). Column types from the source database have
//!   none of these losses;
//! - the binlog position: `transaction-id` gives the file number and the transaction's offset
//!   (MySQL), `transaction-record-id` (with `IncludeTransactionDetails`) the row's index; without
//!   it the row index counts the records of one transaction as they are read;
//! - the commit time: `commit-timestamp` with `IncludeTransactionDetails`, otherwise the
//!   record's `timestamp` (when DMS built it), which is stable across re-reads of the record.
//!
//! Identity: a record of `cdcd run` carries `cdcd.event-id` and keeps it. A record of real DMS
//! has none; the caller's [`Origin`] (shard, sequence number, sub-record index) names it, so a
//! re-read of the same record gets the same id.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::decode::DecodeError;
use crate::model::{ChangeEvent, Flavor, Op, Source, Transaction};
use crate::native_read::special_binary;
use crate::text::{parse_date, parse_datetime, parse_time, parse_utc};
use crate::value::{Column, ColumnType, TableSchema, Value};

/// Where a record was read: its stable identity when it has none of its own.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub shard: &'a str,
    pub sequence: &'a str,
    /// The index of the record inside an aggregated (KPL) Kinesis record; 0 otherwise.
    pub sub: u32,
}

/// What a DMS record is.
#[derive(Debug, PartialEq)]
pub enum DmsRecord<'a> {
    /// A data record of this table (its definition is needed to read it).
    Data { schema: &'a str, table: &'a str },
    /// A control record; `definition` when it carries a `table-def`.
    Control {
        schema: &'a str,
        table: &'a str,
        operation: &'a str,
        definition: Option<TableSchema>,
    },
}

/// Classifies a record; `Err` when it is not a DMS record.
pub fn classify(record: &Json) -> Result<DmsRecord<'_>, DecodeError> {
    let metadata = &record["metadata"];
    let text = |key: &str| {
        metadata[key]
            .as_str()
            .ok_or_else(|| DecodeError::new(format!("metadata.{key}"), "missing"))
    };
    let schema = text("schema-name")?;
    let table = text("table-name")?;
    match text("record-type")? {
        "data" => Ok(DmsRecord::Data { schema, table }),
        "control" => {
            let def = &record["control"]["table-def"];
            let definition = if def.is_object() {
                Some(table_from_def(schema, table, def)?)
            } else {
                None
            };
            Ok(DmsRecord::Control {
                schema,
                table,
                operation: text("operation")?,
                definition,
            })
        }
        other => Err(DecodeError::new(
            "metadata.record-type",
            format!("`{other}` is neither data nor control"),
        )),
    }
}

/// A table's definition from a control record's `table-def` (DMS types; see the module docs
/// for what they lose).
pub fn table_from_def(schema: &str, table: &str, def: &Json) -> Result<TableSchema, DecodeError> {
    let columns_json = def["columns"]
        .as_object()
        .ok_or_else(|| DecodeError::new("control.table-def.columns", "not an object"))?;
    let mut columns = Vec::with_capacity(columns_json.len());
    for (name, spec) in columns_json {
        let key = format!("control.table-def.columns.{name}");
        let dms_type = spec["type"]
            .as_str()
            .ok_or_else(|| DecodeError::new(&key, "no type"))?;
        let number = |k: &str| spec[k].as_u64().unwrap_or(0) as u32;
        let (kind, unsigned) = match dms_type {
            "INT1" => (ColumnType::TinyInt, false),
            "UINT1" => (ColumnType::TinyInt, true),
            "INT2" => (ColumnType::SmallInt, false),
            "UINT2" => (ColumnType::SmallInt, true),
            "INT4" => (ColumnType::Int, false),
            "UINT4" => (ColumnType::Int, true),
            "INT8" => (ColumnType::BigInt, false),
            "UINT8" => (ColumnType::BigInt, true),
            "NUMERIC" => (ColumnType::Decimal, false),
            "REAL4" => (ColumnType::Float, false),
            "REAL8" => (ColumnType::Double, false),
            "BOOLEAN" => (ColumnType::Bit, false),
            "DATE" => (ColumnType::Date, false),
            "TIME" => (ColumnType::Time, false),
            "DATETIME" => (ColumnType::DateTime, false),
            "STRING" | "WSTRING" => (ColumnType::VarChar, false),
            "CLOB" | "NCLOB" => (ColumnType::Text, false),
            "BYTES" => (ColumnType::VarBinary, false),
            "BLOB" => (ColumnType::Blob, false),
            other => {
                return Err(DecodeError::new(
                    key,
                    format!("DMS type `{other}` is not one cdcd knows"),
                ))
            }
        };
        let mut column = Column::unnamed(0, kind);
        column.name = name.as_str().into();
        column.unsigned = unsigned;
        column.nullable = spec["nullable"].as_bool().unwrap_or(true);
        match kind {
            ColumnType::Decimal => {
                column.width = number("precision");
                column.scale = number("scale").min(255) as u8;
            }
            // DMS keeps DATETIME fractions; the lake stores microseconds.
            ColumnType::DateTime => column.scale = 6,
            // BIT(2..63) as a number; the width is not in the definition.
            ColumnType::Bit => column.width = 63,
            _ => column.width = number("length"),
        }
        columns.push(column);
    }
    let primary_key = match def["primary-key"].as_array() {
        None => Vec::new(),
        Some(names) => names
            .iter()
            .map(|n| {
                let n = n.as_str().unwrap_or_default();
                columns.iter().position(|c| &*c.name == n).ok_or_else(|| {
                    DecodeError::new(
                        "control.table-def.primary-key",
                        format!("`{n}` is not a column"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(TableSchema {
        schema: schema.into(),
        table: table.into(),
        columns,
        primary_key,
    })
}

/// Reads DMS data records; keeps the last transaction so that its records share it, and counts
/// records per transaction where the record has no index of its own.
#[derive(Debug, Default)]
pub struct DmsReader {
    transaction: Option<(u64, Arc<Transaction>, u64)>,
}

impl DmsReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// One data record of `table` (see [`classify`]).
    pub fn read(
        &mut self,
        record: &Json,
        table: &Arc<TableSchema>,
        origin: Origin<'_>,
    ) -> Result<ChangeEvent, DecodeError> {
        let metadata = &record["metadata"];
        let op = match metadata["operation"].as_str() {
            Some("insert") => Op::Insert,
            Some("update") => Op::Update,
            Some("delete") => Op::Delete,
            Some("load") => Op::Load,
            _ => {
                return Err(DecodeError::new(
                    "metadata.operation",
                    "not insert, update, delete or load",
                ))
            }
        };
        let data = row(table, &record["data"], "data")?;
        // The before image (BeforeImageSettings) is partial (pk-only by default): the lake keeps
        // the after image of updates, so it is not needed.
        let (before, after) = match op {
            Op::Delete => (Some(data), None),
            _ => (None, Some(data)),
        };
        let source = self.source(record, origin)?;
        Ok(ChangeEvent {
            op,
            table: table.clone(),
            before,
            after,
            source,
        })
    }

    fn source(&mut self, record: &Json, origin: Origin<'_>) -> Result<Source, DecodeError> {
        let metadata = &record["metadata"];
        let cdcd = &record["cdcd"];
        let txn_id = metadata["transaction-id"].as_u64().unwrap_or(0);
        let time = metadata["commit-timestamp"]
            .as_str()
            .or(metadata["timestamp"].as_str())
            .ok_or_else(|| DecodeError::new("metadata.timestamp", "missing"))?;
        let commit_ts_us = parse_utc(time).ok_or_else(|| {
            DecodeError::new("metadata.timestamp", format!("`{time}` is not a UTC time"))
        })?;
        let binlog_file = match metadata["stream-position"].as_str() {
            Some(position) => position.split(':').next().unwrap_or_default().to_string(),
            None => format!("binlog.{:06}", txn_id >> 32),
        };
        let (file, gtid, row) = match cdcd["event-id"].as_str() {
            // cdcd's records keep their identity: `<gtid>:<row>` or `<file>:<pos>:<row>`.
            Some(id) => {
                let (head, row) = id.rsplit_once(':').ok_or_else(|| {
                    DecodeError::new("cdcd.event-id", format!("`{id}` has no row index"))
                })?;
                let row: u64 = row.parse().map_err(|_| {
                    DecodeError::new("cdcd.event-id", format!("`{id}` has no row index"))
                })?;
                match cdcd["gtid"].as_str() {
                    Some(gtid) if gtid == head => (binlog_file, Some(gtid.to_string()), row),
                    _ => {
                        let file = head.rsplit_once(':').map_or(head, |(f, _)| f);
                        (file.to_string(), None, row)
                    }
                }
            }
            // Real DMS: the record's place in the stream names it.
            None => {
                let row = match metadata["transaction-record-id"].as_u64() {
                    Some(index) => index.saturating_sub(1),
                    None => self.next_row(txn_id),
                };
                let file = format!(
                    "{}:{}:{}:{binlog_file}",
                    origin.shard, origin.sequence, origin.sub
                );
                (file, None, row)
            }
        };
        let transaction = Transaction {
            flavor: Flavor::MySql,
            server_id: 0,
            server_uuid: cdcd["server-uuid"].as_str().map(Arc::from),
            gtid,
            file,
            pos: txn_id & 0xffff_ffff,
            commit_ts_us,
        };
        let transaction = match &self.transaction {
            Some((id, last, _)) if *id == txn_id && **last == transaction => last.clone(),
            _ => {
                let shared = Arc::new(transaction);
                let count = self.transaction.as_ref().map_or(0, |t| t.2);
                self.transaction = Some((txn_id, shared.clone(), count));
                shared
            }
        };
        Ok(Source {
            transaction,
            pos: txn_id & 0xffff_ffff,
            next_pos: txn_id & 0xffff_ffff,
            row,
        })
    }

    /// The index of the next record of transaction `txn_id` (0 for a new transaction).
    fn next_row(&mut self, txn_id: u64) -> u64 {
        match &mut self.transaction {
            Some((id, _, count)) if *id == txn_id => {
                *count += 1;
                *count
            }
            _ => {
                self.transaction = None;
                0
            }
        }
    }
}

/// `data`: every column of the table; one that is missing is NULL (DMS leaves NULLs out).
fn row(table: &TableSchema, image: &Json, which: &str) -> Result<Vec<Value>, DecodeError> {
    let object = image
        .as_object()
        .ok_or_else(|| DecodeError::new(which, "not an object"))?;
    if let Some(unknown) = object
        .keys()
        .find(|name| !table.columns.iter().any(|c| &*c.name == name.as_str()))
    {
        return Err(DecodeError::new(
            format!("{which}.{unknown}"),
            format!(
                "no such column in the definition of {}.{} cdcd has (was the table altered \
                 without a control record?)",
                table.schema, table.table
            ),
        ));
    }
    table
        .columns
        .iter()
        .map(|column| match object.get(&*column.name) {
            None => Ok(Value::Null),
            Some(json) => value(column, json).map_err(|message| {
                DecodeError::new(
                    format!("{which}.{}", column.name),
                    format!("{message} for a {} column", column.sql_type()),
                )
            }),
        })
        .collect()
}

/// One value as DMS renders it, read as the column's `Value`.
fn value(column: &Column, json: &Json) -> Result<Value, String> {
    use ColumnType as K;
    if json.is_null() {
        return Ok(Value::Null);
    }
    let text = || {
        json.as_str()
            .ok_or_else(|| format!("{json} is not a string"))
    };
    let digits = || match json {
        Json::Number(n) => Ok(n.to_string()),
        Json::String(s) => Ok(s.clone()),
        _ => Err(format!("{json} is not a number")),
    };
    let bad = |what: &str| format!("`{json}` is not {what}");
    // Exact digits, or the scientific notation of DMS without UseLargeIntegerValue.
    let integer = |digits: String| -> Result<i128, String> {
        digits.parse::<i128>().or_else(|_| {
            digits
                .parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i128)
                .ok_or_else(|| bad("an integer"))
        })
    };
    Ok(match column.kind {
        K::TinyInt | K::SmallInt | K::MediumInt | K::Int | K::BigInt if column.unsigned => {
            Value::UInt(u64::try_from(integer(digits()?)?).map_err(|_| bad("unsigned"))?)
        }
        K::TinyInt | K::SmallInt | K::MediumInt | K::Int | K::BigInt => {
            Value::Int(i64::try_from(integer(digits()?)?).map_err(|_| bad("a 64-bit integer"))?)
        }
        K::Year => Value::Year(u16::try_from(integer(digits()?)?).map_err(|_| bad("a year"))?),
        K::Decimal => {
            Value::Decimal(with_scale(&digits()?, column.scale).ok_or_else(|| bad("a decimal"))?)
        }
        K::Float => Value::Float(digits()?.parse().map_err(|_| bad("a float"))?),
        K::Double => Value::Double(digits()?.parse().map_err(|_| bad("a double"))?),
        K::Bit => match json {
            Json::Bool(b) => Value::Bit(u64::from(*b)),
            Json::Number(_) => Value::Bit(digits()?.parse().map_err(|_| bad("BIT bits"))?),
            _ => {
                let bytes = hex(text()?)?;
                if bytes.len() > 8 {
                    return Err(bad("at most 64 bits"));
                }
                Value::Bit(bytes.iter().fold(0, |acc, b| acc << 8 | u64::from(*b)))
            }
        },
        K::Date => Value::Date(parse_date(text()?).ok_or_else(|| bad("YYYY-MM-DD"))?),
        K::Time => Value::Time(parse_time(text()?).ok_or_else(|| bad("[-]HH:MM:SS[.f]"))?),
        K::DateTime => {
            Value::DateTime(parse_datetime(text()?).ok_or_else(|| bad("YYYY-MM-DDTHH:MM:SS[.f]Z"))?)
        }
        K::Timestamp => Value::Timestamp(parse_utc(text()?).ok_or_else(|| bad("a UTC time"))?),
        K::Char | K::VarChar | K::Text => match json {
            Json::String(s) => Value::String(s.clone()),
            // A BOOLEAN or number in a column the definition calls a string.
            other => Value::String(other.to_string()),
        },
        K::Json => Value::Json(text()?.to_string()),
        K::Binary | K::VarBinary | K::Blob | K::Vector => Value::Bytes(hex(text()?)?),
        K::Geometry => Value::Geometry(hex(text()?)?),
        K::Uuid | K::Inet4 | K::Inet6 => Value::Bytes(special_binary(column.kind, text()?)?),
        // The index, where the writer had no element names (files without metadata).
        K::Enum if json.is_number() => {
            Value::Enum(digits()?.parse().map_err(|_| bad("an ENUM index"))?)
        }
        K::Enum => {
            let name = text()?;
            let index = match name {
                "" => 0,
                name => {
                    column
                        .elements
                        .iter()
                        .position(|e| &**e == name)
                        .ok_or_else(|| bad("one of the ENUM's elements"))?
                        + 1
                }
            };
            Value::Enum(index as u16)
        }
        K::Set => {
            let mut mask = 0u64;
            for name in text()?.split(',').filter(|n| !n.is_empty()) {
                let index = column
                    .elements
                    .iter()
                    .position(|e| &**e == name)
                    .filter(|i| *i < 64)
                    .ok_or_else(|| bad("a list of the SET's elements"))?;
                mask |= 1 << index;
            }
            Value::Set(mask)
        }
    })
}

/// `0x`-prefixed (or bare) hex as bytes.
fn hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if !digits.len().is_multiple_of(2) {
        return Err(format!("`{text}` is not hex"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| format!("`{text}` is not hex"))
        })
        .collect()
}

/// A decimal's digits with exactly `scale` fraction digits (DMS may leave trailing zeros out).
fn with_scale(text: &str, scale: u8) -> Option<String> {
    let (int, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = int.strip_prefix('-').unwrap_or(int);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > scale as usize
    {
        return None;
    }
    if scale == 0 {
        return Some(int.to_string());
    }
    Some(format!("{int}.{fraction:0<width$}", width = scale as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dms::{DmsOptions, DmsWriter};
    use crate::value::{Date, DateTime};

    fn column(name: &str, sql_type: &str) -> Column {
        Column::from_sql_type(name, sql_type).unwrap()
    }

    /// Every value our DMS writer renders reads back, given the table's exact definition.
    #[test]
    fn dms_records_read_back_with_the_source_definition() {
        let table = Arc::new(TableSchema {
            schema: "db".into(),
            table: "t".into(),
            columns: vec![
                column("u", "bigint unsigned"),
                column("i", "mediumint"),
                column("d", "decimal(65,30)"),
                column("t", "time(6)"),
                column("dt", "datetime(3)"),
                column("ts", "timestamp(6)"),
                column("e", "enum('a','b')"),
                column("s", "set('a','b','c')"),
                column("bit", "bit(13)"),
                column("bit1", "bit(1)"),
                column("bit64", "bit(64)"),
                column("b", "varbinary(10)"),
                column("j", "json"),
                column("n", "int"),
                column("y", "year"),
                column("dd", "date"),
                column("g", "double"),
            ],
            primary_key: vec![0],
        });
        let after = vec![
            Value::UInt(u64::MAX),
            Value::Int(-8_388_608),
            Value::Decimal("-1.000000000000000000000000000000".into()),
            Value::Time(-1),
            Value::DateTime(DateTime {
                date: Date {
                    year: 2024,
                    month: 2,
                    day: 29,
                },
                hour: 1,
                minute: 2,
                second: 3,
                micros: 456_000,
            }),
            Value::Timestamp(2_147_483_647_999_999),
            Value::Enum(2),
            Value::Set(5),
            Value::Bit(5),
            Value::Bit(1),
            Value::Bit(u64::MAX),
            Value::Bytes(vec![0, 255]),
            Value::Json(r#"{"a":[1,2.5]}"#.into()),
            Value::Null,
            Value::Year(2155),
            Value::Date(Date {
                year: 2024,
                month: 2,
                day: 29,
            }),
            Value::Double(-2.2250738585072014e-308),
        ];
        let source = Source {
            transaction: Arc::new(Transaction {
                flavor: Flavor::MySql,
                server_id: 0,
                server_uuid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562".into()),
                gtid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23".into()),
                file: "binlog.000003".into(),
                pos: 1130,
                commit_ts_us: 1_795_597_861_000_000,
            }),
            pos: 1130,
            next_pos: 1130,
            row: 2,
        };
        let event = ChangeEvent {
            op: Op::Insert,
            table: table.clone(),
            before: None,
            after: Some(after),
            source,
        };
        let mut text = String::new();
        let options = DmsOptions {
            include_transaction_details: true,
            ..DmsOptions::default()
        };
        DmsWriter::new(options).write_change(&mut text, &event);
        let json: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(
            classify(&json).unwrap(),
            DmsRecord::Data {
                schema: "db",
                table: "t"
            }
        );
        let origin = Origin {
            shard: "shardId-000000000000",
            sequence: "1",
            sub: 0,
        };
        let read = DmsReader::new().read(&json, &table, origin).unwrap();
        assert_eq!(read.after, event.after, "{text}");
        assert_eq!(read.event_id(), event.event_id());
        assert_eq!(read.source.transaction.commit_ts_us, 1_795_597_861_000_000);
    }

    /// A record as real DMS writes it (shared/reference/dms-format.md), typed by a table-def.
    #[test]
    fn real_dms_records_get_an_identity_from_their_place_in_the_stream() {
        let control: Json = serde_json::from_str(
            r#"{"control":{"table-def":{"columns":{"trans_id":{"type":"INT4","nullable":false},
              "amount":{"type":"NUMERIC","precision":10,"scale":2,"nullable":true},
              "trans_datetime":{"type":"DATETIME","nullable":true},
              "device":{"type":"WSTRING","length":20,"nullable":true}},"primary-key":["trans_id"]}},
              "metadata":{"timestamp":"2023-01-16T06:20:00.000000Z","record-type":"control",
              "operation":"create-table","partition-key-type":"task-id","schema-name":"testdb",
              "table-name":"retail_trans"}}"#,
        )
        .unwrap();
        let DmsRecord::Control {
            definition: Some(definition),
            ..
        } = classify(&control).unwrap()
        else {
            panic!("a control record with a table-def")
        };
        let table = Arc::new(definition);
        let data: Json = serde_json::from_str(
            r#"{"data":{"trans_id":6,"amount":1,"device":"pc","trans_datetime":"2023-01-16T06:18:32Z"},
              "metadata":{"timestamp":"2023-01-16T06:25:34.444953Z","record-type":"data",
              "operation":"insert","partition-key-type":"primary-key","schema-name":"testdb",
              "table-name":"retail_trans","transaction-id":12884904641}}"#,
        )
        .unwrap();
        let origin = Origin {
            shard: "shardId-000000000002",
            sequence: "4960",
            sub: 0,
        };
        let event = DmsReader::new().read(&data, &table, origin).unwrap();
        let after = event.after.unwrap();
        assert_eq!(after[0], Value::Int(6));
        assert_eq!(after[1], Value::Decimal("1.00".into()));
        assert_eq!(after[3], Value::String("pc".into()));
        assert_eq!(
            event.source.event_id(),
            "shardId-000000000002:4960:0:binlog.000003:2753:0"
        );
        let bad: Json = serde_json::from_str(
            r#"{"data":{"trans_id":"six"},"metadata":{"timestamp":"2023-01-16T06:25:34.444953Z",
              "record-type":"data","operation":"insert","schema-name":"testdb",
              "table-name":"retail_trans"}}"#,
        )
        .unwrap();
        let error = DmsReader::new()
            .read(&bad, &table, origin)
            .unwrap_err()
            .to_string();
        assert!(error.contains("data.trans_id"), "{error}");
    }
}
