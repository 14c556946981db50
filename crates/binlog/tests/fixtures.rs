//! The correctness oracle: every row of every binlog fixture, decoded by our [`FileReader`], must
//! equal the reference decode that Oracle `mysqlbinlog -vv --print-table-metadata
//! --base64-output=DECODE-ROWS` (or, for MariaDB binlogs, MariaDB's `mariadb-binlog -vv
//! --base64-output=decode-rows --print-table-metadata`) printed for the same file, row by row and
//! value by value. A changed value, a missing row or an extra row fails, naming the file, the
//! `# at` of the rows event, the table, the row and the column.
//!
//! * `tests/fixtures/mysql97/binlog/<name>.binlog`, reference `decoded/<name>.mysqlbinlog-vv.txt`.
//! * The same layout in `tests/fixtures/mysql97-live/` (MySQL 9.7), `mariadb1011/` (MariaDB
//!   10.11, reference `decoded/<name>.mariadb-binlog-vv.txt`) and `mysql97-geometry-as-blob/`,
//!   all made by `scripts/make-fixtures.sh` from the live servers (workloads in
//!   `tests/fixtures/sql/`).
//! * Every binlog under the shared third-party fixtures: `$CDCD_THIRDPARTY_FIXTURES`, else
//!   `<workspace>/../shared/fixtures/binlog/thirdparty`. A binlog is any file that starts with the
//!   binlog magic bytes (after gunzip for `.gz`); its reference is
//!   `<binlog>.mysqlbinlog97-vv.txt` or `.txt.gz`. The directory is not in the repository: when it
//!   is missing the test says so loudly and does not fail, because a developer machine may not
//!   have it (CI does).
//!
//! Files that cannot be compared are listed in [`WITHOUT_REFERENCE`] and [`EXPECTED_REFUSALS`] with
//! the reason; nothing is skipped silently. Each file prints a summary line, also without
//! `--nocapture`.

mod oracle;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use cdcd_binlog::{FileReader, Record};
use cdcd_event::{ChangeEvent, Op, Value};

use oracle::compare::{column_summary, matches, show_value};
use oracle::{Dialect, Image, OracleOp, OracleRow, OracleValue, RowsEvent};

/// Binlogs for which mysqlbinlog 9.7 produced no reference. They are still decoded from start to
/// end, which must succeed, but their values are not compared. Paths are relative to the fixture
/// directory.
const WITHOUT_REFERENCE: &[(&str, &str)] = &[(
    "shyiko-mysql-binlog-connector-java/mysql-bin.sakila.gz",
    "MySQL 5.5 writes rows events v1 (types 23-25), which mysqlbinlog 9.7 cannot read (it stops \
     at offset 21654: 'Could not read entry … Error in log format')",
)];

/// Binlogs our reader refuses on purpose, with a piece of the error it must give. The rows decoded
/// before the refusal are still compared with the reference.
const EXPECTED_REFUSALS: &[(&str, &str)] = &[
    // Statement-based changes (binlog_format=STATEMENT): the rows are not in the binlog.
    (
        "rust-us-mysql-cdc-rs/5.7/05_intvar/log.bin",
        "statement-based change `INSERT INTO `boxercrab` (i, c) VALUES(LAST_INSERT_ID()+1, 'abc')`",
    ),
    (
        "rust-us-mysql-cdc-rs/5.7/13_rand/log.bin",
        "statement-based change `INSERT INTO `boxercrab` (i, c) VALUES(FLOOR(RAND() * 100), 'abc')`",
    ),
    (
        "rust-us-mysql-cdc-rs/5.7/14_user_var/log.bin",
        "statement-based change `INSERT INTO `boxercrab` (`str`, `int`, `dec`) VALUES (@val_s, \
         @val_i, @val_d)`",
    ),
    (
        "rust-us-mysql-cdc-rs/5.7/17_18_load/log.bin",
        "cannot decode LOAD DATA (statement-based) in log.bin at offset 304",
    ),
];

/// The type that mysqlbinlog 9.7 cannot print (see `oracle/mod.rs`): rows events with such a
/// column are printed only up to it, so the rest of them cannot be verified.
const UNPRINTABLE_GEOMETRY: &str = "!! Don't know how to handle column type=255";

/// How many failures of one file are shown in full.
const SHOWN_FAILURES: usize = 40;

#[test]
fn mysql97_fixtures_match_mysqlbinlog() {
    run_all(&own_fixtures(
        "mysql97",
        "mysqlbinlog-vv.txt",
        Dialect::Oracle,
        7,
    ));
}

/// Made by `scripts/make-fixtures.sh` from the live MySQL 9.7 server.
#[test]
fn mysql97_live_fixtures_match_mysqlbinlog() {
    run_all(&own_fixtures(
        "mysql97-live",
        "mysqlbinlog-vv.txt",
        Dialect::Oracle,
        1,
    ));
}

/// Made by `scripts/make-fixtures.sh` from the live MariaDB 10.11 server; the reference is
/// MariaDB's own `mariadb-binlog`.
#[test]
fn mariadb1011_fixtures_match_mariadb_binlog() {
    run_all(&own_fixtures(
        "mariadb1011",
        "mariadb-binlog-vv.txt",
        Dialect::MariaDb,
        1,
    ));
}

/// Made by `scripts/make-fixtures.sh` (`scripts/geometry-as-blob.py`) from our mysql97 and
/// mysql97-live binlogs: their transactions with spatial columns, the columns turned into
/// LONGBLOB, which mysqlbinlog 9.7 prints (it cannot print GEOMETRY). Besides the comparison
/// with mysqlbinlog, every row must be a row of the original file with the same values, the
/// original having `Geometry` where the derived file has the same bytes: this verifies our
/// GEOMETRY values and the columns and rows after them, which the original's reference lacks.
#[test]
fn mysql97_geometry_as_blob_fixtures_match_mysqlbinlog_and_their_originals() {
    let fixtures = own_fixtures(
        "mysql97-geometry-as-blob",
        "mysqlbinlog-vv.txt",
        Dialect::Oracle,
        3,
    );
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let name = fixture.binlog.file_name().expect("file name");
        let fixtures_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let original = ["mysql97", "mysql97-live"]
            .iter()
            .map(|dir| fixtures_dir.join(dir).join("binlog").join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{}: no original binlog", fixture.label));
        match same_rows_as_original(&fixture.binlog, &original) {
            Ok(summary) => say(&format!("oracle: {}: {summary}", fixture.label)),
            Err(e) => {
                say(&format!("oracle: {}: FAILED: {e}", fixture.label));
                failures.push(format!("{}: {e}", fixture.label));
            }
        }
    }
    run_all(&fixtures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Checks that the rows of a geometry-as-blob binlog are rows of its original, in order, and that
/// they include every original row of a table with a spatial column.
fn same_rows_as_original(derived: &Path, original: &Path) -> Result<String, String> {
    let decode_all = |path: &Path| -> Result<Vec<ChangeEvent>, String> {
        match decode(path) {
            Decoded { rows, error: None } => Ok(rows),
            Decoded { error: Some(e), .. } => Err(format!("{}: {e}", path.display())),
        }
    };
    let original_name = original.file_name().expect("file name").to_string_lossy();
    let (derived, original) = (decode_all(derived)?, decode_all(original)?);
    let spatial = |row: &ChangeEvent| {
        row.table
            .columns
            .iter()
            .any(|c| c.kind == cdcd_event::ColumnType::Geometry)
    };
    let mut next = 0;
    let mut spatial_values = 0;
    for (i, row) in derived.iter().enumerate() {
        let found = original[next..]
            .iter()
            .position(|o| same_row(o, row))
            .ok_or_else(|| {
                format!(
                    "derived row {i} (pos {} `{}`.`{}` {:?}) is not a later row of the original",
                    row.source.pos, row.table.schema, row.table.table, row.op
                )
            })?;
        if let Some(skipped) = original[next..next + found].iter().find(|o| spatial(o)) {
            return Err(format!(
                "the original's row at pos {} of `{}` (which has a spatial column) is missing \
                 from the derived file",
                skipped.source.pos, skipped.table.table
            ));
        }
        let matched = &original[next + found];
        spatial_values += [&matched.before, &matched.after]
            .into_iter()
            .flatten()
            .flatten()
            .filter(|v| matches!(v, Value::Geometry(_)))
            .count();
        next += found + 1;
    }
    if let Some(missing) = original[next..].iter().find(|o| spatial(o)) {
        return Err(format!(
            "the original's row at pos {} of `{}` (which has a spatial column) is missing from \
             the derived file",
            missing.source.pos, missing.table.table
        ));
    }
    Ok(format!(
        "all {} rows are rows of the original {}, with its {spatial_values} GEOMETRY values as \
         LONGBLOB, and all its rows of tables with spatial columns",
        derived.len(),
        original_name
    ))
}

/// The same change, the original's GEOMETRY values being the derived file's LONGBLOB bytes
/// (`Bytes`, or `String` where the column's charset metadata says text).
fn same_row(original: &ChangeEvent, derived: &ChangeEvent) -> bool {
    let same_value = |o: &Value, d: &Value| match (o, d) {
        (Value::Geometry(g), Value::Bytes(b)) => g == b,
        (Value::Geometry(g), Value::String(s)) => g == s.as_bytes(),
        (o, d) => o == d,
    };
    let same_image = |o: &Option<Vec<Value>>, d: &Option<Vec<Value>>| match (o, d) {
        (Some(o), Some(d)) => o.len() == d.len() && o.iter().zip(d).all(|(o, d)| same_value(o, d)),
        (None, None) => true,
        _ => false,
    };
    (&original.table.schema, &original.table.table, original.op)
        == (&derived.table.schema, &derived.table.table, derived.op)
        && same_image(&original.before, &derived.before)
        && same_image(&original.after, &derived.after)
}

/// The binlogs `tests/fixtures/<dir>/binlog/<name>.binlog` with their references
/// `tests/fixtures/<dir>/decoded/<name>.<suffix>`, printed by `dialect`; at least `expected` of
/// them.
fn own_fixtures(dir: &str, suffix: &str, dialect: Dialect, expected: usize) -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut fixtures = Vec::new();
    for binlog in files_in(&root.join("binlog")) {
        if binlog.extension().is_some_and(|e| e == "binlog") {
            let stem = binlog.file_stem().expect("file name").to_string_lossy();
            let reference = root.join("decoded").join(format!("{stem}.{suffix}"));
            assert!(
                reference.is_file(),
                "{} has no reference decode {}",
                binlog.display(),
                reference.display()
            );
            fixtures.push(Fixture {
                label: format!("{dir}/{}", binlog.file_name().unwrap().to_string_lossy()),
                binlog,
                reference: Some(reference),
                dialect,
            });
        }
    }
    assert!(
        fixtures.len() >= expected,
        "expected at least {expected} fixtures in {}",
        root.display()
    );
    fixtures
}

#[test]
fn thirdparty_fixtures_match_mysqlbinlog() {
    let (dir, from_env) = match std::env::var_os("CDCD_THIRDPARTY_FIXTURES") {
        Some(dir) => (PathBuf::from(dir), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/binlog/thirdparty"),
            false,
        ),
    };
    if !dir.is_dir() {
        assert!(
            !from_env,
            "CDCD_THIRDPARTY_FIXTURES={} is not a directory",
            dir.display()
        );
        say(&format!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !!! oracle: third-party binlog fixtures NOT compared: {} does not exist.\n\
             !!! Set CDCD_THIRDPARTY_FIXTURES to the `thirdparty` fixture directory to run them\n\
             !!! (CI has it beside the repository).\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
            dir.display()
        ));
        return;
    }
    let dir = dir.canonicalize().expect("fixture directory");
    let mut fixtures = Vec::new();
    let mut problems = Vec::new();
    for path in walk(&dir) {
        if !is_binlog(&path) {
            continue;
        }
        let label = path
            .strip_prefix(&dir)
            .expect("under the fixture directory")
            .to_string_lossy()
            .replace('\\', "/");
        let base = path.to_string_lossy().trim_end_matches(".gz").to_string();
        let reference = [
            format!("{base}.mysqlbinlog97-vv.txt"),
            format!("{base}.mysqlbinlog97-vv.txt.gz"),
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
        let listed = WITHOUT_REFERENCE.iter().any(|(name, _)| *name == label);
        match (&reference, listed) {
            (None, false) => problems.push(format!(
                "{label}: no reference decode ({base}.mysqlbinlog97-vv.txt[.gz]) and not listed \
                 in WITHOUT_REFERENCE"
            )),
            (Some(r), true) => problems.push(format!(
                "{label}: listed in WITHOUT_REFERENCE but {} exists: compare it",
                r.display()
            )),
            _ => {}
        }
        fixtures.push(Fixture {
            label,
            binlog: path,
            reference,
            dialect: Dialect::Oracle,
        });
    }
    let found: BTreeSet<&str> = fixtures.iter().map(|f| f.label.as_str()).collect();
    for (name, _) in WITHOUT_REFERENCE.iter().chain(EXPECTED_REFUSALS) {
        if !found.contains(name) {
            problems.push(format!(
                "{name} is listed in this test but is not a fixture"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        !fixtures.is_empty(),
        "no binlogs found in {}",
        dir.display()
    );
    run_all(&fixtures);
}

/// A binlog and its reference decode.
struct Fixture {
    /// The path relative to its fixture directory, as the lists in this file name it.
    label: String,
    binlog: PathBuf,
    reference: Option<PathBuf>,
    /// The tool that printed the reference.
    dialect: Dialect,
}

/// Runs every fixture, prints one summary line per file and fails with all mismatches at the end.
fn run_all(fixtures: &[Fixture]) {
    let mut failed = Vec::new();
    for fixture in fixtures {
        let outcome = run_one(fixture);
        say(&format!("oracle: {}: {}", fixture.label, outcome.summary));
        if !outcome.failures.is_empty() {
            let mut report = format!("{}: {} failure(s)\n", fixture.label, outcome.failures.len());
            for failure in outcome.failures.iter().take(SHOWN_FAILURES) {
                let _ = writeln!(report, "  {failure}");
            }
            if outcome.failures.len() > SHOWN_FAILURES {
                let _ = writeln!(
                    report,
                    "  … and {} more",
                    outcome.failures.len() - SHOWN_FAILURES
                );
            }
            failed.push(report);
        }
    }
    assert!(
        failed.is_empty(),
        "our decoder disagrees with mysqlbinlog:\n{}",
        failed.join("\n")
    );
}

struct Outcome {
    summary: String,
    failures: Vec<String>,
}

fn run_one(fixture: &Fixture) -> Outcome {
    let refusal = EXPECTED_REFUSALS
        .iter()
        .find(|(name, _)| *name == fixture.label)
        .map(|(_, error)| *error);
    let (rows, refused) = match (decode(&fixture.binlog), refusal) {
        (Decoded { error: None, .. }, Some(error)) => {
            return failed(format!(
                "expected our reader to refuse it with an error containing {error:?}, but it \
                 decoded the file"
            ))
        }
        (
            Decoded {
                rows,
                error: Some(e),
            },
            Some(error),
        ) if e.contains(error) => (rows, Some(e)),
        (Decoded { error: Some(e), .. }, _) => return failed(format!("our reader failed: {e}")),
        (Decoded { rows, error: None }, None) => (rows, None),
    };
    let Some(reference) = &fixture.reference else {
        let reason = WITHOUT_REFERENCE
            .iter()
            .find(|(name, _)| *name == fixture.label)
            .map_or("no reference", |(_, reason)| *reason);
        return Outcome {
            summary: format!(
                "decoded {} rows; NOT compared, no reference decode: {reason}",
                rows.len()
            ),
            failures: Vec::new(),
        };
    };
    let expected = match read_maybe_gzip(reference).and_then(|text| {
        oracle::parse(&text, fixture.dialect).map_err(|e| format!("{}: {e}", reference.display()))
    }) {
        Ok(expected) => expected,
        Err(e) => return failed(format!("cannot read the reference decode: {e}")),
    };
    let mut comparison = Comparison::default();
    comparison.run(&fixture.label, &expected, &rows, refused.is_none());
    let mut summary = comparison.summary(expected.len());
    if let Some(error) = refused {
        summary = format!("refused as expected ({error}); before that: {summary}");
    }
    Outcome {
        summary,
        failures: comparison.failures,
    }
}

fn failed(failure: String) -> Outcome {
    Outcome {
        summary: format!("FAILED: {failure}"),
        failures: vec![failure],
    }
}

/// The row changes of a binlog, up to the error that stopped the reader, if any.
struct Decoded {
    rows: Vec<ChangeEvent>,
    error: Option<String>,
}

/// Decodes a binlog (gunzipped first if it ends in `.gz`).
fn decode(path: &Path) -> Decoded {
    let mut rows = Vec::new();
    let error = read_rows(path, &mut rows).err();
    Decoded { rows, error }
}

fn read_rows(path: &Path, rows: &mut Vec<ChangeEvent>) -> Result<(), String> {
    let plain;
    let path = if is_gzip(path) {
        let name = path.file_stem().expect("file name").to_string_lossy();
        plain = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oracle-{name}"));
        let bytes = read_maybe_gzip(path)?;
        std::fs::write(&plain, bytes).map_err(|e| format!("{}: {e}", plain.display()))?;
        plain.as_path()
    } else {
        path
    };
    let mut reader = FileReader::open(path).map_err(|e| e.to_string())?;
    while let Some(record) = reader.next_record().map_err(|e| e.to_string())? {
        if let Record::Change(change) = record {
            rows.push(change);
        }
    }
    Ok(())
}

/// Walks the reference rows and our rows side by side.
#[derive(Default)]
struct Comparison {
    rows: usize,
    values: usize,
    absent: usize,
    /// Partial JSON updates compared as the evaluated whole document, and as the diffs alone.
    json_documents: usize,
    json_diffs: usize,
    /// Our rows that the reference does not show (mysqlbinlog stopped printing their event).
    unverifiable_rows: usize,
    unverifiable_events: Vec<u64>,
    /// Reference rows after the point where our reader (expectedly) refused the file.
    not_reached: usize,
    failures: Vec<String>,
}

impl Comparison {
    /// `complete`: whether our reader read the whole file (otherwise only the rows it produced
    /// before it stopped are compared).
    fn run(&mut self, label: &str, expected: &[OracleRow], ours: &[ChangeEvent], complete: bool) {
        let mut next = 0;
        // Which of the reference row's rows events (`OracleRow::events`) our previous row of the
        // same statement came from.
        let mut event = 0;
        for (i, row) in expected.iter().enumerate() {
            if row.index_in_event == 0 {
                event = 0;
            }
            let Some(actual) = ours.get(next) else {
                if !complete {
                    self.not_reached = expected.len() - i;
                    return;
                }
                self.failures.push(format!(
                    "{}: missing row: our reader produced only {} rows, the reference has {}",
                    row_name(label, row),
                    ours.len(),
                    expected.len()
                ));
                return;
            };
            next += 1;
            event = match source_event(row, event, actual) {
                Ok(event) => event,
                Err(e) => {
                    // The sequences are out of step: later comparisons would only repeat this.
                    self.failures.push(format!(
                        "{}: {e}; comparison of this file stopped here",
                        row_name(label, row)
                    ));
                    return;
                }
            };
            let source = &row.events[event];
            if actual.source.next_pos != source.end_log_pos {
                self.failures.push(format!(
                    "{}: our next_pos is {}, the rows event at {} ends at {}{}",
                    row_name(label, row),
                    actual.source.next_pos,
                    source.at,
                    source.end_log_pos,
                    match source.payload_at {
                        Some(at) => format!(" (the end of the TRANSACTION_PAYLOAD at {at})"),
                        None => String::new(),
                    }
                ));
            }
            self.rows += 1;
            self.compare_images(label, row, actual);
            let last_of_statement = expected.get(i + 1).is_none_or(|r| r.index_in_event == 0);
            if row.truncated.is_some() {
                // mysqlbinlog printed nothing after this row: skip our rows from the rest of the
                // statement's rows events.
                self.unverifiable_events.push(row.at);
                let rest: Vec<u64> = row.events[event..].iter().map(expected_pos).collect();
                while ours.get(next).is_some_and(|r| rest.contains(&r.source.pos)) {
                    next += 1;
                    self.unverifiable_rows += 1;
                }
            } else if last_of_statement
                && event_key(&row.events[event]) != event_key(row.events.last().expect("event"))
            {
                let silent: Vec<u64> = row.events[event + 1..].iter().map(|e| e.at).collect();
                self.failures.push(format!(
                    "{}: our reader produced no rows for the rows events at {silent:?} of this \
                     statement; comparison of this file stopped here",
                    row_name(label, row)
                ));
                return;
            }
        }
        if next < ours.len() {
            let extra = &ours[next];
            self.failures.push(format!(
                "{label}: {} extra row(s) that the reference does not have, the first at pos {} \
                 `{}`.`{}` {:?}",
                ours.len() - next,
                extra.source.pos,
                extra.table.schema,
                extra.table.table,
                extra.op
            ));
        }
    }

    fn compare_images(&mut self, label: &str, row: &OracleRow, actual: &ChangeEvent) {
        let (before, after) = match row.op {
            OracleOp::Insert => (None, Some(&row.after)),
            OracleOp::Update => (Some(&row.before), Some(&row.after)),
            OracleOp::Delete => (Some(&row.before), None),
        };
        let truncated_image = row.truncated.as_ref().map(|t| t.image);
        for (image, expected, ours) in [
            (Image::Before, before, &actual.before),
            (Image::After, after, &actual.after),
        ] {
            let fail = |this: &mut Self, message: String| {
                this.failures
                    .push(format!("{}, {image}: {message}", row_name(label, row)));
            };
            match (expected, ours) {
                (None, None) => {}
                (None, Some(_)) => fail(
                    self,
                    "our row has this image, the reference does not".into(),
                ),
                (Some(_), None) => fail(self, "our row lacks this image".into()),
                (Some(expected), Some(ours)) => {
                    if truncated_image == Some(Image::Before) && image == Image::After {
                        // Not printed at all after the truncated before image.
                        continue;
                    }
                    if expected.len() != ours.len() {
                        fail(
                            self,
                            format!(
                                "the table has {} columns in the reference, {} in our row",
                                expected.len(),
                                ours.len()
                            ),
                        );
                        continue;
                    }
                    let stop = match &row.truncated {
                        Some(t) if t.image == image => t.column,
                        _ => expected.len(),
                    };
                    for (index, (expected, value)) in expected.iter().zip(ours).enumerate() {
                        let column = &actual.table.columns[index];
                        let result = if index < stop {
                            self.compare_value(expected.as_ref(), column, value)
                        } else if index == stop {
                            check_unprintable(row, column, value)
                        } else {
                            continue;
                        };
                        if let Err(e) = result {
                            fail(self, format!("@{} `{}`: {e}", index + 1, column.name));
                        }
                    }
                }
            }
        }
    }

    fn compare_value(
        &mut self,
        expected: Option<&OracleValue>,
        column: &cdcd_event::Column,
        value: &Value,
    ) -> Result<(), String> {
        match expected {
            Some(expected) => {
                self.values += 1;
                match (&expected.json_diffs, &expected.json_document) {
                    (Some(_), Some(_)) => self.json_documents += 1,
                    (Some(_), None) => self.json_diffs += 1,
                    _ => {}
                }
                matches(expected, column, value)
            }
            None => {
                self.absent += 1;
                match value {
                    Value::Absent => Ok(()),
                    other => Err(format!(
                        "not in the row image, but our row has {} [column {}]",
                        show_value(other),
                        column_summary(column)
                    )),
                }
            }
        }
    }

    fn summary(&self, reference_rows: usize) -> String {
        let mut s = format!(
            "{reference_rows} reference rows; {} rows and {} values compared ({} more columns \
             checked absent from their row image); {} mismatch(es)",
            self.rows,
            self.values,
            self.absent,
            self.failures.len()
        );
        if self.json_documents + self.json_diffs > 0 {
            let _ = write!(
                s,
                "; partial JSON updates: {} compared as the whole new document, {} as diffs",
                self.json_documents, self.json_diffs
            );
        }
        if self.not_reached > 0 {
            let _ = write!(s, "; {} reference rows after the refusal", self.not_reached);
        }
        if !self.unverifiable_events.is_empty() {
            let _ = write!(
                s,
                "; NOT verifiable: the rest of the rows events at {:?} and {} more rows in them, \
                 which mysqlbinlog 9.7 cannot print (GEOMETRY; for our own binlogs the \
                 mysql97-geometry-as-blob test checks them)",
                self.unverifiable_events, self.unverifiable_rows
            );
        }
        s
    }
}

/// Which of the reference row's rows events our row comes from, given that the previous row of
/// the same statement came from `events[current]`: that one or the next. Our row must be the
/// reference row (table and statement) and come from that event (its position, table and
/// statement).
fn source_event(row: &OracleRow, current: usize, actual: &ChangeEvent) -> Result<usize, String> {
    let op = match actual.op {
        Op::Insert => OracleOp::Insert,
        Op::Update => OracleOp::Update,
        Op::Delete => OracleOp::Delete,
        Op::Load => return Err("our reader produced a snapshot (load) row".into()),
    };
    let ours = (
        actual.source.pos,
        &*actual.table.schema,
        &*actual.table.table,
        op,
    );
    let candidates = if row.index_in_event == 0 {
        0..1
    } else {
        current..(current + 2).min(row.events.len())
    };
    let found = candidates.clone().find(|&k| {
        let event = &row.events[k];
        ours == event_key(event) && (ours.1, ours.2, ours.3) == (&*row.schema, &*row.table, row.op)
    });
    found.ok_or_else(|| {
        let expected: Vec<String> = row.events[candidates]
            .iter()
            .map(|e| {
                let payload = match e.payload_at {
                    Some(at) => format!(" in the TRANSACTION_PAYLOAD at {at}"),
                    None => String::new(),
                };
                format!(
                    "(pos {}{payload}, `{}`.`{}`, {})",
                    expected_pos(e),
                    e.schema,
                    e.table,
                    e.op
                )
            })
            .collect();
        format!(
            "our row is (pos {}, `{}`.`{}`, {}), the reference row is `{}`.`{}` {} from {}",
            ours.0,
            ours.1,
            ours.2,
            ours.3,
            row.schema,
            row.table,
            row.op,
            expected.join(" or ")
        )
    })
}

/// The position our reader gives rows of a rows event.
///
/// A row of a compressed transaction has no offset of its own. mysqlbinlog prints the end of the
/// TRANSACTION_PAYLOAD event for it (as `# at` and `end_log_pos`); our reader gives the start of
/// the payload event as `pos` (and its end as `next_pos`).
fn expected_pos(event: &RowsEvent) -> u64 {
    event.payload_at.unwrap_or(event.at)
}

/// What identifies a rows event in our rows: position, table and statement.
fn event_key(event: &RowsEvent) -> (u64, &str, &str, OracleOp) {
    (expected_pos(event), &event.schema, &event.table, event.op)
}

/// The column where mysqlbinlog stopped printing must be one it cannot print (GEOMETRY).
fn check_unprintable(
    row: &OracleRow,
    column: &cdcd_event::Column,
    value: &Value,
) -> Result<(), String> {
    let truncation = row.truncated.as_ref().expect("truncated row");
    if !truncation.message.starts_with(UNPRINTABLE_GEOMETRY) {
        return Err(format!(
            "mysqlbinlog stopped with an unknown message: {}",
            truncation.message
        ));
    }
    match (column.kind, value) {
        (cdcd_event::ColumnType::Geometry, Value::Geometry(_) | Value::Null) => Ok(()),
        _ => Err(format!(
            "mysqlbinlog could not print this column as GEOMETRY, but our column is {} with {}",
            column_summary(column),
            show_value(value)
        )),
    }
}

fn row_name(label: &str, row: &OracleRow) -> String {
    format!(
        "{label} # at {} `{}`.`{}` {} row {} of the event (reference line {})",
        row.at, row.schema, row.table, row.op, row.index_in_event, row.line
    )
}

fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !is_gzip(path) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(out)
}

fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Whether a file is a binlog: it starts with the magic bytes, after gunzip for `.gz`.
fn is_binlog(path: &Path) -> bool {
    const MAGIC: &[u8] = b"\xfebin";
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 4];
    let read = if is_gzip(path) {
        flate2::read::GzDecoder::new(file).read_exact(&mut head)
    } else {
        let mut file = file;
        file.read_exact(&mut head)
    };
    read.is_ok() && head == MAGIC
}

/// The files of a directory, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Every file under a directory, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Prints to stderr directly, so that the line shows even when the test harness captures output.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
