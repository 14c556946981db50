//! Overflow pointers: what `cdcd run` puts on the stream in place of a record over the stream's
//! size limit when `kinesis.oversize = "s3"`. The payload (the record's data, exactly the bytes
//! that would have been put) is written to an object store first; then this pointer is put with
//! the same partition key, in the same place in the key's order:
//!
//! ```json
//! {"cdcd-overflow":{"url":"s3://bucket/prefix/0-1-42:0.json","bytes":2097171,"sha256":"9f2c…","event-id":"0-1-42:0"}}
//! ```
//!
//! A consumer resolves it with [`parse`] (is this record a pointer?), a GET of `url`, and
//! [`Pointer::verify`] (length and SHA-256 of what it read), then handles the payload as if it
//! had been the record's data. The object is named by the event id, so a replay after a crash
//! rewrites the same object with the same bytes. docs/formats.md describes the format.
//!
//! Invariant: [`encode`] always starts with [`PREFIX`], and no cdcd or DMS change record does
//! (theirs start with `{"data"`, `{"op"` and the like), so [`parse`] never mistakes one for the
//! other.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How every pointer record starts (compact JSON, this key first).
pub const PREFIX: &[u8] = b"{\"cdcd-overflow\":";

/// Where an oversized record's payload is, and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    /// `s3://bucket/key` or `file:///path`.
    pub url: String,
    /// Length of the payload.
    pub bytes: u64,
    /// SHA-256 of the payload, lowercase hex.
    pub sha256: String,
    /// The change event's id (`<gtid>:<row>` or `<file>:<pos>:<row>`).
    #[serde(rename = "event-id")]
    pub event_id: String,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    #[serde(rename = "cdcd-overflow")]
    pointer: Pointer,
}

/// A pointer record that is malformed, or a payload that does not match its pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverflowError {
    #[error("invalid cdcd overflow pointer record: {0}")]
    Malformed(String),
    #[error(
        "overflow payload {url} (event {event_id}) is {actual} bytes, the pointer says {expected}"
    )]
    Length {
        url: String,
        event_id: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "overflow payload {url} (event {event_id}) has SHA-256 {actual}, the pointer says {expected}"
    )]
    Digest {
        url: String,
        event_id: String,
        expected: String,
        actual: String,
    },
}

impl Pointer {
    /// The pointer to `payload`, stored at `url`.
    pub fn to(url: impl Into<String>, event_id: impl Into<String>, payload: &[u8]) -> Pointer {
        Pointer {
            url: url.into(),
            bytes: payload.len() as u64,
            sha256: sha256_hex(payload),
            event_id: event_id.into(),
        }
    }

    /// Checks that `payload` is what this pointer points to.
    pub fn verify(&self, payload: &[u8]) -> Result<(), OverflowError> {
        if payload.len() as u64 != self.bytes {
            return Err(OverflowError::Length {
                url: self.url.clone(),
                event_id: self.event_id.clone(),
                expected: self.bytes,
                actual: payload.len() as u64,
            });
        }
        let actual = sha256_hex(payload);
        if actual != self.sha256 {
            return Err(OverflowError::Digest {
                url: self.url.clone(),
                event_id: self.event_id.clone(),
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// The object key (relative to the overflow location) of an event's payload: the event id, made
/// safe as one path segment, and `.json` (the payload is the JSON record).
pub fn object_key(event_id: &str) -> String {
    let safe: String = event_id
        .chars()
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect();
    format!("{safe}.json")
}

/// The pointer record's data.
pub fn encode(pointer: &Pointer) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        pointer: pointer.clone(),
    })
    .expect("a pointer serializes")
}

/// `Ok(None)` for a record that is not a pointer (does not start with [`PREFIX`]); the pointer,
/// or why it is malformed, otherwise.
pub fn parse(data: &[u8]) -> Result<Option<Pointer>, OverflowError> {
    if !data.starts_with(PREFIX) {
        return Ok(None);
    }
    let envelope: Envelope =
        serde_json::from_slice(data).map_err(|e| OverflowError::Malformed(e.to_string()))?;
    let pointer = envelope.pointer;
    if pointer.sha256.len() != 64 || !pointer.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(OverflowError::Malformed(format!(
            "sha256 {:?} is not 64 hex digits",
            pointer.sha256
        )));
    }
    Ok(Some(pointer))
}

fn sha256_hex(payload: &[u8]) -> String {
    Sha256::digest(payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_verify() {
        let payload = br#"{"data":{"id":1},"metadata":{}}"#;
        let pointer = Pointer::to("s3://b/p/0-1-42:0.json", "0-1-42:0", payload);
        let record = encode(&pointer);
        assert!(
            record.starts_with(PREFIX),
            "{}",
            String::from_utf8_lossy(&record)
        );
        assert_eq!(parse(&record).unwrap(), Some(pointer.clone()));
        pointer.verify(payload).unwrap();
        assert!(matches!(
            pointer.verify(&payload[1..]),
            Err(OverflowError::Length { .. })
        ));
        let mut other = payload.to_vec();
        other[0] = b'[';
        assert!(matches!(
            pointer.verify(&other),
            Err(OverflowError::Digest { .. })
        ));
        // sha256("") is well known: the digest is the standard one.
        assert_eq!(
            Pointer::to("u", "e", b"").sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn plain_records_are_not_pointers_and_bad_pointers_are_errors() {
        assert_eq!(parse(br#"{"data":{"cdcd-overflow":1}}"#), Ok(None));
        let error = parse(br#"{"cdcd-overflow":{"url":"x"}}"#).unwrap_err();
        assert!(error.to_string().contains("missing field"), "{error}");
        let error =
            parse(br#"{"cdcd-overflow":{"url":"x","bytes":1,"sha256":"zz","event-id":"e"}}"#)
                .unwrap_err();
        assert!(error.to_string().contains("64 hex digits"), "{error}");
        assert_eq!(object_key("a/b:1"), "a_b:1.json");
    }
}
