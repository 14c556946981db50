//! Minimal JSON text building shared by the formats: escaping and number rendering without
//! intermediate `serde_json::Value` trees (the formats run once per row).

use std::fmt::Write as _;

use base64::Engine as _;

/// Appends `s` as a JSON string. Runs of bytes that need no escaping are found eight bytes at a
/// time and copied at once: this is the hottest function of `cdcd tail`.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if i + 8 <= bytes.len() {
            let word = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Whether any of the eight bytes is `"`, `\\` or below 0x20 (SWAR: "has zero byte" tricks).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    has_zero(word ^ (ONES * b'"' as u64)) | has_zero(word ^ (ONES * b'\\' as u64)) | control != 0
}

/// Each column's escaped `"name":`, rendered once per table instead of once per row.
pub(crate) fn column_keys(columns: &[crate::value::Column]) -> Vec<String> {
    columns
        .iter()
        .map(|c| {
            let mut key = String::new();
            push_key(&mut key, &c.name);
            key
        })
        .collect()
}

pub(crate) fn push_key(out: &mut String, key: &str) {
    push_str(out, key);
    out.push(':');
}

pub(crate) fn push_i64(out: &mut String, v: i64) {
    out.push_str(itoa::Buffer::new().format(v));
}

pub(crate) fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Shortest text that reads back as the same float; MySQL cannot store NaN or infinities.
pub(crate) fn push_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else {
        out.push_str("null");
    }
}

pub(crate) fn push_f32(out: &mut String, v: f32) {
    if v.is_finite() {
        out.push_str(ryu::Buffer::new().format_finite(v));
    } else {
        out.push_str("null");
    }
}

pub(crate) fn push_base64(out: &mut String, bytes: &[u8]) {
    out.push('"');
    base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
    out.push('"');
}

/// Hex digits of `bytes`, upper case, optionally `0x`-prefixed, as a JSON string.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8], prefix: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('"');
    if prefix {
        out.push_str("0x");
    }
    out.reserve(bytes.len() * 2 + 1);
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json_requires() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\n\u{1}é");
        let mut long = String::new();
        push_str(&mut long, "0123456789abcdef\"0123456789\u{1f}abcdefgh~");
        assert_eq!(long, r#""0123456789abcdef\"0123456789\u001fabcdefgh~""#);
        assert_eq!(s, r#""a\"b\\c\n\u0001é""#);
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}é");
    }

    #[test]
    fn floats_round_trip() {
        for v in [0.1f64, -1.5e300, 5e-324, 123456789.0] {
            let mut s = String::new();
            push_f64(&mut s, v);
            assert_eq!(s.parse::<f64>().unwrap(), v);
        }
    }
}
