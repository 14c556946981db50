//! Just enough SQL reading to tell transaction control, DDL and statement-based row changes apart,
//! and to name the tables a DDL statement touches.

use std::sync::Arc;

/// What a QUERY event's statement is, for the decoder.
#[derive(Debug, PartialEq)]
pub(crate) enum Statement {
    Begin,
    /// COMMIT, ROLLBACK (non-transactional changes before it did happen), XA COMMIT/ROLLBACK.
    Commit,
    /// `ROLLBACK TO [SAVEPOINT] sp`: some of the rows logged before it did not happen, and the
    /// binlog does not say which.
    RollbackToSavepoint,
    /// A row change logged as a statement (binlog_format=STATEMENT/MIXED).
    RowChange,
    Ddl {
        operation: &'static str,
        /// `(schema, table)` pairs; the first is the table the statement is about.
        tables: Vec<(Arc<str>, Arc<str>)>,
    },
    Other,
}

pub(crate) fn classify_statement(sql: &str, default_schema: &str) -> Statement {
    let words = Words::new(sql);
    let tokens: Vec<String> = words.take(12).collect();
    let upper: Vec<String> = tokens.iter().map(|t| t.to_ascii_uppercase()).collect();
    let first = upper.first().map(String::as_str).unwrap_or("");
    let name_after = |keywords: &[&str]| -> Option<(Arc<str>, Arc<str>)> {
        let mut i = 1;
        while i < tokens.len() && keywords.contains(&upper[i].as_str()) {
            i += 1;
        }
        tokens.get(i).map(|n| qualified(n, default_schema))
    };
    match first {
        "BEGIN" => Statement::Begin,
        "ROLLBACK" if upper.get(1).is_some_and(|w| w == "TO") => Statement::RollbackToSavepoint,
        "COMMIT" | "ROLLBACK" => Statement::Commit,
        "XA" => match upper.get(1).map(String::as_str) {
            Some("START") | Some("BEGIN") => Statement::Begin,
            Some("COMMIT") | Some("ROLLBACK") => Statement::Commit,
            _ => Statement::Other,
        },
        // A statement in the binlog that starts WITH is a data change (`WITH … UPDATE/DELETE`).
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD" | "WITH" => Statement::RowChange,
        "CREATE" | "ALTER" | "DROP" | "RENAME" | "TRUNCATE" => {
            let object_at = upper.iter().position(|w| {
                matches!(
                    w.as_str(),
                    "TABLE" | "DATABASE" | "SCHEMA" | "INDEX" | "VIEW"
                )
            });
            let object = object_at.map(|i| upper[i].as_str()).unwrap_or("");
            let skip: &[&str] = &[
                "TABLE",
                "TEMPORARY",
                "IF",
                "NOT",
                "EXISTS",
                "ONLINE",
                "IGNORE",
                "OR",
                "REPLACE",
            ];
            match (first, object) {
                ("CREATE", "TABLE") => ddl("create-table", name_after(skip)),
                ("ALTER", "TABLE") => ddl("change-columns", name_after(skip)),
                ("DROP", "TABLE") => ddl("drop-table", name_after(skip)),
                ("TRUNCATE", _) => ddl("truncate-table", name_after(skip)),
                ("RENAME", "TABLE") => {
                    let mut tables: Vec<_> = tokens
                        .iter()
                        .enumerate()
                        .skip(2)
                        .filter(|(i, _)| upper[*i] != "TO" && tokens[*i] != ",")
                        .map(|(_, n)| qualified(n, default_schema))
                        .collect();
                    tables.truncate(2);
                    Statement::Ddl {
                        operation: "rename-table",
                        tables,
                    }
                }
                ("CREATE" | "DROP" | "ALTER", "INDEX") => {
                    let on = upper.iter().position(|w| w == "ON");
                    let table = on
                        .and_then(|i| tokens.get(i + 1))
                        .map(|n| qualified(n, default_schema));
                    ddl("change-columns", table)
                }
                _ => Statement::Other,
            }
        }
        _ => Statement::Other,
    }
}

fn ddl(operation: &'static str, table: Option<(Arc<str>, Arc<str>)>) -> Statement {
    Statement::Ddl {
        operation,
        tables: table.into_iter().collect(),
    }
}

/// `db.t`, `` `db`.`t` `` or `t` (in the default schema).
fn qualified(name: &str, default_schema: &str) -> (Arc<str>, Arc<str>) {
    let parts = split_identifier(name);
    match parts.as_slice() {
        [schema, table] => (schema.as_str().into(), table.as_str().into()),
        _ => (
            default_schema.into(),
            parts.last().map(String::as_str).unwrap_or(name).into(),
        ),
    }
}

fn split_identifier(name: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' if quoted && chars.peek() == Some(&'`') => {
                chars.next();
                parts.last_mut().expect("non-empty").push('`');
            }
            '`' => quoted = !quoted,
            '.' if !quoted => parts.push(String::new()),
            c => parts.last_mut().expect("non-empty").push(c),
        }
    }
    parts
}

/// Splits SQL into words, skipping comments; a backquoted or dotted name is one word, and `,` and
/// `(` end words (and `,` is a word of its own).
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(sql: &'a str) -> Self {
        Words { rest: sql }
    }
}

impl Iterator for Words<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            self.rest = self.rest.trim_start();
            if let Some(r) = self.rest.strip_prefix("/*") {
                // MySQL executable comments (`/*!50100 … */`) hold real SQL: read inside them.
                if let Some(r) = r.strip_prefix('!') {
                    self.rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
                    continue;
                }
                self.rest = r.find("*/").map_or("", |i| &r[i + 2..]);
            } else if let Some(r) = self.rest.strip_prefix("*/") {
                self.rest = r;
            } else if self.rest.starts_with("--") || self.rest.starts_with('#') {
                self.rest = self.rest.find('\n').map_or("", |i| &self.rest[i..]);
            } else {
                break;
            }
        }
        if self.rest.is_empty() {
            return None;
        }
        if let Some(r) = self.rest.strip_prefix(',') {
            self.rest = r;
            return Some(",".into());
        }
        let mut end = 0;
        let mut quoted = false;
        for (i, c) in self.rest.char_indices() {
            if c == '`' {
                quoted = !quoted;
            } else if !quoted && (c.is_whitespace() || c == ',' || c == '(' || c == ';') {
                end = i;
                break;
            }
            end = i + c.len_utf8();
        }
        let word = &self.rest[..end];
        self.rest = &self.rest[end..];
        if word.is_empty() {
            // A lone `(` or `;`: skip it.
            self.rest = &self.rest[1..];
            return self.next();
        }
        Some(word.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(s: Statement) -> Vec<(String, String)> {
        match s {
            Statement::Ddl { tables, .. } => tables
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            other => panic!("not DDL: {other:?}"),
        }
    }

    #[test]
    fn ddl_names_its_tables() {
        assert_eq!(
            tables(classify_statement(
                "ALTER TABLE `shop`.`order s` ADD c INT",
                "x"
            )),
            vec![("shop".into(), "order s".into())]
        );
        assert_eq!(
            tables(classify_statement(
                "/* app */ CREATE TABLE IF NOT EXISTS t(a int)",
                "db"
            )),
            vec![("db".into(), "t".into())]
        );
        assert_eq!(
            tables(classify_statement("RENAME TABLE a TO b", "db")),
            vec![("db".into(), "a".into()), ("db".into(), "b".into())]
        );
        assert_eq!(
            tables(classify_statement(
                "DROP TABLE IF EXISTS `t` /* generated by server */",
                "db"
            )),
            vec![("db".into(), "t".into())]
        );
    }

    #[test]
    fn transaction_control_and_statements() {
        assert_eq!(classify_statement("BEGIN", ""), Statement::Begin);
        assert_eq!(
            classify_statement("XA START X'78',X'',1", ""),
            Statement::Begin
        );
        assert_eq!(
            classify_statement("COMMIT /* implicit */", ""),
            Statement::Commit
        );
        assert_eq!(
            classify_statement("ROLLBACK TO `sp1`", ""),
            Statement::RollbackToSavepoint
        );
        assert_eq!(
            classify_statement("WITH x AS (SELECT 1) UPDATE t SET a = 1", ""),
            Statement::RowChange
        );
        assert_eq!(
            classify_statement("insert into t values (1)", ""),
            Statement::RowChange
        );
        assert_eq!(
            classify_statement("GRANT ALL ON *.* TO x", ""),
            Statement::Other
        );
    }
}
