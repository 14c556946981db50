//! Why a record could not be read back into a change event.

/// A record that does not decode: which key (`after.total`, `metadata.operation`…) and why.
/// The caller adds where the record came from (shard and sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub key: String,
    pub message: String,
}

impl DecodeError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

impl std::error::Error for DecodeError {}
