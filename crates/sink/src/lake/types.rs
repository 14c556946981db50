//! How each MySQL column type is stored in the lake, and what Athena calls it.
//!
//! One mapping serves the Parquet writer and `cdcd athena-ddl`, so that the DDL always describes
//! the files. Values are exact where Athena has an exact type: integers that fit, DECIMAL up to
//! Athena's precision 38, microsecond times. Everything else is kept as text rather than rounded:
//! unsigned BIGINT and BIT(64) become DECIMAL(20,0), DECIMAL wider than 38 digits and TIME become
//! strings. Zero and invalid dates (`0000-00-00`, `2024-02-31` under ALLOW_INVALID_DATES), which no
//! date type can hold, are NULL.

use cdcd_event::{Column, ColumnType};

/// The lake type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LakeType {
    Int32,
    Int64,
    /// An exact decimal with `precision` ≤ 38.
    Decimal {
        precision: u8,
        scale: u8,
    },
    Float,
    Double,
    /// UTF-8 text.
    Text,
    Binary,
    Date,
    /// Microseconds; `utc` for instants (TIMESTAMP), not for wall-clock times (DATETIME).
    Timestamp {
        utc: bool,
    },
}

/// Athena's widest DECIMAL.
pub(crate) const MAX_PRECISION: u32 = 38;

impl LakeType {
    pub(crate) fn of(column: &Column) -> LakeType {
        use ColumnType::*;
        let unsigned_bigint = LakeType::Decimal {
            precision: 20,
            scale: 0,
        };
        match column.kind {
            TinyInt | SmallInt | MediumInt | Year => LakeType::Int32,
            Int if column.unsigned => LakeType::Int64,
            Int => LakeType::Int32,
            BigInt if column.unsigned => unsigned_bigint,
            BigInt => LakeType::Int64,
            Bit if column.width >= 64 => unsigned_bigint,
            Bit => LakeType::Int64,
            Decimal if column.width <= MAX_PRECISION && column.width > 0 => LakeType::Decimal {
                precision: column.width as u8,
                scale: column.scale,
            },
            Decimal => LakeType::Text,
            Float => LakeType::Float,
            Double => LakeType::Double,
            Date => LakeType::Date,
            DateTime => LakeType::Timestamp { utc: false },
            Timestamp => LakeType::Timestamp { utc: true },
            Time | Char | VarChar | Text | Json | Enum | Set | Uuid | Inet4 | Inet6 => {
                LakeType::Text
            }
            Binary | VarBinary | Blob | Geometry | Vector => LakeType::Binary,
        }
    }

    /// The type in Athena's (Hive) DDL.
    pub(crate) fn athena(self) -> String {
        match self {
            LakeType::Int32 => "int".into(),
            LakeType::Int64 => "bigint".into(),
            LakeType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            LakeType::Float => "float".into(),
            LakeType::Double => "double".into(),
            LakeType::Text => "string".into(),
            LakeType::Binary => "binary".into(),
            LakeType::Date => "date".into(),
            LakeType::Timestamp { .. } => "timestamp".into(),
        }
    }
}

/// The change-data columns every lake table carries after the table's own.
pub(crate) const CDC_COLUMNS: [(&str, LakeType); 5] = [
    ("_cdc_op", LakeType::Text),
    ("_cdc_commit_ts", LakeType::Timestamp { utc: true }),
    ("_cdc_event_id", LakeType::Text),
    ("_cdc_gtid", LakeType::Text),
    (
        "_cdc_seq",
        LakeType::Decimal {
            precision: 38,
            scale: 0,
        },
    ),
];

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm); `None` for
/// MySQL's zero, partial and invalid dates.
pub(crate) fn days_from_civil(year: u16, month: u8, day: u8) -> Option<i32> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    // Zero days and ALLOW_INVALID_DATES dates such as 2024-02-31 have no calendar day.
    if day == 0 || day > days_in_month {
        return None;
    }
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) as i32)
}

/// A DECIMAL's exact text (`-12.50`, always at the column's scale) as its unscaled integer.
pub(crate) fn unscaled(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut value: i128 = 0;
    for b in digits.bytes() {
        match b {
            b'0'..=b'9' => value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?,
            b'.' => {}
            _ => return None,
        }
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
        assert_eq!(days_from_civil(1000, 1, 1), Some(-354_285));
        assert_eq!(days_from_civil(2024, 0, 0), None);
        assert_eq!(days_from_civil(2024, 2, 31), None);
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(0, 1, 1), Some(-719_528));
    }

    #[test]
    fn decimals_become_unscaled_integers() {
        assert_eq!(unscaled("-12.50"), Some(-1250));
        assert_eq!(unscaled("0.000"), Some(0));
        assert_eq!(
            unscaled("99999999999999999999999999999999999999"),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(unscaled("1e5"), None);
    }
}
