//! MySQL binary JSON (JSONB) to JSON text, and partial JSON updates applied to a document.
//!
//! Text is compact JSON with object keys in MySQL's stored order. Numbers are exact: integers and
//! u64 from their binary form, doubles in shortest round-trip form, and the opaque DECIMAL scalars
//! MySQL can store inside JSON as their decimal digits. Opaque DATE/TIME/DATETIME scalars become
//! strings, as `JSON_EXTRACT` shows them.

use std::fmt::Write as _;

use mysql_common::binlog::jsonb::{self, JsonDom, JsonNumber, JsonScalar};
use mysql_common::binlog::jsondiff::{JsonDiff, JsonDiffOperation};
use mysql_common::io::ParseBuf;
use serde_json::Value as Doc;

/// Parses a JSONB value and renders it as JSON text.
pub(crate) fn jsonb_to_text(bytes: &[u8]) -> Result<String, String> {
    if bytes.is_empty() {
        // An empty JSONB value is how MySQL stores the JSON null literal in some paths.
        return Ok("null".into());
    }
    let value: jsonb::Value<'_> = ParseBuf(bytes)
        .parse(())
        .map_err(|e| format!("invalid binary JSON: {e}"))?;
    let mut out = String::with_capacity(bytes.len());
    render(&mut out, value).map_err(|e| format!("invalid binary JSON: {e}"))?;
    Ok(out)
}

fn render(out: &mut String, value: jsonb::Value<'_>) -> std::io::Result<()> {
    use jsonb::Value as J;
    match value {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        J::I16(v) => out.push_str(itoa::Buffer::new().format(v)),
        J::U16(v) => out.push_str(itoa::Buffer::new().format(v)),
        J::I32(v) => out.push_str(itoa::Buffer::new().format(v)),
        J::U32(v) => out.push_str(itoa::Buffer::new().format(v)),
        J::I64(v) => out.push_str(itoa::Buffer::new().format(v)),
        J::U64(v) => out.push_str(itoa::Buffer::new().format(v)),
        J::F64(v) => render_double(out, v),
        J::String(s) => push_json_string(out, &String::from_utf8_lossy(s.str_raw())),
        J::SmallArray(a) => render_array(out, a.iter())?,
        J::LargeArray(a) => render_array(out, a.iter())?,
        J::SmallObject(o) => render_object(out, o.iter())?,
        J::LargeObject(o) => render_object(out, o.iter())?,
        opaque @ J::Opaque(_) => match opaque.parse()? {
            JsonDom::Scalar(JsonScalar::Number(JsonNumber::Decimal(d))) => {
                out.push_str(&d.to_string())
            }
            JsonDom::Scalar(JsonScalar::DateTime(t)) => push_json_string(out, &format!("{t:.6}")),
            other => {
                let text = serde_json::Value::from(other).to_string();
                out.push_str(&text);
            }
        },
    }
    Ok(())
}

fn render_double(out: &mut String, v: f64) {
    if v.is_finite() {
        let text = ryu::Buffer::new().format_finite(v).to_string();
        out.push_str(&text);
    } else {
        out.push_str("null");
    }
}

fn render_array<'a>(
    out: &mut String,
    items: impl Iterator<Item = std::io::Result<jsonb::Value<'a>>>,
) -> std::io::Result<()> {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        render(out, item?)?;
    }
    out.push(']');
    Ok(())
}

fn render_object<'a>(
    out: &mut String,
    entries: impl Iterator<Item = std::io::Result<(jsonb::ObjectKey<'a>, jsonb::Value<'a>)>>,
) -> std::io::Result<()> {
    out.push('{');
    for (i, entry) in entries.enumerate() {
        let (key, value) = entry?;
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, &String::from_utf8_lossy(key.value_raw()));
        out.push(':');
        render(out, value)?;
    }
    out.push('}');
    Ok(())
}

fn push_json_string(out: &mut String, s: &str) {
    let _ = write!(out, "{}", serde_json::Value::String(s.to_owned()));
}

/// Applies the partial updates of a PARTIAL_UPDATE_ROWS event to the before image's document.
pub(crate) fn apply_diffs(before: &str, diffs: &[JsonDiff<'_>]) -> Result<String, String> {
    let mut doc: Doc =
        serde_json::from_str(before).map_err(|e| format!("before image is not JSON: {e}"))?;
    for diff in diffs {
        let path = parse_path(&diff.path_str())?;
        let value = match diff.value() {
            Some(v) => {
                let mut text = String::new();
                render(&mut text, v.clone()).map_err(|e| format!("invalid binary JSON: {e}"))?;
                Some(serde_json::from_str::<Doc>(&text).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        apply(&mut doc, &path, diff.operation(), value)
            .map_err(|e| format!("{e} (path {})", diff.path_str()))?;
    }
    Ok(doc.to_string())
}

/// The diffs as a JSON array of `{"op":"replace"|"insert"|"remove","path":…,"value":…}`.
pub(crate) fn diffs_to_text(diffs: &[JsonDiff<'_>]) -> Result<String, String> {
    let mut out = String::from("[");
    for (i, diff) in diffs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let op = match diff.operation() {
            JsonDiffOperation::REPLACE => "replace",
            JsonDiffOperation::INSERT => "insert",
            JsonDiffOperation::REMOVE => "remove",
        };
        out.push_str(r#"{"op":""#);
        out.push_str(op);
        out.push_str(r#"","path":"#);
        push_json_string(&mut out, &diff.path_str());
        if let Some(value) = diff.value() {
            out.push_str(r#","value":"#);
            render(&mut out, value.clone()).map_err(|e| format!("invalid binary JSON: {e}"))?;
        }
        out.push('}');
    }
    out.push(']');
    Ok(out)
}

#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses the JSON paths MySQL writes in partial updates: `$`, `.key`, `."quoted key"`, `[n]`.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let bad = || format!("unsupported JSON path {path:?} in a partial update");
    let rest = path.strip_prefix('$').ok_or_else(bad)?;
    let mut steps = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                if chars.peek() == Some(&'"') {
                    // A quoted key is a JSON string: read it with its escapes.
                    let mut quoted = String::from(chars.next().ok_or_else(bad)?);
                    loop {
                        let c = chars.next().ok_or_else(bad)?;
                        quoted.push(c);
                        match c {
                            '\\' => quoted.push(chars.next().ok_or_else(bad)?),
                            '"' => break,
                            _ => {}
                        }
                    }
                    key = serde_json::from_str(&quoted).map_err(|_| bad())?;
                } else {
                    while let Some(&c) = chars.peek() {
                        if c == '.' || c == '[' {
                            break;
                        }
                        key.push(c);
                        chars.next();
                    }
                }
                steps.push(Step::Key(key));
            }
            '[' => {
                let mut digits = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    digits.push(c);
                }
                steps.push(Step::Index(digits.trim().parse().map_err(|_| bad())?));
            }
            ' ' => {}
            _ => return Err(bad()),
        }
    }
    Ok(steps)
}

fn apply(
    doc: &mut Doc,
    path: &[Step],
    op: JsonDiffOperation,
    value: Option<Doc>,
) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return match (op, value) {
            (JsonDiffOperation::REPLACE, Some(v)) => {
                *doc = v;
                Ok(())
            }
            _ => Err("cannot insert or remove the document root".into()),
        };
    };
    let mut target = &mut *doc;
    for step in parents {
        target = match (step, target) {
            (Step::Key(k), Doc::Object(map)) => map.get_mut(k),
            (Step::Index(i), Doc::Array(items)) => items.get_mut(*i),
            _ => None,
        }
        .ok_or("path does not exist in the before image")?;
    }
    match (op, last, target, value) {
        (JsonDiffOperation::REMOVE, Step::Key(k), Doc::Object(map), _) => {
            map.shift_remove(k).map(|_| ()).ok_or("no such key".into())
        }
        (JsonDiffOperation::REMOVE, Step::Index(i), Doc::Array(items), _) if *i < items.len() => {
            items.remove(*i);
            Ok(())
        }
        (_, Step::Key(k), Doc::Object(map), Some(v)) => {
            map.insert(k.clone(), v);
            Ok(())
        }
        (JsonDiffOperation::REPLACE, Step::Index(i), Doc::Array(items), Some(v))
            if *i < items.len() =>
        {
            items[*i] = v;
            Ok(())
        }
        (JsonDiffOperation::INSERT, Step::Index(i), Doc::Array(items), Some(v)) => {
            let at = (*i).min(items.len());
            items.insert(at, v);
            Ok(())
        }
        _ => Err("update does not fit the before image".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_like_mysql_writes_them() {
        assert_eq!(
            parse_path(r#"$.a[2]."b c""#).unwrap(),
            vec![
                Step::Key("a".into()),
                Step::Index(2),
                Step::Key("b c".into())
            ]
        );
        assert!(parse_path("a").is_err());
        assert_eq!(
            parse_path(r#"$."a\nb\u00e9""#).unwrap(),
            vec![Step::Key("a\nbé".into())]
        );
    }

    #[test]
    fn diffs_apply_in_place() {
        let mut doc: Doc = serde_json::from_str(r#"{"a":[1,2],"b":{"c":1}}"#).unwrap();
        apply(
            &mut doc,
            &parse_path("$.a[1]").unwrap(),
            JsonDiffOperation::REPLACE,
            Some(Doc::from(5)),
        )
        .unwrap();
        apply(
            &mut doc,
            &parse_path("$.b.d").unwrap(),
            JsonDiffOperation::INSERT,
            Some(Doc::from("x")),
        )
        .unwrap();
        apply(
            &mut doc,
            &parse_path("$.b.c").unwrap(),
            JsonDiffOperation::REMOVE,
            None,
        )
        .unwrap();
        assert_eq!(doc.to_string(), r#"{"a":[1,5],"b":{"d":"x"}}"#);
    }
}
