//! Parquet objects: one row group per object, the table's columns typed by [`LakeType`], then the
//! change-data columns.

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::types::Type;

use cdcd_event::{Column, TableSchema, Value};

use super::types::{days_from_civil, unscaled, LakeType, CDC_COLUMNS};
use super::{LakeError, Row};

/// The values of one column, ready for the Parquet column writer, and which rows are non-null.
enum Values {
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Bytes(Vec<ByteArray>),
    Fixed(Vec<FixedLenByteArray>),
}

struct ColumnData {
    values: Values,
    /// 1 for a value, 0 for NULL (every column is OPTIONAL).
    defined: Vec<i16>,
}

/// Encodes `rows` (all of `table`'s shape) as one Parquet object.
pub(crate) fn encode(
    table: &TableSchema,
    rows: &[Row],
    compression: Compression,
) -> Result<Vec<u8>, LakeError> {
    let mut fields = Vec::with_capacity(table.columns.len() + CDC_COLUMNS.len());
    for column in &table.columns {
        fields.push(Arc::new(field(&column.name, LakeType::of(column))?));
    }
    for (name, lake_type) in CDC_COLUMNS {
        fields.push(Arc::new(field(name, lake_type)?));
    }
    let schema = Arc::new(
        Type::group_type_builder("schema")
            .with_fields(fields)
            .build()?,
    );
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .set_created_by(concat!("cdcd ", env!("CARGO_PKG_VERSION")).into())
            .set_max_row_group_row_count(Some(rows.len().max(1)))
            // Change streams are mostly distinct values (keys, hashes, timestamps): dictionaries
            // cost more time than they save bytes once zstd has run. Min/max per column chunk
            // is what Athena prunes by; per page it only costs.
            .set_dictionary_enabled(false)
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
            .build(),
    );
    let mut out = Vec::with_capacity(rows.len() * 64 + 1024);
    let mut writer = SerializedFileWriter::new(&mut out, schema, properties)?;
    let mut group = writer.next_row_group()?;
    let mut index = 0;
    while let Some(mut writer) = group.next_column()? {
        let data = match table.columns.get(index) {
            Some(column) => table_column(table, column, index, rows)?,
            None => cdc_column(index - table.columns.len(), rows),
        };
        write(&mut writer, data)?;
        writer.close()?;
        index += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(out)
}

fn field(name: &str, lake_type: LakeType) -> Result<Type, LakeError> {
    let (physical, logical, length) = match lake_type {
        LakeType::Int32 => (Physical::INT32, None, -1),
        LakeType::Int64 => (Physical::INT64, None, -1),
        LakeType::Decimal { precision, scale } => (
            Physical::FIXED_LEN_BYTE_ARRAY,
            Some(LogicalType::decimal(i32::from(scale), i32::from(precision))),
            16,
        ),
        LakeType::Float => (Physical::FLOAT, None, -1),
        LakeType::Double => (Physical::DOUBLE, None, -1),
        LakeType::Text => (Physical::BYTE_ARRAY, Some(LogicalType::String), -1),
        LakeType::Binary => (Physical::BYTE_ARRAY, None, -1),
        LakeType::Date => (Physical::INT32, Some(LogicalType::Date), -1),
        LakeType::Timestamp { utc } => (
            Physical::INT64,
            Some(LogicalType::timestamp(utc, TimeUnit::MICROS)),
            -1,
        ),
    };
    let mut builder = Type::primitive_type_builder(name, physical)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(logical)
        .with_length(length);
    if let LakeType::Decimal { precision, scale } = lake_type {
        builder = builder
            .with_precision(i32::from(precision))
            .with_scale(i32::from(scale));
    }
    Ok(builder.build()?)
}

fn write(writer: &mut SerializedColumnWriter<'_>, data: ColumnData) -> Result<(), LakeError> {
    use parquet::data_type::{
        ByteArrayType, DoubleType, FixedLenByteArrayType, FloatType, Int32Type, Int64Type,
    };
    let defined = Some(&data.defined[..]);
    match data.values {
        Values::Int32(v) => writer.typed::<Int32Type>().write_batch(&v, defined, None)?,
        Values::Int64(v) => writer.typed::<Int64Type>().write_batch(&v, defined, None)?,
        Values::Float(v) => writer.typed::<FloatType>().write_batch(&v, defined, None)?,
        Values::Double(v) => writer
            .typed::<DoubleType>()
            .write_batch(&v, defined, None)?,
        Values::Bytes(v) => writer
            .typed::<ByteArrayType>()
            .write_batch(&v, defined, None)?,
        Values::Fixed(v) => writer
            .typed::<FixedLenByteArrayType>()
            .write_batch(&v, defined, None)?,
    };
    Ok(())
}

/// Decimals as 16-byte big-endian two's complement values, slices of one buffer.
fn fixed(unscaled: &[i128]) -> Vec<FixedLenByteArray> {
    let mut buffer = Vec::with_capacity(unscaled.len() * 16);
    for value in unscaled {
        buffer.extend_from_slice(&value.to_be_bytes());
    }
    let buffer = Bytes::from(buffer);
    (0..unscaled.len())
        .map(|i| FixedLenByteArray::from(ByteArray::from(buffer.slice(i * 16..i * 16 + 16))))
        .collect()
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

fn table_column(
    table: &TableSchema,
    column: &Column,
    index: usize,
    rows: &[Row],
) -> Result<ColumnData, LakeError> {
    let lake_type = LakeType::of(column);
    let mut defined = Vec::with_capacity(rows.len());
    let mismatch = |value: &Value| LakeError::Value {
        table: format!("{}.{}", table.schema, table.table),
        column: column.name.to_string(),
        detail: format!(
            "a {value:?} value cannot be stored as {}",
            lake_type.athena()
        ),
    };
    // Pushes `Some(x)` as a value and `None` as NULL.
    macro_rules! collect {
        ($variant:ident, $convert:expr) => {{
            let mut values = Vec::with_capacity(rows.len());
            for row in rows {
                let value = &row.values[index];
                let converted = match value {
                    Value::Null | Value::Absent => None,
                    other => $convert(other).ok_or_else(|| mismatch(other))?,
                };
                defined.push(i16::from(converted.is_some()));
                values.extend(converted);
            }
            Values::$variant(values)
        }};
    }
    let values = match lake_type {
        LakeType::Int32 => collect!(Int32, |v: &Value| match *v {
            Value::Int(i) => i32::try_from(i).ok().map(Some),
            Value::UInt(u) => i32::try_from(u).ok().map(Some),
            Value::Year(y) => Some(Some(i32::from(y))),
            _ => None,
        }),
        LakeType::Int64 => collect!(Int64, |v: &Value| match *v {
            Value::Int(i) => Some(Some(i)),
            Value::UInt(u) | Value::Bit(u) => i64::try_from(u).ok().map(Some),
            _ => None,
        }),
        LakeType::Decimal { .. } => {
            let mut unscaled_values = Vec::with_capacity(rows.len());
            for row in rows {
                let value = &row.values[index];
                let converted = match value {
                    Value::Null | Value::Absent => None,
                    Value::Decimal(text) => Some(unscaled(text).ok_or_else(|| mismatch(value))?),
                    Value::UInt(u) | Value::Bit(u) => Some(i128::from(*u)),
                    Value::Int(i) => Some(i128::from(*i)),
                    other => return Err(mismatch(other)),
                };
                defined.push(i16::from(converted.is_some()));
                unscaled_values.extend(converted);
            }
            Values::Fixed(fixed(&unscaled_values))
        }
        LakeType::Float => collect!(Float, |v: &Value| match *v {
            Value::Float(f) => Some(Some(f)),
            _ => None,
        }),
        LakeType::Double => collect!(Double, |v: &Value| match *v {
            Value::Double(f) => Some(Some(f)),
            Value::Float(f) => Some(Some(f64::from(f))),
            _ => None,
        }),
        LakeType::Date => collect!(Int32, |v: &Value| match v {
            Value::Date(d) => Some(days_from_civil(d.year, d.month, d.day)),
            _ => None,
        }),
        LakeType::Timestamp { .. } => collect!(Int64, |v: &Value| match v {
            Value::DateTime(dt) => Some(
                days_from_civil(dt.date.year, dt.date.month, dt.date.day).map(|days| {
                    i64::from(days) * MICROS_PER_DAY
                        + (i64::from(dt.hour) * 3600
                            + i64::from(dt.minute) * 60
                            + i64::from(dt.second))
                            * 1_000_000
                        + i64::from(dt.micros)
                })
            ),
            // 0 is MySQL's zero timestamp; no real TIMESTAMP value is the epoch itself.
            Value::Timestamp(0) => Some(None),
            Value::Timestamp(micros) => Some(Some(*micros)),
            _ => None,
        }),
        LakeType::Text | LakeType::Binary => {
            // All values of the column share one buffer; each value is a slice of it.
            let mut buffer = Vec::new();
            let mut ends = Vec::with_capacity(rows.len());
            let mut text = String::new();
            for row in rows {
                let start = buffer.len();
                let present = match &row.values[index] {
                    Value::Null | Value::Absent => false,
                    Value::Bytes(bytes) | Value::Geometry(bytes)
                        if lake_type == LakeType::Binary =>
                    {
                        buffer.extend_from_slice(bytes);
                        true
                    }
                    Value::String(text) | Value::Json(text) | Value::Decimal(text) => {
                        buffer.extend_from_slice(text.as_bytes());
                        true
                    }
                    // MariaDB UUID/INET render from their bytes; text whose bytes were invalid
                    // in its character set is kept as close as UTF-8 allows.
                    value @ Value::Bytes(bytes) => {
                        text.clear();
                        if value.write_text(column, &mut text) {
                            buffer.extend_from_slice(text.as_bytes());
                        } else {
                            buffer.extend_from_slice(String::from_utf8_lossy(bytes).as_bytes());
                        }
                        true
                    }
                    other => {
                        text.clear();
                        if !other.write_text(column, &mut text) {
                            return Err(mismatch(other));
                        }
                        buffer.extend_from_slice(text.as_bytes());
                        true
                    }
                };
                defined.push(i16::from(present));
                if present {
                    ends.push((start, buffer.len()));
                }
            }
            let buffer = Bytes::from(buffer);
            Values::Bytes(
                ends.into_iter()
                    .map(|(start, end)| ByteArray::from(buffer.slice(start..end)))
                    .collect(),
            )
        }
    };
    Ok(ColumnData { values, defined })
}

/// The change-data column at `index` in [`CDC_COLUMNS`].
fn cdc_column(index: usize, rows: &[Row]) -> ColumnData {
    let all = || vec![1; rows.len()];
    match CDC_COLUMNS[index].0 {
        "_cdc_op" => {
            let (values, defined) = sliced(rows, |row, out| {
                out.extend_from_slice(row.op.as_str().as_bytes());
                true
            });
            ColumnData {
                values: Values::Bytes(values),
                defined,
            }
        }
        "_cdc_commit_ts" => ColumnData {
            values: Values::Int64(
                rows.iter()
                    .map(|r| r.source.transaction.commit_ts_us)
                    .collect(),
            ),
            defined: all(),
        },
        "_cdc_event_id" => {
            // `Source::event_id`, written in place (itoa: `write!` costs more than the rest).
            let (values, defined) = sliced(rows, |row, out| {
                let (txn, mut digits) = (&row.source.transaction, itoa::Buffer::new());
                match &txn.gtid {
                    Some(gtid) => out.extend_from_slice(gtid.as_bytes()),
                    None => {
                        out.extend_from_slice(txn.file.as_bytes());
                        out.push(b':');
                        out.extend_from_slice(digits.format(txn.pos).as_bytes());
                    }
                }
                out.push(b':');
                out.extend_from_slice(digits.format(row.source.row).as_bytes());
                true
            });
            ColumnData {
                values: Values::Bytes(values),
                defined,
            }
        }
        "_cdc_gtid" => {
            let (values, defined) = sliced(rows, |row, out| match &row.source.transaction.gtid {
                Some(gtid) => {
                    out.extend_from_slice(gtid.as_bytes());
                    true
                }
                None => false,
            });
            ColumnData {
                values: Values::Bytes(values),
                defined,
            }
        }
        "_cdc_seq" => {
            let (values, _) = sliced(rows, |row, out| {
                out.extend_from_slice(&super::sequence(row).to_be_bytes());
                true
            });
            ColumnData {
                values: Values::Fixed(values.into_iter().map(FixedLenByteArray::from).collect()),
                defined: all(),
            }
        }
        other => unreachable!("CDC_COLUMNS lists {other} without an encoder"),
    }
}

/// One value per row, written by `write` into a single buffer (false: NULL) and handed to the
/// column writer as slices of it: no allocation per row.
fn sliced(
    rows: &[Row],
    mut write: impl FnMut(&Row, &mut Vec<u8>) -> bool,
) -> (Vec<ByteArray>, Vec<i16>) {
    let mut buffer = Vec::with_capacity(rows.len() * 16);
    let mut ends = Vec::with_capacity(rows.len());
    let mut defined = Vec::with_capacity(rows.len());
    for row in rows {
        let start = buffer.len();
        let present = write(row, &mut buffer);
        defined.push(i16::from(present));
        if present {
            ends.push((start, buffer.len()));
        }
    }
    let buffer = Bytes::from(buffer);
    let values = ends
        .into_iter()
        .map(|(start, end)| ByteArray::from(buffer.slice(start..end)))
        .collect();
    (values, defined)
}
