//! From a TABLE_MAP event to everything needed to decode that table's rows.
//!
//! A TABLE_MAP precedes every rows event and gives each column's wire type and type metadata. With
//! `binlog_row_metadata=FULL` it also carries names, signedness, character sets, ENUM/SET
//! elements and the primary key. Without it those come from the schema cache (`information_schema`),
//! and then every TABLE_MAP is checked against the cached definition: a different column count or an
//! incompatible type is an error, never a silently shifted column.
//!
//! The plan is computed once per TABLE_MAP and shared by all rows that follow it; rows are then
//! decoded without looking at metadata bytes again.

use std::sync::Arc;

use mysql_common::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_common::constants::ColumnType as Wire;

use cdcd_event::{Column, ColumnType, Flavor, TableSchema};

use crate::charset::{encoding_for_collation, max_bytes_per_char, TextEncoding};

/// How one column's bytes are laid out in a row image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Layout {
    Tiny,
    Short,
    Int24,
    Long,
    LongLong,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Year,
    Date,
    /// Pre-5.6 TIME: HHMMSS as a 3-byte integer.
    OldTime,
    Time2 {
        fsp: u8,
    },
    /// Pre-5.6 DATETIME: YYYYMMDDHHMMSS as an 8-byte integer.
    OldDateTime,
    DateTime2 {
        fsp: u8,
    },
    OldTimestamp,
    Timestamp2 {
        fsp: u8,
    },
    Bit {
        bits: u16,
    },
    Enum {
        bytes: u8,
    },
    Set {
        bytes: u8,
    },
    /// A length prefix of 1 or 2 bytes, then the bytes (CHAR, BINARY, VARCHAR, VARBINARY).
    ShortString {
        prefix: u8,
    },
    /// A length prefix of 1 to 4 bytes, then the bytes (BLOB, TEXT, GEOMETRY, JSON, VECTOR).
    LongString {
        prefix: u8,
    },
    /// MySQL's binary JSON behind a length prefix.
    Jsonb {
        prefix: u8,
    },
}

/// The decoding plan of one column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ColumnPlan {
    pub layout: Layout,
    pub unsigned: bool,
    pub encoding: TextEncoding,
    /// BINARY(N) values are stored without trailing zero bytes; pad them back to N.
    pub pad_to: usize,
    pub kind: ColumnType,
}

/// A table's decoding plan and the schema its events carry.
#[derive(Debug, Clone)]
pub struct TableDecoder {
    pub schema: Arc<TableSchema>,
    pub(crate) plans: Vec<ColumnPlan>,
}

/// Metadata the TABLE_MAP may or may not carry, gathered from its optional metadata block.
#[derive(Default)]
struct OptionalMeta {
    unsigned: Option<Vec<bool>>,
    charsets: Option<Vec<u16>>,
    enum_set_charsets: Option<Vec<u16>>,
    names: Option<Vec<String>>,
    enum_values: Vec<Vec<Box<str>>>,
    set_values: Vec<Vec<Box<str>>>,
    primary_key: Option<Vec<usize>>,
}

impl TableDecoder {
    /// Builds the plan for a TABLE_MAP. `cached` is the schema cache's definition of the table,
    /// used for whatever the TABLE_MAP does not carry and checked against it.
    ///
    /// When the TABLE_MAP carries column names it is authoritative, and a cached definition that
    /// does not match it (the table changed since) is ignored instead of refused.
    pub fn new(
        tme: &TableMapEvent<'_>,
        cached: Option<&TableSchema>,
        flavor: Flavor,
    ) -> Result<Self, String> {
        match Self::build(tme, cached, flavor) {
            Err(e) if cached.is_some() && has_column_names(tme) => {
                tracing::debug!(
                    table = %tme.table_name(),
                    "information_schema no longer matches this TABLE_MAP ({e}); using the binlog's own metadata"
                );
                let mut decoder = Self::build(tme, None, flavor)?;
                decoder.keep_known_kinds(cached.expect("checked above"));
                Ok(decoder)
            }
            result => result,
        }
    }

    /// MariaDB's binlog cannot say JSON, UUID or INET4/6 (they travel as text and binary), so a
    /// plan built from the binlog alone would type those columns differently from the plans
    /// before and after it. Columns that `cached` knows by the same name and a compatible wire
    /// type keep the cached kind.
    fn keep_known_kinds(&mut self, cached: &TableSchema) {
        let mut schema = (*self.schema).clone();
        for (column, plan) in schema.columns.iter_mut().zip(&mut self.plans) {
            let Some(known) = cached.columns.iter().find(|c| c.name == column.name) else {
                continue;
            };
            let compatible = match known.kind {
                ColumnType::Uuid | ColumnType::Inet4 | ColumnType::Inet6 => {
                    column.kind == ColumnType::Binary
                }
                ColumnType::Json => matches!(column.kind, ColumnType::Text | ColumnType::Blob),
                _ => false,
            };
            if compatible {
                column.kind = known.kind;
                plan.kind = known.kind;
            }
        }
        self.schema = Arc::new(schema);
    }

    fn build(
        tme: &TableMapEvent<'_>,
        cached: Option<&TableSchema>,
        flavor: Flavor,
    ) -> Result<Self, String> {
        let count = tme.columns_count() as usize;
        if let Some(cached) = cached {
            if cached.columns.len() != count {
                return Err(format!(
                    "the binlog has {count} columns but information_schema has {} ({}); the table \
                     changed after this event was written. Restart from a position after the \
                     ALTER, or enable binlog_row_metadata=FULL so the binlog carries the schema",
                    cached.columns.len(),
                    cached
                        .columns
                        .iter()
                        .map(|c| &*c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let meta = read_optional_meta(tme, flavor)?;
        let nullable = tme.null_bitmask();
        let mut columns = Vec::with_capacity(count);
        let mut plans = Vec::with_capacity(count);
        let (mut numeric, mut character, mut enum_set, mut enums, mut sets) = (0, 0, 0, 0, 0);
        for i in 0..count {
            let wire = tme
                .get_column_type(i)
                .map_err(|e| format!("column {}: {e}", i + 1))?
                .ok_or_else(|| format!("column {} has no type", i + 1))?;
            let md = tme.get_column_metadata(i).unwrap_or(&[]);
            let cached_column = cached.map(|t| &t.columns[i]);
            let mut unsigned = false;
            if wire.is_numeric_type() {
                unsigned = match &meta.unsigned {
                    Some(flags) => flags.get(numeric).copied().unwrap_or(false),
                    None => cached_column.is_some_and(|c| c.unsigned),
                };
                numeric += 1;
            }
            let mut collation = cached_column.map_or(0, |c| c.collation);
            if is_character_column(wire, flavor) {
                if let Some(c) = meta.charsets.as_ref().and_then(|c| c.get(character)) {
                    collation = *c;
                }
                character += 1;
            }
            let mut elements: Arc<[Box<str>]> = cached_column
                .map(|c| c.elements.clone())
                .unwrap_or_else(|| Arc::from(Vec::new()));
            if wire.is_enum_or_set_type() {
                if let Some(c) = meta
                    .enum_set_charsets
                    .as_ref()
                    .and_then(|c| c.get(enum_set))
                {
                    collation = *c;
                }
                enum_set += 1;
                let (list, index) = if wire.is_enum_type() {
                    enums += 1;
                    (&meta.enum_values, enums - 1)
                } else {
                    sets += 1;
                    (&meta.set_values, sets - 1)
                };
                if let Some(values) = list.get(index) {
                    elements = Arc::from(values.clone());
                }
            }
            if let Some(cached_column) = cached_column {
                // What the TABLE_MAP does say must agree with the cache.
                // (MariaDB marks YEAR unsigned; information_schema does not.)
                let binlog_says_unsigned = meta.unsigned.is_some()
                    && wire.is_numeric_type()
                    && wire != Wire::MYSQL_TYPE_YEAR;
                let binlog_charset =
                    collation != cached_column.collation && cached_column.collation != 0;
                if (binlog_says_unsigned && unsigned != cached_column.unsigned) || binlog_charset {
                    return Err(format!(
                        "column {} `{}` is {} (collation {}) in information_schema, but the binlog \
                         says {}signed with collation {collation}; the table changed after this \
                         event was written. Restart from a position after the ALTER, or enable \
                         binlog_row_metadata=FULL",
                        i + 1,
                        cached_column.name,
                        cached_column.sql_type(),
                        cached_column.collation,
                        if unsigned { "un" } else { "" }
                    ));
                }
            }
            let plan = plan_column(wire, md, unsigned, collation)
                .map_err(|e| format!("column {}: {e}", i + 1))?;
            if let Some(cached_column) = cached_column {
                if !compatible(cached_column.kind, plan.kind) {
                    return Err(format!(
                        "column {} `{}` is {} in information_schema but {} in the binlog; the \
                         table changed after this event was written. Restart from a position after \
                         the ALTER, or enable binlog_row_metadata=FULL",
                        i + 1,
                        cached_column.name,
                        cached_column.sql_type(),
                        plan.kind.name()
                    ));
                }
            }
            let name: Arc<str> = match (&meta.names, cached_column) {
                (Some(names), _) if i < names.len() => names[i].as_str().into(),
                (_, Some(c)) => c.name.clone(),
                _ => format!("@{}", i + 1).into(),
            };
            // Some types only the schema cache can name (MariaDB JSON, UUID, INET4/6).
            let kind = match cached_column {
                Some(c) if c.kind != plan.kind => c.kind,
                _ => plan.kind,
            };
            let (mut width, scale) = width_and_scale(plan.layout, plan.kind, md, plan.pad_to);
            if matches!(kind, ColumnType::Char | ColumnType::VarChar) {
                // The binlog gives the length in bytes, information_schema in characters: a
                // definition reads the same whichever of the two it came from.
                width /= max_bytes_per_char(collation).unwrap_or(1);
            }
            columns.push(Column {
                name,
                kind,
                unsigned,
                nullable: nullable.get(i).map(|b| *b).unwrap_or(true),
                width: cached_column.map_or(width, |c| if c.width > 0 { c.width } else { width }),
                scale,
                elements,
                collation,
            });
            plans.push(ColumnPlan { kind, ..plan });
        }
        let primary_key = match (meta.primary_key, cached) {
            (Some(pk), _) => pk,
            (None, Some(cached)) => cached.primary_key.clone(),
            (None, None) => Vec::new(),
        };
        if let Some(&bad) = primary_key.iter().find(|&&i| i >= count) {
            return Err(format!("primary key names column {} of {count}", bad + 1));
        }
        Ok(TableDecoder {
            schema: Arc::new(TableSchema {
                schema: tme.database_name().as_ref().into(),
                table: tme.table_name().as_ref().into(),
                columns,
                primary_key,
            }),
            plans,
        })
    }
}

fn read_optional_meta(tme: &TableMapEvent<'_>, flavor: Flavor) -> Result<OptionalMeta, String> {
    let mut meta = OptionalMeta::default();
    let err = |e: std::io::Error| format!("optional metadata: {e}");
    for field in tme.iter_optional_meta() {
        match field.map_err(err)? {
            OptionalMetadataField::Signedness(bits) => {
                meta.unsigned = Some(bits.iter().by_vals().collect());
            }
            OptionalMetadataField::DefaultCharset(d) => {
                meta.charsets = Some(expand_default_charset(
                    d.default_charset(),
                    d.iter_non_default()
                        .map(|x| x.map(|x| (x.column_index() as usize, x.charset()))),
                    character_columns(tme, flavor),
                )?);
            }
            OptionalMetadataField::ColumnCharset(c) => {
                meta.charsets = Some(c.iter_charsets().collect::<Result<_, _>>().map_err(err)?);
            }
            OptionalMetadataField::EnumAndSetDefaultCharset(d) => {
                meta.enum_set_charsets = Some(expand_default_charset(
                    d.default_charset(),
                    d.iter_non_default()
                        .map(|x| x.map(|x| (x.column_index() as usize, x.charset()))),
                    enum_set_columns(tme),
                )?);
            }
            OptionalMetadataField::EnumAndSetColumnCharset(c) => {
                meta.enum_set_charsets =
                    Some(c.iter_charsets().collect::<Result<_, _>>().map_err(err)?);
            }
            OptionalMetadataField::ColumnName(names) => {
                let mut out = Vec::new();
                for name in names.iter_names() {
                    out.push(name.map_err(err)?.name().into_owned());
                }
                meta.names = Some(out);
            }
            OptionalMetadataField::EnumStrValue(values) => {
                for v in values.iter_values() {
                    let v = v.map_err(err)?;
                    meta.enum_values
                        .push(v.values().iter().map(|s| s.value().into()).collect());
                }
            }
            OptionalMetadataField::SetStrValue(values) => {
                for v in values.iter_values() {
                    let v = v.map_err(err)?;
                    meta.set_values
                        .push(v.values().iter().map(|s| s.value().into()).collect());
                }
            }
            OptionalMetadataField::SimplePrimaryKey(pk) => {
                let keys: Result<Vec<_>, _> =
                    pk.iter_indexes().map(|i| i.map(|i| i as usize)).collect();
                meta.primary_key = Some(keys.map_err(err)?);
            }
            OptionalMetadataField::PrimaryKeyWithPrefix(pk) => {
                let keys: Result<Vec<_>, _> = pk
                    .iter_keys()
                    .map(|k| k.map(|k| k.column_index() as usize))
                    .collect();
                meta.primary_key = Some(keys.map_err(err)?);
            }
            OptionalMetadataField::GeometryType(_)
            | OptionalMetadataField::ColumnVisibility(_)
            | OptionalMetadataField::Dimensionality(_) => {}
        }
    }
    Ok(meta)
}

/// Whether the TABLE_MAP names its columns (`binlog_row_metadata=FULL`).
pub(crate) fn has_column_names(tme: &TableMapEvent<'_>) -> bool {
    tme.iter_optional_meta()
        .any(|f| matches!(f, Ok(OptionalMetadataField::ColumnName(_))))
}

/// Whether a column has an entry in the TABLE_MAP's character set lists. MariaDB gives GEOMETRY
/// columns one (binary); MySQL does not.
fn is_character_column(wire: Wire, flavor: Flavor) -> bool {
    wire.is_character_type() || (flavor == Flavor::MariaDb && wire == Wire::MYSQL_TYPE_GEOMETRY)
}

fn character_columns(tme: &TableMapEvent<'_>, flavor: Flavor) -> usize {
    (0..tme.columns_count() as usize)
        .filter(
            |&i| matches!(tme.get_column_type(i), Ok(Some(t)) if is_character_column(t, flavor)),
        )
        .count()
}

fn enum_set_columns(tme: &TableMapEvent<'_>) -> usize {
    (0..tme.columns_count() as usize)
        .filter(|&i| matches!(tme.get_column_type(i), Ok(Some(t)) if t.is_enum_or_set_type()))
        .count()
}

/// DEFAULT_CHARSET lists only the columns (indexes among the character columns) that differ.
fn expand_default_charset(
    default: u16,
    exceptions: impl Iterator<Item = std::io::Result<(usize, u16)>>,
    count: usize,
) -> Result<Vec<u16>, String> {
    let mut charsets = vec![default; count];
    for exception in exceptions {
        let (index, charset) = exception.map_err(|e| format!("optional metadata: {e}"))?;
        *charsets
            .get_mut(index)
            .ok_or_else(|| format!("charset for character column {index} of {count}"))? = charset;
    }
    Ok(charsets)
}

fn plan_column(
    wire: Wire,
    md: &[u8],
    unsigned: bool,
    collation: u16,
) -> Result<ColumnPlan, String> {
    let byte = |i: usize| {
        md.get(i)
            .copied()
            .ok_or_else(|| format!("{wire:?} metadata is {} bytes", md.len()))
    };
    let encoding = if collation == 0 {
        TextEncoding::Unknown
    } else {
        encoding_for_collation(collation).ok_or_else(|| {
            format!("unknown collation id {collation}; cdcd cannot tell how its text is encoded")
        })?
    };
    let text_or = |text: ColumnType, binary: ColumnType| {
        if encoding == TextEncoding::Binary {
            binary
        } else {
            text
        }
    };
    let (layout, kind, pad_to) = match wire {
        Wire::MYSQL_TYPE_TINY => (Layout::Tiny, ColumnType::TinyInt, 0),
        Wire::MYSQL_TYPE_SHORT => (Layout::Short, ColumnType::SmallInt, 0),
        Wire::MYSQL_TYPE_INT24 => (Layout::Int24, ColumnType::MediumInt, 0),
        Wire::MYSQL_TYPE_LONG => (Layout::Long, ColumnType::Int, 0),
        Wire::MYSQL_TYPE_LONGLONG => (Layout::LongLong, ColumnType::BigInt, 0),
        Wire::MYSQL_TYPE_FLOAT => (Layout::Float, ColumnType::Float, 0),
        Wire::MYSQL_TYPE_DOUBLE => (Layout::Double, ColumnType::Double, 0),
        Wire::MYSQL_TYPE_NEWDECIMAL => {
            let (precision, scale) = (byte(0)?, byte(1)?);
            if precision == 0 || precision > 65 || scale > 30 || scale > precision {
                return Err(format!("DECIMAL({precision},{scale}) is not a valid type"));
            }
            (Layout::Decimal { precision, scale }, ColumnType::Decimal, 0)
        }
        Wire::MYSQL_TYPE_YEAR => (Layout::Year, ColumnType::Year, 0),
        Wire::MYSQL_TYPE_DATE | Wire::MYSQL_TYPE_NEWDATE => (Layout::Date, ColumnType::Date, 0),
        Wire::MYSQL_TYPE_TIME => (Layout::OldTime, ColumnType::Time, 0),
        Wire::MYSQL_TYPE_TIME2 => (
            Layout::Time2 {
                fsp: fsp(byte(0)?)?,
            },
            ColumnType::Time,
            0,
        ),
        Wire::MYSQL_TYPE_DATETIME => (Layout::OldDateTime, ColumnType::DateTime, 0),
        Wire::MYSQL_TYPE_DATETIME2 => (
            Layout::DateTime2 {
                fsp: fsp(byte(0)?)?,
            },
            ColumnType::DateTime,
            0,
        ),
        Wire::MYSQL_TYPE_TIMESTAMP => (Layout::OldTimestamp, ColumnType::Timestamp, 0),
        Wire::MYSQL_TYPE_TIMESTAMP2 => (
            Layout::Timestamp2 {
                fsp: fsp(byte(0)?)?,
            },
            ColumnType::Timestamp,
            0,
        ),
        Wire::MYSQL_TYPE_BIT => {
            let bits = u16::from(byte(1)?) * 8 + u16::from(byte(0)?);
            if bits == 0 || bits > 64 {
                return Err(format!("BIT({bits}) is not a valid type"));
            }
            (Layout::Bit { bits }, ColumnType::Bit, 0)
        }
        Wire::MYSQL_TYPE_ENUM => (Layout::Enum { bytes: byte(1)? }, ColumnType::Enum, 0),
        Wire::MYSQL_TYPE_SET => (Layout::Set { bytes: byte(1)? }, ColumnType::Set, 0),
        Wire::MYSQL_TYPE_STRING => {
            let (b0, b1) = (usize::from(byte(0)?), usize::from(byte(1)?));
            let length = if b0 & 0x30 != 0x30 {
                b1 | (((b0 & 0x30) ^ 0x30) << 4)
            } else {
                b1
            };
            let prefix = if length < 256 { 1 } else { 2 };
            let kind = text_or(ColumnType::Char, ColumnType::Binary);
            let pad = if kind == ColumnType::Binary {
                length
            } else {
                0
            };
            (Layout::ShortString { prefix }, kind, pad)
        }
        Wire::MYSQL_TYPE_VARCHAR | Wire::MYSQL_TYPE_VAR_STRING => {
            let length = u16::from_le_bytes([byte(0)?, byte(1)?]);
            let prefix = if length < 256 { 1 } else { 2 };
            let kind = text_or(ColumnType::VarChar, ColumnType::VarBinary);
            (Layout::ShortString { prefix }, kind, 0)
        }
        Wire::MYSQL_TYPE_TINY_BLOB
        | Wire::MYSQL_TYPE_MEDIUM_BLOB
        | Wire::MYSQL_TYPE_LONG_BLOB
        | Wire::MYSQL_TYPE_BLOB => (
            long_string(byte(0)?)?,
            text_or(ColumnType::Text, ColumnType::Blob),
            0,
        ),
        Wire::MYSQL_TYPE_GEOMETRY => (long_string(byte(0)?)?, ColumnType::Geometry, 0),
        Wire::MYSQL_TYPE_JSON => match byte(0)? {
            prefix @ 1..=4 => (Layout::Jsonb { prefix }, ColumnType::Json, 0),
            n => return Err(format!("length prefix of {n} bytes")),
        },
        Wire::MYSQL_TYPE_VECTOR => (long_string(byte(0)?)?, ColumnType::Vector, 0),
        other => return Err(format!("column type {other:?} is not supported")),
    };
    Ok(ColumnPlan {
        layout,
        unsigned,
        encoding,
        pad_to,
        kind,
    })
}

fn fsp(b: u8) -> Result<u8, String> {
    if b > 6 {
        Err(format!("fractional second precision {b} is over 6"))
    } else {
        Ok(b)
    }
}

fn long_string(prefix: u8) -> Result<Layout, String> {
    match prefix {
        1..=4 => Ok(Layout::LongString { prefix }),
        n => Err(format!("length prefix of {n} bytes")),
    }
}

fn width_and_scale(layout: Layout, kind: ColumnType, md: &[u8], pad_to: usize) -> (u32, u8) {
    match layout {
        Layout::Decimal { precision, scale } => (u32::from(precision), scale),
        Layout::Time2 { fsp } | Layout::DateTime2 { fsp } | Layout::Timestamp2 { fsp } => (0, fsp),
        Layout::Bit { bits } => (u32::from(bits), 0),
        Layout::ShortString { .. } if pad_to > 0 => (pad_to as u32, 0),
        // CHAR's metadata is the real type and the length, with the length's high bits folded
        // into the type byte (as for BINARY above); VARCHAR's is a little-endian length.
        Layout::ShortString { .. } if kind == ColumnType::Char && md.len() >= 2 => {
            let (b0, b1) = (u32::from(md[0]), u32::from(md[1]));
            (b1 | (((b0 & 0x30) ^ 0x30) << 4), 0)
        }
        Layout::ShortString { .. } if md.len() >= 2 => {
            (u32::from(u16::from_le_bytes([md[0], md[1]])), 0)
        }
        _ => (0, 0),
    }
}

/// Whether the binlog's type can carry values of the cached column type.
fn compatible(cached: ColumnType, wire: ColumnType) -> bool {
    use ColumnType::*;
    let family = |k: ColumnType| match k {
        Char | VarChar | Text | Binary | VarBinary | Blob | Json | Uuid | Inet4 | Inet6 => 1,
        other => other as u8 + 10,
    };
    family(cached) == family(wire)
}
