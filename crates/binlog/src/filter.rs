//! `--tables 'db.t*,other.*'`: which tables' changes to emit.

use cdcd_event::pattern::glob_match;

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
            || self
                .patterns
                .iter()
                .any(|(s, t)| glob_match(s, schema) && glob_match(t, table))
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
