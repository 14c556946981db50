//! The lake side of cdcd: masking personal data in change events, before they leave the process
//! (`cdcd run`) or after they arrive from Kinesis (`cdcd sink`). It depends on the event model
//! only, never on the binlog reader, so that it can also consume records real AWS DMS wrote.
//!
//! This release has the masking engine ([`mask`]); the Hive-partitioned lake writer follows.

pub mod mask;

pub use mask::{Masker, MaskingConfig, MaskingError};
