//! Parquet objects: one row group per object, the table's columns typed by [`LakeType`], then the
//! change-data columns.
//!
//! Rows are turned into Arrow arrays, one builder per column, in a single pass: each row is read
//! once, while it is in the cache, and every value appended to its column. The arrays go to the
//! Parquet writer as contiguous buffers, so no value costs an allocation or a reference count on
//! the way.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, LargeBinaryBuilder, LargeStringBuilder, PrimitiveBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::types::ArrowPrimitiveType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_writer::{ArrowWriter, ArrowWriterOptions};
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use cdcd_event::{Column, TableSchema, Transaction, Value};

use super::types::{days_from_civil, unscaled, LakeType, CDC_COLUMNS};
use super::{LakeError, Row};

/// How objects are written (`[lake]` compression and text_encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Options {
    pub compression: Compression,
    /// Of string and binary columns: `DELTA_LENGTH_BYTE_ARRAY` or `PLAIN`.
    pub text_encoding: Encoding,
}

/// Encodes `rows` (all of `table`'s shape) as one Parquet object.
pub(crate) fn encode(
    table: &TableSchema,
    rows: &[Row],
    options: Options,
) -> Result<Vec<u8>, LakeError> {
    let lake_types: Vec<LakeType> = table.columns.iter().map(LakeType::of).collect();
    let mut columns: Vec<ColumnBuilder> = lake_types
        .iter()
        .enumerate()
        .map(|(index, &lake_type)| {
            ColumnBuilder::new(lake_type, rows.len(), estimated_bytes(rows, index))
        })
        .collect();
    let mut cdc = CdcColumns::new(rows.len());
    let mut text = String::new();
    let row_count = rows.len();
    let value_error = |column: &str, detail: String| LakeError::Value {
        table: format!("{}.{}", table.schema, table.table),
        column: column.into(),
        detail,
    };
    for row in rows {
        if row.values.len() != table.columns.len() {
            let detail = format!(
                "a row of {} values for {} columns",
                row.values.len(),
                table.columns.len()
            );
            return Err(value_error("(all)", detail));
        }
        for ((builder, column), value) in columns.iter_mut().zip(&table.columns).zip(&row.values) {
            if !builder.append(column, value, &mut text) {
                let detail = format!(
                    "a {value:?} value cannot be stored as {}",
                    builder.lake_type.athena()
                );
                return Err(value_error(&column.name, detail));
            }
        }
        cdc.append(row);
    }

    let mut fields = Vec::with_capacity(table.columns.len() + CDC_COLUMNS.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    for (column, mut builder) in table.columns.iter().zip(columns) {
        fields.push(field(&column.name, builder.lake_type));
        arrays.push(builder.finish());
    }
    for ((name, lake_type), array) in CDC_COLUMNS.into_iter().zip(cdc.finish()) {
        fields.push(field(name, lake_type));
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    debug_assert_eq!(batch.num_rows(), row_count);

    // DELTA_LENGTH_BYTE_ARRAY keeps the lengths apart from the bytes: with PLAIN, each value's
    // 4-byte length and first characters repeat often enough for zstd to find (useless) 6-byte
    // matches among otherwise random hash digits, which cost 6-11% of a catch-up's CPU time and 6%
    // of the bytes.
    let mut properties = WriterProperties::builder();
    for field in batch.schema().fields() {
        if matches!(
            field.data_type(),
            DataType::LargeUtf8 | DataType::LargeBinary
        ) {
            let column = ColumnPath::from(field.name().as_str());
            properties = properties.set_column_encoding(column, options.text_encoding);
        }
    }
    let properties = properties
        .set_compression(options.compression)
        .set_created_by(concat!("cdcd ", env!("CARGO_PKG_VERSION")).into())
        .set_max_row_group_row_count(Some(row_count.max(1)))
        // Change streams are mostly distinct values (keys, hashes, timestamps): dictionaries
        // cost more time than they save bytes once zstd has run. Min/max per column chunk is
        // what Athena prunes by; per page it only costs.
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build();
    // The Arrow schema in the footer only helps Arrow readers round-trip types that Parquet
    // already describes.
    let options = ArrowWriterOptions::new()
        .with_properties(properties)
        .with_skip_arrow_metadata(true);
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    let mut writer = ArrowWriter::try_new_with_options(&mut out, batch.schema(), options)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(out)
}

/// About how many bytes the text or binary values of column `index` take, from up to 16 rows
/// spread over `rows`, so that their buffer is allocated once rather than grown by doubling
/// (which copies what is there at every step).
fn estimated_bytes(rows: &[Row], index: usize) -> usize {
    let step = (rows.len() / 16).max(1);
    let (mut sampled, mut bytes) = (0, 0);
    for row in rows.iter().step_by(step) {
        sampled += 1;
        bytes += match row.values.get(index) {
            Some(Value::String(s) | Value::Json(s) | Value::Decimal(s)) => s.len(),
            Some(Value::Bytes(b) | Value::Geometry(b)) => b.len(),
            _ => 0,
        };
    }
    // An eighth more, for lengths the sample missed.
    (bytes * rows.len() / sampled.max(1)) * 9 / 8
}

/// The Arrow field of a lake column; Parquet's types follow from it (decimals of up to 18
/// digits as INT32 or INT64, wider ones as fixed-length byte arrays).
fn field(name: &str, lake_type: LakeType) -> Field {
    let data_type = match lake_type {
        LakeType::Int32 => DataType::Int32,
        LakeType::Int64 => DataType::Int64,
        LakeType::Decimal { precision, scale } => DataType::Decimal128(precision, scale as i8),
        LakeType::Float => DataType::Float32,
        LakeType::Double => DataType::Float64,
        LakeType::Text => DataType::LargeUtf8,
        LakeType::Binary => DataType::LargeBinary,
        LakeType::Date => DataType::Date32,
        LakeType::Timestamp { utc } => {
            DataType::Timestamp(TimeUnit::Microsecond, utc.then(|| "UTC".into()))
        }
    };
    Field::new(name, data_type, true)
}

/// One column's values, appended row by row.
struct ColumnBuilder {
    lake_type: LakeType,
    values: Values,
}

enum Values {
    Int32(Int32Builder),
    Int64(Int64Builder),
    Decimal(Decimal128Builder),
    Float(Float32Builder),
    Double(Float64Builder),
    Text(LargeStringBuilder),
    Binary(LargeBinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl ColumnBuilder {
    /// A builder for `rows` values; text and binary ones taking about `bytes` in all.
    fn new(lake_type: LakeType, rows: usize, bytes: usize) -> ColumnBuilder {
        let values = match lake_type {
            LakeType::Int32 => Values::Int32(Int32Builder::with_capacity(rows)),
            LakeType::Int64 => Values::Int64(Int64Builder::with_capacity(rows)),
            LakeType::Decimal { precision, scale } => Values::Decimal(
                Decimal128Builder::with_capacity(rows)
                    .with_data_type(DataType::Decimal128(precision, scale as i8)),
            ),
            LakeType::Float => Values::Float(Float32Builder::with_capacity(rows)),
            LakeType::Double => Values::Double(Float64Builder::with_capacity(rows)),
            LakeType::Text => Values::Text(LargeStringBuilder::with_capacity(rows, bytes)),
            LakeType::Binary => Values::Binary(LargeBinaryBuilder::with_capacity(rows, bytes)),
            LakeType::Date => Values::Date(Date32Builder::with_capacity(rows)),
            LakeType::Timestamp { utc } => {
                let builder = TimestampMicrosecondBuilder::with_capacity(rows);
                Values::Timestamp(match utc {
                    true => builder.with_timezone("UTC"),
                    false => builder,
                })
            }
        };
        ColumnBuilder { lake_type, values }
    }

    /// Appends one value of `column`; false if the lake type cannot hold it. `text` is scratch
    /// space for values rendered as text.
    fn append(&mut self, column: &Column, value: &Value, text: &mut String) -> bool {
        if matches!(value, Value::Null | Value::Absent) {
            self.append_null();
            return true;
        }
        match (&mut self.values, value) {
            (Values::Int32(b), Value::Int(i)) => put(b, i32::try_from(*i).ok()),
            (Values::Int32(b), Value::UInt(u)) => put(b, i32::try_from(*u).ok()),
            (Values::Int32(b), Value::Year(y)) => put(b, Some(i32::from(*y))),
            (Values::Int64(b), Value::Int(i)) => put(b, Some(*i)),
            (Values::Int64(b), Value::UInt(u) | Value::Bit(u)) => put(b, i64::try_from(*u).ok()),
            (Values::Decimal(b), Value::Decimal(text)) => put(b, unscaled(text)),
            (Values::Decimal(b), Value::UInt(u) | Value::Bit(u)) => put(b, Some(i128::from(*u))),
            (Values::Decimal(b), Value::Int(i)) => put(b, Some(i128::from(*i))),
            (Values::Float(b), Value::Float(f)) => put(b, Some(*f)),
            (Values::Double(b), Value::Double(f)) => put(b, Some(*f)),
            (Values::Double(b), Value::Float(f)) => put(b, Some(f64::from(*f))),
            // Zero and invalid dates, which no calendar has, are NULL.
            (Values::Date(b), Value::Date(d)) => {
                b.append_option(days_from_civil(d.year, d.month, d.day));
                true
            }
            (Values::Timestamp(b), Value::DateTime(dt)) => {
                let days = days_from_civil(dt.date.year, dt.date.month, dt.date.day);
                b.append_option(days.map(|days| {
                    i64::from(days) * MICROS_PER_DAY
                        + (i64::from(dt.hour) * 3600
                            + i64::from(dt.minute) * 60
                            + i64::from(dt.second))
                            * 1_000_000
                        + i64::from(dt.micros)
                }));
                true
            }
            // 0 is MySQL's zero timestamp; no real TIMESTAMP value is the epoch itself.
            (Values::Timestamp(b), Value::Timestamp(micros)) => {
                b.append_option(Some(*micros).filter(|&m| m != 0));
                true
            }
            (Values::Binary(b), Value::Bytes(bytes) | Value::Geometry(bytes)) => {
                b.append_value(bytes);
                true
            }
            (Values::Text(b), Value::String(s) | Value::Json(s) | Value::Decimal(s)) => {
                b.append_value(s);
                true
            }
            // MariaDB UUID/INET render from their bytes; text whose bytes were invalid in its
            // character set is kept as close as UTF-8 allows.
            (Values::Text(b), Value::Bytes(bytes)) => {
                text.clear();
                if value.write_text(column, text) {
                    b.append_value(&*text);
                } else {
                    b.append_value(String::from_utf8_lossy(bytes));
                }
                true
            }
            (Values::Text(b), other) => {
                text.clear();
                let rendered = other.write_text(column, text);
                if rendered {
                    b.append_value(&*text);
                }
                rendered
            }
            _ => false,
        }
    }

    fn append_null(&mut self) {
        match &mut self.values {
            Values::Int32(b) => b.append_null(),
            Values::Int64(b) => b.append_null(),
            Values::Decimal(b) => b.append_null(),
            Values::Float(b) => b.append_null(),
            Values::Double(b) => b.append_null(),
            Values::Text(b) => b.append_null(),
            Values::Binary(b) => b.append_null(),
            Values::Date(b) => b.append_null(),
            Values::Timestamp(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        let builder: &mut dyn ArrayBuilder = match &mut self.values {
            Values::Int32(b) => b,
            Values::Int64(b) => b,
            Values::Decimal(b) => b,
            Values::Float(b) => b,
            Values::Double(b) => b,
            Values::Text(b) => b,
            Values::Binary(b) => b,
            Values::Date(b) => b,
            Values::Timestamp(b) => b,
        };
        builder.finish()
    }
}

/// Appends `value`; false (and nothing appended) for `None`, a value out of the column's range.
fn put<T: ArrowPrimitiveType>(builder: &mut PrimitiveBuilder<T>, value: Option<T::Native>) -> bool {
    match value {
        Some(value) => {
            builder.append_value(value);
            true
        }
        None => false,
    }
}

/// The change-data columns ([`CDC_COLUMNS`]), appended with the table's.
struct CdcColumns {
    op: LargeStringBuilder,
    commit_ts: TimestampMicrosecondBuilder,
    event_id: LargeStringBuilder,
    gtid: LargeStringBuilder,
    seq: Decimal128Builder,
    /// The last row's transaction and its part of `_cdc_seq` (a transaction's rows come
    /// together, and parsing the file number per row showed in profiles).
    transaction: Option<(Arc<Transaction>, i128)>,
    /// Scratch space for the event id.
    event_id_text: String,
}

impl CdcColumns {
    fn new(rows: usize) -> CdcColumns {
        CdcColumns {
            op: LargeStringBuilder::with_capacity(rows, rows * 6),
            commit_ts: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            event_id: LargeStringBuilder::with_capacity(rows, rows * 48),
            gtid: LargeStringBuilder::with_capacity(rows, rows * 40),
            seq: Decimal128Builder::with_capacity(rows).with_data_type(DataType::Decimal128(38, 0)),
            transaction: None,
            event_id_text: String::with_capacity(64),
        }
    }

    fn append(&mut self, row: &Row) {
        let txn = &row.source.transaction;
        self.op.append_value(row.op.as_str());
        self.commit_ts.append_value(txn.commit_ts_us);
        // `Source::event_id`, written in place (itoa: `write!` costs more than the rest).
        let (id, mut digits) = (&mut self.event_id_text, itoa::Buffer::new());
        id.clear();
        match &txn.gtid {
            Some(gtid) => id.push_str(gtid),
            None => {
                id.push_str(&txn.file);
                id.push(':');
                id.push_str(digits.format(txn.pos));
            }
        }
        id.push(':');
        id.push_str(digits.format(row.source.row));
        self.event_id.append_value(&*id);
        self.gtid.append_option(txn.gtid.as_deref());
        let base = match &self.transaction {
            Some((last, base)) if Arc::ptr_eq(last, txn) => *base,
            _ => {
                let base = super::transaction_sequence(txn);
                self.transaction = Some((txn.clone(), base));
                base
            }
        };
        self.seq.append_value(base + i128::from(row.source.row));
    }

    /// The columns, in [`CDC_COLUMNS`] order.
    fn finish(mut self) -> [ArrayRef; 5] {
        [
            Arc::new(self.op.finish()),
            Arc::new(self.commit_ts.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.gtid.finish()),
            Arc::new(self.seq.finish()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Decimal128Type, Int32Type, TimestampMicrosecondType};
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::ZstdLevel;

    use cdcd_event::{ColumnType, Date, DateTime, Flavor, Op, Source};

    use super::*;

    fn column(name: &str, kind: ColumnType, width: u32, scale: u8) -> Column {
        Column {
            name: name.into(),
            width,
            scale,
            unsigned: kind == ColumnType::BigInt,
            ..Column::unnamed(0, kind)
        }
    }

    fn table() -> TableSchema {
        TableSchema {
            schema: "db".into(),
            table: "t".into(),
            columns: vec![
                column("id", ColumnType::Int, 0, 0),
                column("big", ColumnType::BigInt, 0, 0),
                column("price", ColumnType::Decimal, 12, 2),
                column("wide", ColumnType::Decimal, 30, 5),
                column("name", ColumnType::VarChar, 40, 0),
                column("blob", ColumnType::Blob, 0, 0),
                column("born", ColumnType::Date, 0, 0),
                column("seen", ColumnType::DateTime, 0, 6),
            ],
            primary_key: vec![0],
        }
    }

    fn rows() -> Vec<Row> {
        let transaction = Arc::new(Transaction {
            flavor: Flavor::MariaDb,
            server_id: 1,
            server_uuid: None,
            gtid: Some("0-1-7".into()),
            file: "mysql-bin.000003".into(),
            pos: 385,
            commit_ts_us: 1_700_000_000_000_000,
        });
        let source = |row| Source {
            transaction: transaction.clone(),
            pos: 400,
            next_pos: 900,
            row,
        };
        let seen = DateTime {
            date: Date {
                year: 2024,
                month: 2,
                day: 29,
            },
            hour: 23,
            minute: 59,
            second: 58,
            micros: 123_456,
        };
        vec![
            Row {
                op: Op::Insert,
                values: vec![
                    Value::Int(1),
                    Value::UInt(u64::MAX),
                    Value::Decimal("-12.50".into()),
                    Value::Decimal("1234567890123456789012345.00001".into()),
                    Value::String("Ada Lovelace".into()),
                    Value::Bytes(vec![0, 255, 10]),
                    Value::Date(Date {
                        year: 1815,
                        month: 12,
                        day: 10,
                    }),
                    Value::DateTime(seen),
                ],
                source: source(0),
            },
            Row {
                op: Op::Delete,
                values: vec![
                    Value::Int(2),
                    Value::Null,
                    Value::Decimal("0.00".into()),
                    Value::Null,
                    Value::String(String::new()),
                    Value::Null,
                    // A zero date has no calendar day: NULL.
                    Value::Date(Date {
                        year: 0,
                        month: 0,
                        day: 0,
                    }),
                    Value::Null,
                ],
                source: source(1),
            },
        ]
    }

    fn options(text_encoding: Encoding) -> Options {
        Options {
            compression: Compression::ZSTD(ZstdLevel::default()),
            text_encoding,
        }
    }

    #[test]
    fn values_read_back_exactly_with_either_text_encoding() {
        for text_encoding in [Encoding::DELTA_LENGTH_BYTE_ARRAY, Encoding::PLAIN] {
            let body = encode(&table(), &rows(), options(text_encoding)).unwrap();
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(body)).unwrap();
            let chunk = reader.metadata().row_group(0).column(4);
            assert_eq!(chunk.column_path().string(), "name");
            assert!(
                chunk.encodings().any(|e| e == text_encoding),
                "{text_encoding:?} not in {:?}",
                chunk.encodings().collect::<Vec<_>>()
            );
            let batch = reader.build().unwrap().next().unwrap().unwrap();
            assert_eq!(batch.num_rows(), 2);
            let id = batch.column(0).as_primitive::<Int32Type>();
            assert_eq!((id.value(0), id.value(1)), (1, 2));
            let big = batch.column(1).as_primitive::<Decimal128Type>();
            assert_eq!(big.value(0), i128::from(u64::MAX));
            assert!(big.is_null(1));
            let price = batch.column(2).as_primitive::<Decimal128Type>();
            assert_eq!((price.value(0), price.value(1)), (-1250, 0));
            let wide = batch.column(3).as_primitive::<Decimal128Type>();
            assert_eq!(wide.value(0), 123_456_789_012_345_678_901_234_500_001);
            let name = batch.column(4).as_string::<i32>();
            assert_eq!((name.value(0), name.value(1)), ("Ada Lovelace", ""));
            let blob = batch.column(5).as_binary::<i32>();
            assert_eq!(blob.value(0), [0, 255, 10]);
            let born = batch.column(6).as_primitive::<Date32Type>();
            assert_eq!(born.value(0), days_from_civil(1815, 12, 10).unwrap());
            assert!(born.is_null(1));
            let seen = batch.column(7).as_primitive::<TimestampMicrosecondType>();
            let day = i64::from(days_from_civil(2024, 2, 29).unwrap());
            assert_eq!(seen.value(0), day * MICROS_PER_DAY + 86_398_123_456);
            let op = batch.column(8).as_string::<i32>();
            assert_eq!((op.value(0), op.value(1)), ("insert", "delete"));
            let event_id = batch.column(10).as_string::<i32>();
            assert_eq!(event_id.value(1), "0-1-7:1");
            let seq = batch.column(12).as_primitive::<Decimal128Type>();
            assert_eq!(seq.value(1), 3 * 10i128.pow(24) + 385 * 10i128.pow(12) + 1);
            let commit_ts = batch.column(9).as_primitive::<TimestampMicrosecondType>();
            assert_eq!(commit_ts.value(1), 1_700_000_000_000_000);
            assert_eq!(
                batch.schema().field(9).data_type(),
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            );
        }
    }

    #[test]
    fn a_value_the_column_cannot_hold_is_named() {
        let mut rows = rows();
        rows[1].values[0] = Value::String("two".into());
        let err = encode(&table(), &rows, options(Encoding::PLAIN)).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"column id of db.t: a String("two") value cannot be stored as int"#
        );
    }
}
