//! The readers of `cdcd sink` against the writers of `cdcd run`, over real values: every change of
//! every binlog fixture (ours from the live servers, and the shared third-party files when
//! present), rendered as a native record with column types and read back, is the same change
//! (except a JSON column holding JSON `null`, which native JSON writes as `null`, and the spelling
//! of exponents in JSON documents); as
//! a DMS record read back with the table's definition, it is the same change except for what the
//! DMS format cannot carry (docs/sink.md): zero dates and columns missing from the image are NULL,
//! a JSON partial update is its diff text, text bytes invalid in their character set are text,
//! SET masks without element names are lost.

use std::path::{Path, PathBuf};

use cdcd_binlog::{FileReader, Record};
use cdcd_event::dms::{DmsOptions, DmsWriter};
use cdcd_event::dms_read::{DmsReader, Origin};
use cdcd_event::native::NativeWriter;
use cdcd_event::native_read::NativeReader;
use cdcd_event::{Op, Value};

#[test]
fn fixture_changes_survive_the_record_formats() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [
        "mysql97",
        "mysql97-live",
        "mariadb1011",
        "mysql97-geometry-as-blob",
    ] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir).join("binlog"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "binlog"))
            .collect();
        found.sort();
        files.extend(found);
    }
    assert!(files.len() >= 10, "fixtures under {}", root.display());
    let (mut native_total, mut dms_total, mut dms_lossy) = (0, 0, 0);
    for file in &files {
        let mut reader = FileReader::open(file).unwrap();
        let mut native_writer = NativeWriter::with_column_types();
        let mut native_reader = NativeReader::new();
        let mut dms_writer = DmsWriter::new(DmsOptions {
            include_transaction_details: true,
            include_null: true,
            ..DmsOptions::default()
        });
        let mut dms_reader = DmsReader::new();
        let mut changes = 0;
        while let Some(record) = reader.next_record().unwrap_or_else(|e| {
            panic!("{}: {e}", file.display());
        }) {
            let Record::Change(event) = record else {
                continue;
            };
            changes += 1;
            let label = format!("{} event {}", file.display(), event.event_id());

            let mut text = String::new();
            native_writer.write_change(&mut text, &event);
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let read = native_reader
                .read(&json)
                .unwrap_or_else(|e| panic!("{label}: {e}\n{text}"))
                .expect("a change");
            let texts_intact = |image: &Option<Vec<Value>>| {
                image
                    .iter()
                    .flatten()
                    .zip(&event.table.columns)
                    .all(|(v, c)| !(c.kind.is_text() && matches!(v, Value::Bytes(_))))
            };
            if texts_intact(&event.before) && texts_intact(&event.after) {
                let native = |image: &Option<Vec<Value>>| {
                    image
                        .as_ref()
                        .map(|row| row.iter().map(as_native_carries).collect::<Vec<_>>())
                };
                assert_eq!(read.before, native(&event.before), "{label} before\n{text}");
                assert_eq!(read.after, native(&event.after), "{label} after\n{text}");
            }
            assert_eq!(read.op, event.op, "{label}");
            assert_eq!(read.event_id(), event.event_id(), "{label}");
            assert_eq!(
                read.table
                    .columns
                    .iter()
                    .map(|c| &c.name)
                    .collect::<Vec<_>>(),
                event
                    .table
                    .columns
                    .iter()
                    .map(|c| &c.name)
                    .collect::<Vec<_>>(),
                "{label}"
            );
            assert_eq!(read.table.primary_key, event.table.primary_key, "{label}");
            native_total += 1;

            text.clear();
            dms_writer.write_change(&mut text, &event);
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let origin = Origin {
                shard: "shardId-000000000000",
                sequence: "1",
                sub: 0,
            };
            let read = dms_reader
                .read(&json, &event.table, origin)
                .unwrap_or_else(|e| panic!("{label}: {e}\n{text}"));
            let image = match event.op {
                Op::Delete => event.before.as_deref(),
                _ => event.after.as_deref(),
            };
            let got = match read.op {
                Op::Delete => read.before.as_deref(),
                _ => read.after.as_deref(),
            };
            let expected: Vec<Option<Value>> = image
                .unwrap_or_default()
                .iter()
                .zip(&event.table.columns)
                .map(|(value, column)| as_dms_carries(value, column))
                .collect();
            let got = got.unwrap_or_default();
            for (i, ((want, have), column)) in expected
                .iter()
                .zip(got)
                .zip(&event.table.columns)
                .enumerate()
            {
                match want {
                    Some(want) => {
                        assert_eq!(have, want, "{label} column {i} `{}`\n{text}", column.name)
                    }
                    None => dms_lossy += 1,
                }
            }
            assert_eq!(read.event_id(), event.event_id(), "{label}");
            dms_total += 1;
        }
        println!("{}: {changes} changes read back", file.display());
    }
    println!(
        "{} fixture files: {native_total} changes read back exactly from native records, \
         {dms_total} from DMS records ({dms_lossy} values DMS cannot carry, not compared)",
        files.len()
    );
    assert!(native_total > 1000, "enough changes to mean something");
}

/// The value a native record carries for `value`: all of it, except that a JSON column holding
/// the JSON value `null` is written as `null`, which is SQL NULL.
fn as_native_carries(value: &Value) -> Value {
    match value {
        Value::Json(text) if text == "null" => Value::Null,
        Value::Json(text) => Value::Json(same_json(text)),
        other => other.clone(),
    }
}

/// JSON text as serde_json writes it back: the same document, a number's exponent maybe spelled
/// otherwise (`1e300` becomes `1e+300`).
fn same_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .unwrap()
        .to_string()
}

/// The value a DMS record carries for `value`; `None` where DMS loses it altogether.
fn as_dms_carries(value: &Value, column: &cdcd_event::Column) -> Option<Value> {
    Some(match value {
        Value::Absent => Value::Null,
        Value::Date(d) if d.year == 0 || d.month == 0 || d.day == 0 => Value::Null,
        Value::DateTime(dt) if dt.date.year == 0 || dt.date.month == 0 || dt.date.day == 0 => {
            Value::Null
        }
        Value::Timestamp(0) => Value::Null,
        Value::JsonDiff(diff) => Value::Json(diff.clone()),
        Value::Bytes(_) if column.kind.is_text() => return None,
        Value::Set(_) if column.elements.is_empty() => return None,
        other => other.clone(),
    })
}
