//! Column values and the table metadata needed to interpret them.

use std::fmt::{self, Write as _};
use std::sync::Arc;

/// One column value of one row image.
///
/// Values that need the column's metadata to be read (ENUM names, SET names, BIT width, the number of
/// fractional second digits) store only the raw data; the formats combine them with [`Column`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// The column is not part of this row image (`binlog_row_image=MINIMAL` or `NOBLOB`).
    Absent,
    Null,
    /// Signed integers of every width, and unsigned ones up to 32 bits.
    Int(i64),
    /// Unsigned BIGINT (and any unsigned integer when the server tells us it is unsigned).
    UInt(u64),
    /// DECIMAL/NUMERIC as exact text, e.g. `-12.50` (always the column's scale).
    Decimal(String),
    Float(f32),
    Double(f64),
    /// Text columns, transcoded to UTF-8 from the column's character set.
    String(String),
    /// Binary columns (BINARY is right-padded with zero bytes to its declared length), and text
    /// columns whose bytes are not valid in the declared character set.
    Bytes(Vec<u8>),
    Date(Date),
    /// TIME: signed microseconds, range ±838:59:59.000000.
    Time(i64),
    /// DATETIME: a naive calendar time; zero dates (`0000-00-00 00:00:00`) are kept as they are.
    DateTime(DateTime),
    /// TIMESTAMP: microseconds since the Unix epoch, UTC. `0` is MySQL's zero timestamp.
    Timestamp(i64),
    /// YEAR: 0 is MySQL's `0000`, otherwise 1901..=2155.
    Year(u16),
    /// JSON as compact JSON text.
    Json(String),
    /// A partial JSON update whose document is not in the binlog (`binlog_row_image` MINIMAL or
    /// NOBLOB with `binlog_row_value_options=PARTIAL_JSON`): a JSON array of
    /// `{"op":"replace"|"insert"|"remove","path":"$.a","value":…}` to apply to the old document.
    JsonDiff(String),
    /// ENUM by 1-based index (0 is the empty "error" value); the name is in [`Column::elements`].
    Enum(u16),
    /// SET as a bit mask over [`Column::elements`].
    Set(u64),
    /// BIT(n): the bits, right-aligned; the width is [`Column::width`].
    Bit(u64),
    /// Spatial types as MySQL stores them: 4-byte SRID (little endian) followed by WKB.
    Geometry(Vec<u8>),
}

impl Value {
    /// Appends the value as plain text, the way `mysql` prints it (ENUM and SET by name, BIT as
    /// binary digits, MariaDB UUID/INET as their usual text). Returns false, appending nothing,
    /// for values that have no text form: NULL, absent, and raw bytes.
    pub fn write_text(&self, column: &Column, out: &mut String) -> bool {
        match self {
            Value::Absent | Value::Null | Value::Geometry(_) => return false,
            Value::Bytes(bytes) => return write_special_binary(out, column.kind, bytes),
            Value::Int(v) => out.push_str(itoa::Buffer::new().format(*v)),
            Value::UInt(v) => out.push_str(itoa::Buffer::new().format(*v)),
            Value::Decimal(text)
            | Value::String(text)
            | Value::Json(text)
            | Value::JsonDiff(text) => out.push_str(text),
            Value::Float(v) => out.push_str(ryu::Buffer::new().format(*v)),
            Value::Double(v) => out.push_str(ryu::Buffer::new().format(*v)),
            Value::Date(d) => d.write(out),
            Value::Time(micros) => write_time(out, *micros, column.scale),
            Value::DateTime(dt) => dt.write(out, ' ', column.scale),
            Value::Timestamp(0) => {
                out.push_str("0000-00-00 00:00:00");
                write_fraction(out, 0, column.scale);
            }
            Value::Timestamp(micros) => {
                timestamp_to_datetime(*micros).write(out, ' ', column.scale)
            }
            Value::Year(y) => push_padded(out, u64::from(*y), 4),
            Value::Enum(index) => match column.enum_name(*index) {
                Some(name) => out.push_str(name),
                None => out.push_str(itoa::Buffer::new().format(*index)),
            },
            Value::Set(mask) => {
                for (i, name) in column.set_names(*mask).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(name);
                }
                if column.elements.is_empty() && *mask != 0 {
                    out.push_str(itoa::Buffer::new().format(*mask));
                }
            }
            Value::Bit(bits) => write_bits(out, *bits, column.width),
        }
        true
    }
}

/// A calendar date as MySQL stores it; zero parts are allowed (`0000-00-00`, `2024-00-00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A naive date and time with microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
}

/// The logical type of a column: what its values mean, independent of the binlog encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    TinyInt,
    SmallInt,
    MediumInt,
    Int,
    BigInt,
    Decimal,
    Float,
    Double,
    Bit,
    Date,
    Time,
    DateTime,
    Timestamp,
    Year,
    Char,
    VarChar,
    Text,
    Binary,
    VarBinary,
    Blob,
    Json,
    Enum,
    Set,
    Geometry,
    Vector,
    /// MariaDB UUID, INET4 and INET6 (fixed-size binary on the wire; rendered as text).
    Uuid,
    Inet4,
    Inet6,
}

/// What a format needs to know about one column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: Arc<str>,
    pub kind: ColumnType,
    pub unsigned: bool,
    pub nullable: bool,
    /// DECIMAL precision, CHAR/BINARY/VARCHAR length in characters or bytes, BIT width.
    pub width: u32,
    /// DECIMAL scale, or fractional second digits of TIME/DATETIME/TIMESTAMP.
    pub scale: u8,
    /// ENUM/SET element names, in definition order; empty when the server did not send them.
    pub elements: Arc<[Box<str>]>,
    /// Collation id for text columns (63 = binary), as in `information_schema.COLLATIONS`.
    pub collation: u16,
}

impl Column {
    /// A column known only by position: `@1`, `@2`, … (the names `mysqlbinlog` uses).
    pub fn unnamed(index: usize, kind: ColumnType) -> Self {
        Column {
            name: format!("@{}", index + 1).into(),
            kind,
            unsigned: false,
            nullable: true,
            width: 0,
            scale: 0,
            elements: Arc::from(Vec::new()),
            collation: 0,
        }
    }

    /// The ENUM element name for a 1-based index, if the names are known.
    pub fn enum_name(&self, index: u16) -> Option<&str> {
        match index {
            0 => Some(""),
            i => self.elements.get(i as usize - 1).map(|s| &**s),
        }
    }

    /// The SET element names a bit mask selects, in definition order.
    pub fn set_names(&self, mask: u64) -> impl Iterator<Item = &str> {
        self.elements
            .iter()
            .take(64)
            .enumerate()
            .filter(move |(i, _)| mask >> i & 1 == 1)
            .map(|(_, name)| &**name)
    }

    /// SQL type text in the style of `information_schema.COLUMNS.COLUMN_TYPE` (ENUM and SET
    /// with their elements when known, quotes doubled). [`Column::from_sql_type`] reads it back.
    pub fn sql_type(&self) -> String {
        let unsigned = if self.unsigned { " unsigned" } else { "" };
        match self.kind {
            ColumnType::TinyInt => format!("tinyint{unsigned}"),
            ColumnType::SmallInt => format!("smallint{unsigned}"),
            ColumnType::MediumInt => format!("mediumint{unsigned}"),
            ColumnType::Int => format!("int{unsigned}"),
            ColumnType::BigInt => format!("bigint{unsigned}"),
            ColumnType::Decimal => format!("decimal({},{}){unsigned}", self.width, self.scale),
            ColumnType::Float => format!("float{unsigned}"),
            ColumnType::Double => format!("double{unsigned}"),
            ColumnType::Bit => format!("bit({})", self.width),
            ColumnType::Time | ColumnType::DateTime | ColumnType::Timestamp if self.scale > 0 => {
                format!("{}({})", self.kind.name(), self.scale)
            }
            ColumnType::Char | ColumnType::VarChar | ColumnType::Binary | ColumnType::VarBinary => {
                format!("{}({})", self.kind.name(), self.width)
            }
            ColumnType::Enum | ColumnType::Set if !self.elements.is_empty() => {
                let mut text = format!("{}(", self.kind.name());
                for (i, element) in self.elements.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push('\'');
                    text.push_str(&element.replace('\'', "''"));
                    text.push('\'');
                }
                text.push(')');
                text
            }
            kind => kind.name().to_string(),
        }
    }
}

impl Column {
    /// The column `name` of the type [`Column::sql_type`] printed (`int unsigned`,
    /// `decimal(10,2)`, `enum('a','b')`, `datetime(6)`…). Nullability and collation are not part
    /// of that text: the column is nullable, collation 0.
    pub fn from_sql_type(name: &str, sql_type: &str) -> Result<Column, String> {
        let text = sql_type.trim();
        let (text, unsigned) = match text.strip_suffix(" unsigned") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let (base, args) = match text.split_once('(') {
            Some((base, rest)) => (
                base,
                Some(
                    rest.strip_suffix(')')
                        .ok_or_else(|| format!("`{sql_type}` lacks its closing parenthesis"))?,
                ),
            ),
            None => (text, None),
        };
        let kind = ColumnType::from_name(base)
            .ok_or_else(|| format!("`{sql_type}` is not a type cdcd knows"))?;
        let mut column = Column::unnamed(0, kind);
        column.name = name.into();
        column.unsigned = unsigned;
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{sql_type}`: `{s}` is not a number"))
        };
        match (kind, args) {
            (_, None) => {}
            (ColumnType::Enum | ColumnType::Set, Some(list)) => {
                column.elements = parse_elements(list)
                    .ok_or_else(|| format!("`{sql_type}`: the element list is not quoted"))?
                    .into();
            }
            (ColumnType::Decimal, Some(ps)) => {
                let (p, s) = ps.split_once(',').unwrap_or((ps, "0"));
                column.width = number(p)?;
                column.scale = number(s)?.min(255) as u8;
            }
            (ColumnType::Time | ColumnType::DateTime | ColumnType::Timestamp, Some(f)) => {
                column.scale = number(f)?.min(6) as u8;
            }
            (_, Some(width)) => column.width = number(width)?,
        }
        Ok(column)
    }
}

/// `'a','b''c'` into its elements; `None` when an element is not quoted.
fn parse_elements(list: &str) -> Option<Vec<Box<str>>> {
    let mut elements = Vec::new();
    let mut chars = list.chars().peekable();
    while chars.peek().is_some() {
        if chars.next()? != '\'' {
            return None;
        }
        let mut element = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    element.push('\'');
                }
                '\'' => break,
                c => element.push(c),
            }
        }
        elements.push(element.into_boxed_str());
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(_) => return None,
        }
    }
    Some(elements)
}

impl ColumnType {
    /// The SQL name of the type, lower case.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::TinyInt => "tinyint",
            ColumnType::SmallInt => "smallint",
            ColumnType::MediumInt => "mediumint",
            ColumnType::Int => "int",
            ColumnType::BigInt => "bigint",
            ColumnType::Decimal => "decimal",
            ColumnType::Float => "float",
            ColumnType::Double => "double",
            ColumnType::Bit => "bit",
            ColumnType::Date => "date",
            ColumnType::Time => "time",
            ColumnType::DateTime => "datetime",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Year => "year",
            ColumnType::Char => "char",
            ColumnType::VarChar => "varchar",
            ColumnType::Text => "text",
            ColumnType::Binary => "binary",
            ColumnType::VarBinary => "varbinary",
            ColumnType::Blob => "blob",
            ColumnType::Json => "json",
            ColumnType::Enum => "enum",
            ColumnType::Set => "set",
            ColumnType::Geometry => "geometry",
            ColumnType::Vector => "vector",
            ColumnType::Uuid => "uuid",
            ColumnType::Inet4 => "inet4",
            ColumnType::Inet6 => "inet6",
        }
    }

    /// The type [`ColumnType::name`] names.
    pub fn from_name(name: &str) -> Option<ColumnType> {
        use ColumnType::*;
        const ALL: [ColumnType; 28] = [
            TinyInt, SmallInt, MediumInt, Int, BigInt, Decimal, Float, Double, Bit, Date, Time,
            DateTime, Timestamp, Year, Char, VarChar, Text, Binary, VarBinary, Blob, Json, Enum,
            Set, Geometry, Vector, Uuid, Inet4, Inet6,
        ];
        ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether values of this type are text (as opposed to numbers, times or raw bytes).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            ColumnType::Char | ColumnType::VarChar | ColumnType::Text
        )
    }
}

/// A table as the change events see it: names, columns and primary key.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub schema: Arc<str>,
    pub table: Arc<str>,
    pub columns: Vec<Column>,
    /// Indexes into `columns`, in key order; empty when the table has no primary key.
    pub primary_key: Vec<usize>,
}

impl TableSchema {
    /// A digest of the definition: column names, types, nullability and collations, and the
    /// primary key (FNV-1a, 16 hex digits). Equal definitions give equal fingerprints, on every
    /// machine and in every version that keeps this function as it is.
    pub fn fingerprint(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in bytes.iter().chain(b"\0") {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        };
        for column in &self.columns {
            feed(column.name.as_bytes());
            feed(column.sql_type().as_bytes());
            feed(if column.nullable {
                b"null"
            } else {
                b"not null"
            });
            feed(itoa::Buffer::new().format(column.collation).as_bytes());
        }
        for &key in &self.primary_key {
            feed(itoa::Buffer::new().format(key).as_bytes());
        }
        format!("{hash:016x}")
    }

    /// Primary key column names, in key order.
    pub fn primary_key_names(&self) -> impl Iterator<Item = &str> {
        self.primary_key.iter().map(|&i| &*self.columns[i].name)
    }
}

impl Date {
    /// `YYYY-MM-DD`.
    pub fn write(&self, out: &mut String) {
        push_padded(out, u64::from(self.year), 4);
        out.push('-');
        push_padded(out, u64::from(self.month), 2);
        out.push('-');
        push_padded(out, u64::from(self.day), 2);
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(10);
        self.write(&mut s);
        f.write_str(&s)
    }
}

/// Appends `value` in decimal, left-padded with zeros to `width` digits (without `fmt`, which
/// is measurably slow on the per-row path).
pub(crate) fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(value);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// Appends `.ffffff` truncated to `digits` fractional digits (nothing when `digits` is 0).
pub(crate) fn write_fraction(out: &mut String, micros: u32, digits: u8) {
    if digits == 0 {
        return;
    }
    let digits = digits.min(6) as u32;
    out.push('.');
    push_padded(
        out,
        u64::from(micros / 10u32.pow(6 - digits)),
        digits as usize,
    );
}

impl DateTime {
    /// `YYYY-MM-DD<sep>HH:MM:SS[.f]` with `digits` fractional digits.
    pub fn write(&self, out: &mut String, sep: char, digits: u8) {
        self.date.write(out);
        out.push(sep);
        push_padded(out, u64::from(self.hour), 2);
        out.push(':');
        push_padded(out, u64::from(self.minute), 2);
        out.push(':');
        push_padded(out, u64::from(self.second), 2);
        write_fraction(out, self.micros, digits);
    }
}

/// Converts microseconds since the epoch into a UTC calendar time.
pub fn timestamp_to_datetime(micros: i64) -> DateTime {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    DateTime {
        date: Date {
            year: year as u16,
            month,
            day,
        },
        hour: (rem / 3600) as u8,
        minute: (rem % 3600 / 60) as u8,
        second: (rem % 60) as u8,
        micros: frac,
    }
}

/// Converts a UTC calendar time into microseconds since the epoch (the inverse of
/// [`timestamp_to_datetime`]).
pub fn datetime_to_timestamp(dt: &DateTime) -> i64 {
    let (y, m, d) = (
        i64::from(dt.date.year),
        i64::from(dt.date.month),
        i64::from(dt.date.day),
    );
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400
        + i64::from(dt.hour) * 3600
        + i64::from(dt.minute) * 60
        + i64::from(dt.second);
    secs * 1_000_000 + i64::from(dt.micros)
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes a TIME value as `[-]HHH:MM:SS[.f]`.
pub fn write_time(out: &mut String, micros: i64, digits: u8) {
    if micros < 0 {
        out.push('-');
    }
    let abs = micros.unsigned_abs();
    let secs = abs / 1_000_000;
    push_padded(out, secs / 3600, 2);
    out.push(':');
    push_padded(out, secs % 3600 / 60, 2);
    out.push(':');
    push_padded(out, secs % 60, 2);
    write_fraction(out, (abs % 1_000_000) as u32, digits);
}

/// Writes a BIT value as a string of `width` binary digits.
pub fn write_bits(out: &mut String, bits: u64, width: u32) {
    for i in (0..width.max(1)).rev() {
        out.push(if bits >> i & 1 == 1 { '1' } else { '0' });
    }
}

/// Renders MariaDB UUID/INET4/INET6 bytes as their usual text.
pub fn write_special_binary(out: &mut String, kind: ColumnType, bytes: &[u8]) -> bool {
    match (kind, bytes.len()) {
        (ColumnType::Uuid, 16) => {
            for (i, b) in bytes.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push('-');
                }
                let _ = write!(out, "{b:02x}");
            }
            true
        }
        (ColumnType::Inet4, 4) => {
            let _ = write!(
                out,
                "{}",
                std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
            );
            true
        }
        (ColumnType::Inet6, 16) => {
            let octets: [u8; 16] = bytes.try_into().expect("length checked");
            let _ = write!(out, "{}", std::net::Ipv6Addr::from(octets));
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_the_definition_only() {
        let table = |width: u32, nullable: bool| TableSchema {
            schema: "shop".into(),
            table: "orders".into(),
            columns: vec![
                Column {
                    nullable: false,
                    ..Column::unnamed(0, ColumnType::BigInt)
                },
                Column {
                    name: "note".into(),
                    width,
                    nullable,
                    collation: 255,
                    ..Column::unnamed(1, ColumnType::VarChar)
                },
            ],
            primary_key: vec![0],
        };
        let fingerprint = table(40, true).fingerprint();
        assert_eq!(fingerprint.len(), 16);
        assert_eq!(fingerprint, table(40, true).fingerprint());
        assert_ne!(fingerprint, table(80, true).fingerprint());
        assert_ne!(fingerprint, table(40, false).fingerprint());
        let mut no_key = table(40, true);
        no_key.primary_key.clear();
        assert_ne!(fingerprint, no_key.fingerprint());
    }

    #[test]
    fn timestamps_convert_to_utc_calendar_times() {
        let mut s = String::new();
        timestamp_to_datetime(1_795_593_644_717_257).write(&mut s, 'T', 6);
        assert_eq!(s, "2026-11-25T08:00:44.717257");
        s.clear();
        timestamp_to_datetime(-1).write(&mut s, ' ', 6);
        assert_eq!(s, "1969-12-31 23:59:59.999999");
        s.clear();
        timestamp_to_datetime(951_782_400_000_000).write(&mut s, ' ', 0);
        assert_eq!(s, "2000-02-29 00:00:00");
    }

    #[test]
    fn negative_and_long_times_keep_sign_and_hours() {
        let mut s = String::new();
        write_time(&mut s, -(838 * 3600 + 59 * 60 + 59) * 1_000_000, 0);
        assert_eq!(s, "-838:59:59");
        s.clear();
        write_time(&mut s, -1, 6);
        assert_eq!(s, "-00:00:00.000001");
        s.clear();
        write_time(&mut s, 25 * 3_600_000_000 + 500_000, 3);
        assert_eq!(s, "25:00:00.500");
    }

    #[test]
    fn bits_render_at_their_width() {
        let mut s = String::new();
        write_bits(&mut s, 5, 13);
        assert_eq!(s, "0000000000101");
    }
}
