//! Row images: the bytes of one row in a rows event, decoded with a table's plan.
//!
//! Fixed-size types are decoded here directly from their documented binary layouts (which is
//! also where mysql_common's traps are avoided: signed MEDIUMINT is sign-extended, TIMESTAMP and
//! YEAR are numbers, BINARY(N) is padded back to N bytes). DECIMAL and JSON use mysql_common's
//! decoders. A value that does not fit its layout is an error naming the column; nothing is guessed.

use cdcd_event::{Date, DateTime, Value};

use crate::charset::decode_text;
use crate::json::jsonb_to_text;
use crate::table::{ColumnPlan, Layout, TableDecoder};

/// A cursor over the rows data of one event.
pub(crate) struct Cursor<'a> {
    pub data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.data.len() < n {
            return Err(format!(
                "row data ends after {} of {n} bytes",
                self.data.len()
            ));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn uint_le(&mut self, n: usize) -> Result<u64, String> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    }

    fn uint_be(&mut self, n: usize) -> Result<u64, String> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    }

    /// MySQL's packed (length-encoded) integer.
    pub fn packed_int(&mut self) -> Result<u64, String> {
        match self.take(1)?[0] {
            n @ 0..=250 => Ok(u64::from(n)),
            252 => self.uint_le(2),
            253 => self.uint_le(3),
            254 => self.uint_le(8),
            n => Err(format!("invalid packed integer prefix {n:#x}")),
        }
    }
}

/// Which columns an image holds, as a bitmap in column order.
pub(crate) struct ImageColumns {
    pub present: Vec<bool>,
    /// How many are present: the size of each row's null bitmap.
    pub count: usize,
}

/// Which columns an image holds, from a rows event's bitmap; computed once per event.
pub(crate) fn present_columns(bits: impl Iterator<Item = bool>, columns: usize) -> ImageColumns {
    let mut present: Vec<bool> = bits.take(columns).collect();
    present.resize(columns, false);
    let count = present.iter().filter(|p| **p).count();
    ImageColumns { present, count }
}

/// Decodes one row image: one value per table column, [`Value::Absent`] for columns the image
/// leaves out. `partial_json` marks JSON columns that hold partial updates; their
/// raw diffs are returned for the caller to apply to the before image.
pub(crate) fn decode_image<'a>(
    cursor: &mut Cursor<'a>,
    image: &ImageColumns,
    table: &TableDecoder,
    partial_json: &[bool],
    diffs: &mut Vec<(usize, &'a [u8])>,
) -> Result<Vec<Value>, String> {
    let present = &image.present;
    let nulls = cursor.take(image.count.div_ceil(8))?;
    let mut out = Vec::with_capacity(table.plans.len());
    let mut k = 0;
    for (i, plan) in table.plans.iter().enumerate() {
        if !present[i] {
            out.push(Value::Absent);
            continue;
        }
        let is_null = nulls[k / 8] >> (k % 8) & 1 == 1;
        k += 1;
        if is_null {
            out.push(Value::Null);
            continue;
        }
        if partial_json.get(i).copied().unwrap_or(false) {
            let len = cursor.uint_le(4)? as usize;
            diffs.push((i, cursor.take(len)?));
            out.push(Value::Absent);
            continue;
        }
        let value = decode_value(cursor, plan).map_err(|e| {
            format!(
                "column {} `{}` ({}): {e}",
                i + 1,
                table.schema.columns[i].name,
                table.schema.columns[i].sql_type()
            )
        })?;
        out.push(value);
    }
    Ok(out)
}

fn decode_value(cursor: &mut Cursor<'_>, plan: &ColumnPlan) -> Result<Value, String> {
    let int = |v: u64, bits: u32, unsigned: bool| {
        if unsigned {
            Value::UInt(v)
        } else {
            let shift = 64 - bits;
            Value::Int(((v << shift) as i64) >> shift)
        }
    };
    Ok(match plan.layout {
        Layout::Tiny => int(cursor.uint_le(1)?, 8, plan.unsigned),
        Layout::Short => int(cursor.uint_le(2)?, 16, plan.unsigned),
        Layout::Int24 => int(cursor.uint_le(3)?, 24, plan.unsigned),
        Layout::Long => int(cursor.uint_le(4)?, 32, plan.unsigned),
        Layout::LongLong => int(cursor.uint_le(8)?, 64, plan.unsigned),
        Layout::Float => Value::Float(f32::from_bits(cursor.uint_le(4)? as u32)),
        Layout::Double => Value::Double(f64::from_bits(cursor.uint_le(8)?)),
        Layout::Decimal { precision, scale } => Value::Decimal(decimal(cursor, precision, scale)?),
        Layout::Year => match cursor.uint_le(1)? {
            0 => Value::Year(0),
            y => Value::Year(1900 + y as u16),
        },
        Layout::Date => {
            let v = cursor.uint_le(3)?;
            Value::Date(Date {
                year: (v >> 9) as u16,
                month: (v >> 5 & 15) as u8,
                day: (v & 31) as u8,
            })
        }
        Layout::OldTime => {
            let v = cursor.uint_le(3)?;
            let v = ((v << 40) as i64) >> 40;
            let abs = v.unsigned_abs() as i64;
            let secs = abs / 10_000 * 3600 + abs / 100 % 100 * 60 + abs % 100;
            Value::Time(v.signum() * secs * 1_000_000)
        }
        Layout::Time2 { fsp } => Value::Time(time2(cursor, fsp)?),
        Layout::OldDateTime => {
            let v = cursor.uint_le(8)?;
            let (d, t) = (v / 1_000_000, v % 1_000_000);
            Value::DateTime(DateTime {
                date: Date {
                    year: (d / 10_000) as u16,
                    month: (d / 100 % 100) as u8,
                    day: (d % 100) as u8,
                },
                hour: (t / 10_000) as u8,
                minute: (t / 100 % 100) as u8,
                second: (t % 100) as u8,
                micros: 0,
            })
        }
        Layout::DateTime2 { fsp } => Value::DateTime(datetime2(cursor, fsp)?),
        Layout::OldTimestamp => Value::Timestamp(cursor.uint_le(4)? as i64 * 1_000_000),
        Layout::Timestamp2 { fsp } => {
            let secs = cursor.uint_be(4)? as i64;
            Value::Timestamp(secs * 1_000_000 + i64::from(fraction(cursor, fsp)?))
        }
        Layout::Bit { bits } => Value::Bit(cursor.uint_be(usize::from(bits).div_ceil(8))?),
        Layout::Enum { bytes } => match bytes {
            1 | 2 => Value::Enum(cursor.uint_le(usize::from(bytes))? as u16),
            n => return Err(format!("ENUM stored in {n} bytes")),
        },
        Layout::Set { bytes } => match bytes {
            1..=8 => Value::Set(cursor.uint_le(usize::from(bytes))?),
            n => return Err(format!("SET stored in {n} bytes")),
        },
        Layout::ShortString { prefix } | Layout::LongString { prefix } => {
            let len = cursor.uint_le(usize::from(prefix))? as usize;
            let bytes = cursor.take(len)?;
            string_value(plan, bytes)?
        }
        Layout::Jsonb { prefix } => {
            let len = cursor.uint_le(usize::from(prefix))? as usize;
            Value::Json(jsonb_to_text(cursor.take(len)?)?)
        }
    })
}

fn string_value(plan: &ColumnPlan, bytes: &[u8]) -> Result<Value, String> {
    use cdcd_event::ColumnType as K;
    Ok(match plan.kind {
        // MariaDB's JSON is LONGTEXT holding JSON text; its CHECK can be disabled, so text that
        // does not parse stays a string rather than corrupting the output.
        // Re-serialised compactly (numbers keep their digits, keys their order): a document
        // stored pretty-printed must not break one-object-per-line outputs.
        K::Json => match decode_text(plan.encoding, bytes) {
            Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(document) => Value::Json(document.to_string()),
                Err(_) => Value::String(text),
            },
            None => Value::Bytes(bytes.to_vec()),
        },
        K::Geometry => Value::Geometry(bytes.to_vec()),
        K::Vector | K::Blob | K::VarBinary => Value::Bytes(bytes.to_vec()),
        K::Binary | K::Uuid | K::Inet4 | K::Inet6 => {
            let mut v = bytes.to_vec();
            if v.len() < plan.pad_to {
                v.resize(plan.pad_to, 0);
            }
            Value::Bytes(v)
        }
        _ => match decode_text(plan.encoding, bytes) {
            Some(text) => Value::String(text),
            None => Value::Bytes(bytes.to_vec()),
        },
    })
}

/// Bytes used by a group of 0..=9 decimal digits.
const DIGIT_BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// DECIMAL's binary form (MySQL's `bin2decimal`) straight to text: groups of nine digits in four
/// big-endian bytes, a shorter group for the leftover digits at the outer ends, the sign in the
/// top bit (set for non-negative values) and all bits inverted for negative ones. The text has
/// no leading zeros and exactly `scale` fraction digits.
fn decimal(cursor: &mut Cursor<'_>, precision: u8, scale: u8) -> Result<String, String> {
    let (intg, frac) = (usize::from(precision - scale), usize::from(scale));
    let size = DIGIT_BYTES[intg % 9] + intg / 9 * 4 + frac / 9 * 4 + DIGIT_BYTES[frac % 9];
    let bytes = cursor.take(size)?;
    let negative = bytes[0] & 0x80 == 0;
    let mask = if negative { 0xff } else { 0 };
    let mut at = 0;
    let mut group = |len: usize| {
        let mut v = 0u32;
        for (i, b) in bytes[at..at + len].iter().enumerate() {
            let b = if at + i == 0 { b ^ 0x80 } else { *b };
            v = v << 8 | u32::from(b ^ mask);
        }
        at += len;
        v
    };
    let mut text = String::with_capacity(usize::from(precision) + 3);
    if negative {
        text.push('-');
    }
    let mut integer = Vec::with_capacity(intg / 9 + 1);
    if intg % 9 > 0 {
        integer.push((group(DIGIT_BYTES[intg % 9]), intg % 9));
    }
    for _ in 0..intg / 9 {
        integer.push((group(4), 9));
    }
    let mut started = false;
    for (value, digits) in integer {
        if value >= 10u32.pow(digits as u32) {
            return Err(format!("invalid DECIMAL digits group {value}"));
        }
        if started {
            push_digits(&mut text, value, digits);
        } else if value > 0 {
            push_digits(&mut text, value, 0);
            started = true;
        }
    }
    if !started {
        text.push('0');
    }
    if frac > 0 {
        text.push('.');
        for _ in 0..frac / 9 {
            push_digits(&mut text, group(4), 9);
        }
        if frac % 9 > 0 {
            push_digits(&mut text, group(DIGIT_BYTES[frac % 9]), frac % 9);
        }
    }
    if negative && text[1..].bytes().all(|b| b == b'0' || b == b'.') {
        text.remove(0);
    }
    Ok(text)
}

/// Appends `value` zero-padded to `width` digits (no padding for width 0).
fn push_digits(out: &mut String, value: u32, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(value);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// The fractional part of TIME2/DATETIME2/TIMESTAMP2 in microseconds (big endian, unsigned).
fn fraction(cursor: &mut Cursor<'_>, fsp: u8) -> Result<u32, String> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => cursor.uint_be(1)? as u32 * 10_000,
        3 | 4 => cursor.uint_be(2)? as u32 * 100,
        _ => cursor.uint_be(3)? as u32,
    })
}

/// TIME2, after MySQL's `my_time_packed_from_binary` and `TIME_from_longlong_time_packed`.
fn time2(cursor: &mut Cursor<'_>, fsp: u8) -> Result<i64, String> {
    const INT_OFS: i64 = 0x80_0000;
    let packed: i64 = match fsp {
        0 => (cursor.uint_be(3)? as i64 - INT_OFS) << 24,
        1 | 2 => {
            let mut int = cursor.uint_be(3)? as i64 - INT_OFS;
            let mut frac = cursor.uint_be(1)? as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut int = cursor.uint_be(3)? as i64 - INT_OFS;
            let mut frac = cursor.uint_be(2)? as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x10000;
            }
            (int << 24) + frac * 100
        }
        _ => cursor.uint_be(6)? as i64 - 0x8000_0000_0000,
    };
    let negative = packed < 0;
    let abs = packed.abs();
    let hms = abs >> 24;
    let micros = abs % (1 << 24);
    let hours = hms >> 12 & 0x3ff;
    let minutes = hms >> 6 & 0x3f;
    let seconds = hms & 0x3f;
    let total = (hours * 3600 + minutes * 60 + seconds) * 1_000_000 + micros;
    Ok(if negative { -total } else { total })
}

/// DATETIME2, after MySQL's `my_datetime_packed_from_binary` and
/// `TIME_from_longlong_datetime_packed`.
fn datetime2(cursor: &mut Cursor<'_>, fsp: u8) -> Result<DateTime, String> {
    let int = cursor.uint_be(5)? as i64 - 0x80_0000_0000;
    let micros = fraction(cursor, fsp)?;
    if int < 0 {
        return Err("negative DATETIME".into());
    }
    let ymd = int >> 17;
    let ym = ymd >> 5;
    let hms = int % (1 << 17);
    Ok(DateTime {
        date: Date {
            year: (ym / 13) as u16,
            month: (ym % 13) as u8,
            day: (ymd % (1 << 5)) as u8,
        },
        hour: (hms >> 12) as u8,
        minute: (hms >> 6 & 0x3f) as u8,
        second: (hms & 0x3f) as u8,
        micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(bytes: &[u8]) -> Cursor<'_> {
        Cursor { data: bytes }
    }

    #[test]
    fn time2_handles_negative_values_with_fractions() {
        // -00:00:00.000001 with fsp 6, as MySQL writes it.
        let packed = (0x8000_0000_0000i64 - 1) as u64;
        let bytes = &packed.to_be_bytes()[2..];
        assert_eq!(time2(&mut cursor(bytes), 6).unwrap(), -1);
        // -838:59:59 with fsp 0.
        let hms: i64 = (838 << 12) | (59 << 6) | 59;
        let stored = (0x80_0000 - hms) as u32;
        assert_eq!(
            time2(&mut cursor(&stored.to_be_bytes()[1..]), 0).unwrap(),
            -(838 * 3600 + 59 * 60 + 59) * 1_000_000
        );
    }

    #[test]
    fn decimals_render_exactly() {
        // Encoded by MySQL: DECIMAL(10,2) -12345678.91 and 1.05, DECIMAL(65,30) edge values.
        let neg: [u8; 5] = [0x7f, 0x43, 0x9e, 0xb1, 0xa4];
        assert_eq!(decimal(&mut cursor(&neg), 10, 2).unwrap(), "-12345678.91");
        let small: [u8; 5] = [0x80, 0x00, 0x00, 0x01, 0x05];
        assert_eq!(decimal(&mut cursor(&small), 10, 2).unwrap(), "1.05");
        let zero: [u8; 5] = [0x80, 0, 0, 0, 0];
        assert_eq!(decimal(&mut cursor(&zero), 10, 2).unwrap(), "0.00");
        assert!(decimal(&mut cursor(&[0x80]), 10, 2).is_err());
    }

    #[test]
    fn truncated_rows_are_errors_not_panics() {
        assert!(cursor(&[1, 2]).take(3).is_err());
        assert!(datetime2(&mut cursor(&[0x80]), 0).is_err());
    }
}
