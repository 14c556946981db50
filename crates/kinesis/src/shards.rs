//! Partition key → group (open shard), by the MD5 hash-key ranges Kinesis itself uses.

use md5::{Digest, Md5};

/// The 128-bit hash key Kinesis derives from a partition key: MD5 of its UTF-8 bytes, read as a
/// big-endian unsigned integer.
pub fn hash_key(partition_key: &str) -> u128 {
    let digest: [u8; 16] = Md5::digest(partition_key.as_bytes()).into();
    u128::from_be_bytes(digest)
}

/// One group: a hash-key range and, when it came from `ListShards`, the shard that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) start: u128,
    pub(crate) end: u128,
    pub(crate) shard_id: Option<String>,
}

/// The open shards' hash-key ranges, sorted by start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardMap {
    pub(crate) ranges: Vec<Range>,
}

impl ShardMap {
    /// From `ListShards`: `(shard id, starting hash key, ending hash key)` of the open shards.
    pub(crate) fn from_shards(shards: Vec<(String, u128, u128)>) -> Option<ShardMap> {
        let mut ranges: Vec<Range> = shards
            .into_iter()
            .map(|(id, start, end)| Range {
                start,
                end,
                shard_id: Some(id),
            })
            .collect();
        if ranges.is_empty() {
            return None;
        }
        ranges.sort_by_key(|r| r.start);
        Some(ShardMap { ranges })
    }

    /// `n` equal ranges over the hash-key space: the layout of a stream created with `n` shards,
    /// used when `ListShards` is not allowed.
    pub(crate) fn uniform(n: usize) -> ShardMap {
        let n = n.max(1) as u128;
        let width = u128::MAX / n;
        let ranges = (0..n)
            .map(|i| Range {
                start: i * width,
                end: if i + 1 == n {
                    u128::MAX
                } else {
                    (i + 1) * width - 1
                },
                shard_id: None,
            })
            .collect();
        ShardMap { ranges }
    }

    pub(crate) fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The group of a hash key: the range that holds it. Any hash gets a group, even with gaps in
    /// the map (mid-resharding): order does not depend on the map being right.
    pub(crate) fn group_of(&self, hash: u128) -> usize {
        self.ranges
            .partition_point(|r| r.start <= hash)
            .saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_hash_keys() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn lookup() {
        let map = ShardMap::from_shards(vec![
            ("s2".into(), 200, u128::MAX),
            ("s0".into(), 0, 99),
            ("s1".into(), 100, 199),
        ])
        .unwrap();
        assert_eq!(map.group_of(0), 0);
        assert_eq!(map.group_of(99), 0);
        assert_eq!(map.group_of(100), 1);
        assert_eq!(map.group_of(u128::MAX), 2);
        assert_eq!(map.ranges[2].shard_id.as_deref(), Some("s2"));
        let uniform = ShardMap::uniform(4);
        assert_eq!(uniform.len(), 4);
        assert_eq!(uniform.group_of(0), 0);
        assert_eq!(uniform.group_of(u128::MAX), 3);
        assert_eq!(uniform.group_of(u128::MAX / 2 - 10), 1);
        assert_eq!(uniform.group_of(u128::MAX / 2 + 10), 2);
    }
}
