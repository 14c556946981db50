//! Compares one value decoded by our reader with the value mysqlbinlog printed for it.
//!
//! The comparison is driven by the type mysqlbinlog printed (the binlog's own column type), and it
//! also checks that our [`Column`] agrees with it: the logical type, nullability, DECIMAL precision
//! and scale, BIT width and fractional digits. How mysqlbinlog prints each type (MySQL 9.7.4
//! `log_event_print_value`, confirmed on the fixtures):
//!
//! | printed type | printed value | our value |
//! |---|---|---|
//! | TINYINT SHORTINT MEDIUMINT INT LONGINT | signed, and when negative also unsigned: `-1 (255)` | `Int` / `UInt` |
//! | DECIMAL(p,s) | `decimal2string`: `-12.50` | `Decimal`, same text |
//! | FLOAT | `%-20g` | `Float` |
//! | DOUBLE | `%.20g` (round-trips exactly) | `Double` |
//! | BIT(n) | `b'0101'`, n digits | `Bit` |
//! | DATE | `'2024:02:29'` (colons) | `Date` |
//! | DATETIME(n) | `'YYYY-MM-DD hh:mm:ss[.f]'` (legacy DATETIME: unquoted) | `DateTime` |
//! | TIMESTAMP(n) | seconds since the epoch `S[.f]` | `Timestamp` (µs) |
//! | TIME(n) | `'-838:59:59'`, `'12:00:00.5'` | `Time` (signed µs) |
//! | YEAR | `%04d` of 1900 + stored byte: 0 (`0000`) is printed as `1900` | `Year` |
//! | STRING(n) VARSTRING(n) *BLOB/*TEXT | the stored bytes, quoted | `String` / `Bytes` |
//! | ENUM | the 1-based index | `Enum` |
//! | SET(k bytes) | `b'…'` with 8k digits: the k bytes as stored (little-endian), each most significant bit first | `Set` |
//! | JSON | the document text, quoted; a top-level string unquoted | `Json` |
//! | JSON, partial update | `JSON_REPLACE(@2, '$.a', 1)` etc. | `Json` (the new document) when the before image holds the document, else `JsonDiff` (the diffs) |
//! | VECTOR(n) | `[1.00000e+00,…]` (`%.5e` per element) | `Bytes` (n little-endian f32) |
//! | GEOMETRY (mariadb-binlog only) | the stored bytes (SRID, WKB), quoted | `Geometry` |
//! | NULL | `NULL` with `is_null=1` | `Null` |

use std::fmt::Write as _;

use cdcd_binlog::max_bytes_per_char;
use cdcd_event::{Column, ColumnType, Value};

use super::json::{self, Json};
use super::{json_text, unquote, OracleValue};

/// Checks that `actual`, decoded for `column`, is the value mysqlbinlog printed as `expected`.
pub fn matches(expected: &OracleValue, column: &Column, actual: &Value) -> Result<(), String> {
    let comment = TypeComment::parse(&expected.type_comment)?;
    check_column(&comment, expected.unsigned, column)?;
    let literal = &expected.literal[..];
    if comment.is_null {
        if literal != b"NULL" {
            return Err(format!(
                "is_null=1 but mysqlbinlog printed {}",
                show_bytes(literal)
            ));
        }
        return match actual {
            Value::Null => Ok(()),
            other => Err(format!("expected NULL, got {}", show_value(other))),
        };
    }
    if matches!(actual, Value::Null | Value::Absent) {
        return Err(format!(
            "expected {}, got {}",
            show_bytes(literal),
            show_value(actual)
        ));
    }
    let text =
        || std::str::from_utf8(literal).map_err(|_| "printed value is not UTF-8".to_string());
    let result = match comment.printed {
        Printed::Int { bits } => check_int(text()?, bits, column, actual),
        Printed::Decimal { .. } => match actual {
            Value::Decimal(d) if d.as_bytes() == literal => Ok(()),
            _ => Err(mismatch(literal, actual)),
        },
        Printed::Float => match actual {
            Value::Float(f) if format_c_g(f64::from(*f), 6) == text()? => Ok(()),
            Value::Float(f) => Err(format!(
                "expected FLOAT {}, got {f:?} which prints as {}",
                text()?,
                format_c_g(f64::from(*f), 6)
            )),
            _ => Err(mismatch(literal, actual)),
        },
        Printed::Double => {
            let printed = parse_c_double(text()?)?;
            match actual {
                Value::Double(d)
                    if d.to_bits() == printed.to_bits() || (d.is_nan() && printed.is_nan()) =>
                {
                    Ok(())
                }
                _ => Err(mismatch(literal, actual)),
            }
        }
        Printed::Bit { bits } => {
            let printed = parse_bits(text()?, bits)?;
            match actual {
                Value::Bit(v) if *v == printed => Ok(()),
                _ => Err(mismatch(literal, actual)),
            }
        }
        Printed::Date => {
            let date = parse_date(&unquote_text(literal)?, ':')?;
            match actual {
                Value::Date(d) if *d == date => Ok(()),
                _ => Err(mismatch(literal, actual)),
            }
        }
        Printed::DateTime { digits } => {
            let printed = match digits {
                Some(_) => unquote_text(literal)?,
                None => text()?.to_string(),
            };
            let (date, time) = printed
                .split_once(' ')
                .ok_or_else(|| format!("bad DATETIME {printed}"))?;
            let date = parse_date(date, '-')?;
            let (negative, micros) = parse_time(time, digits)?;
            if negative || micros >= 86_400_000_000 {
                return Err(format!("bad DATETIME {printed}"));
            }
            let secs = micros / 1_000_000;
            let expected = cdcd_event::DateTime {
                date,
                hour: (secs / 3600) as u8,
                minute: (secs % 3600 / 60) as u8,
                second: (secs % 60) as u8,
                micros: (micros % 1_000_000) as u32,
            };
            match actual {
                Value::DateTime(dt) if *dt == expected => Ok(()),
                _ => Err(mismatch(literal, actual)),
            }
        }
        Printed::Timestamp { digits } => {
            let micros = parse_seconds(text()?, digits)?;
            match actual {
                Value::Timestamp(v) if *v == micros => Ok(()),
                _ => Err(mismatch(literal, actual)),
            }
        }
        Printed::Time { digits } => {
            let (negative, micros) = parse_time(&unquote_text(literal)?, digits)?;
            let micros = if negative { -micros } else { micros };
            match actual {
                Value::Time(v) if *v == micros => Ok(()),
                _ => Err(mismatch(literal, actual)),
            }
        }
        Printed::Year => {
            let printed: u16 = text()?
                .parse()
                .map_err(|_| format!("bad YEAR {}", text().unwrap_or_default()))?;
            // mysqlbinlog prints 1900 + the stored byte; the byte 0 is the year 0000.
            let year = if printed == 1900 { 0 } else { printed };
            match actual {
                Value::Year(y) if *y == year => Ok(()),
                _ => Err(mismatch(literal, actual)),
            }
        }
        Printed::String { length } => {
            check_string(&unquote(literal)?, Some(length), column, actual)
        }
        Printed::VarString { .. } | Printed::Blob => {
            check_string(&unquote(literal)?, None, column, actual)
        }
        Printed::Json => check_json(expected, actual),
        Printed::Enum => {
            let printed: u16 = text()?
                .parse()
                .map_err(|_| format!("bad ENUM index {}", text().unwrap_or_default()))?;
            match actual {
                Value::Enum(v) if *v == printed => Ok(()),
                _ => Err(mismatch(literal, actual)),
            }
        }
        Printed::Set { bytes } => {
            // The bytes as stored, little-endian, each printed most significant bit first.
            let stored = parse_bits(text()?, bytes * 8)?.to_be_bytes();
            let printed = stored[8 - bytes as usize..]
                .iter()
                .rev()
                .fold(0u64, |v, &b| v << 8 | u64::from(b));
            match actual {
                Value::Set(v) if *v == printed => Ok(()),
                _ => Err(mismatch(literal, actual)),
            }
        }
        Printed::Geometry => match actual {
            Value::Geometry(b) if *b == unquote(literal)? => Ok(()),
            _ => Err(mismatch_bytes(literal, actual)),
        },
        Printed::Vector { dimensions } => match actual {
            Value::Bytes(b) if b.len() == 4 * dimensions as usize => {
                let ours = format_vector(b);
                if ours == text()? {
                    Ok(())
                } else {
                    Err(format!(
                        "expected VECTOR {}, got bytes that print as {ours}",
                        text()?
                    ))
                }
            }
            _ => Err(mismatch(literal, actual)),
        },
    };
    result.map_err(|e| format!("{e} [column {}]", column_summary(column)))
}

/// The type comment `<type> meta=<m> nullable=<0|1> is_null=<0|1>`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TypeComment {
    printed: Printed,
    nullable: bool,
    is_null: bool,
}

/// The column type as mysqlbinlog names it in the comment.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Printed {
    Int {
        bits: u32,
    },
    Decimal {
        precision: u32,
        scale: u32,
    },
    Float,
    Double,
    Bit {
        bits: u32,
    },
    Date,
    /// `digits` is `None` for the pre-5.6 types, which print differently.
    DateTime {
        digits: Option<u8>,
    },
    Timestamp {
        digits: Option<u8>,
    },
    Time {
        digits: Option<u8>,
    },
    Year,
    /// CHAR and BINARY; `length` in bytes.
    String {
        length: u32,
    },
    VarString {
        length: u32,
    },
    /// The four BLOB/TEXT sizes.
    Blob,
    Json,
    Enum,
    Set {
        bytes: u32,
    },
    Vector {
        dimensions: u32,
    },
    /// Only MariaDB's mariadb-binlog prints spatial values: SRID and WKB, quoted.
    Geometry,
}

impl TypeComment {
    fn parse(comment: &str) -> Result<Self, String> {
        let bad = || format!("unrecognised type comment `{comment}`");
        let (ty, rest) = comment.split_once(" meta=").ok_or_else(bad)?;
        let mut nullable = None;
        let mut is_null = None;
        for field in rest.split(' ').skip(1) {
            match field.split_once('=') {
                Some(("nullable", v)) => nullable = Some(v == "1"),
                Some(("is_null", v)) => is_null = Some(v == "1"),
                _ => return Err(bad()),
            }
        }
        let ty = ty.strip_suffix(" UNSIGNED").unwrap_or(ty);
        let (name, args) = match ty.split_once('(') {
            Some((name, args)) => (name, Some(args.strip_suffix(')').ok_or_else(bad)?)),
            None => (ty, None),
        };
        let number = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
        let digits = |args: Option<&str>| -> Result<Option<u8>, String> {
            args.map(|a| number(a).map(|d| d as u8)).transpose()
        };
        let printed = match (name, args) {
            ("TINYINT", None) => Printed::Int { bits: 8 },
            ("SHORTINT", None) => Printed::Int { bits: 16 },
            ("MEDIUMINT", None) => Printed::Int { bits: 24 },
            ("INT", None) => Printed::Int { bits: 32 },
            ("LONGINT", None) => Printed::Int { bits: 64 },
            ("DECIMAL", Some(args)) => {
                let (p, s) = args.split_once(',').ok_or_else(bad)?;
                Printed::Decimal {
                    precision: number(p)?,
                    scale: number(s)?,
                }
            }
            ("FLOAT", None) => Printed::Float,
            ("DOUBLE", None) => Printed::Double,
            ("BIT", Some(n)) => Printed::Bit { bits: number(n)? },
            ("DATE", None) => Printed::Date,
            ("DATETIME", args) => Printed::DateTime {
                digits: digits(args)?,
            },
            ("TIMESTAMP", args) => Printed::Timestamp {
                digits: digits(args)?,
            },
            ("TIME", args) => Printed::Time {
                digits: digits(args)?,
            },
            ("YEAR", None) => Printed::Year,
            ("STRING", Some(n)) => Printed::String { length: number(n)? },
            ("VARSTRING", Some(n)) => Printed::VarString { length: number(n)? },
            (
                "TINYBLOB/TINYTEXT" | "BLOB/TEXT" | "MEDIUMBLOB/MEDIUMTEXT" | "LONGBLOB/LONGTEXT",
                None,
            ) => Printed::Blob,
            ("JSON", None) => Printed::Json,
            ("ENUM", Some(_)) => Printed::Enum,
            ("SET", Some(n)) => Printed::Set {
                bytes: number(n.trim_end_matches(" bytes"))?,
            },
            ("GEOMETRY", None) => Printed::Geometry,
            ("VECTOR", Some(n)) => Printed::Vector {
                dimensions: number(n)?,
            },
            _ => return Err(bad()),
        };
        Ok(TypeComment {
            printed,
            nullable: nullable.ok_or_else(bad)?,
            is_null: is_null.ok_or_else(bad)?,
        })
    }
}

/// Checks that our column metadata agrees with what the binlog says about the column (`unsigned`:
/// the signedness of the table's `# Columns(` list, where known).
fn check_column(
    comment: &TypeComment,
    unsigned: Option<bool>,
    column: &Column,
) -> Result<(), String> {
    use ColumnType as T;
    let kinds: &[ColumnType] = match comment.printed {
        Printed::Int { bits: 8 } => &[T::TinyInt],
        Printed::Int { bits: 16 } => &[T::SmallInt],
        Printed::Int { bits: 24 } => &[T::MediumInt],
        Printed::Int { bits: 32 } => &[T::Int],
        Printed::Int { .. } => &[T::BigInt],
        Printed::Decimal { .. } => &[T::Decimal],
        Printed::Float => &[T::Float],
        Printed::Double => &[T::Double],
        Printed::Bit { .. } => &[T::Bit],
        Printed::Date => &[T::Date],
        Printed::DateTime { .. } => &[T::DateTime],
        Printed::Timestamp { .. } => &[T::Timestamp],
        Printed::Time { .. } => &[T::Time],
        Printed::Year => &[T::Year],
        Printed::String { .. } => &[T::Char, T::Binary],
        Printed::VarString { .. } => &[T::VarChar, T::VarBinary],
        Printed::Blob => &[T::Text, T::Blob],
        Printed::Json => &[T::Json],
        Printed::Enum => &[T::Enum],
        Printed::Set { .. } => &[T::Set],
        Printed::Vector { .. } => &[T::Vector],
        Printed::Geometry => &[T::Geometry],
    };
    let mut problems = Vec::new();
    if !kinds.contains(&column.kind) {
        problems.push(format!(
            "column type {:?}, but mysqlbinlog printed {:?}",
            column.kind, comment.printed
        ));
    }
    let numeric = matches!(
        comment.printed,
        Printed::Int { .. } | Printed::Decimal { .. } | Printed::Float | Printed::Double
    );
    match unsigned {
        Some(unsigned) if numeric && column.unsigned != unsigned => problems.push(format!(
            "column unsigned={}, but the table's `# Columns(` says unsigned={unsigned}",
            column.unsigned
        )),
        _ => {}
    }
    if column.nullable != comment.nullable {
        problems.push(format!(
            "column nullable={}, but mysqlbinlog printed nullable={}",
            column.nullable, comment.nullable
        ));
    }
    let digits = match comment.printed {
        Printed::DateTime { digits } | Printed::Timestamp { digits } | Printed::Time { digits } => {
            digits
        }
        _ => None,
    };
    if let Some(digits) = digits {
        if column.scale != digits {
            problems.push(format!(
                "column has {} fractional digits, but mysqlbinlog printed {digits}",
                column.scale
            ));
        }
    }
    match comment.printed {
        Printed::Decimal { precision, scale }
            if (column.width, u32::from(column.scale)) != (precision, scale) =>
        {
            problems.push(format!(
                "column is DECIMAL({},{}), but mysqlbinlog printed DECIMAL({precision},{scale})",
                column.width, column.scale
            ));
        }
        Printed::Bit { bits } if column.width != bits => problems.push(format!(
            "column is BIT({}), but mysqlbinlog printed BIT({bits})",
            column.width
        )),
        // CHAR/BINARY(N) and VARCHAR/VARBINARY(N): the binlog gives the length in bytes, the
        // column in characters of its character set (bytes for BINARY/VARBINARY).
        Printed::String { length } | Printed::VarString { length }
            if column.width * bytes_per_char(column) != length =>
        {
            problems.push(format!(
                "column width is {} characters of up to {} bytes, but the binlog says the column \
                 holds {length} bytes",
                column.width,
                bytes_per_char(column)
            ))
        }
        _ => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} [column {}]",
            problems.join("; "),
            column_summary(column)
        ))
    }
}

/// An integer printed as `S` or `S (U)` (S signed, U its unsigned reading when S is negative).
///
/// Our value is `Int` holding S for signed columns, `Int` or `UInt` holding U for columns known to
/// be unsigned. Without optional metadata (5.x) signedness is unknown: the column is not marked
/// unsigned and the value must be S.
fn check_int(printed: &str, bits: u32, column: &Column, actual: &Value) -> Result<(), String> {
    let bad = || format!("bad integer `{printed}`");
    let (signed, unsigned) = match printed.split_once(" (") {
        Some((s, u)) => {
            let u = u.strip_suffix(')').ok_or_else(bad)?;
            let s: i128 = s.parse().map_err(|_| bad())?;
            let u: i128 = u.parse().map_err(|_| bad())?;
            if s >= 0 || u != s + (1i128 << bits) {
                return Err(bad());
            }
            (s, u)
        }
        None => {
            let s: i128 = printed.parse().map_err(|_| bad())?;
            if s < 0 {
                return Err(format!(
                    "negative integer `{printed}` without its unsigned reading"
                ));
            }
            (s, s)
        }
    };
    if signed < -(1i128 << (bits - 1)) || unsigned >= (1i128 << bits) {
        return Err(format!("`{printed}` does not fit {bits} bits"));
    }
    let expected = if column.unsigned { unsigned } else { signed };
    match *actual {
        Value::Int(v) if i128::from(v) == expected => Ok(()),
        Value::UInt(v) if column.unsigned && i128::from(v) == unsigned => Ok(()),
        Value::UInt(_) if !column.unsigned => Err(format!(
            "expected {printed}, got {} for a column that is not unsigned",
            show_value(actual)
        )),
        _ => Err(format!(
            "expected {expected} ({}-bit {}, printed `{printed}`), got {}",
            bits,
            if column.unsigned {
                "unsigned"
            } else {
                "signed"
            },
            show_value(actual)
        )),
    }
}

/// Whether a collation's character set is latin1 (MySQL's latin1 is windows-1252).
fn is_latin1(collation: u16) -> bool {
    matches!(collation, 5 | 8 | 15 | 31 | 47 | 48 | 49 | 94)
}

/// Whether a collation's character set is utf8mb3 or utf8mb4 (or ascii, a subset).
fn is_utf8(collation: u16) -> bool {
    matches!(collation, 11 | 65 | 33 | 45 | 46 | 76 | 83 | 192..=215 | 223..=247 | 255..=323)
}

/// `printed` are the bytes stored in the row. `binary_length` is N for CHAR/BINARY(N) columns
/// (printed `STRING(N)`, N in bytes).
fn check_string(
    printed: &[u8],
    binary_length: Option<u32>,
    column: &Column,
    actual: &Value,
) -> Result<(), String> {
    let binary_column = column.collation == 63 || !column.kind.is_text();
    match actual {
        Value::String(s) => {
            if binary_column {
                return Err(format!(
                    "binary column decoded as text {}",
                    show_value(actual)
                ));
            }
            let ours: Vec<u8> = if is_latin1(column.collation) {
                let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(s);
                if unmappable {
                    return Err(format!(
                        "latin1 column holds characters outside latin1: {}",
                        show_value(actual)
                    ));
                }
                bytes.into_owned()
            } else if is_utf8(column.collation) || column.collation == 0 {
                // Collation 0: no charset metadata (5.x); the bytes must then be valid UTF-8 text.
                s.as_bytes().to_vec()
            } else {
                return Err(format!(
                    "the comparison does not know the charset of collation {}",
                    column.collation
                ));
            };
            if ours == printed {
                Ok(())
            } else {
                Err(format!(
                    "expected {}, got {} (bytes {})",
                    show_bytes(printed),
                    show_value(actual),
                    show_bytes(&ours)
                ))
            }
        }
        Value::Bytes(b) if column.kind == ColumnType::Binary => {
            // BINARY(N): the binlog stores the value without its trailing zero bytes and we pad
            // it back to N.
            let n = binary_length.ok_or("BINARY column not printed as STRING(N)")? as usize;
            let padding_ok = b.len() == n
                && b.starts_with(printed)
                && b[printed.len()..].iter().all(|&x| x == 0);
            if padding_ok {
                Ok(())
            } else {
                Err(format!(
                    "expected {} padded with zero bytes to {n} bytes, got {}",
                    show_bytes(printed),
                    show_value(actual)
                ))
            }
        }
        Value::Bytes(b) => {
            if !binary_column {
                // Text columns fall back to bytes only when the bytes are not valid text.
                let valid_text = if is_latin1(column.collation) {
                    true
                } else {
                    std::str::from_utf8(printed).is_ok()
                };
                if valid_text {
                    return Err(format!(
                        "text column (collation {}) decoded as bytes although they are valid \
                         text: {}",
                        column.collation,
                        show_value(actual)
                    ));
                }
            }
            if b == printed {
                Ok(())
            } else {
                Err(mismatch_bytes(printed, actual))
            }
        }
        _ => Err(mismatch_bytes(printed, actual)),
    }
}

/// Compares our JSON value with the printed one.
///
/// A whole document must come back as [`Value::Json`]. A partial update (the printed
/// `JSON_REPLACE(@2, …)` form) must come back as the whole document after the update when the
/// before image holds the document it applies to, and as [`Value::JsonDiff`] with the same diffs
/// when it does not (then the new document is not in the binlog).
fn check_json(expected: &OracleValue, actual: &Value) -> Result<(), String> {
    if let (Some(diffs), None) = (&expected.json_diffs, &expected.json_document) {
        return match actual {
            Value::JsonDiff(ours) => check_json_diff(diffs, ours).map_err(|e| {
                format!(
                    "{e}\n      expected {}\n      got      {}",
                    show_bytes(&expected.literal),
                    truncate(ours, 300)
                )
            }),
            _ => Err(format!(
                "the before image does not hold the document, so only the diff {} is known, \
                 but we got {}",
                show_bytes(&expected.literal),
                show_value(actual)
            )),
        };
    }
    let Value::Json(ours) = actual else {
        return Err(format!(
            "expected the JSON document {}{}, got {}",
            match &expected.json_document {
                Some(document) => truncate(document, 300).into_owned(),
                None => show_bytes(&expected.literal),
            },
            if expected.json_document.is_some() {
                " (a partial update whose before image holds the document)"
            } else {
                ""
            },
            show_value(actual)
        ));
    };
    let ours_doc =
        json::parse(ours).map_err(|e| format!("our JSON does not parse: {e}: {ours}"))?;
    let printed = json_text(expected)?;
    if expected.json_document.is_none() {
        // A document that is only a string (or date, time, opaque value) is printed unquoted.
        if let Json::String(s) = &ours_doc {
            return if *s == printed {
                Ok(())
            } else {
                Err(format!("expected JSON scalar {printed:?}, got {ours}"))
            };
        }
    }
    let printed_doc = json::parse(&printed).map_err(|e| format!("printed JSON: {e}"))?;
    json_equal("$", &printed_doc, &ours_doc).map_err(|e| {
        format!(
            "{e}\n      expected {}\n      got      {}",
            truncate(&printed, 300),
            truncate(ours, 300)
        )
    })
}

/// Compares our JSON diff, `[{"op":"replace","path":"$.a","value":1},…]`, with the printed diffs
/// one by one: the operation, the path text exactly, the value semantically.
fn check_json_diff(expected: &[json::Diff], ours: &str) -> Result<(), String> {
    let parsed = json::parse(ours).map_err(|e| format!("our JSON diff does not parse: {e}"))?;
    let Json::Array(ops) = parsed else {
        return Err("our JSON diff is not an array".into());
    };
    if ops.len() != expected.len() {
        return Err(format!(
            "expected {} diff(s), our JSON diff has {}",
            expected.len(),
            ops.len()
        ));
    }
    for (i, (diff, op)) in expected.iter().zip(&ops).enumerate() {
        let Json::Object(members) = op else {
            return Err(format!("diff {i}: not an object"));
        };
        let member = |name: &str| members.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let mut names: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        let wanted: &[&str] = if diff.value.is_some() {
            &["op", "path", "value"]
        } else {
            &["op", "path"]
        };
        if names != wanted {
            return Err(format!(
                "diff {i}: expected the members {wanted:?}, ours has {names:?}"
            ));
        }
        let operation = diff.function.operation();
        if member("op") != Some(&Json::String(operation.into())) {
            return Err(format!(
                "diff {i}: expected op \"{operation}\" ({:?}), ours is {}",
                diff.function,
                member("op").map_or_else(String::new, Json::to_mysql_text)
            ));
        }
        if member("path") != Some(&Json::String(diff.path.clone())) {
            return Err(format!(
                "diff {i}: expected path {:?}, ours is {}",
                diff.path,
                member("path").map_or_else(String::new, Json::to_mysql_text)
            ));
        }
        if let (Some(value), Some(ours)) = (&diff.value, member("value")) {
            json_equal(&format!("diff {i} value"), value, ours)?;
        }
    }
    Ok(())
}

/// Semantic equality: objects compare as sets of members, numbers by value and by kind (integer
/// vs. fraction/exponent), everything else exactly.
pub fn json_equal(path: &str, expected: &Json, actual: &Json) -> Result<(), String> {
    match (expected, actual) {
        (Json::Number(e), Json::Number(a)) => {
            if number_key(e) == number_key(a) {
                Ok(())
            } else {
                Err(format!("{path}: expected number {e}, got {a}"))
            }
        }
        (Json::Array(e), Json::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{path}: expected an array of {} elements, got {}",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                json_equal(&format!("{path}[{i}]"), e, a)?;
            }
            Ok(())
        }
        (Json::Object(e), Json::Object(a)) => {
            fn keys(members: &[(String, Json)]) -> Vec<&str> {
                let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
                keys.sort_unstable();
                keys
            }
            let (ek, ak) = (keys(e), keys(a));
            if ek != ak {
                return Err(format!("{path}: expected members {ek:?}, got {ak:?}"));
            }
            if ak.windows(2).any(|w| w[0] == w[1]) {
                return Err(format!("{path}: duplicate members in {ak:?}"));
            }
            for (key, e) in e {
                let a = &a.iter().find(|(k, _)| k == key).expect("same keys").1;
                json_equal(&format!("{path}.{key}"), e, a)?;
            }
            Ok(())
        }
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!(
            "{path}: expected {}, got {}",
            e.to_mysql_text(),
            a.to_mysql_text()
        )),
    }
}

/// A JSON number reduced to (integer-looking, negative, significant digits, exponent), so that
/// `1.50` and `15e-1` compare equal but the integer `3` and the double `3.0` do not.
fn number_key(text: &str) -> (bool, bool, String, i64) {
    let integer = !text.contains(['.', 'e', 'E']);
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let negative = mantissa.starts_with('-');
    let mantissa = mantissa.trim_start_matches('-');
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{int}{frac}").trim_start_matches('0').to_string();
    let mut exponent = exponent - frac.len() as i64;
    while digits.ends_with('0') {
        digits.pop();
        exponent += 1;
    }
    if digits.is_empty() {
        return (integer, false, digits, 0);
    }
    (integer, negative, digits, exponent)
}

/// C's `printf("%.{precision}g", v)`.
pub fn format_c_g(v: f64, precision: usize) -> String {
    if v.is_nan() {
        return if v.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf" } else { "inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let precision = precision.max(1);
    let scientific = format!("{:.*e}", precision - 1, v);
    let (mantissa, exponent) = scientific.split_once('e').expect("`e` format");
    let exponent: i32 = exponent.parse().expect("exponent");
    let strip = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exponent < -4 || exponent >= precision as i32 {
        format!("{}{}", strip(mantissa), c_exponent(exponent))
    } else {
        let decimals = (precision as i32 - 1 - exponent) as usize;
        strip(&format!("{v:.decimals$}"))
    }
}

/// C's `printf("%.{precision}e", v)`.
fn format_c_e(v: f64, precision: usize) -> String {
    if !v.is_finite() {
        return format_c_g(v, precision);
    }
    let scientific = format!("{v:.precision$e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("`e` format");
    format!(
        "{mantissa}{}",
        c_exponent(exponent.parse().expect("exponent"))
    )
}

/// `e+05`, `e-308`: sign and at least two digits, as C prints exponents.
fn c_exponent(exponent: i32) -> String {
    format!(
        "e{}{:02}",
        if exponent < 0 { '-' } else { '+' },
        exponent.unsigned_abs()
    )
}

/// How mysqlbinlog prints a VECTOR: `[1.00000e+00,2.50000e+00]`.
fn format_vector(bytes: &[u8]) -> String {
    let mut out = String::from("[");
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = f32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        out.push_str(&format_c_e(f64::from(v), 5));
    }
    out.push(']');
    out
}

/// A double printed by C (`%.20g`), including `inf` and `nan`.
fn parse_c_double(text: &str) -> Result<f64, String> {
    match text {
        "nan" | "-nan" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("bad DOUBLE `{text}`")),
    }
}

/// `b'0101'` with exactly `bits` digits.
fn parse_bits(text: &str, bits: u32) -> Result<u64, String> {
    let digits = text
        .strip_prefix("b'")
        .and_then(|t| t.strip_suffix('\''))
        .ok_or_else(|| format!("bad bit string `{text}`"))?;
    if digits.len() != bits as usize || bits > 64 {
        return Err(format!("bit string `{text}` does not have {bits} digits"));
    }
    u64::from_str_radix(digits, 2).map_err(|_| format!("bad bit string `{text}`"))
}

fn unquote_text(literal: &[u8]) -> Result<String, String> {
    String::from_utf8(unquote(literal)?).map_err(|_| "printed value is not UTF-8".to_string())
}

/// `YYYY<sep>MM<sep>DD`.
fn parse_date(text: &str, separator: char) -> Result<cdcd_event::Date, String> {
    let bad = || format!("bad date `{text}`");
    let mut parts = text.split(separator);
    let mut part = |len: usize| -> Result<u32, String> {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != len {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let date = cdcd_event::Date {
        year: part(4)? as u16,
        month: part(2)? as u8,
        day: part(2)? as u8,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(date)
}

/// `[-]H+:MM:SS[.f]` → (negative, microseconds). `digits` is the number of fractional digits the
/// type prints (`None`: none, pre-5.6 types).
fn parse_time(text: &str, digits: Option<u8>) -> Result<(bool, i64), String> {
    let bad = || format!("bad time `{text}`");
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (hms, fraction) = split_fraction(rest, digits).ok_or_else(bad)?;
    let mut parts = hms.split(':');
    let mut part = || -> Result<i64, String> {
        parts
            .next()
            .filter(|p| p.len() >= 2)
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)
    };
    let (h, m, s) = (part()?, part()?, part()?);
    if parts.next().is_some() || m > 59 || s > 59 {
        return Err(bad());
    }
    Ok((negative, (h * 3600 + m * 60 + s) * 1_000_000 + fraction))
}

/// `S[.f]` seconds → microseconds.
fn parse_seconds(text: &str, digits: Option<u8>) -> Result<i64, String> {
    let bad = || format!("bad timestamp `{text}`");
    let (seconds, fraction) = split_fraction(text, digits).ok_or_else(bad)?;
    let seconds: i64 = seconds.parse().map_err(|_| bad())?;
    Ok(seconds * 1_000_000 + fraction)
}

/// Splits `X.fff` into X and the fraction in microseconds; the fraction must have exactly the
/// type's number of digits (none when the type has 0 or is a pre-5.6 type).
fn split_fraction(text: &str, digits: Option<u8>) -> Option<(&str, i64)> {
    let digits = usize::from(digits.unwrap_or(0));
    match text.split_once('.') {
        None if digits == 0 => Some((text, 0)),
        Some((whole, fraction))
            if digits > 0
                && digits <= 6
                && fraction.len() == digits
                && fraction.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let micros: i64 = fraction.parse().ok()?;
            Some((whole, micros * 10i64.pow(6 - digits as u32)))
        }
        _ => None,
    }
}

fn mismatch(printed: &[u8], actual: &Value) -> String {
    format!(
        "expected {}, got {}",
        show_bytes(printed),
        show_value(actual)
    )
}

fn mismatch_bytes(printed: &[u8], actual: &Value) -> String {
    format!(
        "expected bytes {}, got {}",
        show_bytes(printed),
        show_value(actual)
    )
}

/// Bytes for a message: printable ASCII as is, the rest escaped, long values shortened.
pub fn show_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    let _ = write!(out, "\"{}\"", bytes.escape_ascii());
    truncate(&out, 300).to_string()
}

/// A value for a message, long values shortened.
pub fn show_value(value: &Value) -> String {
    match value {
        Value::Bytes(b) => format!("Bytes({})", show_bytes(b)),
        Value::Geometry(b) => format!("Geometry({})", show_bytes(b)),
        other => truncate(&format!("{other:?}"), 300).to_string(),
    }
}

fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len()).into()
}

/// `name kind unsigned nullable width scale collation` for messages.
pub fn column_summary(column: &Column) -> String {
    format!(
        "{} {:?}{} width={} scale={} collation={}{}",
        column.name,
        column.kind,
        if column.unsigned { " unsigned" } else { "" },
        column.width,
        column.scale,
        column.collation,
        if column.nullable { " nullable" } else { "" }
    )
}

fn bytes_per_char(column: &Column) -> u32 {
    match column.kind {
        ColumnType::Char | ColumnType::VarChar => max_bytes_per_char(column.collation).unwrap_or(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(kind: ColumnType) -> Column {
        Column {
            name: "c".into(),
            ..Column::unnamed(0, kind)
        }
    }

    fn value(literal: &[u8], comment: &str) -> OracleValue {
        OracleValue {
            literal: literal.to_vec(),
            type_comment: comment.to_string(),
            json_diffs: None,
            json_document: None,
            unsigned: None,
        }
    }

    fn comment(ty: &str) -> String {
        format!("{ty} meta=0 nullable=1 is_null=0")
    }

    #[test]
    fn integers_accept_only_the_reading_that_fits_the_signedness() {
        let printed = value(b"-1 (255)", &comment("TINYINT"));
        let signed = column(ColumnType::TinyInt);
        let unsigned = Column {
            unsigned: true,
            ..signed.clone()
        };
        assert!(matches(&printed, &signed, &Value::Int(-1)).is_ok());
        assert!(matches(&printed, &signed, &Value::Int(255)).is_err());
        assert!(matches(&printed, &signed, &Value::UInt(255)).is_err());
        assert!(matches(&printed, &unsigned, &Value::UInt(255)).is_ok());
        assert!(matches(&printed, &unsigned, &Value::Int(255)).is_ok());
        assert!(matches(&printed, &unsigned, &Value::Int(-1)).is_err());
        assert!(matches(&printed, &unsigned, &Value::UInt(u64::MAX)).is_err());

        let big = value(b"-1 (18446744073709551615)", &comment("LONGINT"));
        let bigint = Column {
            unsigned: true,
            ..column(ColumnType::BigInt)
        };
        assert!(matches(&big, &bigint, &Value::UInt(u64::MAX)).is_ok());
        assert!(matches(&big, &bigint, &Value::Int(-1)).is_err());
        // The unsigned reading must belong to the printed width.
        let wrong = value(b"-1 (65535)", &comment("TINYINT"));
        assert!(matches(&wrong, &unsigned, &Value::UInt(65535)).is_err());
    }

    #[test]
    fn floats_print_like_c() {
        for (v, g) in [
            (3.5f32, "3.5"),
            (1.0e10, "1e+10"),
            (-1.175_494_4e-38, "-1.17549e-38"),
            (123_456.7, "123457"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (3.4028235e38, "3.40282e+38"),
            (f32::NAN, "nan"),
            (-0.0, "-0"),
        ] {
            assert_eq!(format_c_g(f64::from(v), 6), g, "{v}");
        }
        assert_eq!(
            format_vector(&[1.0f32, 2.5, -3.0].map(f32::to_le_bytes).concat()),
            "[1.00000e+00,2.50000e+00,-3.00000e+00]"
        );
    }

    #[test]
    fn temporal_values() {
        let dt = Column {
            scale: 3,
            ..column(ColumnType::DateTime)
        };
        let printed = value(b"'2024-01-02 03:04:05.678'", &comment("DATETIME(3)"));
        let expected = cdcd_event::DateTime {
            date: cdcd_event::Date {
                year: 2024,
                month: 1,
                day: 2,
            },
            hour: 3,
            minute: 4,
            second: 5,
            micros: 678_000,
        };
        assert!(matches(&printed, &dt, &Value::DateTime(expected)).is_ok());
        let off = cdcd_event::DateTime {
            micros: 678_001,
            ..expected
        };
        assert!(matches(&printed, &dt, &Value::DateTime(off)).is_err());

        let time = Column {
            scale: 6,
            ..column(ColumnType::Time)
        };
        let printed = value(b"'-00:00:00.000001'", &comment("TIME(6)"));
        assert!(matches(&printed, &time, &Value::Time(-1)).is_ok());
        let printed = value(b"'838:59:58.999999'", &comment("TIME(6)"));
        assert!(matches(&printed, &time, &Value::Time(3_020_398_999_999)).is_ok());

        let ts = Column {
            scale: 6,
            ..column(ColumnType::Timestamp)
        };
        let printed = value(b"2147483647.999999", &comment("TIMESTAMP(6)"));
        assert!(matches(&printed, &ts, &Value::Timestamp(2_147_483_647_999_999)).is_ok());

        let year = column(ColumnType::Year);
        assert!(matches(&value(b"1900", &comment("YEAR")), &year, &Value::Year(0)).is_ok());
        assert!(matches(&value(b"2155", &comment("YEAR")), &year, &Value::Year(2155)).is_ok());

        let date = column(ColumnType::Date);
        let zero = cdcd_event::Date {
            year: 0,
            month: 0,
            day: 0,
        };
        assert!(matches(
            &value(b"'0000:00:00'", &comment("DATE")),
            &date,
            &Value::Date(zero)
        )
        .is_ok());
    }

    #[test]
    fn strings_compare_in_the_column_charset() {
        let latin1 = Column {
            collation: 8,
            width: 10,
            ..column(ColumnType::Char)
        };
        let printed = value(b"'caf\xe9'", &comment("STRING(10)"));
        assert!(matches(&printed, &latin1, &Value::String("café".into())).is_ok());
        assert!(matches(&printed, &latin1, &Value::Bytes(b"caf\xe9".to_vec())).is_err());

        // VARCHAR(10) in utf8mb4: 10 characters, 40 bytes in the binlog.
        let utf8 = Column {
            collation: 255,
            width: 10,
            ..column(ColumnType::VarChar)
        };
        let printed = value("'h\u{e9}llo\\n'".as_bytes(), &comment("VARSTRING(40)"));
        assert!(matches(&printed, &utf8, &Value::String("héllo\n".into())).is_ok());
        // Invalid UTF-8 in a utf8mb4 column may only come back as bytes.
        let invalid = value(b"'\xff'", &comment("VARSTRING(40)"));
        assert!(matches(&invalid, &utf8, &Value::Bytes(vec![0xff])).is_ok());

        let binary = Column {
            collation: 63,
            width: 4,
            ..column(ColumnType::Binary)
        };
        let printed = value(b"'a\\x00'", &comment("STRING(4)"));
        assert!(matches(&printed, &binary, &Value::Bytes(b"a\0\0\0".to_vec())).is_ok());
        assert!(matches(&printed, &binary, &Value::Bytes(b"a\0".to_vec())).is_err());
        assert!(matches(&printed, &binary, &Value::Bytes(b"a\0\0\x01".to_vec())).is_err());
    }

    #[test]
    fn json_compares_semantically() {
        let json = column(ColumnType::Json);
        let printed = value(
            br#"'{"a": 1, "b": [1.5, "x\\\\y"], "j": 18446744073709551615}'"#,
            &comment("JSON"),
        );
        let same = r#"{"j":18446744073709551615,"b":[15e-1,"x\\y"],"a":1}"#;
        assert!(matches(&printed, &json, &Value::Json(same.into())).is_ok());
        for different in [
            r#"{"j":18446744073709551614,"b":[1.5,"x\\y"],"a":1}"#,
            r#"{"j":18446744073709551615,"b":[1.5,"x\\y"],"a":1.0}"#,
            r#"{"j":18446744073709551615,"b":[1.5,"x\\y"]}"#,
            r#"{"j":18446744073709551615,"b":["x\\y",1.5],"a":1}"#,
        ] {
            assert!(
                matches(&printed, &json, &Value::Json(different.into())).is_err(),
                "{different}"
            );
        }
        // A document that is a string is printed without JSON quotes.
        let scalar = value(b"'abc'", &comment("JSON"));
        assert!(matches(&scalar, &json, &Value::Json(r#""abc""#.into())).is_ok());
    }

    #[test]
    fn partial_json_updates_compare_as_diffs_or_documents() {
        let json = column(ColumnType::Json);
        let printed = "JSON_INSERT(\nJSON_REPLACE(@2, '$.n', 42,\n'$.t[1]', 'x'),\n'$.o', CAST('{\"a\": 1.50}' AS JSON))";
        let partial = |document: Option<&str>| OracleValue {
            literal: printed.as_bytes().to_vec(),
            type_comment: comment("JSON"),
            json_diffs: Some(json::parse_diff(printed, 1).unwrap()),
            json_document: document.map(str::to_string),
            unsigned: None,
        };
        let diff = |text: &str| Value::JsonDiff(text.to_string());
        let without_document = partial(None);
        let ours = r#"[{"op":"replace","path":"$.n","value":42},{"op":"replace","path":"$.t[1]","value":"x"},{"op":"insert","path":"$.o","value":{"a":15e-1}}]"#;
        assert!(matches(&without_document, &json, &diff(ours)).is_ok());
        for wrong in [
            ours.replace(r#""op":"insert""#, r#""op":"replace""#),
            ours.replace("$.t[1]", "$.t[2]"),
            ours.replace("42", "42.0"),
            ours.replace(r#","value":"x""#, ""),
            ours.replace(r#"{"op":"replace","path":"$.n","value":42},"#, ""),
            ours.replace(r#""value":42"#, r#""value":42,"extra":1"#),
        ] {
            assert!(
                matches(&without_document, &json, &diff(&wrong)).is_err(),
                "{wrong}"
            );
        }
        assert!(matches(&without_document, &json, &Value::Json("{}".into())).is_err());

        // With the document in the before image, only the whole new document is right.
        let document = r#"{"n": 42, "o": {"a": 1.50}}"#;
        let with_document = partial(Some(document));
        assert!(matches(&with_document, &json, &Value::Json(document.into())).is_ok());
        assert!(matches(&with_document, &json, &diff(ours)).is_err());
        // A whole printed document never matches a diff.
        let whole = value(b"'{\"n\": 42}'", &comment("JSON"));
        assert!(matches(&whole, &json, &diff(ours)).is_err());
    }

    #[test]
    fn sets_print_their_bytes_as_stored() {
        let set = column(ColumnType::Set);
        // 's01,s09,s12' of a 12-member SET: bits 0, 8 and 11, stored as the bytes 01 09.
        let printed = value(b"b'0000000100001001'", &comment("SET(2 bytes)"));
        assert!(matches(&printed, &set, &Value::Set(0b1001_0000_0001)).is_ok());
        assert!(matches(&printed, &set, &Value::Set(0b1_0000_1001)).is_err());
    }

    #[test]
    fn signedness_must_agree_with_the_column_list() {
        let int = Column {
            unsigned: true,
            ..column(ColumnType::TinyInt)
        };
        let mut printed = value(b"-1 (255)", &comment("TINYINT"));
        printed.unsigned = Some(true);
        assert!(matches(&printed, &int, &Value::UInt(255)).is_ok());
        printed.unsigned = Some(false);
        assert!(matches(&printed, &int, &Value::UInt(255)).is_err());
    }

    #[test]
    fn column_metadata_must_agree_with_the_binlog() {
        let decimal = Column {
            width: 10,
            scale: 2,
            ..column(ColumnType::Decimal)
        };
        let printed = value(b"-12345678.91", &comment("DECIMAL(10,2)"));
        assert!(matches(&printed, &decimal, &Value::Decimal("-12345678.91".into())).is_ok());
        assert!(matches(&printed, &decimal, &Value::Decimal("-12345678.910".into())).is_err());
        let wrong_scale = Column {
            scale: 3,
            ..decimal.clone()
        };
        assert!(matches(
            &printed,
            &wrong_scale,
            &Value::Decimal("-12345678.91".into())
        )
        .is_err());
        // CHAR(10) CHARACTER SET utf8mb4: at most 40 bytes.
        let char = Column {
            width: 40,
            ..column(ColumnType::Char)
        };
        let printed_char = value(b"'x'", &comment("STRING(40)"));
        assert!(matches(&printed_char, &char, &Value::String("x".into())).is_ok());
        let wrong_width = Column {
            width: 10494,
            ..char
        };
        assert!(matches(&printed_char, &wrong_width, &Value::String("x".into())).is_err());
        let not_null = Column {
            nullable: false,
            ..decimal
        };
        assert!(matches(&printed, &not_null, &Value::Decimal("-12345678.91".into())).is_err());
        assert!(matches(&printed, &column(ColumnType::Int), &Value::Int(1)).is_err());
    }
}
