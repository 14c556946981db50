//! Gzip-compressed JSON lines: one object per row, the table's columns in the native encoding
//! (see docs/formats.md) followed by the change-data columns.

use std::io::Write;

use flate2::write::GzEncoder;

use cdcd_event::native::push_value;
use cdcd_event::{TableSchema, Value};

use super::{LakeError, Row};

pub(crate) fn encode(table: &TableSchema, rows: &[Row]) -> Result<Vec<u8>, LakeError> {
    let keys: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{}:", serde_json::Value::from(&*c.name)))
        .collect();
    let mut gzip = GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut line = String::with_capacity(1024);
    for row in rows {
        line.clear();
        line.push('{');
        for ((key, column), value) in keys.iter().zip(&table.columns).zip(&row.values) {
            if matches!(value, Value::Absent) {
                continue;
            }
            line.push_str(key);
            push_value(&mut line, column, value);
            line.push(',');
        }
        let source = &row.source;
        let gtid = match &source.transaction.gtid {
            Some(gtid) => serde_json::Value::from(gtid.as_str()),
            None => serde_json::Value::Null,
        };
        line.push_str(&format!(
            r#""_cdc_op":"{}","_cdc_commit_ts":{},"_cdc_event_id":{},"_cdc_gtid":{},"_cdc_seq":"{}"}}"#,
            row.op.as_str(),
            source.transaction.commit_ts_us,
            serde_json::Value::from(source.event_id()),
            gtid,
            super::sequence(row),
        ));
        line.push('\n');
        gzip.write_all(line.as_bytes())?;
    }
    Ok(gzip.finish()?)
}
