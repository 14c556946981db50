//! `--tables 'db.t*,other.*'`: which tables' changes to emit.

/// A list of `schema.table` glob patterns (`*` any run of characters, `?` one character).
/// An empty filter keeps every table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableFilter {
    patterns: Vec<(String, String)>,
}

impl TableFilter {
    /// Parses a comma-separated list of `schema.table` patterns.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for pattern in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (schema, table) = pattern.split_once('.').ok_or_else(|| {
                format!("table pattern `{pattern}` must be `schema.table` (globs allowed, e.g. `shop.*`)")
            })?;
            patterns.push((schema.to_string(), table.to_string()));
        }
        Ok(TableFilter { patterns })
    }

    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.patterns.is_empty()
            || self.patterns.iter().any(|(s, t)| {
                glob(s.as_bytes(), schema.as_bytes()) && glob(t.as_bytes(), table.as_bytes())
            })
    }
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_select_tables() {
        let f = TableFilter::parse("shop.order*, crm.?sers").unwrap();
        assert!(f.matches("shop", "orders"));
        assert!(f.matches("crm", "users"));
        assert!(!f.matches("shop", "customers"));
        assert!(TableFilter::default().matches("any", "thing"));
        assert!(TableFilter::parse("nodot").unwrap_err().contains("nodot"));
    }
}
