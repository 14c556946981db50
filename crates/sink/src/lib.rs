//! The lake side of cdcd: masking personal data in change events ([`mask`]), cutting the masked
//! rows into Hive-partitioned Parquet or JSON objects for Athena ([`lake`]), and writing them to
//! S3 or a local directory ([`store`]).
//!
//! It depends on the event model only, never on the binlog reader, so that `cdcd sink` can feed
//! it records that arrived through Kinesis (including ones real AWS DMS wrote).

pub mod lake;
pub mod mask;
pub mod store;

pub use lake::{Lake, LakeConfig, LakeError, Object, Pending, Spent};
pub use mask::{Masker, MaskingConfig, MaskingCounters, MaskingError};
pub use store::{S3Config, Store, StoreError, Version};
