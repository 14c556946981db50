//! Reading a `cdcd run` lake back the way Athena would (DuckDB through `lake_query.py`): the
//! event ids it holds, and the rows of the `_latest` view that `cdcd athena-ddl` prints, in
//! cdcd's native JSON encoding so that [`super::assert_table_matches`] compares them with the
//! source table.

use std::collections::BTreeMap;
use std::process::Command;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::Value as Json;

use super::Rows;

/// A lake and the S3 endpoint it lives on (`None`: the shared one, or a directory).
pub struct LakeRef<'a> {
    pub url: &'a str,
    pub s3_endpoint: Option<&'a str>,
}

/// Runs SQL over the lake in DuckDB; the last statement's rows.
pub fn query(lake: &LakeRef, sql: &str) -> Vec<Json> {
    try_query(lake, sql).unwrap_or_else(|e| panic!("lake_query.py {} {sql}: {e}", lake.url))
}

/// Runs SQL over the lake in DuckDB: the last statement's rows, or DuckDB's error.
pub fn try_query(lake: &LakeRef, sql: &str) -> Result<Vec<Json>, String> {
    let file = std::env::temp_dir().join(format!(
        "cdcd-faults-query-{}-{:x}.sql",
        std::process::id(),
        fxhash(lake.url)
    ));
    std::fs::write(&file, sql).unwrap();
    let script = super::faults::repo_root().join("tests/support/lake_query.py");
    let mut command = Command::new(std::env::var("CDCD_TEST_DUCKDB_PYTHON").unwrap());
    command.arg(script).arg(lake.url).arg(&file);
    if let Some(endpoint) = lake.s3_endpoint {
        command.env("CDCD_TEST_S3_ENDPOINT", endpoint);
    }
    let out = command.output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect())
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// How often each `_cdc_event_id` occurs in the lake's objects of each of `db`'s `tables`
/// (a table without objects has none). One scan of every object under `<lake>/<db>/`.
pub fn event_id_counts(
    lake: &LakeRef,
    db: &str,
    tables: &[&str],
) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = tables
        .iter()
        .map(|t| (t.to_string(), BTreeMap::new()))
        .collect();
    let sql = format!(
        "SELECT regexp_extract(filename, '/{db}/([^/]+)/', 1) AS t, _cdc_event_id AS id, \
         count(*) AS n FROM read_parquet('{}/{db}/*/*/*/*/*/*.parquet', union_by_name = true, \
         filename = true) GROUP BY 1, 2",
        lake.url.trim_end_matches('/')
    );
    let rows = match try_query(lake, &sql) {
        Ok(rows) => rows,
        // Nothing written yet.
        Err(e) if e.contains("No files found") => return counts,
        Err(e) => panic!("lake_query.py {}: {e}", lake.url),
    };
    for row in rows {
        if let Some(table) = counts.get_mut(row["t"].as_str().unwrap()) {
            table.insert(
                row["id"].as_str().unwrap().to_string(),
                row["n"].as_u64().unwrap() as usize,
            );
        }
    }
    counts
}

fn athena_name(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The `CREATE OR REPLACE VIEW … _latest` statement `cdcd athena-ddl --config config` prints for
/// `db.table`.
pub fn latest_view(cdcd: Command, lake: &LakeRef, db: &str, table: &str) -> String {
    let mut cdcd = cdcd;
    let location = if lake.url.starts_with("s3://") {
        lake.url.to_string()
    } else {
        format!("s3://copy-of/{}", fxhash(lake.url))
    };
    let out = cdcd
        .args(["athena-ddl", "--location", &location])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "athena-ddl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ddl = String::from_utf8(out.stdout).unwrap();
    let start = format!("CREATE OR REPLACE VIEW \"cdcd\".\"{db}_{table}_latest\"");
    let from = ddl
        .find(&start)
        .unwrap_or_else(|| panic!("no {start} in:\n{ddl}"));
    let end = from + ddl[from..].find(';').unwrap();
    ddl[from..=end].to_string()
}

/// The current rows of `db.table` as the lake's `_latest` view gives them, in cdcd's native
/// encoding, keyed by primary key (the columns are today's, from `information_schema`).
pub async fn latest_rows(
    conn: &mut Conn,
    cdcd: Command,
    lake: &LakeRef<'_>,
    db: &str,
    table: &str,
) -> Rows {
    let view = latest_view(cdcd, lake, db, table);
    let rows = query(
        lake,
        &format!("{view}\nSELECT * FROM \"cdcd\".\"{db}_{table}_latest\";"),
    );
    let columns: Vec<(String, String, Option<u64>, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, DATETIME_PRECISION, COLUMN_KEY FROM \
             information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .unwrap();
    let mut out = Rows::new();
    for row in rows {
        let mut native = serde_json::Map::new();
        let mut key = Vec::new();
        for (name, data_type, precision, column_key) in &columns {
            let value = row
                .get(name.to_lowercase().as_str())
                .unwrap_or_else(|| panic!("{table}: the lake has no column {name}: {row}"));
            let value = to_native(data_type, precision.unwrap_or(0), value);
            if column_key == "PRI" {
                key.push(value.to_string());
            }
            native.insert(name.clone(), value);
        }
        out.insert(key.join("|"), native);
    }
    out
}

/// A DuckDB value (as `lake_query.py` prints it) in cdcd's native JSON encoding.
fn to_native(data_type: &str, precision: u64, value: &Json) -> Json {
    if value.is_null() {
        return Json::Null;
    }
    let text = || match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    match data_type {
        // Unsigned BIGINT arrives as DECIMAL(20,0), printed as text.
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint" | "year" => {
            serde_json::from_str(&text()).unwrap()
        }
        "bit" => {
            let bits: u64 = text().parse().unwrap();
            Json::String(format!("{bits:b}"))
        }
        "datetime" | "timestamp" => {
            // DuckDB prints microseconds; the column has `precision` fractional digits.
            let full = text();
            let cut = match precision {
                0 => full.split('.').next().unwrap().to_string(),
                p => full[..full.find('.').unwrap() + 1 + p as usize].to_string(),
            };
            let suffix = if data_type == "timestamp" { "Z" } else { "" };
            Json::String(format!("{}{suffix}", cut.replacen(' ', "T", 1)))
        }
        "set" => Json::Array(
            text()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| Json::String(s.into()))
                .collect(),
        ),
        "json" => serde_json::from_str(&text()).unwrap(),
        "longtext" if text().starts_with('{') => serde_json::from_str(&text()).unwrap(),
        _ => match value {
            Json::Object(bytes) => bytes["base64"].clone(),
            Json::Number(_) => value.clone(),
            _ => Json::String(text()),
        },
    }
}
