//! Masking personal data in change events.
//!
//! Rules select columns by a `schema.table.column` glob; the first rule that matches a column
//! decides what happens to it, in both the before and the after image:
//!
//! | action | result |
//! |---|---|
//! | `redact` | a fixed text, `*****` by default (Glue's default) |
//! | `partial` | the text with all but `keep_left` / `keep_right` characters replaced by `*` |
//! | `sha256` | hex SHA-256 of the value (unsalted, as Glue's `SHA256_HASH`: reversible by enumeration for short values such as phone numbers) |
//! | `hmac` | hex HMAC-SHA256 of the value with a secret key: the recommended default |
//! | `null` | NULL |
//! | `drop` | the column is removed from the event and its table definition |
//!
//! Detectors find personal data inside free text (emails, phone numbers, credit card numbers that
//! pass the Luhn check, US social security numbers, IPv4 and IPv6 addresses) and replace only the
//! matched span (`redact`, `sha256` or `hmac`).
//!
//! Values are hashed as the text they have in cdcd's native format (strings as their UTF-8 bytes,
//! binary values as their bytes), so a consumer can reproduce a hash from the source value. A
//! masked value is a string (or NULL); the event's table definition says so, because everything
//! downstream (partition keys, object names, lake schemas) is derived from the masked event.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use cdcd_event::pattern::glob_match;
use cdcd_event::{ChangeEvent, Column, ColumnType, TableSchema, Value};

/// The `[masking]` section of the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Environment variable holding the HMAC key.
    #[serde(default)]
    pub hmac_key_env: Option<String>,
    /// File holding the HMAC key (for systemd credentials or a mounted secret).
    #[serde(default)]
    pub hmac_key_file: Option<PathBuf>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub detect: Vec<DetectConfig>,
}

/// `[[masking.rules]]`: what to do with the columns a glob selects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `schema.table.column`, each part a glob.
    pub columns: String,
    pub action: ActionName,
    /// `redact`: the replacement text.
    #[serde(default)]
    pub text: Option<String>,
    /// `partial`: characters kept at the start.
    #[serde(default)]
    pub keep_left: usize,
    /// `partial`: characters kept at the end.
    #[serde(default)]
    pub keep_right: usize,
}

/// `[[masking.detect]]`: personal data to find inside the text of the selected columns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    pub columns: String,
    pub kinds: Vec<DetectorKind>,
    /// How a found span is replaced: `redact` (default), `sha256` or `hmac`.
    #[serde(default = "default_span_action")]
    pub action: ActionName,
    #[serde(default)]
    pub text: Option<String>,
}

fn default_span_action() -> ActionName {
    ActionName::Redact
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    Redact,
    Partial,
    Sha256,
    Hmac,
    Null,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorKind {
    Email,
    Phone,
    CreditCard,
    Ssn,
    Ip,
}

#[derive(Debug, thiserror::Error)]
pub enum MaskingError {
    #[error("masking.rules[{index}] (`{columns}`): {message}")]
    Rule {
        index: usize,
        columns: String,
        message: String,
    },
    #[error("masking.detect[{index}] (`{columns}`): {message}")]
    Detect {
        index: usize,
        columns: String,
        message: String,
    },
    #[error("masking: an hmac action needs a key: set the variable named by masking.hmac_key_env or point masking.hmac_key_file at a file ({0})")]
    MissingKey(String),
}

/// How many values each rule action masked and how many spans each detector kind replaced,
/// since the [`Masker`] was made: for the daemon's `/metrics` (no values, only counts).
#[derive(Debug, Default)]
pub struct MaskingCounters {
    /// Indexed like [`ACTION_NAMES`].
    actions: [AtomicU64; 6],
    /// Indexed like [`DETECTOR_NAMES`].
    detections: [AtomicU64; 5],
}

/// The rule actions, as the configuration names them.
const ACTION_NAMES: [&str; 6] = ["redact", "partial", "sha256", "hmac", "null", "drop"];
/// The detector kinds, as the configuration names them.
const DETECTOR_NAMES: [&str; 5] = ["email", "phone", "credit-card", "ssn", "ip"];

impl MaskingCounters {
    /// Values masked by rules, per action.
    pub fn actions(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ACTION_NAMES
            .into_iter()
            .zip(self.actions.iter().map(|n| n.load(Ordering::Relaxed)))
    }

    /// Spans replaced by detectors, per kind.
    pub fn detections(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DETECTOR_NAMES
            .into_iter()
            .zip(self.detections.iter().map(|n| n.load(Ordering::Relaxed)))
    }

    /// Adds one event's counts (an atomic add per non-zero count, not per value).
    fn add(&self, actions: &[u64; 6], detections: &[u64; 5]) {
        for (counter, n) in self.actions.iter().zip(actions) {
            if *n > 0 {
                counter.fetch_add(*n, Ordering::Relaxed);
            }
        }
        for (counter, n) in self.detections.iter().zip(detections) {
            if *n > 0 {
                counter.fetch_add(*n, Ordering::Relaxed);
            }
        }
    }
}

impl DetectorKind {
    /// Its index in [`DETECTOR_NAMES`].
    fn index(self) -> usize {
        match self {
            DetectorKind::Email => 0,
            DetectorKind::Phone => 1,
            DetectorKind::CreditCard => 2,
            DetectorKind::Ssn => 3,
            DetectorKind::Ip => 4,
        }
    }
}

/// What happens to one value.
#[derive(Debug, Clone)]
enum Action {
    Redact(Arc<str>),
    Partial { left: usize, right: usize },
    Sha256,
    Hmac,
    Null,
    Drop,
}

impl Action {
    /// Its index in [`ACTION_NAMES`].
    fn index(&self) -> usize {
        match self {
            Action::Redact(_) => 0,
            Action::Partial { .. } => 1,
            Action::Sha256 => 2,
            Action::Hmac => 3,
            Action::Null => 4,
            Action::Drop => 5,
        }
    }
}

#[derive(Debug)]
struct Rule {
    pattern: [String; 3],
    action: Action,
}

#[derive(Debug)]
struct Detector {
    pattern: [String; 3],
    kinds: Vec<DetectorKind>,
    action: Action,
}

/// Per table: the masked definition and each column's treatment.
#[derive(Debug)]
struct TablePlan {
    source: Arc<TableSchema>,
    masked: Arc<TableSchema>,
    /// Per source column: the action, and the detectors for free text.
    columns: Vec<(Option<Action>, Vec<DetectorKind>, Option<Action>)>,
}

/// Applies masking rules and detectors to change events.
#[derive(Debug)]
pub struct Masker {
    rules: Vec<Rule>,
    detectors: Vec<Detector>,
    /// HMAC-SHA256 with the key already absorbed: cloned per value, which saves hashing the
    /// padded key twice for every value.
    keyed: Option<Hmac<Sha256>>,
    patterns: Patterns,
    /// The plan of the table seen last: events come in runs of one table.
    last: Option<TablePlan>,
    counters: Arc<MaskingCounters>,
}

#[derive(Debug)]
struct Patterns {
    email: Regex,
    phone: Regex,
    card: Regex,
    ssn: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

impl Patterns {
    fn new() -> Self {
        let re = |s: &str| Regex::new(s).expect("built-in pattern");
        Patterns {
            email: re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
            phone: re(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,3}"),
            card: re(r"\b\d(?:[ -]?\d){12,18}\b"),
            ssn: re(r"\b(\d{3})-(\d{2})-(\d{4})\b"),
            ipv4: re(
                r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
            ),
            ipv6: re(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"),
        }
    }
}

fn split_pattern(columns: &str) -> Option<[String; 3]> {
    let mut parts = columns.splitn(3, '.');
    let (s, t, c) = (parts.next()?, parts.next()?, parts.next()?);
    Some([s.to_string(), t.to_string(), c.to_string()])
}

fn matches(pattern: &[String; 3], schema: &str, table: &str, column: &str) -> bool {
    glob_match(&pattern[0], schema)
        && glob_match(&pattern[1], table)
        && glob_match(&pattern[2], column)
}

impl Masker {
    /// Compiles the configuration; the HMAC key is read here (from the environment or a file),
    /// so a missing secret fails before any data moves.
    pub fn new(config: &MaskingConfig) -> Result<Self, MaskingError> {
        let mut rules = Vec::new();
        let mut needs_key = false;
        for (index, rule) in config.rules.iter().enumerate() {
            let err = |message: String| MaskingError::Rule {
                index,
                columns: rule.columns.clone(),
                message,
            };
            let pattern = split_pattern(&rule.columns)
                .ok_or_else(|| err("write it as schema.table.column (globs allowed)".into()))?;
            let action = match rule.action {
                ActionName::Redact => {
                    Action::Redact(rule.text.as_deref().unwrap_or("*****").into())
                }
                ActionName::Partial => {
                    if rule.keep_left == 0 && rule.keep_right == 0 {
                        return Err(err(
                            "partial keeps nothing: set keep_left and/or keep_right, or use redact"
                                .into(),
                        ));
                    }
                    Action::Partial {
                        left: rule.keep_left,
                        right: rule.keep_right,
                    }
                }
                ActionName::Sha256 => Action::Sha256,
                ActionName::Hmac => {
                    needs_key = true;
                    Action::Hmac
                }
                ActionName::Null => Action::Null,
                ActionName::Drop => Action::Drop,
            };
            rules.push(Rule { pattern, action });
        }
        let mut detectors = Vec::new();
        for (index, detect) in config.detect.iter().enumerate() {
            let err = |message: &str| MaskingError::Detect {
                index,
                columns: detect.columns.clone(),
                message: message.into(),
            };
            let pattern = split_pattern(&detect.columns)
                .ok_or_else(|| err("write it as schema.table.column"))?;
            if detect.kinds.is_empty() {
                return Err(err(
                    "kinds is empty: list email, phone, credit-card, ssn and/or ip",
                ));
            }
            let action = match detect.action {
                ActionName::Redact => {
                    Action::Redact(detect.text.as_deref().unwrap_or("*****").into())
                }
                ActionName::Sha256 => Action::Sha256,
                ActionName::Hmac => {
                    needs_key = true;
                    Action::Hmac
                }
                _ => return Err(err("found spans can be replaced by redact, sha256 or hmac")),
            };
            detectors.push(Detector {
                pattern,
                kinds: detect.kinds.clone(),
                action,
            });
        }
        let keyed = if needs_key {
            let key = read_key(config)?;
            Some(Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length"))
        } else {
            None
        };
        Ok(Masker {
            rules,
            detectors,
            keyed,
            patterns: Patterns::new(),
            last: None,
            counters: Arc::default(),
        })
    }

    /// The rules and detectors that select no column of `tables`, as their `columns` patterns:
    /// usually a typo, reported before any data moves.
    pub fn unmatched(&self, tables: &[TableSchema]) -> Vec<String> {
        let mut used = HashSet::new();
        let patterns = self
            .rules
            .iter()
            .map(|r| &r.pattern)
            .chain(self.detectors.iter().map(|d| &d.pattern));
        for (i, pattern) in patterns.enumerate() {
            let hit = tables.iter().any(|t| {
                t.columns
                    .iter()
                    .any(|c| matches(pattern, &t.schema, &t.table, &c.name))
            });
            if hit {
                used.insert(i);
            }
        }
        let names: Vec<String> = self
            .rules
            .iter()
            .map(|r| &r.pattern)
            .chain(self.detectors.iter().map(|d| &d.pattern))
            .map(|p| format!("`{}`", p.join(".")))
            .collect();
        (0..names.len())
            .filter(|i| !used.contains(i))
            .map(|i| names[i].clone())
            .collect()
    }

    /// What this masker has masked so far.
    pub fn counters(&self) -> Arc<MaskingCounters> {
        self.counters.clone()
    }

    /// Masks an event in place: values, and the table definition when columns are dropped or
    /// change type.
    pub fn mask(&mut self, event: &mut ChangeEvent) {
        if self.rules.is_empty() && self.detectors.is_empty() {
            return;
        }
        let fresh = !matches!(&self.last, Some(plan) if Arc::ptr_eq(&plan.source, &event.table));
        if fresh {
            self.last = Some(self.plan(&event.table));
        }
        let plan = self.last.as_ref().expect("planned above");
        let (mut actions, mut detections) = ([0u64; 6], [0u64; 5]);
        for image in [event.before.as_mut(), event.after.as_mut()]
            .into_iter()
            .flatten()
        {
            let values = std::mem::take(image);
            let mut masked = Vec::with_capacity(plan.masked.columns.len());
            for ((action, kinds, span_action), (column, value)) in plan
                .columns
                .iter()
                .zip(event.table.columns.iter().zip(values))
            {
                let value = match (action, value) {
                    (Some(Action::Drop), _) => {
                        actions[Action::Drop.index()] += 1;
                        continue;
                    }
                    (_, v @ (Value::Null | Value::Absent)) => v,
                    (Some(action), v) => {
                        actions[action.index()] += 1;
                        self.apply(action, column, v)
                    }
                    (None, Value::String(s)) if !kinds.is_empty() => {
                        let span = span_action.as_ref().expect("detectors have an action");
                        Value::String(self.detect(&s, kinds, span, &mut detections))
                    }
                    (None, v) => v,
                };
                masked.push(value);
            }
            *image = masked;
        }
        self.counters.add(&actions, &detections);
        event.table = plan.masked.clone();
    }

    /// The table as its masked events describe it: dropped columns gone, masked ones text.
    pub fn masked_table(&self, table: &Arc<TableSchema>) -> Arc<TableSchema> {
        if self.rules.is_empty() && self.detectors.is_empty() {
            return table.clone();
        }
        self.plan(table).masked
    }

    fn plan(&self, table: &Arc<TableSchema>) -> TablePlan {
        let mut columns = Vec::with_capacity(table.columns.len());
        let mut masked_columns = Vec::with_capacity(table.columns.len());
        let mut kept = Vec::with_capacity(table.columns.len());
        for column in &table.columns {
            let action = self
                .rules
                .iter()
                .find(|r| matches(&r.pattern, &table.schema, &table.table, &column.name))
                .map(|r| r.action.clone());
            let detector = self
                .detectors
                .iter()
                .find(|d| matches(&d.pattern, &table.schema, &table.table, &column.name));
            let kinds = detector.map(|d| d.kinds.clone()).unwrap_or_default();
            let span_action = detector.map(|d| d.action.clone());
            match &action {
                Some(Action::Drop) => kept.push(None),
                Some(Action::Null) | None => {
                    kept.push(Some(masked_columns.len()));
                    masked_columns.push(column.clone());
                }
                Some(_) => {
                    kept.push(Some(masked_columns.len()));
                    masked_columns.push(as_text_column(column));
                }
            }
            columns.push((action, kinds, span_action));
        }
        let primary_key = table.primary_key.iter().filter_map(|&i| kept[i]).collect();
        TablePlan {
            source: table.clone(),
            masked: Arc::new(TableSchema {
                schema: table.schema.clone(),
                table: table.table.clone(),
                columns: masked_columns,
                primary_key,
            }),
            columns,
        }
    }

    fn apply(&self, action: &Action, column: &Column, value: Value) -> Value {
        match action {
            Action::Redact(text) => Value::String(text.to_string()),
            Action::Partial { left, right } => {
                Value::String(partial(&value_text(column, &value), *left, *right))
            }
            Action::Sha256 => Value::String(hex(&Sha256::digest(value_bytes(column, &value)))),
            Action::Hmac => Value::String(self.hmac(&value_bytes(column, &value))),
            Action::Null => Value::Null,
            Action::Drop => Value::Absent,
        }
    }

    fn hmac(&self, bytes: &[u8]) -> String {
        let mut mac = self
            .keyed
            .clone()
            .expect("hmac actions exist only with a key (checked in Masker::new)");
        mac.update(bytes);
        hex(&mac.finalize().into_bytes())
    }

    /// Replaces every span the detectors find in `text`, counting them per kind in `counts`.
    fn detect(
        &self,
        text: &str,
        kinds: &[DetectorKind],
        action: &Action,
        counts: &mut [u64; 5],
    ) -> String {
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        let p = &self.patterns;
        for kind in kinds {
            let first = spans.len();
            match kind {
                DetectorKind::Email => {
                    spans.extend(p.email.find_iter(text).map(|m| (m.start(), m.end(), 0)))
                }
                DetectorKind::Phone => spans.extend(
                    p.phone
                        .find_iter(text)
                        // E.164 numbers have at most 15 digits; fewer than 9 are rarely phones.
                        .filter(|m| {
                            let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
                            (9..=15).contains(&digits)
                        })
                        .map(|m| (m.start(), m.end(), 0)),
                ),
                DetectorKind::CreditCard => spans.extend(
                    p.card
                        .find_iter(text)
                        .filter(|m| luhn(m.as_str()))
                        .map(|m| (m.start(), m.end(), 0)),
                ),
                DetectorKind::Ssn => spans.extend(
                    p.ssn
                        .captures_iter(text)
                        .filter(|c| valid_ssn(&c[1], &c[2], &c[3]))
                        .map(|c| c.get(0).expect("whole match"))
                        .map(|m| (m.start(), m.end(), 0)),
                ),
                DetectorKind::Ip => {
                    spans.extend(p.ipv4.find_iter(text).map(|m| (m.start(), m.end(), 0)));
                    spans.extend(
                        p.ipv6
                            .find_iter(text)
                            .filter(|m| m.as_str().parse::<std::net::Ipv6Addr>().is_ok())
                            .map(|m| (m.start(), m.end(), 0)),
                    );
                }
            }
            for span in &mut spans[first..] {
                span.2 = kind.index();
            }
        }
        if spans.is_empty() {
            return text.to_string();
        }
        // One span found by two detectors (an SSN is also a phone-like digit run) is counted
        // for the more specific one: phone numbers last.
        const SPECIFICITY: [u8; 5] = [0, 4, 1, 2, 3];
        spans.sort_unstable_by_key(|&(start, end, kind)| (start, end, SPECIFICITY[kind]));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end, kind) in spans {
            if start < at {
                // Overlaps a span already replaced (an email's digits seen as a phone number).
                continue;
            }
            counts[kind] += 1;
            out.push_str(&text[at..start]);
            let found = &text[start..end];
            match action {
                Action::Sha256 => out.push_str(&hex(&Sha256::digest(found.as_bytes()))),
                Action::Hmac => out.push_str(&self.hmac(found.as_bytes())),
                Action::Redact(replacement) => out.push_str(replacement),
                _ => out.push_str("*****"),
            }
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }
}

fn read_key(config: &MaskingConfig) -> Result<Vec<u8>, MaskingError> {
    if let Some(file) = &config.hmac_key_file {
        let key = std::fs::read(file).map_err(|e| {
            MaskingError::MissingKey(format!("cannot read {}: {e}", file.display()))
        })?;
        let key = key.strip_suffix(b"\n").unwrap_or(&key).to_vec();
        if key.is_empty() {
            return Err(MaskingError::MissingKey(format!(
                "{} is empty",
                file.display()
            )));
        }
        return Ok(key);
    }
    let variable = config.hmac_key_env.as_deref().unwrap_or("CDCD_MASKING_KEY");
    match std::env::var(variable) {
        Ok(key) if !key.is_empty() => Ok(key.into_bytes()),
        _ => Err(MaskingError::MissingKey(format!("{variable} is not set"))),
    }
}

/// A masked column holds text.
fn as_text_column(column: &Column) -> Column {
    Column {
        kind: ColumnType::VarChar,
        unsigned: false,
        width: 0,
        scale: 0,
        elements: Arc::from(Vec::new()),
        collation: 45,
        ..column.clone()
    }
}

/// The value as text: strings as they are, everything else in its native rendering.
fn value_text(column: &Column, value: &Value) -> String {
    let mut text = String::new();
    if !value.write_text(column, &mut text) {
        if let Value::Bytes(bytes) | Value::Geometry(bytes) = value {
            text = String::from_utf8_lossy(bytes).into_owned();
        }
    }
    text
}

/// The bytes that are hashed: UTF-8 text, or the raw bytes of binary values.
fn value_bytes(column: &Column, value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) | Value::Geometry(b) => b.clone(),
        other => value_text(column, other).into_bytes(),
    }
}

fn partial(text: &str, left: usize, right: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if left + right >= chars.len() {
        // Too short to hide anything while keeping both ends: hide it all.
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < left || i >= chars.len() - right {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The Luhn checksum of the digits in `s` (separators ignored).
fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// SSNs never have area 000, 666 or 900-999, group 00 or serial 0000.
fn valid_ssn(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdcd_event::{Flavor, Op, Source, Transaction};

    fn column(name: &str, kind: ColumnType) -> Column {
        let mut c = Column::unnamed(0, kind);
        c.name = name.into();
        c
    }

    fn users() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            schema: "shop".into(),
            table: "users".into(),
            columns: vec![
                column("id", ColumnType::Int),
                column("email", ColumnType::VarChar),
                column("phone", ColumnType::VarChar),
                column("ssn", ColumnType::Char),
                column("card", ColumnType::VarChar),
                column("note", ColumnType::Text),
                column("balance", ColumnType::Decimal),
            ],
            primary_key: vec![0],
        })
    }

    fn event(after: Vec<Value>) -> ChangeEvent {
        ChangeEvent {
            op: Op::Insert,
            table: users(),
            before: None,
            after: Some(after),
            source: Source {
                transaction: Arc::new(Transaction {
                    flavor: Flavor::MySql,
                    server_id: 1,
                    server_uuid: None,
                    gtid: None,
                    file: "binlog.000001".into(),
                    pos: 4,
                    commit_ts_us: 0,
                }),
                pos: 4,
                next_pos: 100,
                row: 0,
            },
        }
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn config(toml_rules: &str) -> MaskingConfig {
        toml::from_str(toml_rules).unwrap()
    }

    #[test]
    fn rules_mask_drop_and_hash_columns() {
        std::env::set_var("CDCD_TEST_MASK_KEY", "k3y");
        let mut masker = Masker::new(&config(
            r#"
            hmac_key_env = "CDCD_TEST_MASK_KEY"
            [[rules]]
            columns = "shop.users.email"
            action = "hmac"
            [[rules]]
            columns = "shop.users.phone"
            action = "partial"
            keep_right = 4
            [[rules]]
            columns = "shop.*.ssn"
            action = "sha256"
            [[rules]]
            columns = "shop.users.card"
            action = "drop"
            [[rules]]
            columns = "*.*.balance"
            action = "redact"
            [[detect]]
            columns = "shop.users.note"
            kinds = ["email", "credit-card", "ssn", "ip", "phone"]
            "#,
        ))
        .unwrap();
        let mut e = event(vec![
            Value::Int(7),
            s("ada@example.com"),
            s("+44 20 7946 0001"),
            s("123-45-6789"),
            s("4111111111111111"),
            s("mail bob@example.org, card 4111 1111 1111 1111 or 1234 5678 9012 3456, ssn 078-05-1120, from 10.1.2.3 and 2001:db8::1, call +1 (555) 123-4567; order 42"),
            Value::Decimal("12.50".into()),
        ]);
        masker.mask(&mut e);
        let after = e.after.as_ref().unwrap();
        assert_eq!(e.table.columns.len(), 6, "card is dropped");
        assert!(e.table.columns.iter().all(|c| &*c.name != "card"));
        assert_eq!(after.len(), 6);
        assert_eq!(after[0], Value::Int(7));
        // HMAC-SHA256("k3y", "ada@example.com"), computed independently with Python's hmac module.
        assert_eq!(
            after[1],
            s("9ae450d30547cff6a7c4c006e3e511196b21c4a45597b35b57519c5672b313d0")
        );
        assert_eq!(after[2], s("************0001"));
        // sha256("123-45-6789")
        assert_eq!(
            after[3],
            s("01a54629efb952287e554eb23ef69c52097a75aecc0e3a93ca0855ab6d7a31a0")
        );
        assert_eq!(
            after[4],
            s("mail *****, card ***** or 1234 5678 9012 3456, ssn *****, from ***** and *****, call *****; order 42")
        );
        assert_eq!(after[5], s("*****"));
        assert_eq!(
            e.table.columns[5].kind,
            ColumnType::VarChar,
            "masked columns are text"
        );
        assert_eq!(e.table.primary_key, vec![0]);
        // One value per rule action; the note's replaced spans by kind (the unmatched card
        // number and "42" are not counted).
        let counters = masker.counters();
        let actions: Vec<_> = counters.actions().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            actions,
            [
                ("redact", 1),
                ("partial", 1),
                ("sha256", 1),
                ("hmac", 1),
                ("drop", 1)
            ]
        );
        let detections: Vec<_> = counters.detections().collect();
        assert_eq!(
            detections,
            [
                ("email", 1),
                ("phone", 1),
                ("credit-card", 1),
                ("ssn", 1),
                ("ip", 2)
            ]
        );
    }

    #[test]
    fn hmac_needs_a_key_and_bad_rules_are_named() {
        let err = Masker::new(&config(
            r#"
            hmac_key_env = "CDCD_TEST_MASK_KEY_UNSET"
            [[rules]]
            columns = "a.b.c"
            action = "hmac"
            "#,
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("CDCD_TEST_MASK_KEY_UNSET"),
            "{err}"
        );
        let err = Masker::new(&config(
            r#"
            [[rules]]
            columns = "nodots"
            action = "null"
            "#,
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("masking.rules[0] (`nodots`)"),
            "{err}"
        );
        let masker = Masker::new(&config(
            r#"
            [[rules]]
            columns = "shop.users.emial"
            action = "null"
            "#,
        ))
        .unwrap();
        assert_eq!(
            masker.unmatched(&[(*users()).clone()]),
            vec!["`shop.users.emial`"]
        );
    }

    #[test]
    fn luhn_and_ssn_validity() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(valid_ssn("078", "05", "1120"));
        assert!(!valid_ssn("666", "05", "1120"));
        assert_eq!(partial("ab", 1, 1), "**");
    }
}
