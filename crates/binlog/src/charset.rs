//! Character sets of text columns: which collation ids mean which encoding.
//!
//! Row images carry text as bytes in the column's character set. The TABLE_MAP (or the schema
//! cache) gives a collation id; this module turns it into the decoder's plan for those bytes.

use encoding_rs::Encoding;

/// How the bytes of a text or binary column become a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TextEncoding {
    /// `binary` (collation 63): the value is bytes.
    Binary,
    /// utf8mb3, utf8mb4 and ascii: already UTF-8.
    Utf8,
    /// Any other character set that encoding_rs knows (MySQL's latin1 is windows-1252).
    Other(&'static Encoding),
    /// UTF-32 (big endian), which encoding_rs does not implement.
    Utf32,
    /// The server did not say (no optional metadata and no schema cache): UTF-8 when the bytes are
    /// valid UTF-8, bytes otherwise.
    Unknown,
}

/// The encoding for a MySQL or MariaDB collation id, or `None` for an id we do not know.
pub fn encoding_for_collation(id: u16) -> Option<TextEncoding> {
    use encoding_rs::*;
    let charset = charset_of_collation(id)?;
    Some(match charset {
        "binary" => TextEncoding::Binary,
        "utf8mb3" | "utf8mb4" | "ascii" => TextEncoding::Utf8,
        "latin1" => TextEncoding::Other(WINDOWS_1252),
        "latin2" => TextEncoding::Other(ISO_8859_2),
        "latin5" => TextEncoding::Other(WINDOWS_1254),
        "latin7" => TextEncoding::Other(ISO_8859_13),
        "cp1250" => TextEncoding::Other(WINDOWS_1250),
        "cp1251" => TextEncoding::Other(WINDOWS_1251),
        "cp1256" => TextEncoding::Other(WINDOWS_1256),
        "cp1257" => TextEncoding::Other(WINDOWS_1257),
        "cp866" => TextEncoding::Other(IBM866),
        "koi8r" => TextEncoding::Other(KOI8_R),
        "koi8u" => TextEncoding::Other(KOI8_U),
        "greek" => TextEncoding::Other(ISO_8859_7),
        "hebrew" => TextEncoding::Other(ISO_8859_8),
        "tis620" => TextEncoding::Other(WINDOWS_874),
        "gbk" | "gb2312" => TextEncoding::Other(GBK),
        "gb18030" => TextEncoding::Other(GB18030),
        "big5" => TextEncoding::Other(BIG5),
        "sjis" | "cp932" => TextEncoding::Other(SHIFT_JIS),
        "ujis" | "eucjpms" => TextEncoding::Other(EUC_JP),
        "euckr" => TextEncoding::Other(EUC_KR),
        "ucs2" | "utf16" => TextEncoding::Other(UTF_16BE),
        "utf16le" => TextEncoding::Other(UTF_16LE),
        "utf32" => TextEncoding::Utf32,
        _ => return None,
    })
}

/// The most bytes one character of the collation's character set takes (MySQL's `mbmaxlen`), or
/// `None` for an id we do not know.
pub fn max_bytes_per_char(id: u16) -> Option<u32> {
    Some(match charset_of_collation(id)? {
        "utf8mb4" | "utf16" | "utf16le" | "utf32" | "gb18030" => 4,
        "utf8mb3" | "ujis" | "eucjpms" => 3,
        "ucs2" | "gbk" | "gb2312" | "big5" | "sjis" | "cp932" | "euckr" => 2,
        _ => 1,
    })
}

/// Character set of a collation id. Ids 1..=247 and 255..=323 are shared by MySQL and MariaDB.
/// MariaDB adds: 576..=767 for more UCA collations of utf8mb3, utf8mb4, ucs2, utf16 and utf32;
/// the `_nopad` variants at the base id + 1024; and the UCA 14.0 collations from 2048 in blocks of
/// 256 per character set. Unknown ids give `None`: an error, never a guessed encoding.
fn charset_of_collation(id: u16) -> Option<&'static str> {
    match id {
        63 => Some("binary"),
        33 | 76 | 83 | 192..=215 | 223 => Some("utf8mb3"),
        45 | 46 | 224..=247 | 255..=323 => Some("utf8mb4"),
        101..=124 => Some("utf16"),
        128..=151 | 159 => Some("ucs2"),
        160..=183 => Some("utf32"),
        576..=607 => Some("utf8mb3"),
        608..=639 => Some("utf8mb4"),
        640..=671 => Some("ucs2"),
        672..=735 => Some("utf16"),
        736..=767 => Some("utf32"),
        1024..=2047 => charset_of_collation(id - 1024),
        2048..=2303 => Some("utf8mb3"),
        2304..=2559 => Some("utf8mb4"),
        2560..=2815 => Some("ucs2"),
        2816..=3071 => Some("utf16"),
        3072..=3327 => Some("utf32"),
        _ => CHARSETS.iter().find(|(i, _)| *i == id).map(|(_, n)| *n),
    }
}

/// Collation ids of the single-byte and legacy multi-byte character sets (from
/// `information_schema.COLLATIONS` of MySQL 8/9 and MariaDB 10.11).
const CHARSETS: &[(u16, &str)] = &[
    (1, "big5"),
    (84, "big5"),
    (3, "dec8"),
    (69, "dec8"),
    (4, "cp850"),
    (80, "cp850"),
    (6, "hp8"),
    (72, "hp8"),
    (7, "koi8r"),
    (74, "koi8r"),
    (5, "latin1"),
    (8, "latin1"),
    (15, "latin1"),
    (31, "latin1"),
    (47, "latin1"),
    (48, "latin1"),
    (49, "latin1"),
    (94, "latin1"),
    (9, "latin2"),
    (2, "latin2"),
    (21, "latin2"),
    (27, "latin2"),
    (77, "latin2"),
    (10, "swe7"),
    (82, "swe7"),
    (11, "ascii"),
    (65, "ascii"),
    (12, "ujis"),
    (91, "ujis"),
    (13, "sjis"),
    (88, "sjis"),
    (16, "hebrew"),
    (71, "hebrew"),
    (18, "tis620"),
    (89, "tis620"),
    (19, "euckr"),
    (85, "euckr"),
    (22, "koi8u"),
    (75, "koi8u"),
    (24, "gb2312"),
    (86, "gb2312"),
    (25, "greek"),
    (70, "greek"),
    (26, "cp1250"),
    (34, "cp1250"),
    (44, "cp1250"),
    (66, "cp1250"),
    (99, "cp1250"),
    (28, "gbk"),
    (87, "gbk"),
    (30, "latin5"),
    (78, "latin5"),
    (32, "armscii8"),
    (64, "armscii8"),
    (35, "ucs2"),
    (90, "ucs2"),
    (36, "cp866"),
    (68, "cp866"),
    (37, "keybcs2"),
    (73, "keybcs2"),
    (38, "macce"),
    (43, "macce"),
    (39, "macroman"),
    (53, "macroman"),
    (40, "cp852"),
    (81, "cp852"),
    (20, "latin7"),
    (41, "latin7"),
    (42, "latin7"),
    (79, "latin7"),
    (14, "cp1251"),
    (23, "cp1251"),
    (50, "cp1251"),
    (51, "cp1251"),
    (52, "cp1251"),
    (54, "utf16"),
    (55, "utf16"),
    (56, "utf16le"),
    (62, "utf16le"),
    (57, "cp1256"),
    (67, "cp1256"),
    (29, "cp1257"),
    (58, "cp1257"),
    (59, "cp1257"),
    (60, "utf32"),
    (61, "utf32"),
    (92, "geostd8"),
    (93, "geostd8"),
    (95, "cp932"),
    (96, "cp932"),
    (97, "eucjpms"),
    (98, "eucjpms"),
    (248, "gb18030"),
    (249, "gb18030"),
    (250, "gb18030"),
];

/// Decodes `bytes` of a text column; `None` when they are not valid in the column's character set
/// (the caller then keeps the raw bytes rather than inventing replacement characters).
pub fn decode_text(encoding: TextEncoding, bytes: &[u8]) -> Option<String> {
    match encoding {
        TextEncoding::Binary => None,
        TextEncoding::Utf8 | TextEncoding::Unknown => {
            std::str::from_utf8(bytes).ok().map(Into::into)
        }
        TextEncoding::Other(enc) => enc
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|s| s.into_owned()),
        TextEncoding::Utf32 => {
            if !bytes.len().is_multiple_of(4) {
                return None;
            }
            bytes
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_windows_1252_and_utf8mb4_is_utf8() {
        let latin1 = encoding_for_collation(8).unwrap();
        assert_eq!(decode_text(latin1, b"h\xe9llo \x80").unwrap(), "héllo €");
        assert_eq!(encoding_for_collation(255), Some(TextEncoding::Utf8));
        assert_eq!(encoding_for_collation(63), Some(TextEncoding::Binary));
        assert_eq!(encoding_for_collation(10_000), None);
        // MariaDB: latin1_swedish_nopad_ci, utf16_general_nopad_ci, uca1400 collations.
        assert_eq!(encoding_for_collation(1032), Some(latin1));
        assert_eq!(
            encoding_for_collation(1078),
            Some(TextEncoding::Other(encoding_rs::UTF_16BE))
        );
        assert_eq!(encoding_for_collation(2304), Some(TextEncoding::Utf8));
        assert_eq!(encoding_for_collation(3072), Some(TextEncoding::Utf32));
    }

    #[test]
    fn invalid_bytes_are_not_replaced() {
        assert_eq!(decode_text(TextEncoding::Utf8, b"\xff"), None);
        assert_eq!(
            decode_text(TextEncoding::Utf32, b"\0\0\0a").as_deref(),
            Some("a")
        );
    }
}
