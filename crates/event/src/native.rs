//! cdcd's native JSON format: one object per line, lossless.
//!
//! Every value type's encoding is documented in `docs/formats.md`; the short version: integers are
//! JSON numbers printed from their exact integer (u64 and i64 never pass through f64), DECIMAL is a
//! string with the column's scale, binary data is base64, times keep their sign and microseconds,
//! JSON columns are embedded as JSON.

use std::sync::Arc;

use crate::json::{
    column_keys, push_base64, push_f32, push_f64, push_i64, push_key, push_str, push_u64,
};
use crate::model::{ChangeEvent, DdlEvent, Source, Transaction};
use crate::value::{
    timestamp_to_datetime, write_bits, write_special_binary, write_time, Column, TableSchema, Value,
};

/// Renders events as native JSON.
///
/// Everything that is the same for every row of a table (names, primary key, the escaped column
/// keys) or of a transaction (the source's GTID, file, commit time) is rendered once and copied
/// afterwards: `cdcd tail` spends most of its time here.
#[derive(Debug, Default)]
pub struct NativeWriter {
    /// Add `"column_types"` to change records (see [`NativeWriter::with_column_types`]).
    column_types: bool,
    table: Option<(Arc<TableSchema>, TableParts)>,
    transaction: Option<(Arc<Transaction>, SourceParts)>,
}

/// `"schema":…,"table":…,"primary_key":[…],` and each column's `"name":`.
#[derive(Debug)]
struct TableParts {
    head: String,
    keys: Vec<String>,
}

/// The source object around its per-row fields `pos` and `row`.
#[derive(Debug)]
struct SourceParts {
    head: String,
    tail: String,
}

impl NativeWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that adds `"column_types":{"<column>":"<Column::sql_type()>",…}` (in column
    /// order) to every change record, so that a reader can rebuild the table's schema and every
    /// value exactly ([`crate::native_read`]). `cdcd run` turns it on for Kinesis, where `cdcd
    /// sink` reads the records back into the lake.
    pub fn with_column_types() -> Self {
        NativeWriter {
            column_types: true,
            ..Self::default()
        }
    }

    /// Appends one change event as a JSON object (no trailing newline).
    pub fn write_change(&mut self, out: &mut String, event: &ChangeEvent) {
        out.push_str(r#"{"event_id":"#);
        push_event_id(out, &event.source);
        out.push_str(r#","op":""#);
        out.push_str(event.op.as_str());
        out.push_str("\",");
        let table = self.table_parts(&event.table);
        out.push_str(&table.head);
        out.push_str(r#""before":"#);
        push_row(
            out,
            &event.table.columns,
            &table.keys,
            event.before.as_deref(),
        );
        out.push_str(r#","after":"#);
        push_row(
            out,
            &event.table.columns,
            &table.keys,
            event.after.as_deref(),
        );
        out.push_str(r#","source":"#);
        self.push_source(out, &event.source);
        out.push('}');
    }

    /// Appends one DDL event as a JSON object with `"op":"ddl"` (no trailing newline).
    pub fn write_ddl(&mut self, out: &mut String, event: &DdlEvent) {
        out.push_str(r#"{"event_id":"#);
        push_event_id(out, &event.source);
        out.push_str(r#","op":"ddl","schema":"#);
        match &event.table {
            Some((schema, table)) => {
                push_str(out, schema);
                out.push_str(r#","table":"#);
                push_str(out, table);
            }
            None => {
                push_str(out, &event.schema);
                out.push_str(r#","table":null"#);
            }
        }
        out.push_str(r#","operation":"#);
        push_str(out, event.operation);
        out.push_str(r#","query":"#);
        push_str(out, &event.query);
        out.push_str(r#","source":"#);
        self.push_source(out, &event.source);
        out.push('}');
    }

    fn table_parts(&mut self, table: &Arc<TableSchema>) -> &TableParts {
        let stale = !matches!(&self.table, Some((cached, _)) if Arc::ptr_eq(cached, table));
        if stale {
            let mut head = String::new();
            push_key(&mut head, "schema");
            push_str(&mut head, &table.schema);
            head.push(',');
            push_key(&mut head, "table");
            push_str(&mut head, &table.table);
            head.push(',');
            push_key(&mut head, "primary_key");
            head.push('[');
            for (i, name) in table.primary_key_names().enumerate() {
                if i > 0 {
                    head.push(',');
                }
                push_str(&mut head, name);
            }
            head.push_str("],");
            if self.column_types {
                push_key(&mut head, "column_types");
                head.push('{');
                for (i, column) in table.columns.iter().enumerate() {
                    if i > 0 {
                        head.push(',');
                    }
                    push_key(&mut head, &column.name);
                    push_str(&mut head, &column.sql_type());
                }
                head.push_str("},");
            }
            let keys = column_keys(&table.columns);
            self.table = Some((table.clone(), TableParts { head, keys }));
        }
        &self.table.as_ref().expect("just set").1
    }

    fn push_source(&mut self, out: &mut String, source: &Source) {
        let txn = &source.transaction;
        let same = matches!(&self.transaction, Some((cached, _)) if Arc::ptr_eq(cached, txn));
        if !same {
            self.transaction = Some((txn.clone(), source_parts(txn)));
        }
        let parts = &self.transaction.as_ref().expect("just set").1;
        out.push_str(&parts.head);
        push_u64(out, source.pos);
        out.push_str(r#","row":"#);
        push_u64(out, source.row);
        out.push_str(&parts.tail);
    }
}

fn source_parts(source: &Transaction) -> SourceParts {
    let mut head = String::from("{");
    push_key(&mut head, "flavor");
    push_str(&mut head, source.flavor.as_str());
    head.push(',');
    push_key(&mut head, "server_id");
    push_u64(&mut head, u64::from(source.server_id));
    head.push(',');
    push_key(&mut head, "server_uuid");
    match &source.server_uuid {
        Some(uuid) => push_str(&mut head, uuid),
        None => head.push_str("null"),
    }
    head.push(',');
    push_key(&mut head, "gtid");
    match &source.gtid {
        Some(gtid) => push_str(&mut head, gtid),
        None => head.push_str("null"),
    }
    head.push(',');
    push_key(&mut head, "file");
    push_str(&mut head, &source.file);
    head.push(',');
    push_key(&mut head, "txn_pos");
    push_u64(&mut head, source.pos);
    head.push(',');
    push_key(&mut head, "pos");
    let mut tail = String::from(",");
    push_key(&mut tail, "commit_ts_us");
    push_i64(&mut tail, source.commit_ts_us);
    tail.push(',');
    push_key(&mut tail, "commit_ts");
    tail.push('"');
    timestamp_to_datetime(source.commit_ts_us).write(&mut tail, 'T', 6);
    tail.push_str("Z\"}");
    SourceParts { head, tail }
}

/// The quoted `<gtid>:<row>` or `<file>:<txn_pos>:<row>`, as [`Source::event_id`]. GTIDs need no
/// escaping and are written without allocating; file names can hold anything.
fn push_event_id(out: &mut String, source: &Source) {
    match &source.transaction.gtid {
        Some(gtid) => {
            out.push('"');
            out.push_str(gtid);
            out.push(':');
            push_u64(out, source.row);
            out.push('"');
        }
        None => push_str(out, &source.event_id()),
    }
}

fn push_row(out: &mut String, columns: &[Column], keys: &[String], row: Option<&[Value]>) {
    let Some(row) = row else {
        out.push_str("null");
        return;
    };
    out.push('{');
    let mut first = true;
    for ((column, key), value) in columns.iter().zip(keys).zip(row) {
        if matches!(value, Value::Absent) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(key);
        push_value(out, column, value);
    }
    out.push('}');
}

/// Appends one value in the native encoding.
pub fn push_value(out: &mut String, column: &Column, value: &Value) {
    match value {
        Value::Absent | Value::Null => out.push_str("null"),
        Value::Int(v) => push_i64(out, *v),
        Value::UInt(v) => push_u64(out, *v),
        Value::Decimal(text) => push_str(out, text),
        Value::Float(v) => push_f32(out, *v),
        Value::Double(v) => push_f64(out, *v),
        Value::String(s) => push_str(out, s),
        Value::Bytes(bytes) => {
            let mut text = String::new();
            if write_special_binary(&mut text, column.kind, bytes) {
                push_str(out, &text);
            } else {
                push_base64(out, bytes);
            }
        }
        Value::Date(d) => {
            out.push('"');
            d.write(out);
            out.push('"');
        }
        Value::Time(micros) => {
            out.push('"');
            write_time(out, *micros, column.scale);
            out.push('"');
        }
        Value::DateTime(dt) => {
            out.push('"');
            dt.write(out, 'T', column.scale);
            out.push('"');
        }
        Value::Timestamp(micros) => {
            out.push('"');
            if *micros == 0 {
                out.push_str("0000-00-00T00:00:00");
                crate::value::write_fraction(out, 0, column.scale);
            } else {
                timestamp_to_datetime(*micros).write(out, 'T', column.scale);
            }
            out.push_str("Z\"");
        }
        Value::Year(y) => push_u64(out, u64::from(*y)),
        Value::Json(text) => out.push_str(text),
        Value::JsonDiff(ops) => {
            out.push_str(r#"{"json_diff":"#);
            out.push_str(ops);
            out.push('}');
        }
        Value::Enum(index) => match column.enum_name(*index) {
            Some(name) => push_str(out, name),
            None => push_u64(out, u64::from(*index)),
        },
        Value::Set(mask) => push_set(out, column, *mask),
        Value::Bit(bits) => {
            out.push('"');
            write_bits(out, *bits, column.width);
            out.push('"');
        }
        Value::Geometry(bytes) => push_base64(out, bytes),
    }
}

/// SET values: an array of element names, or the bit mask as a number when names are unknown.
fn push_set(out: &mut String, column: &Column, mask: u64) {
    if column.elements.is_empty() && mask != 0 {
        push_u64(out, mask);
        return;
    }
    out.push('[');
    for (i, name) in column.set_names(mask).enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, name);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Flavor, Op};
    use crate::value::{ColumnType, Date, DateTime};

    fn column(name: &str, kind: ColumnType) -> Column {
        let mut c = Column::unnamed(0, kind);
        c.name = name.into();
        c
    }

    fn source() -> Source {
        Source {
            transaction: Arc::new(Transaction {
                flavor: Flavor::MySql,
                server_id: 1,
                server_uuid: None,
                gtid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23".into()),
                file: "binlog.000001".into(),
                pos: 4,
                commit_ts_us: 1_795_593_644_717_257,
            }),
            pos: 100,
            next_pos: 200,
            row: 2,
        }
    }

    #[test]
    fn every_value_type_encodes_losslessly() {
        let mut dec = column("d", ColumnType::Decimal);
        dec.scale = 30;
        let mut t = column("t", ColumnType::Time);
        t.scale = 6;
        let mut dt = column("dt", ColumnType::DateTime);
        dt.scale = 3;
        let mut e = column("e", ColumnType::Enum);
        e.elements = Arc::from(vec!["a".into(), "b".into()]);
        let mut s = column("s", ColumnType::Set);
        s.elements = e.elements.clone();
        let mut bit = column("bit", ColumnType::Bit);
        bit.width = 13;
        let table = Arc::new(TableSchema {
            schema: "db".into(),
            table: "t".into(),
            columns: vec![
                column("u", ColumnType::BigInt),
                column("i", ColumnType::MediumInt),
                dec,
                t,
                dt,
                column("ts", ColumnType::Timestamp),
                e,
                s,
                bit,
                column("b", ColumnType::VarBinary),
                column("j", ColumnType::Json),
                column("n", ColumnType::Int),
                column("y", ColumnType::Year),
                column("dd", ColumnType::Date),
            ],
            primary_key: vec![0],
        });
        let event = ChangeEvent {
            op: Op::Insert,
            table,
            before: None,
            after: Some(vec![
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
                Value::Timestamp(1_000_000),
                Value::Enum(2),
                Value::Set(3),
                Value::Bit(5),
                Value::Bytes(vec![0, 255]),
                Value::Json(r#"{"a":18446744073709551615}"#.into()),
                Value::Null,
                Value::Year(0),
                Value::Date(Date {
                    year: 2024,
                    month: 2,
                    day: 29,
                }),
            ]),
            source: source(),
        };
        let mut out = String::new();
        NativeWriter::new().write_change(&mut out, &event);
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        let after = &parsed["after"];
        assert_eq!(after["u"].to_string(), "18446744073709551615");
        assert_eq!(after["i"], -8_388_608);
        assert_eq!(after["d"], "-0.000000000000000000000000000001");
        assert_eq!(after["t"], "-00:00:00.000001");
        assert_eq!(after["dt"], "0000-00-00T00:00:00.000");
        assert_eq!(after["ts"], "1970-01-01T00:00:01Z");
        assert_eq!(after["e"], "b");
        assert_eq!(after["s"], serde_json::json!(["a", "b"]));
        assert_eq!(after["bit"], "0000000000101");
        assert_eq!(after["b"], "AP8=");
        assert_eq!(after["j"]["a"].to_string(), "18446744073709551615");
        assert!(after["n"].is_null());
        assert_eq!(after["y"], 0);
        assert_eq!(after["dd"], "2024-02-29");
        assert_eq!(
            parsed["event_id"],
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:23:2"
        );
        assert_eq!(parsed["primary_key"], serde_json::json!(["u"]));
        assert!(parsed["before"].is_null());
        assert_eq!(parsed["source"]["commit_ts"], "2026-11-25T08:00:44.717257Z");
    }
}
