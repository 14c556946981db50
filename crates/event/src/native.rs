//! cdcd's native JSON format: one object per line, lossless.
//!
//! Every value type's encoding is documented in `docs/formats.md`; the short version: integers are
//! JSON numbers printed from their exact integer (u64 and i64 never pass through f64), DECIMAL is a
//! string with the column's scale, binary data is base64, times keep their sign and microseconds,
//! JSON columns are embedded as JSON.

use std::fmt::Write as _;

use crate::json::{push_base64, push_f32, push_f64, push_i64, push_key, push_str, push_u64};
use crate::model::{ChangeEvent, DdlEvent, Source};
use crate::value::{
    timestamp_to_datetime, write_bits, write_special_binary, write_time, Column, ColumnType, Value,
};

/// Appends one change event as a JSON object (no trailing newline).
pub fn write_change(out: &mut String, event: &ChangeEvent) {
    let table = &event.table;
    out.push('{');
    push_key(out, "event_id");
    push_event_id(out, &event.source);
    out.push(',');
    push_key(out, "op");
    push_str(out, event.op.as_str());
    out.push(',');
    push_key(out, "schema");
    push_str(out, &table.schema);
    out.push(',');
    push_key(out, "table");
    push_str(out, &table.table);
    out.push(',');
    push_key(out, "primary_key");
    out.push('[');
    for (i, name) in table.primary_key_names().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, name);
    }
    out.push_str("],");
    push_key(out, "before");
    push_row(out, &table.columns, event.before.as_deref());
    out.push(',');
    push_key(out, "after");
    push_row(out, &table.columns, event.after.as_deref());
    out.push(',');
    push_key(out, "source");
    push_source(out, &event.source);
    out.push('}');
}

/// Appends one DDL event as a JSON object with `"op":"ddl"` (no trailing newline).
pub fn write_ddl(out: &mut String, event: &DdlEvent) {
    out.push('{');
    push_key(out, "event_id");
    push_event_id(out, &event.source);
    out.push(',');
    push_key(out, "op");
    push_str(out, "ddl");
    out.push(',');
    push_key(out, "schema");
    match &event.table {
        Some((schema, table)) => {
            push_str(out, schema);
            out.push(',');
            push_key(out, "table");
            push_str(out, table);
        }
        None => {
            push_str(out, &event.schema);
            out.push(',');
            push_key(out, "table");
            out.push_str("null");
        }
    }
    out.push(',');
    push_key(out, "operation");
    push_str(out, event.operation);
    out.push(',');
    push_key(out, "query");
    push_str(out, &event.query);
    out.push(',');
    push_key(out, "source");
    push_source(out, &event.source);
    out.push('}');
}

fn push_event_id(out: &mut String, source: &Source) {
    push_str(out, &source.event_id());
}

fn push_row(out: &mut String, columns: &[Column], row: Option<&[Value]>) {
    let Some(row) = row else {
        out.push_str("null");
        return;
    };
    out.push('{');
    let mut first = true;
    for (column, value) in columns.iter().zip(row) {
        if matches!(value, Value::Absent) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_key(out, &column.name);
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
            let _ = write!(out, "\"{d}\"");
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
    let mut first = true;
    for (i, name) in column.elements.iter().enumerate().take(64) {
        if mask >> i & 1 == 1 {
            if !first {
                out.push(',');
            }
            first = false;
            push_str(out, name);
        }
    }
    out.push(']');
}

fn push_source(out: &mut String, source: &Source) {
    out.push('{');
    push_key(out, "flavor");
    push_str(out, source.flavor.as_str());
    out.push(',');
    push_key(out, "server_id");
    push_u64(out, u64::from(source.server_id));
    out.push(',');
    push_key(out, "server_uuid");
    match &source.server_uuid {
        Some(uuid) => push_str(out, uuid),
        None => out.push_str("null"),
    }
    out.push(',');
    push_key(out, "gtid");
    match &source.gtid {
        Some(gtid) => push_str(out, gtid),
        None => out.push_str("null"),
    }
    out.push(',');
    push_key(out, "file");
    push_str(out, &source.file);
    out.push(',');
    push_key(out, "txn_pos");
    push_u64(out, source.txn_pos);
    out.push(',');
    push_key(out, "pos");
    push_u64(out, source.pos);
    out.push(',');
    push_key(out, "row");
    push_u64(out, source.row);
    out.push(',');
    push_key(out, "commit_ts_us");
    push_i64(out, source.commit_ts_us);
    out.push(',');
    push_key(out, "commit_ts");
    out.push('"');
    timestamp_to_datetime(source.commit_ts_us).write(out, 'T', 6);
    out.push_str("Z\"}");
}

/// Whether a column's native encoding is base64 (for consumers that decode by type).
pub fn is_base64(kind: ColumnType) -> bool {
    matches!(
        kind,
        ColumnType::Binary | ColumnType::VarBinary | ColumnType::Blob | ColumnType::Geometry
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Flavor, Op};
    use crate::value::{Date, DateTime, TableSchema};

    fn column(name: &str, kind: ColumnType) -> Column {
        let mut c = Column::unnamed(0, kind);
        c.name = name.into();
        c
    }

    fn source() -> Source {
        Source {
            flavor: Flavor::MySql,
            server_id: 1,
            server_uuid: None,
            gtid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23".into()),
            file: "binlog.000001".into(),
            txn_pos: 4,
            pos: 100,
            next_pos: 200,
            row: 2,
            commit_ts_us: 1_795_593_644_717_257,
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
        write_change(&mut out, &event);
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
