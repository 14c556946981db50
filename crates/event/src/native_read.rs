//! Reading native JSON change records back into [`ChangeEvent`]s: the inverse of
//! [`crate::native::NativeWriter`] with column types on (`cdcd sink` reads what `cdcd run` put on
//! Kinesis).
//!
//! A record must carry `column_types` (written by [`NativeWriter::with_column_types`]): native
//! values alone do not say whether `5` is a TINYINT or a YEAR, or how many fraction digits a
//! DATETIME has. From it the reader rebuilds the table's columns (in that order) and primary key,
//! and parses every value back into the [`Value`] the writer started from: integers and u64 from
//! their exact digits, DECIMAL text as it is, times with their microseconds and sign, base64
//! binary, ENUM and SET names into their index and mask, BIT digits, embedded JSON as its text.
//!
//! Invariants: records of one table with the same `column_types` and `primary_key` share one
//! `Arc<TableSchema>` (the lake groups rows by it), consecutive records of one transaction share
//! one `Arc<Transaction>`, and a record that cannot be read is an error naming the key and the
//! column, never a guess.
//!
//! What native JSON cannot carry back: the bytes of a text column that were not valid in its
//! character set (written as base64, read back as that text), a JSON column holding the JSON
//! value `null` (written as `null`: SQL NULL), the spelling of exponents in JSON documents
//! (re-serialized: `1e300` becomes `1e+300`), a column's nullability and collation (not
//! written), and `source.next_pos` (not written; set to `source.pos`).
//!
//! [`NativeWriter::with_column_types`]: crate::native::NativeWriter::with_column_types

use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value as Json;

use crate::decode::DecodeError;
use crate::model::{ChangeEvent, Flavor, Op, Source, Transaction};
use crate::text::{parse_date, parse_datetime, parse_time};
use crate::value::{datetime_to_timestamp, Column, ColumnType, TableSchema, Value};

/// Reads native JSON records; keeps the last table and transaction so that records share them.
#[derive(Debug, Default)]
pub struct NativeReader {
    /// The last table: its `column_types` and `primary_key` as written, and the schema built.
    table: Option<(String, Arc<TableSchema>)>,
    transaction: Option<Arc<Transaction>>,
}

impl NativeReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// One record: `Some` change, or `None` for a DDL record (`"op":"ddl"`), which the lake
    /// does not need (every change record carries its table's columns).
    pub fn read(&mut self, record: &Json) -> Result<Option<ChangeEvent>, DecodeError> {
        let op = match record["op"].as_str() {
            Some("insert") => Op::Insert,
            Some("update") => Op::Update,
            Some("delete") => Op::Delete,
            Some("load") => Op::Load,
            Some("ddl") => return Ok(None),
            _ => {
                return Err(DecodeError::new(
                    "op",
                    "not insert, update, delete, load or ddl",
                ))
            }
        };
        let table = self.table(record)?;
        let before = row(&table, &record["before"], "before")?;
        let after = row(&table, &record["after"], "after")?;
        let source = self.source(&record["source"])?;
        Ok(Some(ChangeEvent {
            op,
            table,
            before,
            after,
            source,
        }))
    }

    fn table(&mut self, record: &Json) -> Result<Arc<TableSchema>, DecodeError> {
        let types = record["column_types"].as_object().ok_or_else(|| {
            DecodeError::new(
                "column_types",
                "missing: the record was written without column types (cdcd run writes them \
                 for Kinesis; upgrade the producer)",
            )
        })?;
        let schema = text_field(record, "schema")?;
        let table = text_field(record, "table")?;
        let key = format!(
            "{schema}\0{table}\0{}\0{}",
            record["column_types"], record["primary_key"]
        );
        if let Some((cached, schema)) = &self.table {
            if *cached == key {
                return Ok(schema.clone());
            }
        }
        let columns = types
            .iter()
            .map(|(name, sql_type)| {
                let sql_type = sql_type.as_str().unwrap_or_default();
                Column::from_sql_type(name, sql_type)
                    .map_err(|message| DecodeError::new(format!("column_types.{name}"), message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let primary_key = record["primary_key"]
            .as_array()
            .ok_or_else(|| DecodeError::new("primary_key", "not an array of column names"))?
            .iter()
            .map(|name| {
                let name = name.as_str().unwrap_or_default();
                columns
                    .iter()
                    .position(|c| &*c.name == name)
                    .ok_or_else(|| {
                        DecodeError::new("primary_key", format!("`{name}` is not a column"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let schema = Arc::new(TableSchema {
            schema: schema.into(),
            table: table.into(),
            columns,
            primary_key,
        });
        self.table = Some((key, schema.clone()));
        Ok(schema)
    }

    fn source(&mut self, source: &Json) -> Result<Source, DecodeError> {
        let number = |key: &str| {
            source[key]
                .as_u64()
                .ok_or_else(|| DecodeError::new(format!("source.{key}"), "not a number"))
        };
        let flavor = match source["flavor"].as_str() {
            Some("mysql") => Flavor::MySql,
            Some("mariadb") => Flavor::MariaDb,
            _ => return Err(DecodeError::new("source.flavor", "not mysql or mariadb")),
        };
        let transaction = Transaction {
            flavor,
            server_id: u32::try_from(number("server_id")?)
                .map_err(|_| DecodeError::new("source.server_id", "over 2^32"))?,
            server_uuid: source["server_uuid"].as_str().map(Arc::from),
            gtid: source["gtid"].as_str().map(str::to_string),
            file: source["file"]
                .as_str()
                .ok_or_else(|| DecodeError::new("source.file", "not a string"))?
                .to_string(),
            pos: number("txn_pos")?,
            commit_ts_us: source["commit_ts_us"]
                .as_i64()
                .ok_or_else(|| DecodeError::new("source.commit_ts_us", "not an integer"))?,
        };
        let transaction = match &self.transaction {
            Some(last) if **last == transaction => last.clone(),
            _ => {
                let shared = Arc::new(transaction);
                self.transaction = Some(shared.clone());
                shared
            }
        };
        let pos = number("pos")?;
        Ok(Source {
            transaction,
            pos,
            next_pos: pos,
            row: number("row")?,
        })
    }
}

fn text_field<'a>(record: &'a Json, key: &str) -> Result<&'a str, DecodeError> {
    record[key]
        .as_str()
        .ok_or_else(|| DecodeError::new(key, "not a string"))
}

/// A row image: `null`, or an object with a key per column present (absent columns are left out).
fn row(table: &TableSchema, image: &Json, which: &str) -> Result<Option<Vec<Value>>, DecodeError> {
    let object = match image {
        Json::Null => return Ok(None),
        Json::Object(object) => object,
        _ => return Err(DecodeError::new(which, "not an object or null")),
    };
    if let Some(unknown) = object
        .keys()
        .find(|name| !table.columns.iter().any(|c| &*c.name == name.as_str()))
    {
        return Err(DecodeError::new(
            format!("{which}.{unknown}"),
            "not in column_types",
        ));
    }
    table
        .columns
        .iter()
        .map(|column| match object.get(&*column.name) {
            None => Ok(Value::Absent),
            Some(json) => value(column, json).map_err(|message| {
                DecodeError::new(
                    format!("{which}.{}", column.name),
                    format!("{message} for a {} column", column.sql_type()),
                )
            }),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// One value in the native encoding (docs/formats.md), read as the writer's `Value`.
pub(crate) fn value(column: &Column, json: &Json) -> Result<Value, String> {
    use ColumnType as K;
    if json.is_null() {
        return Ok(Value::Null);
    }
    let text = || {
        json.as_str()
            .ok_or_else(|| format!("{json} is not a string"))
    };
    let digits = || match json {
        // Exact digits (serde_json keeps them with arbitrary_precision).
        Json::Number(n) => Ok(n.to_string()),
        _ => Err(format!("{json} is not a number")),
    };
    let bad = |what: &str| format!("`{json}` is not {what}");
    Ok(match column.kind {
        K::TinyInt | K::SmallInt | K::MediumInt | K::Int | K::BigInt if column.unsigned => {
            Value::UInt(digits()?.parse().map_err(|_| bad("an unsigned integer"))?)
        }
        K::TinyInt | K::SmallInt | K::MediumInt | K::Int | K::BigInt => {
            Value::Int(digits()?.parse().map_err(|_| bad("an integer"))?)
        }
        K::Decimal => Value::Decimal(text()?.to_string()),
        K::Float => Value::Float(digits()?.parse().map_err(|_| bad("a float"))?),
        K::Double => Value::Double(digits()?.parse().map_err(|_| bad("a double"))?),
        K::Bit => Value::Bit(u64::from_str_radix(text()?, 2).map_err(|_| bad("binary digits"))?),
        K::Date => Value::Date(parse_date(text()?).ok_or_else(|| bad("YYYY-MM-DD"))?),
        K::Time => Value::Time(parse_time(text()?).ok_or_else(|| bad("[-]HH:MM:SS[.f]"))?),
        K::DateTime => {
            Value::DateTime(parse_datetime(text()?).ok_or_else(|| bad("YYYY-MM-DDTHH:MM:SS[.f]"))?)
        }
        K::Timestamp => {
            let dt = parse_datetime(text()?).ok_or_else(|| bad("YYYY-MM-DDTHH:MM:SS[.f]Z"))?;
            if dt.date.year == 0 && dt.date.month == 0 && dt.date.day == 0 {
                Value::Timestamp(0)
            } else {
                Value::Timestamp(datetime_to_timestamp(&dt))
            }
        }
        K::Year => Value::Year(digits()?.parse().map_err(|_| bad("a year"))?),
        K::Char | K::VarChar | K::Text => Value::String(text()?.to_string()),
        K::Binary | K::VarBinary | K::Blob | K::Vector => Value::Bytes(base64(text()?)?),
        K::Geometry => Value::Geometry(base64(text()?)?),
        K::Uuid | K::Inet4 | K::Inet6 => Value::Bytes(special_binary(column.kind, text()?)?),
        K::Json if is_json_diff(json) => Value::JsonDiff(json["json_diff"].to_string()),
        K::Json => Value::Json(json.to_string()),
        K::Enum => match json {
            Json::Number(_) => Value::Enum(digits()?.parse().map_err(|_| bad("an ENUM index"))?),
            _ => {
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
        },
        K::Set => match json {
            Json::Number(_) => Value::Set(digits()?.parse().map_err(|_| bad("a SET mask"))?),
            Json::Array(names) => {
                let mut mask = 0u64;
                for name in names {
                    let index = column
                        .elements
                        .iter()
                        .position(|e| Some(&**e) == name.as_str())
                        .filter(|i| *i < 64)
                        .ok_or_else(|| bad("a list of the SET's elements"))?;
                    mask |= 1 << index;
                }
                Value::Set(mask)
            }
            _ => return Err(bad("a SET (an array of names)")),
        },
    })
}

/// `{"json_diff":[…]}`: the partial-update form of a JSON value.
fn is_json_diff(json: &Json) -> bool {
    json.as_object()
        .is_some_and(|o| o.len() == 1 && o.get("json_diff").is_some_and(Json::is_array))
}

fn base64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| format!("`{text}` is not base64"))
}

/// MariaDB UUID/INET4/INET6 text back into its bytes (base64 when the writer had no text form).
pub(crate) fn special_binary(kind: ColumnType, text: &str) -> Result<Vec<u8>, String> {
    let parsed = match kind {
        ColumnType::Uuid if text.len() == 36 => {
            let hex: String = text.chars().filter(|c| *c != '-').collect();
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
                .filter(|b| b.len() == 16)
        }
        ColumnType::Inet4 => text
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|a| a.octets().to_vec()),
        ColumnType::Inet6 => text
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| a.octets().to_vec()),
        _ => None,
    };
    match parsed {
        Some(bytes) => Ok(bytes),
        None => base64(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::NativeWriter;
    use crate::value::{Date, DateTime};

    fn column(name: &str, sql_type: &str) -> Column {
        Column::from_sql_type(name, sql_type).unwrap()
    }

    /// Every value type written with column types reads back as the same event.
    #[test]
    fn native_records_read_back_exactly() {
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
                column("ts0", "timestamp"),
                column("e", "enum('a','it''s')"),
                column("s", "set('a','it''s')"),
                column("bit", "bit(13)"),
                column("b", "varbinary(10)"),
                column("j", "json"),
                column("n", "int"),
                column("y", "year"),
                column("dd", "date"),
                column("f", "float"),
                column("g", "double"),
                column("v", "varchar(20)"),
                column("x", "inet6"),
            ],
            primary_key: vec![0, 1],
        });
        let after = vec![
            Value::UInt(u64::MAX),
            Value::Int(-8_388_608),
            Value::Decimal("-0.000000000000000000000000000001".into()),
            Value::Time(-1),
            Value::DateTime(DateTime {
                date: Date {
                    year: 0,
                    month: 0,
                    day: 0,
                },
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0,
            }),
            Value::Timestamp(2_147_483_647_999_999),
            Value::Timestamp(0),
            Value::Enum(2),
            Value::Set(3),
            Value::Bit(5),
            Value::Bytes(vec![0, 255]),
            Value::Json(r#"{"a":18446744073709551615,"b":2.50,"c":"é\"x"}"#.into()),
            Value::Null,
            Value::Year(0),
            Value::Date(Date {
                year: 2024,
                month: 2,
                day: 29,
            }),
            Value::Float(0.1),
            Value::Double(-2.2250738585072014e-308),
            Value::String("café".into()),
            Value::Bytes(std::net::Ipv6Addr::LOCALHOST.octets().to_vec()),
        ];
        let mut before = after.clone();
        before[1] = Value::Absent;
        let event = ChangeEvent {
            op: Op::Update,
            table: table.clone(),
            before: Some(before),
            after: Some(after),
            source: Source {
                transaction: Arc::new(Transaction {
                    flavor: Flavor::MariaDb,
                    server_id: 7,
                    server_uuid: None,
                    gtid: Some("0-7-42".into()),
                    file: "mariadb-bin.000002".into(),
                    pos: 4,
                    commit_ts_us: 1_795_593_644_000_000,
                }),
                pos: 100,
                next_pos: 100,
                row: 2,
            },
        };
        let mut text = String::new();
        NativeWriter::with_column_types().write_change(&mut text, &event);
        let json: Json = serde_json::from_str(&text).unwrap();
        let mut reader = NativeReader::new();
        let read = reader.read(&json).unwrap().unwrap();
        assert_eq!(read, event, "{text}");
        let again = reader.read(&json).unwrap().unwrap();
        assert!(Arc::ptr_eq(&read.table, &again.table));
        assert!(Arc::ptr_eq(
            &read.source.transaction,
            &again.source.transaction
        ));
    }

    #[test]
    fn records_without_types_or_with_bad_values_name_the_key() {
        let mut text = String::new();
        let mut reader = NativeReader::new();
        text.push_str(r#"{"op":"insert","schema":"s","table":"t","primary_key":[],"after":{}}"#);
        let err = reader
            .read(&serde_json::from_str(&text).unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("column_types"), "{err}");
        let bad = r#"{"op":"insert","schema":"s","table":"t","primary_key":["id"],
            "column_types":{"id":"int"},"before":null,"after":{"id":"seven"},"source":{}}"#;
        let err = reader
            .read(&serde_json::from_str(bad).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("after.id") && err.contains("int column"),
            "{err}"
        );
    }
}
