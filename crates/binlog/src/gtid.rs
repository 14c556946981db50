//! GTID positions of both flavors.
//!
//! * MySQL: a GTID set, `uuid[:tag]:interval[:interval…]` per source, comma-separated. A
//!   transaction's GTID is added when its commit is seen, so the set is always "every transaction
//!   up to and including the last complete one".
//! * MariaDB: a GTID list, one `domain-server-seq` per replication domain: the last transaction of
//!   each domain.
//!
//! Both render in the server's own syntax, so a user can paste them into `--from gtid:…` or into
//! the server's `gtid_executed` / `gtid_slave_pos` comparisons.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A MySQL GTID set. Intervals are half-open `[start, end)` and kept merged and sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    sources: BTreeMap<(String, String), Vec<(u64, u64)>>,
}

impl GtidSet {
    /// Adds one transaction.
    pub fn add(&mut self, uuid: &str, tag: &str, gno: u64) {
        self.add_interval(uuid, tag, gno, gno.saturating_add(1));
    }

    /// Adds the transactions `start..end` (end exclusive).
    pub fn add_interval(&mut self, uuid: &str, tag: &str, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let intervals = self
            .sources
            .entry((uuid.to_ascii_lowercase(), tag.to_ascii_lowercase()))
            .or_default();
        intervals.push((start, end));
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
        for &(s, e) in intervals.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *intervals = merged;
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The transactions of `self` that are not in `other`.
    pub fn difference(&self, other: &GtidSet) -> GtidSet {
        let mut out = GtidSet::default();
        for (key, intervals) in &self.sources {
            let theirs = other.sources.get(key).map(Vec::as_slice).unwrap_or(&[]);
            for &(s, e) in intervals {
                let mut start = s;
                for &(ts, te) in theirs {
                    if te <= start || ts >= e {
                        continue;
                    }
                    if ts > start {
                        out.add_interval(&key.0, &key.1, start, ts);
                    }
                    start = start.max(te);
                }
                if start < e {
                    out.add_interval(&key.0, &key.1, start, e);
                }
            }
        }
        out
    }

    /// One `uuid[:tag]:intervals` entry per source, as COM_BINLOG_DUMP_GTID wants them.
    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.sources.iter().map(|((uuid, tag), intervals)| {
            let mut s = uuid.clone();
            if !tag.is_empty() {
                s.push(':');
                s.push_str(tag);
            }
            for &(start, end) in intervals {
                if end - start == 1 {
                    s.push_str(&format!(":{start}"));
                } else {
                    s.push_str(&format!(":{start}-{}", end - 1));
                }
            }
            s
        })
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self.entries().collect();
        f.write_str(&entries.join(","))
    }
}

impl FromStr for GtidSet {
    type Err = String;

    /// Parses `uuid:1-5:7,uuid:tag:1-3` (whitespace and newlines allowed, as SHOW prints them).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut set = GtidSet::default();
        let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        for entry in cleaned.split(',').filter(|e| !e.is_empty()) {
            let mut parts = entry.split(':');
            let uuid = parts.next().unwrap_or_default();
            if uuid.len() != 36 || uuid.chars().filter(|c| *c == '-').count() != 4 {
                return Err(format!("`{uuid}` in GTID set `{s}` is not a server uuid"));
            }
            let mut tag = String::new();
            for part in parts {
                if part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    tag = part.to_string();
                    continue;
                }
                let (start, end) = match part.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (part, part),
                };
                // Transaction numbers run from 1 to 2^63-1.
                let parse = |n: &str| {
                    n.parse::<u64>()
                        .ok()
                        .filter(|n| (1..=i64::MAX as u64).contains(n))
                        .ok_or_else(|| format!("`{part}` in GTID set `{s}` is not an interval"))
                };
                let (start, end) = (parse(start)?, parse(end)?);
                if end < start {
                    return Err(format!("`{part}` in GTID set `{s}` ends before it starts"));
                }
                set.add_interval(uuid, &tag, start, end + 1);
            }
        }
        Ok(set)
    }
}

/// A MariaDB GTID list: the last `server-seq` seen in each replication domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariaGtidList {
    domains: BTreeMap<u32, (u32, u64)>,
}

impl MariaGtidList {
    pub fn set(&mut self, domain: u32, server: u32, seq: u64) {
        self.domains.insert(domain, (server, seq));
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// `(domain, server, seq)` of each domain, by domain.
    pub fn domains(&self) -> impl Iterator<Item = (u32, u32, u64)> + '_ {
        self.domains.iter().map(|(d, (s, q))| (*d, *s, *q))
    }

    /// The last `(server, seq)` of `domain`.
    pub fn get(&self, domain: u32) -> Option<(u32, u64)> {
        self.domains.get(&domain).copied()
    }
}

impl fmt::Display for MariaGtidList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .domains
            .iter()
            .map(|(d, (s, q))| format!("{d}-{s}-{q}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for MariaGtidList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut list = MariaGtidList::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || format!("`{entry}` in `{s}` is not a MariaDB GTID (domain-server-seq)");
            let mut parts = entry.split('-');
            let (Some(d), Some(sv), Some(q), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            list.set(
                d.parse().map_err(|_| bad())?,
                sv.parse().map_err(|_| bad())?,
                q.parse().map_err(|_| bad())?,
            );
        }
        Ok(list)
    }
}

/// Formats a 16-byte server uuid the way MySQL prints it.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn sets_merge_and_render_like_mysql() {
        let mut set: GtidSet = format!("{U}:1-5:7,\n{U}:etl:1-2").parse().unwrap();
        set.add(U, "", 6);
        set.add(U, "ETL", 3);
        assert_eq!(set.to_string(), format!("{U}:1-7,{U}:etl:1-3"));
    }

    #[test]
    fn difference_names_the_missing_transactions() {
        let purged: GtidSet = format!("{U}:1-100").parse().unwrap();
        let have: GtidSet = format!("{U}:1-40").parse().unwrap();
        assert_eq!(purged.difference(&have).to_string(), format!("{U}:41-100"));
        assert!(have.difference(&purged).is_empty());
    }

    #[test]
    fn malformed_sets_are_rejected_with_the_culprit() {
        assert!("nonsense:1"
            .parse::<GtidSet>()
            .unwrap_err()
            .contains("nonsense"));
        assert!(format!("{U}:5-1").parse::<GtidSet>().is_err());
        assert!("0-1".parse::<MariaGtidList>().is_err());
    }

    #[test]
    fn mariadb_lists_round_trip() {
        let list: MariaGtidList = "0-1-100,2-5-7".parse().unwrap();
        assert_eq!(list.to_string(), "0-1-100,2-5-7");
    }
}
