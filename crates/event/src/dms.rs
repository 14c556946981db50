//! The records AWS DMS writes to Kinesis, reproduced so that consumers written for DMS keep working.
//!
//! The envelope is `{"data":…, "<before-image>":…, "control":…, "metadata":…}` in that key order,
//! followed by one extra key, `cdcd`, that DMS does not write (the stable `event-id`, the GTID and
//! the server uuid) and that DMS consumers ignore. It can be switched off.
//!
//! # Choices where DMS's behaviour is not documented
//!
//! This table is the one place to correct if real DMS output turns out to differ.
//!
//! | what | cdcd writes |
//! |---|---|
//! | DECIMAL | a JSON number with the exact digits of the value (`12.50`), never rounded |
//! | BIGINT over 16 digits | the exact integer (DMS without `UseLargeIntegerValue` writes scientific notation) |
//! | DATE | `"YYYY-MM-DD"` |
//! | DATETIME(n)/TIMESTAMP(n) | `"YYYY-MM-DDTHH:MM:SS[.f]Z"` with the column's n fraction digits (TIMESTAMP in UTC) |
//! | TIME(n) | `"[-]HH:MM:SS[.f]"` |
//! | zero dates (`0000-00-00`) | `null` (so left out unless `include_null`) |
//! | BIT(1) | `true`/`false`; BIT(2..63) a number; BIT(64) `0x`-hex |
//! | binary | upper-case hex, `0x`-prefixed unless `no_hex_prefix` |
//! | SET | element names joined by `,` |
//! | `transaction-id` | `(binlog file number << 32) | offset of the transaction's first event` |
//! | `stream-position` | `<file>:<pos>:<row in txn>:<next pos>:<txn id>:<file>:<txn pos>` |
//! | `prev-transaction-*` | the previous transaction this writer rendered (0 for the first) |

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::json::{
    column_keys, push_f32, push_f64, push_hex, push_i64, push_key, push_str, push_u64,
};
use crate::model::{ChangeEvent, DdlEvent, Op, Source};
use crate::value::{
    timestamp_to_datetime, write_special_binary, write_time, Column, ColumnType, TableSchema, Value,
};

/// DMS Kinesis endpoint and task settings that change the records.
#[derive(Debug, Clone, PartialEq)]
pub struct DmsOptions {
    /// `IncludeNullAndEmpty`: write NULL columns instead of leaving them out.
    pub include_null: bool,
    /// `BeforeImageSettings`: the before image on updates, under this key.
    pub before_image: Option<BeforeImage>,
    /// `IncludeTransactionDetails`.
    pub include_transaction_details: bool,
    /// `IncludePartitionValue`.
    pub include_partition_value: bool,
    /// `IncludeControlDetails`: write DDL as control records (otherwise DDL is not written).
    pub include_control_details: bool,
    /// `PartitionIncludeSchemaTable`: prefix primary-key partition values with `schema.table.`.
    pub partition_include_schema_table: bool,
    /// `MessageFormat`: `json` (pretty) or `json-unformatted` (one line).
    pub pretty: bool,
    /// `NoHexPrefix`.
    pub no_hex_prefix: bool,
    /// How records are keyed; DMS CDC default is `schema-table`.
    pub partition_key_type: PartitionKeyType,
    /// Add the `cdcd` key (event id, GTID, server uuid).
    pub cdcd_extras: bool,
    /// The task id used as the partition key of control records.
    pub task_id: String,
}

impl Default for DmsOptions {
    fn default() -> Self {
        DmsOptions {
            include_null: false,
            before_image: None,
            include_transaction_details: false,
            include_partition_value: false,
            include_control_details: true,
            partition_include_schema_table: false,
            pretty: false,
            no_hex_prefix: false,
            partition_key_type: PartitionKeyType::SchemaTable,
            cdcd_extras: true,
            task_id: "cdcd".into(),
        }
    }
}

/// `BeforeImageSettings`.
#[derive(Debug, Clone, PartialEq)]
pub struct BeforeImage {
    pub field_name: String,
    pub columns: BeforeImageColumns,
}

/// `BeforeImageSettings.ColumnFilter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeImageColumns {
    PkOnly,
    NonLob,
    All,
}

/// How DMS keys records (`partition-key-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKeyType {
    PrimaryKey,
    SchemaTable,
    TransactionId,
}

impl PartitionKeyType {
    fn as_str(self) -> &'static str {
        match self {
            PartitionKeyType::PrimaryKey => "primary-key",
            PartitionKeyType::SchemaTable => "schema-table",
            PartitionKeyType::TransactionId => "transaction-id",
        }
    }
}

/// Renders change and DDL events as DMS records.
///
/// Stateful only for `prev-transaction-id`/`prev-transaction-record-id`, which describe the
/// transaction rendered before the current one.
#[derive(Debug)]
pub struct DmsWriter {
    options: DmsOptions,
    current_txn: (u64, u64),
    previous_txn: (u64, u64),
    /// The escaped column keys of the table rendered last (rows come in runs of one table).
    keys: Option<(Arc<TableSchema>, Vec<String>)>,
}

impl DmsWriter {
    pub fn new(options: DmsOptions) -> Self {
        DmsWriter {
            options,
            current_txn: (0, 0),
            previous_txn: (0, 0),
            keys: None,
        }
    }

    pub fn options(&self) -> &DmsOptions {
        &self.options
    }

    /// The Kinesis partition key DMS would use for this event.
    pub fn partition_key(&self, event: &ChangeEvent) -> String {
        match self.options.partition_key_type {
            PartitionKeyType::PrimaryKey => primary_key_value(
                event,
                self.options.partition_include_schema_table || event.table.primary_key.is_empty(),
            ),
            PartitionKeyType::SchemaTable => {
                format!("{}.{}", event.table.schema, event.table.table)
            }
            PartitionKeyType::TransactionId => transaction_id(&event.source).to_string(),
        }
    }

    /// Appends one data record, ending in `\n` as DMS writes them.
    pub fn write_change(&mut self, out: &mut String, event: &ChangeEvent) {
        let txn_id = transaction_id(&event.source);
        if txn_id != self.current_txn.0 {
            self.previous_txn = self.current_txn;
            self.current_txn = (txn_id, 0);
        }
        self.current_txn.1 = event.source.row + 1;

        let start = out.len();
        let table = &event.table;
        if !matches!(&self.keys, Some((cached, _)) if Arc::ptr_eq(cached, table)) {
            let keys = column_keys(&table.columns);
            self.keys = Some((table.clone(), keys));
        }
        out.push('{');
        // Updates carry the after image; deletes the full old row.
        let data = match event.op {
            Op::Delete => event.before.as_deref(),
            _ => event.after.as_deref(),
        };
        out.push_str(r#""data":"#);
        self.push_row(out, table, data.unwrap_or(&[]), |_| true);
        if let (Some(before), Op::Update, Some(row)) = (
            &self.options.before_image,
            event.op,
            event.before.as_deref(),
        ) {
            out.push(',');
            push_key(out, &before.field_name);
            let columns = before.columns;
            self.push_row(out, table, row, |(i, c)| match columns {
                BeforeImageColumns::PkOnly => table.primary_key.contains(&i),
                BeforeImageColumns::NonLob => !is_lob(c.kind),
                BeforeImageColumns::All => true,
            });
        }
        out.push(',');
        out.push_str(r#""metadata":"#);
        out.push('{');
        self.push_common_metadata(out, "data", event.op.as_str());
        let key_type = self.options.partition_key_type;
        out.push_str(r#""partition-key-type":"#);
        push_str(out, key_type.as_str());
        if self.options.include_partition_value {
            out.push(',');
            out.push_str(r#""partition-key-value":"#);
            push_str(out, &self.partition_key(event));
        }
        out.push(',');
        out.push_str(r#""schema-name":"#);
        push_str(out, &table.schema);
        out.push(',');
        out.push_str(r#""table-name":"#);
        push_str(out, &table.table);
        if event.op != Op::Load {
            out.push(',');
            out.push_str(r#""transaction-id":"#);
            push_u64(out, txn_id);
            if self.options.include_transaction_details {
                self.push_transaction_details(out, &event.source, txn_id);
            }
        }
        out.push('}');
        if self.options.cdcd_extras {
            out.push(',');
            push_extras(out, &event.source);
        }
        out.push('}');
        self.finish(out, start);
    }

    /// Appends one control record for a DDL event; returns false (and appends nothing) when
    /// control records are off.
    pub fn write_ddl(&mut self, out: &mut String, event: &DdlEvent) -> bool {
        if !self.options.include_control_details {
            return false;
        }
        let start = out.len();
        out.push('{');
        out.push_str(r#""control":"#);
        out.push('{');
        if let Some(def) = &event.definition {
            out.push_str(r#""table-def":"#);
            push_table_def(out, def);
        }
        out.push_str("},");
        out.push_str(r#""metadata":"#);
        out.push('{');
        self.push_common_metadata(out, "control", event.operation);
        out.push_str(r#""partition-key-type":"#);
        push_str(out, "task-id");
        out.push(',');
        let (schema, table) = match &event.table {
            Some((schema, table)) => (&**schema, &**table),
            None => (&*event.schema, ""),
        };
        out.push_str(r#""schema-name":"#);
        push_str(out, schema);
        out.push(',');
        out.push_str(r#""table-name":"#);
        push_str(out, table);
        out.push('}');
        if self.options.cdcd_extras {
            out.push(',');
            push_extras(out, &event.source);
        }
        out.push('}');
        self.finish(out, start);
        true
    }

    fn finish(&self, out: &mut String, start: usize) {
        if self.options.pretty {
            let value: serde_json::Value =
                serde_json::from_str(&out[start..]).expect("the writer emits valid JSON");
            let pretty = serde_json::to_string_pretty(&value).expect("serializable");
            out.truncate(start);
            out.push_str(&pretty);
        }
        out.push('\n');
    }

    fn push_common_metadata(&self, out: &mut String, record_type: &str, operation: &str) {
        out.push_str(r#""timestamp":"#);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        push_iso_utc(out, now, 6);
        out.push(',');
        out.push_str(r#""record-type":"#);
        push_str(out, record_type);
        out.push(',');
        out.push_str(r#""operation":"#);
        push_str(out, operation);
        out.push(',');
    }

    fn push_transaction_details(&self, out: &mut String, source: &Source, txn_id: u64) {
        out.push(',');
        out.push_str(r#""transaction-record-id":"#);
        push_u64(out, source.row + 1);
        out.push(',');
        out.push_str(r#""prev-transaction-id":"#);
        push_u64(out, self.previous_txn.0);
        out.push(',');
        out.push_str(r#""prev-transaction-record-id":"#);
        push_u64(out, self.previous_txn.1);
        out.push(',');
        out.push_str(r#""commit-timestamp":"#);
        push_iso_utc(out, source.transaction.commit_ts_us, 6);
        out.push(',');
        out.push_str(r#""stream-position":"#);
        push_str(
            out,
            &format!(
                "{file}:{}:{}:{}:{txn_id}:{file}:{}",
                source.pos,
                source.row,
                source.next_pos,
                source.transaction.pos,
                file = source.transaction.file
            ),
        );
    }

    fn push_row(
        &self,
        out: &mut String,
        table: &TableSchema,
        row: &[Value],
        keep: impl Fn((usize, &Column)) -> bool,
    ) {
        let keys = self
            .keys
            .as_ref()
            .map(|(_, k)| k.as_slice())
            .unwrap_or_default();
        out.push('{');
        let mut first = true;
        for (i, (column, value)) in table.columns.iter().zip(row).enumerate() {
            if matches!(value, Value::Absent) || !keep((i, column)) {
                continue;
            }
            let rendered_null = is_null_in_dms(value);
            if rendered_null && !self.options.include_null {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            match keys.get(i) {
                Some(key) => out.push_str(key),
                None => push_key(out, &column.name),
            }
            if rendered_null {
                out.push_str("null");
            } else {
                self.push_value(out, column, value);
            }
        }
        out.push('}');
    }

    fn push_value(&self, out: &mut String, column: &Column, value: &Value) {
        let hex_prefix = !self.options.no_hex_prefix;
        match value {
            Value::Absent | Value::Null => out.push_str("null"),
            Value::Int(v) => push_i64(out, *v),
            Value::UInt(v) => push_u64(out, *v),
            Value::Decimal(text) => out.push_str(text),
            Value::Float(v) => push_f32(out, *v),
            Value::Double(v) => push_f64(out, *v),
            Value::String(s) => push_str(out, s),
            Value::Bytes(bytes) => {
                let mut text = String::new();
                if write_special_binary(&mut text, column.kind, bytes) {
                    push_str(out, &text);
                } else {
                    push_hex(out, bytes, hex_prefix);
                }
            }
            Value::Geometry(bytes) => push_hex(out, bytes, hex_prefix),
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
                out.push_str("Z\"");
            }
            Value::Timestamp(micros) => push_iso_utc(out, *micros, column.scale),
            Value::Year(y) => push_u64(out, u64::from(*y)),
            Value::Json(text) | Value::JsonDiff(text) => push_str(out, text),
            Value::Enum(index) => match column.enum_name(*index) {
                Some(name) => push_str(out, name),
                None => push_u64(out, u64::from(*index)),
            },
            Value::Set(mask) => {
                let names: Vec<&str> = column
                    .elements
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i < 64 && mask >> i & 1 == 1)
                    .map(|(_, n)| &**n)
                    .collect();
                push_str(out, &names.join(","));
            }
            Value::Bit(bits) => match column.width {
                0 | 1 => out.push_str(if *bits & 1 == 1 { "true" } else { "false" }),
                64 => push_hex(out, &bits.to_be_bytes(), hex_prefix),
                _ => push_u64(out, *bits),
            },
        }
    }
}

/// Zero dates cannot be represented by DMS targets; DMS writes them as null.
fn is_null_in_dms(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Date(d) => d.year == 0 || d.month == 0 || d.day == 0,
        Value::DateTime(dt) => dt.date.year == 0 || dt.date.month == 0 || dt.date.day == 0,
        Value::Timestamp(0) => true,
        _ => false,
    }
}

fn is_lob(kind: ColumnType) -> bool {
    matches!(
        kind,
        ColumnType::Text | ColumnType::Blob | ColumnType::Json | ColumnType::Geometry
    )
}

fn push_iso_utc(out: &mut String, micros: i64, digits: u8) {
    out.push('"');
    timestamp_to_datetime(micros).write(out, 'T', digits);
    out.push_str("Z\"");
}

fn push_extras(out: &mut String, source: &Source) {
    out.push_str(r#""cdcd":"#);
    out.push('{');
    out.push_str(r#""event-id":"#);
    push_str(out, &source.event_id());
    if let Some(gtid) = &source.transaction.gtid {
        out.push(',');
        out.push_str(r#""gtid":"#);
        push_str(out, gtid);
    }
    if let Some(uuid) = &source.transaction.server_uuid {
        out.push(',');
        out.push_str(r#""server-uuid":"#);
        push_str(out, uuid);
    }
    out.push('}');
}

/// DMS's MySQL transaction id: binlog file number in the high 32 bits, offset in the low 32.
pub fn transaction_id(source: &Source) -> u64 {
    let file_number: u64 = source
        .transaction
        .file
        .rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (file_number << 32) | (source.transaction.pos & 0xffff_ffff)
}

/// `pk1.pk2…` (or `schema.table.pk…`) from the row image that identifies the row.
fn primary_key_value(event: &ChangeEvent, with_schema_table: bool) -> String {
    let table = &event.table;
    let mut key = String::new();
    if with_schema_table {
        key.push_str(&table.schema);
        key.push('.');
        key.push_str(&table.table);
    }
    let row = event.key_image();
    for &i in &table.primary_key {
        if !key.is_empty() {
            key.push('.');
        }
        let mut rendered = String::new();
        if let Some(value) = row.get(i) {
            crate::native::push_value(&mut rendered, &table.columns[i], value);
        }
        key.push_str(rendered.trim_matches('"'));
    }
    key
}

/// DMS's data type names for a column (`table-def` in control records).
fn dms_type(column: &Column) -> (&'static str, Option<u32>) {
    let unsigned = column.unsigned;
    match column.kind {
        ColumnType::TinyInt => (if unsigned { "UINT1" } else { "INT1" }, None),
        ColumnType::SmallInt => (if unsigned { "UINT2" } else { "INT2" }, None),
        ColumnType::MediumInt | ColumnType::Int => (if unsigned { "UINT4" } else { "INT4" }, None),
        ColumnType::BigInt => (if unsigned { "UINT8" } else { "INT8" }, None),
        ColumnType::Decimal => ("NUMERIC", None),
        ColumnType::Float | ColumnType::Double => ("REAL8", None),
        ColumnType::Bit if column.width == 64 => ("BYTES", Some(8)),
        ColumnType::Bit => ("BOOLEAN", None),
        ColumnType::Date => ("DATE", None),
        ColumnType::Time => ("STRING", None),
        ColumnType::DateTime | ColumnType::Timestamp => ("DATETIME", None),
        ColumnType::Year => ("INT2", None),
        ColumnType::Char | ColumnType::VarChar | ColumnType::Enum | ColumnType::Set => {
            ("WSTRING", Some(column.width.max(1)))
        }
        ColumnType::Uuid | ColumnType::Inet4 | ColumnType::Inet6 => ("WSTRING", None),
        ColumnType::Text => ("NCLOB", None),
        ColumnType::Json => ("CLOB", None),
        ColumnType::Binary | ColumnType::VarBinary => ("BYTES", Some(column.width.max(1))),
        ColumnType::Blob | ColumnType::Geometry | ColumnType::Vector => ("BLOB", None),
    }
}

fn push_table_def(out: &mut String, table: &TableSchema) {
    out.push('{');
    push_key(out, "columns");
    out.push('{');
    for (i, column) in table.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_key(out, &column.name);
        let (type_name, length) = dms_type(column);
        out.push('{');
        push_key(out, "type");
        push_str(out, type_name);
        if let Some(length) = length {
            out.push(',');
            push_key(out, "length");
            push_u64(out, u64::from(length));
        }
        if column.kind == ColumnType::Decimal {
            out.push(',');
            push_key(out, "precision");
            push_u64(out, u64::from(column.width));
            out.push(',');
            push_key(out, "scale");
            push_u64(out, u64::from(column.scale));
        }
        out.push(',');
        push_key(out, "nullable");
        out.push_str(if column.nullable { "true" } else { "false" });
        out.push('}');
    }
    out.push_str("},");
    push_key(out, "primary-key");
    out.push('[');
    for (i, name) in table.primary_key_names().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, name);
    }
    out.push_str("]}");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Flavor, Transaction};
    use crate::value::{Date, DateTime};

    fn table() -> Arc<TableSchema> {
        let mut id = Column::unnamed(0, ColumnType::Int);
        id.name = "id".into();
        id.nullable = false;
        let mut name = Column::unnamed(1, ColumnType::VarChar);
        name.name = "fname".into();
        name.width = 255;
        let mut at = Column::unnamed(2, ColumnType::DateTime);
        at.name = "at".into();
        let mut bin = Column::unnamed(3, ColumnType::VarBinary);
        bin.name = "raw".into();
        Arc::new(TableSchema {
            schema: "sbtest".into(),
            table: "sbtest_x".into(),
            columns: vec![id, name, at, bin],
            primary_key: vec![0],
        })
    }

    fn source(row: u64) -> Source {
        Source {
            transaction: Arc::new(Transaction {
                flavor: Flavor::MySql,
                server_id: 1,
                server_uuid: None,
                gtid: None,
                file: "mysql-bin-changelog.002171".into(),
                pos: 36_912_135,
                commit_ts_us: 1_572_562_435_000_000,
            }),
            pos: 36_912_271,
            next_pos: 36_912_333,
            row,
        }
    }

    #[test]
    fn insert_matches_the_documented_dms_shape() {
        let mut writer = DmsWriter::new(DmsOptions {
            include_transaction_details: true,
            include_partition_value: true,
            partition_key_type: PartitionKeyType::PrimaryKey,
            partition_include_schema_table: true,
            cdcd_extras: false,
            ..DmsOptions::default()
        });
        let event = ChangeEvent {
            op: Op::Insert,
            table: table(),
            before: None,
            after: Some(vec![
                Value::Int(100_000_161),
                Value::String("val61s".into()),
                Value::DateTime(DateTime {
                    date: Date {
                        year: 2023,
                        month: 1,
                        day: 16,
                    },
                    hour: 6,
                    minute: 18,
                    second: 32,
                    micros: 0,
                }),
                Value::Null,
            ]),
            source: source(0),
        };
        let mut out = String::new();
        writer.write_change(&mut out, &event);
        assert!(out.ends_with('\n'));
        let keys: Vec<&str> = out.match_indices("\":").map(|(i, _)| &out[..i]).collect();
        assert!(keys[0].ends_with("\"data"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["data"],
            serde_json::json!({"id":100000161,"fname":"val61s","at":"2023-01-16T06:18:32Z"})
        );
        let m = &v["metadata"];
        assert_eq!(m["record-type"], "data");
        assert_eq!(m["operation"], "insert");
        assert_eq!(m["partition-key-type"], "primary-key");
        assert_eq!(m["partition-key-value"], "sbtest.sbtest_x.100000161");
        assert_eq!(m["transaction-id"].as_u64(), Some(9_324_410_911_751));
        assert_eq!(m["transaction-record-id"], 1);
        assert_eq!(m["commit-timestamp"], "2019-10-31T22:53:55.000000Z");
        assert_eq!(
            m["stream-position"],
            "mysql-bin-changelog.002171:36912271:0:36912333:9324410911751:mysql-bin-changelog.002171:36912135"
        );
        let ts = m["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2019-10-31T22:53:59.721201Z".len());
        let metadata_keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(
            metadata_keys,
            [
                "timestamp",
                "record-type",
                "operation",
                "partition-key-type",
                "partition-key-value",
                "schema-name",
                "table-name",
                "transaction-id",
                "transaction-record-id",
                "prev-transaction-id",
                "prev-transaction-record-id",
                "commit-timestamp",
                "stream-position"
            ]
        );
    }

    #[test]
    fn update_carries_before_image_and_delete_carries_old_row_in_data() {
        let mut writer = DmsWriter::new(DmsOptions {
            before_image: Some(BeforeImage {
                field_name: "before-image".into(),
                columns: BeforeImageColumns::PkOnly,
            }),
            include_null: true,
            no_hex_prefix: false,
            ..DmsOptions::default()
        });
        let old = vec![
            Value::Int(1),
            Value::String("a".into()),
            Value::Null,
            Value::Bytes(vec![0xde, 0xad]),
        ];
        let mut new = old.clone();
        new[1] = Value::String("b".into());
        let update = ChangeEvent {
            op: Op::Update,
            table: table(),
            before: Some(old.clone()),
            after: Some(new),
            source: source(0),
        };
        let mut out = String::new();
        writer.write_change(&mut out, &update);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["data"]["fname"], "b");
        assert_eq!(v["data"]["raw"], "0xDEAD");
        assert!(v["data"]["at"].is_null() && v["data"].get("at").is_some());
        assert_eq!(v["before-image"], serde_json::json!({"id":1}));
        assert_eq!(v["metadata"]["partition-key-type"], "schema-table");
        assert!(v["cdcd"]["event-id"].is_string());

        let delete = ChangeEvent {
            op: Op::Delete,
            table: table(),
            before: Some(old),
            after: None,
            source: source(1),
        };
        out.clear();
        writer.write_change(&mut out, &delete);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["data"]["fname"], "a");
        assert!(v.get("before-image").is_none());
    }

    #[test]
    fn json_message_format_pretty_prints_one_record() {
        let mut writer = DmsWriter::new(DmsOptions {
            pretty: true,
            ..DmsOptions::default()
        });
        let event = ChangeEvent {
            op: Op::Insert,
            table: table(),
            before: None,
            after: Some(vec![Value::Int(1), Value::Null, Value::Null, Value::Null]),
            source: source(0),
        };
        let mut out = String::new();
        writer.write_change(&mut out, &event);
        assert!(out.lines().count() > 5, "pretty-printed: {out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["data"], serde_json::json!({"id": 1}));
        assert!(out.find("\"data\"").unwrap() < out.find("\"metadata\"").unwrap());
    }

    #[test]
    fn ddl_becomes_a_control_record_with_table_def() {
        let mut writer = DmsWriter::new(DmsOptions::default());
        let ddl = DdlEvent {
            schema: "sbtest".into(),
            table: Some(("sbtest".into(), "sbtest_x".into())),
            operation: "create-table",
            query: "CREATE TABLE sbtest_x (id int primary key)".into(),
            definition: Some(table()),
            source: source(0),
        };
        let mut out = String::new();
        assert!(writer.write_ddl(&mut out, &ddl));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["control"]["table-def"]["columns"]["fname"],
            serde_json::json!({"type":"WSTRING","length":255,"nullable":true})
        );
        assert_eq!(
            v["control"]["table-def"]["primary-key"],
            serde_json::json!(["id"])
        );
        assert_eq!(v["metadata"]["record-type"], "control");
        assert_eq!(v["metadata"]["partition-key-type"], "task-id");
    }
}
