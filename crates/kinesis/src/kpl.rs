//! The KPL aggregation format: several user records in one Kinesis record, as the Kinesis
//! Producer Library writes them and the KCL (and `aws-kinesis-agg`) reads them.
//!
//! An aggregated record's data is `MAGIC` (`F3 89 9A C2`), then a protobuf `AggregatedRecord`,
//! then the 16-byte MD5 of those protobuf bytes:
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;   // read and ignored; never written
//! }
//! ```
//!
//! The protobuf code is written out here (varints and length-delimited fields only): it is small,
//! and [`Aggregator`] needs the exact encoded size before encoding, to pack records up to the
//! stream's record limit.
//!
//! Invariants: [`Aggregator::size`] is always the exact length of [`Aggregator::encode`]'s
//! output; [`deaggregate`] of an encoded aggregate gives back the added records, in order.
//! Decoding never panics on input: every malformed aggregate is an error naming the fault and
//! its byte offset.

use std::collections::HashMap;

use bytes::Bytes;
use md5::{Digest, Md5};

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Length of the MD5 digest that ends an aggregated record.
const DIGEST_LEN: usize = 16;

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// One record inside an aggregate: what the producer's caller put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Bytes,
}

/// Why a record that starts with [`MAGIC`] could not be deaggregated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    #[error("not a KPL aggregated record: it does not start with the magic bytes F3 89 9A C2")]
    BadMagic,
    #[error("KPL aggregated record of {0} bytes is too short for magic bytes and an MD5 digest")]
    TooShort(usize),
    #[error(
        "KPL aggregated record: the MD5 digest of its {0} protobuf bytes does not match the last \
         16 bytes (the record is corrupt or truncated)"
    )]
    DigestMismatch(usize),
    #[error("KPL aggregated record: invalid protobuf at byte {offset} of the message: {what}")]
    Protobuf { offset: usize, what: String },
}

/// True when `data` has the shape of a KPL aggregated record: the magic bytes and room for the
/// digest. JSON (what cdcd and DMS write) never starts with byte F3, so a record for which this is
/// true and [`deaggregate`] fails is corrupt, not a plain record.
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() >= MAGIC.len() + DIGEST_LEN && data.starts_with(&MAGIC)
}

/// The user records of an aggregated record, in order. Errors on a missing magic prefix, a wrong
/// MD5 digest, or protobuf that is not an `AggregatedRecord` (including a key index outside its
/// table). Deaggregating a plain (non-aggregated) record is the caller's choice: check
/// [`is_aggregated`] first.
pub fn deaggregate(data: &[u8]) -> Result<Vec<UserRecord>, KplError> {
    if !data.starts_with(&MAGIC) {
        return Err(KplError::BadMagic);
    }
    if data.len() < MAGIC.len() + DIGEST_LEN {
        return Err(KplError::TooShort(data.len()));
    }
    let (message, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_LEN);
    if Md5::digest(message).as_slice() != digest {
        return Err(KplError::DigestMismatch(message.len()));
    }
    decode_aggregate(message)
}

/// Encodes `records` as one aggregated record (no size limit applied).
pub fn aggregate(records: &[UserRecord]) -> Vec<u8> {
    let mut aggregator = Aggregator::default();
    for record in records {
        aggregator.add(
            &record.partition_key,
            record.explicit_hash_key.as_deref(),
            record.data.clone(),
        );
    }
    aggregator.encode()
}

/// Builds one aggregated record incrementally, knowing its encoded size at every step.
#[derive(Debug, Default)]
pub struct Aggregator {
    partition_keys: Table,
    explicit_hash_keys: Table,
    /// `(partition key index, explicit hash key index, data)`.
    records: Vec<(u64, Option<u64>, Bytes)>,
    /// Protobuf message bytes so far.
    message_len: usize,
}

/// A string table: distinct strings in first-use order.
#[derive(Debug, Default)]
struct Table {
    strings: Vec<String>,
    index: HashMap<String, u64>,
}

impl Table {
    fn find(&self, s: &str) -> Option<u64> {
        self.index.get(s).copied()
    }

    fn insert(&mut self, s: &str) -> u64 {
        if let Some(i) = self.find(s) {
            return i;
        }
        let i = self.strings.len() as u64;
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }

    /// Index `s` would get, and the message bytes its table entry would add (0 if present).
    fn cost(&self, s: &str) -> (u64, usize) {
        match self.find(s) {
            Some(i) => (i, 0),
            None => (self.strings.len() as u64, field_len(s.len())),
        }
    }
}

impl Aggregator {
    /// Records added so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The length [`Aggregator::encode`] would return now (magic, message, digest).
    pub fn size(&self) -> usize {
        MAGIC.len() + self.message_len + DIGEST_LEN
    }

    /// The length the encoded aggregate would have with this record added.
    pub fn size_with(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        self.size() + self.growth(partition_key, explicit_hash_key, data_len)
    }

    /// Message bytes a record would add: new table entries and its `Record` field.
    fn growth(
        &self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data_len: usize,
    ) -> usize {
        let (key_index, key_cost) = self.partition_keys.cost(partition_key);
        let (hash_index, hash_cost) = match explicit_hash_key {
            Some(h) => {
                let (i, cost) = self.explicit_hash_keys.cost(h);
                (Some(i), cost)
            }
            None => (None, 0),
        };
        key_cost + hash_cost + field_len(record_len(key_index, hash_index, data_len))
    }

    /// Adds a record at the end.
    pub fn add(&mut self, partition_key: &str, explicit_hash_key: Option<&str>, data: Bytes) {
        self.message_len += self.growth(partition_key, explicit_hash_key, data.len());
        let key_index = self.partition_keys.insert(partition_key);
        let hash_index = explicit_hash_key.map(|h| self.explicit_hash_keys.insert(h));
        self.records.push((key_index, hash_index, data));
    }

    /// The aggregated record: magic, protobuf message, MD5 of the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(&MAGIC);
        for key in &self.partition_keys.strings {
            put_bytes(&mut out, 1, key.as_bytes());
        }
        for hash in &self.explicit_hash_keys.strings {
            put_bytes(&mut out, 2, hash.as_bytes());
        }
        for (key_index, hash_index, data) in &self.records {
            put_tag(&mut out, 3, WIRE_LEN);
            put_varint(
                &mut out,
                record_len(*key_index, *hash_index, data.len()) as u64,
            );
            put_tag(&mut out, 1, WIRE_VARINT);
            put_varint(&mut out, *key_index);
            if let Some(hash_index) = hash_index {
                put_tag(&mut out, 2, WIRE_VARINT);
                put_varint(&mut out, *hash_index);
            }
            put_bytes(&mut out, 3, data);
        }
        let digest = Md5::digest(&out[MAGIC.len()..]);
        out.extend_from_slice(&digest);
        debug_assert_eq!(out.len(), self.size());
        out
    }
}

/// Encoded length of a `Record` message (without its own tag and length).
fn record_len(key_index: u64, hash_index: Option<u64>, data_len: usize) -> usize {
    1 + varint_len(key_index) + hash_index.map_or(0, |i| 1 + varint_len(i)) + field_len(data_len)
}

/// Encoded length of a length-delimited field with a one-byte tag.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u8, wire: u8) {
    out.push(field << 3 | wire);
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_tag(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A protobuf reader over one message; offsets in errors are relative to the outer message.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes[0]` in the outer message.
    base: usize,
}

/// A field's value: a varint, or a length-delimited slice (fixed-width fields are skipped).
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8], usize),
    Fixed,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            base,
        }
    }

    fn error(&self, what: impl Into<String>) -> KplError {
        KplError::Protobuf {
            offset: self.base + self.pos,
            what: what.into(),
        }
    }

    fn varint(&mut self) -> Result<u64, KplError> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.pos) else {
                self.pos = start;
                return Err(self.error("a varint runs past the end"));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        self.pos = start;
        Err(self.error("a varint is longer than 10 bytes"))
    }

    /// The next field, or `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, KplError> {
        if self.pos == self.bytes.len() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let (number, wire) = (key >> 3, (key & 7) as u8);
        if number == 0 {
            self.pos = at;
            return Err(self.error("field number 0"));
        }
        let value = match wire {
            WIRE_VARINT => Value::Varint(self.varint()?),
            WIRE_LEN => {
                let len = self.varint()?;
                let start = self.pos;
                if len > (self.bytes.len() - start) as u64 {
                    return Err(self.error(format!(
                        "field {number} says {len} bytes, {} are left",
                        self.bytes.len() - start
                    )));
                }
                self.pos += len as usize;
                Value::Bytes(&self.bytes[start..self.pos], self.base + start)
            }
            WIRE_FIXED64 | WIRE_FIXED32 => {
                let width = if wire == WIRE_FIXED64 { 8 } else { 4 };
                if self.bytes.len() - self.pos < width {
                    return Err(self.error(format!("fixed-width field {number} runs past the end")));
                }
                self.pos += width;
                Value::Fixed
            }
            other => {
                self.pos = at;
                return Err(self.error(format!(
                    "field {number} has wire type {other}, which protobuf does not define (or is a \
                     deprecated group)"
                )));
            }
        };
        Ok(Some((number, value)))
    }
}

fn decode_aggregate(message: &[u8]) -> Result<Vec<UserRecord>, KplError> {
    let mut reader = Reader::new(message, 0);
    let mut partition_keys = Vec::new();
    let mut hash_keys = Vec::new();
    // (partition key index, explicit hash key index, data, offset of the record)
    let mut records = Vec::new();
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1 | 2, Value::Bytes(bytes, offset)) => {
                let text = std::str::from_utf8(bytes).map_err(|_| KplError::Protobuf {
                    offset,
                    what: format!("a key table entry (field {number}) is not UTF-8"),
                })?;
                let table = if number == 1 {
                    &mut partition_keys
                } else {
                    &mut hash_keys
                };
                table.push(text.to_owned());
            }
            (3, Value::Bytes(bytes, offset)) => {
                records.push((decode_record(bytes, offset)?, offset))
            }
            (1..=3, _) => {
                return Err(reader.error(format!(
                    "AggregatedRecord field {number} must be length-delimited"
                )))
            }
            _ => {} // unknown fields are skipped, as protobuf readers do
        }
    }
    records
        .into_iter()
        .map(|((key_index, hash_index, data), offset)| {
            let lookup = |table: &Vec<String>, index: u64, name: &str| {
                table
                    .get(index as usize)
                    .cloned()
                    .ok_or_else(|| KplError::Protobuf {
                        offset,
                        what: format!(
                            "a record's {name} index {index} is outside the table of {} entries",
                            table.len()
                        ),
                    })
            };
            Ok(UserRecord {
                partition_key: lookup(&partition_keys, key_index, "partition key")?,
                explicit_hash_key: hash_index
                    .map(|i| lookup(&hash_keys, i, "explicit hash key"))
                    .transpose()?,
                data: Bytes::copy_from_slice(data),
            })
        })
        .collect()
}

fn decode_record(bytes: &[u8], base: usize) -> Result<(u64, Option<u64>, &[u8]), KplError> {
    let mut reader = Reader::new(bytes, base);
    let (mut key_index, mut hash_index, mut data) = (None, None, None);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1, Value::Varint(v)) => key_index = Some(v),
            (2, Value::Varint(v)) => hash_index = Some(v),
            (3, Value::Bytes(b, _)) => data = Some(b),
            (4, Value::Bytes(..)) => {} // tags: not part of the user record
            (1..=4, _) => {
                return Err(reader.error(format!("Record field {number} has the wrong wire type")))
            }
            _ => {}
        }
    }
    let missing = |field: &str| KplError::Protobuf {
        offset: base,
        what: format!("a record has no {field} (a required field)"),
    };
    Ok((
        key_index.ok_or_else(|| missing("partition_key_index"))?,
        hash_index,
        data.ok_or_else(|| missing("data"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(key: &str, hash: Option<&str>, data: &[u8]) -> UserRecord {
        UserRecord {
            partition_key: key.into(),
            explicit_hash_key: hash.map(Into::into),
            data: Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn round_trip_with_sizes_exact() {
        let records = vec![
            user("a", None, b"one"),
            user("b", Some("123"), &[0u8; 300]),
            user("a", None, b""),
            user("c", Some("123"), &[7u8; 20_000]),
        ];
        let mut aggregator = Aggregator::default();
        for r in &records {
            let predicted = aggregator.size_with(
                &r.partition_key,
                r.explicit_hash_key.as_deref(),
                r.data.len(),
            );
            aggregator.add(
                &r.partition_key,
                r.explicit_hash_key.as_deref(),
                r.data.clone(),
            );
            assert_eq!(aggregator.size(), predicted);
            assert_eq!(aggregator.encode().len(), predicted);
        }
        let encoded = aggregator.encode();
        assert!(is_aggregated(&encoded));
        assert_eq!(deaggregate(&encoded).unwrap(), records);
    }

    /// Bytes produced by the reference implementation (Python `aws-kinesis-agg` 1.2.3, aggregating
    /// ("pk1", None, b"hello") and ("pk2", "42", b"")), pinned so the format cannot drift unseen.
    #[test]
    fn matches_reference_bytes() {
        let encoded = aggregate(&[user("pk1", None, b"hello"), user("pk2", Some("42"), b"")]);
        let message = &encoded[4..encoded.len() - 16];
        assert_eq!(
            message,
            b"\x0a\x03pk1\x0a\x03pk2\x12\x0242\x1a\x09\x08\x00\x1a\x05hello\x1a\x06\x08\x01\x10\x00\x1a\x00"
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let good = aggregate(&[user("k", None, b"data")]);
        assert_eq!(deaggregate(b"{\"data\":1}"), Err(KplError::BadMagic));
        assert!(!is_aggregated(b"{\"data\":1}"));
        assert_eq!(deaggregate(&good[..10]), Err(KplError::TooShort(10)));
        let mut corrupt = good.clone();
        corrupt[8] ^= 1;
        assert!(matches!(
            deaggregate(&corrupt),
            Err(KplError::DigestMismatch(_))
        ));
        // Valid digest over invalid protobuf: a length running past the end.
        let mut bad = MAGIC.to_vec();
        let message = b"\x0a\x09pk";
        bad.extend_from_slice(message);
        bad.extend_from_slice(&Md5::digest(message));
        let error = deaggregate(&bad).unwrap_err().to_string();
        assert!(
            error.contains("field 1 says 9 bytes, 2 are left"),
            "{error}"
        );
        // A record pointing past the key table.
        let mut bad = MAGIC.to_vec();
        let message = b"\x1a\x05\x08\x03\x1a\x01x";
        bad.extend_from_slice(message);
        bad.extend_from_slice(&Md5::digest(message));
        let error = deaggregate(&bad).unwrap_err().to_string();
        assert!(
            error.contains("partition key index 3 is outside the table of 0"),
            "{error}"
        );
        // Truncation anywhere never panics.
        for len in 0..good.len() {
            let _ = deaggregate(&good[..len]);
        }
    }
}
