//! The schema cache: table definitions from `information_schema`, for servers whose TABLE_MAP events
//! carry no column names (`binlog_row_metadata` MINIMAL or NO_LOG).
//!
//! The cache is versioned by the stream: a DDL statement on a table drops its entry, and the next
//! TABLE_MAP for it loads the definition again. Every TABLE_MAP is checked against the cached
//! definition (column count and type family) in `table.rs`, so reading old events after a later
//! ALTER is an error rather than a shifted column.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use cdcd_event::{Column, ColumnType, TableSchema};

use crate::error::{Error, Result};

/// One `information_schema.COLUMNS` row. Every field is optional, so that an unexpected NULL is
/// handled here instead of panicking in the driver's row conversion.
type ColumnRow = (
    Option<String>, // COLUMN_NAME
    Option<String>, // DATA_TYPE
    Option<String>, // COLUMN_TYPE
    Option<String>, // IS_NULLABLE
    Option<u64>,    // NUMERIC_PRECISION
    Option<u64>,    // NUMERIC_SCALE / DATETIME_PRECISION
    Option<u64>,    // CHARACTER_MAXIMUM_LENGTH
    Option<u64>,    // collation id
);

/// Loads one table's definition; `None` when the table no longer exists.
pub(crate) async fn load_table(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Option<TableSchema>> {
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE, c.NUMERIC_PRECISION, \
             COALESCE(c.NUMERIC_SCALE, c.DATETIME_PRECISION), c.CHARACTER_MAXIMUM_LENGTH, l.ID \
             FROM information_schema.COLUMNS c \
             LEFT JOIN information_schema.COLLATIONS l ON l.COLLATION_NAME = c.COLLATION_NAME \
             WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION",
            (schema, table),
        )
        .await
        .map_err(Error::server(format!(
            "reading the definition of `{schema}`.`{table}` from information_schema (grant SELECT \
             on it to the replication user)"
        )))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let key: Vec<Option<String>> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND \
             TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (schema, table),
        )
        .await
        .map_err(Error::server(format!(
            "reading the primary key of `{schema}`.`{table}`"
        )))?;
    // MariaDB's JSON is LONGTEXT with a `json_valid(col)` check: find those columns.
    let checks: Vec<Option<String>> = conn
        .exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE \
             CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
            (schema, table),
        )
        .await
        .unwrap_or_default();
    let mut columns: Vec<Column> = rows.into_iter().map(column_from_row).collect();
    for column in columns.iter_mut().filter(|c| c.kind == ColumnType::Text) {
        let check = format!("json_valid(`{}`)", column.name.replace('`', "``"));
        if checks
            .iter()
            .flatten()
            .any(|c| c.eq_ignore_ascii_case(&check))
        {
            column.kind = ColumnType::Json;
        }
    }
    let primary_key = key
        .iter()
        .flatten()
        .filter_map(|k| columns.iter().position(|c| &*c.name == k))
        .collect();
    Ok(Some(TableSchema {
        schema: schema.into(),
        table: table.into(),
        columns,
        primary_key,
    }))
}

fn column_from_row(row: ColumnRow) -> Column {
    let (name, data_type, column_type, nullable, precision, scale, length, collation) = row;
    let (name, data_type, column_type, nullable) = (
        name.unwrap_or_default(),
        data_type.unwrap_or_default(),
        column_type.unwrap_or_default(),
        nullable.unwrap_or_default(),
    );
    let lower = column_type.to_ascii_lowercase();
    let kind = match data_type.to_ascii_lowercase().as_str() {
        "tinyint" | "bool" | "boolean" => ColumnType::TinyInt,
        "smallint" => ColumnType::SmallInt,
        "mediumint" => ColumnType::MediumInt,
        "int" | "integer" => ColumnType::Int,
        "bigint" => ColumnType::BigInt,
        "decimal" | "numeric" => ColumnType::Decimal,
        "float" => ColumnType::Float,
        "double" | "real" => ColumnType::Double,
        "bit" => ColumnType::Bit,
        "date" => ColumnType::Date,
        "time" => ColumnType::Time,
        "datetime" => ColumnType::DateTime,
        "timestamp" => ColumnType::Timestamp,
        "year" => ColumnType::Year,
        "char" => ColumnType::Char,
        "varchar" => ColumnType::VarChar,
        "tinytext" | "text" | "mediumtext" | "longtext" => ColumnType::Text,
        "binary" => ColumnType::Binary,
        "varbinary" => ColumnType::VarBinary,
        "tinyblob" | "blob" | "mediumblob" | "longblob" => ColumnType::Blob,
        "json" => ColumnType::Json,
        "enum" => ColumnType::Enum,
        "set" => ColumnType::Set,
        "vector" => ColumnType::Vector,
        "uuid" => ColumnType::Uuid,
        "inet4" => ColumnType::Inet4,
        "inet6" => ColumnType::Inet6,
        _ => ColumnType::Geometry,
    };
    let elements: Arc<[Box<str>]> = if matches!(kind, ColumnType::Enum | ColumnType::Set) {
        Arc::from(parse_elements(&column_type))
    } else {
        Arc::from(Vec::new())
    };
    let width = match kind {
        ColumnType::Decimal | ColumnType::Bit => precision.unwrap_or(0),
        _ => length.unwrap_or(0),
    };
    Column {
        name: name.into(),
        kind,
        unsigned: lower.contains("unsigned"),
        nullable: nullable.eq_ignore_ascii_case("YES"),
        width: width.min(u64::from(u32::MAX)) as u32,
        scale: scale.unwrap_or(0).min(30) as u8,
        elements,
        collation: collation.unwrap_or(0) as u16,
    }
}

/// `enum('a','it''s')` → `["a", "it's"]`.
fn parse_elements(column_type: &str) -> Vec<Box<str>> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let body = &column_type[open + 1..column_type.rfind(')').unwrap_or(column_type.len())];
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    value.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                }
                c => value.push(c),
            }
        }
        out.push(value.into_boxed_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_elements_unquote() {
        let e = parse_elements("enum('small','it''s','a,b')");
        assert_eq!(
            e.iter().map(|s| &**s).collect::<Vec<_>>(),
            ["small", "it's", "a,b"]
        );
    }
}
