//! A reader for the reference decodes that Oracle `mysqlbinlog -vv --print-table-metadata
//! --base64-output=DECODE-ROWS` prints. These decodes are the correctness oracle for our decoder.
//!
//! The files are read as bytes. mysqlbinlog prints column values as the raw bytes stored in the
//! row (latin1, binary, …), so a reference file is in general not valid UTF-8.
//!
//! This module relies on the following facts about the output. They were checked against the
//! fixture files, against MySQL's `log_event.cc` and by running mysqlbinlog 9.7.4 on patched
//! binlogs:
//! * Every event starts with a `# at N` line followed by a header line
//!   `#YYMMDD hh:mm:ss server id S  end_log_pos M …\t<Type>…`. The events inside a
//!   TRANSACTION_PAYLOAD (between `# Start of compressed events.` and `# End of compressed
//!   events.`) have no offset of their own: they are printed with N = M = the end of the payload
//!   event; [`OracleRow::payload_at`] tells where that payload event starts.
//! * A `Table_map:` event names `` `db`.`table` `` and the table id. With `--print-table-metadata`
//!   it is followed by one `# Columns(` line per column: the first starts with `# Columns(`, the
//!   others with `#         `, and the last one ends with `)`.
//! * A rows event whose flags lack `STMT_END_F` prints no rows: mysqlbinlog holds them back and
//!   prints the rows of all rows events of the statement after the last one (the one with
//!   `STMT_END_F`), without marking where one event's rows end. Such rows carry all those events
//!   in [`OracleRow::events`].
//! * A rows event prints each row as `### INSERT INTO`, `### UPDATE` or `### DELETE FROM`, followed
//!   by its images: `### WHERE` (before) and `### SET` (after). Each image has one line per column
//!   that is in the image, `###   @N=<value> /* <type> meta=… nullable=… is_null=… */`.
//! * Quoted values use `'` and escape `\b \f \n \r \t \\ \'`, print other bytes below 0x20 as
//!   `\xNN` and every other byte raw. A value therefore never spans lines, with one exception:
//!   a partial JSON update prints nested `JSON_*(…)` calls whose lines are joined by
//!   `"\n###      "`.
//! * FLOAT is printed with `%-20g`, so the value is padded with spaces before the comment.
//! * mysqlbinlog 9.7 cannot print GEOMETRY columns: it prints
//!   `!! Don't know how to handle column type=255 …` and stops printing that rows event, so the
//!   rest of that row and all later rows of the event are missing from the output. Such a row is
//!   returned with [`OracleRow::truncated`] set; any other `!!` line is an error.
//!
//! MariaDB's `mariadb-binlog -vv --base64-output=decode-rows --print-table-metadata` (10.11)
//! prints the same layout, with these differences (see [`Dialect::MariaDb`]): it quotes strings
//! without escaping `'` and `\`; it prints the `# at` lines of an Annotate_rows event and of the
//! events it holds back (the Table_map, rows events without `STMT_END_F`) before their headers,
//! which follow in the same order; it prints GEOMETRY values (quoted bytes); its `# Columns(`
//! list misplaces `UNSIGNED` after a YEAR column; and it adds `#Q>` (the annotated statement) and
//! `# Number of rows: N` lines, which are ignored.

pub mod compare;

use std::collections::{HashMap, VecDeque};
use std::fmt;

/// The statement that changed a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OracleOp {
    Insert,
    Update,
    Delete,
}

impl fmt::Display for OracleOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OracleOp::Insert => "INSERT",
            OracleOp::Update => "UPDATE",
            OracleOp::Delete => "DELETE",
        })
    }
}

/// One column value as mysqlbinlog printed it.
#[derive(Debug, Clone, PartialEq)]
pub struct OracleValue {
    /// The text after `=` up to the type comment, trailing spaces trimmed. The continuation lines
    /// of a partial JSON update are joined with `\n` (their `###      ` prefix removed).
    pub literal: Vec<u8>,
    /// The comment after the value, e.g. `DECIMAL(65,30) meta=16670 nullable=1 is_null=0`.
    pub type_comment: String,
    /// For a partial JSON update (`@2=JSON_REPLACE(@2, '$.a', 1)`): its diffs, in the order MySQL
    /// applied them.
    pub json_diffs: Option<Vec<json::Diff>>,
    /// For a partial JSON update whose row's before image holds the column: the whole document
    /// after the update, as JSON text, computed by applying the diffs to the before image.
    pub json_document: Option<String>,
    /// Whether the column is `UNSIGNED` in the table's `# Columns(` list; `None` where that list
    /// cannot be trusted for it (see [`Dialect::MariaDb`]).
    pub unsigned: Option<bool>,
}

impl OracleValue {
    /// Whether the column is a JSON column.
    pub fn is_json(&self) -> bool {
        self.type_comment.starts_with("JSON ")
    }

    /// Whether the value is a partial JSON update rather than a whole value.
    pub fn is_partial_json(&self) -> bool {
        self.is_json() && !self.literal.starts_with(b"'") && self.literal != b"NULL"
    }
}

/// Which row image of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// `### WHERE`
    Before,
    /// `### SET`
    After,
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Image::Before => "before image (WHERE)",
            Image::After => "after image (SET)",
        })
    }
}

/// Where mysqlbinlog stopped printing a row because it cannot print a column type.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncation {
    pub image: Image,
    /// 0-based index of the column that could not be printed; the columns before it were printed.
    pub column: usize,
    /// mysqlbinlog's message.
    pub message: String,
}

/// A rows event as its header tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowsEvent {
    /// `# at N`.
    pub at: u64,
    pub end_log_pos: u64,
    /// For an event of a compressed transaction: the `# at` of its TRANSACTION_PAYLOAD event. (`at`
    /// and `end_log_pos` are then both the end of that payload event.)
    pub payload_at: Option<u64>,
    pub op: OracleOp,
    pub schema: String,
    pub table: String,
}

/// One row of one rows event.
#[derive(Debug, Clone, PartialEq)]
pub struct OracleRow {
    /// The `# at N` of the rows event that printed the row.
    pub at: u64,
    /// The `end_log_pos` of the rows event that printed the row.
    pub end_log_pos: u64,
    /// For a row of a compressed transaction: the `# at` of its TRANSACTION_PAYLOAD event. (`at`
    /// and `end_log_pos` are then both the end of that payload event.)
    pub payload_at: Option<u64>,
    /// The rows events the row may come from, in binlog order: only the event that printed it,
    /// or, for a statement split over several rows events, all of them (the printing event last).
    /// Each of them holds at least one of the rows printed together.
    pub events: std::sync::Arc<[RowsEvent]>,
    pub op: OracleOp,
    pub schema: String,
    pub table: String,
    /// The before image indexed by column (`@1` is index 0); `None` for a column that is not in
    /// the image. Empty for inserts.
    pub before: Vec<Option<OracleValue>>,
    /// The after image, like `before`. Empty for deletes.
    pub after: Vec<Option<OracleValue>>,
    /// 0-based index of the row among the rows printed by its event.
    pub index_in_event: usize,
    /// 1-based line number of the `### INSERT/UPDATE/DELETE` line in the reference file.
    pub line: usize,
    /// Set when mysqlbinlog stopped printing in the middle of this row (see the module docs). The
    /// image named there is complete up to the column; a later image was not printed at all.
    pub truncated: Option<Truncation>,
}

/// Which tool printed a reference file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Oracle MySQL's `mysqlbinlog` (9.7).
    Oracle,
    /// MariaDB's `mariadb-binlog` (10.11). It prints the same layout, but quotes strings the old
    /// way: bytes below 0x20 as `\xNN` and every other byte raw, `'` and `\` included. A value
    /// therefore always fits its line, and its type comment is the last ` /* … */` of the line.
    /// [`OracleValue::literal`] holds such strings requoted the Oracle way, so that one
    /// comparison serves both. (A value holding `\x` and two hex digits would read back wrong:
    /// the fixtures have none.)
    ///
    /// Its `# Columns(` list misplaces `UNSIGNED`: the server counts YEAR columns in the
    /// signedness metadata, mariadb-binlog 10.11 does not, so after a YEAR column every flag
    /// belongs to the numeric column before. Signedness is therefore not taken from it.
    MariaDb,
}

/// Parses a whole reference file into its rows, in file order.
pub fn parse(text: &[u8], dialect: Dialect) -> Result<Vec<OracleRow>, String> {
    Parser::new(text, dialect).run()
}

/// Splits `text` into lines (without the `\n`) and hands them out one by one.
struct Lines<'a> {
    lines: Vec<&'a [u8]>,
    next: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Self {
        let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        Lines { lines, next: 0 }
    }

    fn peek(&self) -> Option<&'a [u8]> {
        self.lines.get(self.next).copied()
    }

    fn next_line(&mut self) -> Option<&'a [u8]> {
        let line = self.peek()?;
        self.next += 1;
        Some(line)
    }

    /// 1-based number of the line most recently returned by `next_line`.
    fn line_no(&self) -> usize {
        self.next
    }
}

/// What a Table_map event told about a table.
#[derive(Debug, Clone)]
struct TableMap {
    schema: String,
    table: String,
    columns: usize,
    /// Per column, whether `# Columns(` says `UNSIGNED` (`None`: not trusted).
    unsigned: Option<Vec<bool>>,
}

/// The event whose lines are being read.
#[derive(Debug, Clone)]
struct Event {
    /// For a rows event that ends its statement: the rows events whose rows it prints, with the
    /// table id of each. `None` for other events (which must print no rows).
    prints: Option<(std::sync::Arc<[RowsEvent]>, Vec<u64>)>,
    /// Number of rows read so far from this rows event.
    rows_seen: usize,
    /// Set once a row of this event was truncated: nothing after it is printed.
    truncated: bool,
}

struct Parser<'a> {
    lines: Lines<'a>,
    dialect: Dialect,
    /// The `# at` offsets not yet claimed by an event header. Oracle's mysqlbinlog prints each
    /// header right after its `# at`; mariadb-binlog prints the `# at` lines of an
    /// Annotate_rows event and the events it holds back (a Table_map, rows events without
    /// `STMT_END_F`) first and their headers later, in the same order.
    pending_at: VecDeque<u64>,
    event: Option<Event>,
    /// `(# at, end_log_pos)` of the TRANSACTION_PAYLOAD event whose inner events are being read.
    payload: Option<(u64, u64)>,
    /// Rows events without `STMT_END_F` whose rows are not printed yet, with their table ids.
    held_back: Vec<(RowsEvent, u64)>,
    tables: HashMap<u64, TableMap>,
    rows: Vec<OracleRow>,
}

/// A line that starts a column of a row image: `###   @N=`.
const COLUMN_PREFIX: &[u8] = b"###   @";
/// The prefix of the continuation lines of a partial JSON update.
const CONTINUATION_PREFIX: &[u8] = b"###      ";

impl<'a> Parser<'a> {
    fn new(text: &'a [u8], dialect: Dialect) -> Self {
        Parser {
            lines: Lines::new(text),
            dialect,
            pending_at: VecDeque::new(),
            event: None,
            payload: None,
            held_back: Vec::new(),
            tables: HashMap::new(),
            rows: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Vec<OracleRow>, String> {
        while let Some(line) = self.lines.next_line() {
            let line_no = self.lines.line_no();
            self.line(line)
                .map_err(|e| format!("line {line_no}: {e}"))?;
        }
        if let Some((event, _)) = self.held_back.first() {
            return Err(format!(
                "the statement of the rows event at {} never ends (no rows event with STMT_END_F)",
                event.at
            ));
        }
        Ok(self.rows)
    }

    fn line(&mut self, line: &'a [u8]) -> Result<(), String> {
        if let Some(at) = line.strip_prefix(b"# at ") {
            self.pending_at.push_back(parse_u64(at)?);
            self.event = None;
        } else if is_event_header(line) {
            self.event_header(line)?;
        } else if line == b"# End of compressed events." {
            self.payload = None;
        } else if let Some(rest) = line.strip_prefix(b"### ") {
            if !rest.starts_with(b"  ") {
                self.row(line)?;
            } else {
                return Err(format!(
                    "column line outside a row: {}",
                    String::from_utf8_lossy(line)
                ));
            }
        } else if line.starts_with(b"###") {
            return Err(format!(
                "unrecognised row line: {}",
                String::from_utf8_lossy(line)
            ));
        }
        Ok(())
    }

    /// `#YYMMDD hh:mm:ss server id S  end_log_pos M …\t<Type>: …`
    fn event_header(&mut self, line: &[u8]) -> Result<(), String> {
        let at = self
            .pending_at
            .pop_front()
            .ok_or("event header without a preceding `# at`")?;
        let end_log_pos = parse_u64(word_after(line, b" end_log_pos ").ok_or("no end_log_pos")?)?;
        let kind = line
            .iter()
            .position(|&b| b == b'\t')
            .map(|tab| &line[tab + 1..])
            .unwrap_or(b"");
        let rows_op = if kind.starts_with(b"Write_rows") {
            Some(OracleOp::Insert)
        } else if kind.starts_with(b"Update_rows") {
            Some(OracleOp::Update)
        } else if kind.starts_with(b"Delete_rows") {
            Some(OracleOp::Delete)
        } else {
            None
        };
        if kind.starts_with(b"Table_map: ") {
            self.table_map(kind)?;
        }
        let payload_at = match self.payload {
            Some((payload_at, payload_end)) => {
                if (at, end_log_pos) != (payload_end, payload_end) {
                    return Err(format!(
                        "event inside the TRANSACTION_PAYLOAD at {payload_at} is not at its end \
                         {payload_end}"
                    ));
                }
                Some(payload_at)
            }
            None => None,
        };
        if kind.starts_with(b"Transaction_Payload") {
            if payload_at.is_some() {
                return Err("TRANSACTION_PAYLOAD inside a TRANSACTION_PAYLOAD".into());
            }
            self.payload = Some((at, end_log_pos));
        }
        let mut prints = None;
        if let Some(op) = rows_op {
            let id = word_after(kind, b"table id ").ok_or("rows event without table id")?;
            let id = parse_u64(id)?;
            let map = self
                .tables
                .get(&id)
                .ok_or_else(|| format!("rows event for unknown table id {id}"))?;
            let event = RowsEvent {
                at,
                end_log_pos,
                payload_at,
                op,
                schema: map.schema.clone(),
                table: map.table.clone(),
            };
            self.held_back.push((event, id));
            let flags = word_list_after(kind, b" flags: ");
            if flags.iter().any(|f| *f == b"STMT_END_F") {
                let (events, ids): (Vec<RowsEvent>, Vec<u64>) = self.held_back.drain(..).unzip();
                prints = Some((events.into(), ids));
            }
        } else if !self.held_back.is_empty() && !kind.starts_with(b"Table_map: ") {
            return Err(format!(
                "the statement of the rows event at {} does not end before another event",
                self.held_back[0].0.at
            ));
        }
        self.event = Some(Event {
            prints,
            rows_seen: 0,
            truncated: false,
        });
        Ok(())
    }

    /// ``Table_map: `db`.`t` mapped to number N`` and the `# Columns(` block after it.
    fn table_map(&mut self, kind: &[u8]) -> Result<(), String> {
        let rest = &kind[b"Table_map: ".len()..];
        let (schema, table, rest) = parse_qualified_name(rest)?;
        let id = word_after(rest, b" mapped to number ").ok_or("table map without number")?;
        let id = parse_u64(id)?;
        // Skip comment lines before the column list, e.g. `# has_generated_invisible_primary_key=0`.
        while let Some(line) = self.lines.peek() {
            if line.starts_with(b"# Columns(")
                || !line.starts_with(b"# ")
                || line.starts_with(b"# at ")
            {
                break;
            }
            self.lines.next_line();
        }
        // The text of the block's lines without the `# Columns(` / `#         ` prefixes.
        let mut list = Vec::new();
        if self
            .lines
            .peek()
            .is_some_and(|l| l.starts_with(b"# Columns("))
        {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .ok_or("end of file inside `# Columns(`")?;
                let column = line
                    .strip_prefix(b"# Columns(")
                    .or_else(|| line.strip_prefix(b"#         "))
                    .ok_or_else(|| {
                        format!(
                            "unexpected line in `# Columns(`: {}",
                            String::from_utf8_lossy(line)
                        )
                    })?;
                list.extend_from_slice(column);
                if line.ends_with(b")") {
                    break;
                }
                if !line.ends_with(b",") {
                    return Err(format!(
                        "column line ends neither with `,` nor `)`: {}",
                        String::from_utf8_lossy(line)
                    ));
                }
            }
        }
        if list.is_empty() {
            return Err(format!(
                "Table_map of `{schema}`.`{table}` without `# Columns(` (run mysqlbinlog with \
                 --print-table-metadata)"
            ));
        }
        let entries = column_entries(&list[..list.len() - 1])?;
        let columns = entries.len();
        let unsigned = match self.dialect {
            Dialect::Oracle => Some(entries.iter().map(|e| is_unsigned(e)).collect()),
            Dialect::MariaDb => None,
        };
        self.tables.insert(
            id,
            TableMap {
                schema,
                table,
                columns,
                unsigned,
            },
        );
        Ok(())
    }

    /// A row that starts with `### INSERT INTO`, `### UPDATE` or `### DELETE FROM` and its images.
    fn row(&mut self, line: &[u8]) -> Result<(), String> {
        let line_no = self.lines.line_no();
        let event = self.event.as_mut().ok_or("row outside an event")?;
        let (events, table_ids) = event.prints.as_ref().ok_or(
            "row in an event that prints none (not a rows event, or one without STMT_END_F)",
        )?;
        if event.truncated {
            return Err("row printed after a truncated row of the same event".into());
        }
        let (op, name) = if let Some(name) = line.strip_prefix(b"### INSERT INTO ") {
            (OracleOp::Insert, name)
        } else if let Some(name) = line.strip_prefix(b"### UPDATE ") {
            (OracleOp::Update, name)
        } else if let Some(name) = line.strip_prefix(b"### DELETE FROM ") {
            (OracleOp::Delete, name)
        } else {
            return Err(format!(
                "expected INSERT INTO, UPDATE or DELETE FROM: {}",
                String::from_utf8_lossy(line)
            ));
        };
        let (schema, table, rest) = parse_qualified_name(name)?;
        if !rest.is_empty() {
            return Err(format!(
                "unexpected text after the table name: {}",
                String::from_utf8_lossy(rest)
            ));
        }
        let source = events
            .iter()
            .position(|e| e.op == op && e.schema == schema && e.table == table)
            .ok_or_else(|| {
                format!("{op} row of `{schema}`.`{table}` matches none of the event's rows events")
            })?;
        let table_map = &self.tables[&table_ids[source]];
        let (columns, unsigned) = (table_map.columns, table_map.unsigned.clone());
        let printer = events.last().expect("at least the printing event");
        let mut row = OracleRow {
            at: printer.at,
            end_log_pos: printer.end_log_pos,
            payload_at: printer.payload_at,
            events: events.clone(),
            op,
            schema,
            table,
            before: Vec::new(),
            after: Vec::new(),
            index_in_event: event.rows_seen,
            line: line_no,
            truncated: None,
        };
        event.rows_seen += 1;

        let images: &[(Image, &[u8])] = match op {
            OracleOp::Insert => &[(Image::After, b"### SET")],
            OracleOp::Update => &[(Image::Before, b"### WHERE"), (Image::After, b"### SET")],
            OracleOp::Delete => &[(Image::Before, b"### WHERE")],
        };
        for &(image, marker) in images {
            let header = self.lines.next_line().ok_or("end of file inside a row")?;
            if header != marker {
                return Err(format!(
                    "line {}: expected `{}`, found `{}`",
                    self.lines.line_no(),
                    String::from_utf8_lossy(marker),
                    String::from_utf8_lossy(header)
                ));
            }
            let (values, truncation) = self.image(columns, unsigned.as_deref(), image)?;
            match image {
                Image::Before => row.before = values,
                Image::After => row.after = values,
            }
            if truncation.is_some() {
                row.truncated = truncation;
                self.event.as_mut().expect("in an event").truncated = true;
                break;
            }
        }
        resolve_partial_json(&mut row)?;
        self.rows.push(row);
        Ok(())
    }

    /// The column lines of one image; stops at a truncation or at the first other line.
    fn image(
        &mut self,
        columns: usize,
        unsigned: Option<&[bool]>,
        image: Image,
    ) -> Result<(Vec<Option<OracleValue>>, Option<Truncation>), String> {
        let mut values: Vec<Option<OracleValue>> = vec![None; columns];
        let mut last: Option<usize> = None;
        while let Some(line) = self.lines.peek() {
            let Some(rest) = line.strip_prefix(COLUMN_PREFIX) else {
                break;
            };
            self.lines.next_line();
            let line_no = self.lines.line_no();
            let eq = rest
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(|| format!("line {line_no}: column without `=`"))?;
            let number = parse_u64(&rest[..eq])? as usize;
            if number == 0 || number > columns {
                return Err(format!(
                    "line {line_no}: column @{number} of a table with {columns} columns"
                ));
            }
            let index = number - 1;
            if last.is_some_and(|l| l >= index) {
                return Err(format!("line {line_no}: column @{number} out of order"));
            }
            last = Some(index);
            let (literal, comment) = self
                .value(&rest[eq + 1..])
                .map_err(|e| format!("line {line_no}: @{number}: {e}"))?;
            match comment {
                Some(type_comment) => {
                    values[index] = Some(OracleValue {
                        literal,
                        type_comment,
                        json_diffs: None,
                        json_document: None,
                        unsigned: unsigned.map(|u| u[index]),
                    })
                }
                None if literal.starts_with(b"!! Don't know how to handle column type=") => {
                    return Ok((
                        values,
                        Some(Truncation {
                            image,
                            column: index,
                            message: String::from_utf8_lossy(&literal).into_owned(),
                        }),
                    ));
                }
                None => {
                    return Err(format!(
                        "line {line_no}: @{number}: value without type comment: {}",
                        String::from_utf8_lossy(&literal)
                    ))
                }
            }
        }
        Ok((values, None))
    }

    /// Splits the text after `@N=` into the value and the type comment, reading the continuation
    /// lines of a partial JSON update. Returns no comment when the line has none (an error line).
    fn value(&mut self, first: &[u8]) -> Result<(Vec<u8>, Option<String>), String> {
        if first.starts_with(b"!!") {
            // mysqlbinlog's error text (it contains an unbalanced `'`, so it is not scanned).
            return Ok((first.to_vec(), None));
        }
        if self.dialect == Dialect::MariaDb {
            return mariadb_value(first);
        }
        let mut literal = Vec::new();
        let mut segment = first;
        let mut in_quote = false;
        let mut depth = 0usize;
        loop {
            let mut i = 0;
            while i < segment.len() {
                let b = segment[i];
                if in_quote {
                    match b {
                        b'\\' => i += 1,
                        b'\'' => in_quote = false,
                        _ => {}
                    }
                } else if segment[i..].starts_with(b" /* ") && depth == 0 {
                    literal.extend_from_slice(&segment[..i]);
                    while literal.last() == Some(&b' ') {
                        literal.pop();
                    }
                    let comment = &segment[i + 4..];
                    let comment = comment
                        .strip_suffix(b" */")
                        .ok_or("type comment does not end with ` */`")?;
                    let comment = std::str::from_utf8(comment)
                        .map_err(|_| "type comment is not UTF-8")?
                        .trim()
                        .to_string();
                    return Ok((literal, Some(comment)));
                } else {
                    match b {
                        b'\'' => in_quote = true,
                        b'(' => depth += 1,
                        b')' => depth = depth.checked_sub(1).ok_or("unbalanced `)`")?,
                        _ => {}
                    }
                }
                i += 1;
            }
            literal.extend_from_slice(segment);
            if !in_quote && depth == 0 {
                return Ok((literal, None));
            }
            // An open quote or call continues on the next line.
            let next = self
                .lines
                .peek()
                .and_then(|l| l.strip_prefix(CONTINUATION_PREFIX))
                .ok_or("value continues, but the next line is not a `###      ` continuation")?;
            self.lines.next_line();
            literal.push(b'\n');
            segment = next;
        }
    }
}

/// A value line of [`Dialect::MariaDb`] after `@N=`: the value, its strings requoted the Oracle
/// way, and the type comment.
fn mariadb_value(line: &[u8]) -> Result<(Vec<u8>, Option<String>), String> {
    const OPEN: &[u8] = b" /* ";
    let Some(start) = line.windows(OPEN.len()).rposition(|w| w == OPEN) else {
        return Ok((line.to_vec(), None));
    };
    let comment = line[start + OPEN.len()..]
        .strip_suffix(b" */")
        .ok_or("type comment does not end with ` */`")?;
    let comment = std::str::from_utf8(comment)
        .map_err(|_| "type comment is not UTF-8")?
        .trim()
        .to_string();
    let literal = line[..start].trim_ascii_end();
    let literal = if literal.starts_with(b"'") {
        let inner = literal
            .strip_prefix(b"'")
            .and_then(|l| l.strip_suffix(b"'"))
            .ok_or_else(|| format!("unterminated string {}", String::from_utf8_lossy(literal)))?;
        quote(&unquote_mariadb(inner))
    } else {
        literal.to_vec()
    };
    Ok((literal, Some(comment)))
}

/// The bytes of a string that `mariadb-binlog` printed (without the outer quotes): `\xNN` is a
/// byte below 0x20, everything else is itself.
fn unquote_mariadb(inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let escaped = inner
            .get(i..i + 4)
            .filter(|e| e.starts_with(b"\\x"))
            .and_then(|e| std::str::from_utf8(&e[2..]).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|&b| b < 0x20);
        match escaped {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(inner[i]);
                i += 1;
            }
        }
    }
    out
}

/// Quotes bytes the way Oracle's mysqlbinlog does (the inverse of [`unquote`]).
fn quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in bytes {
        match b {
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b if b < 0x20 => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.push(b'\'');
    out
}

/// `#YYMMDD hh:mm:ss server id …`
fn is_event_header(line: &[u8]) -> bool {
    line.len() > 8
        && line[0] == b'#'
        && line[1..7].iter().all(u8::is_ascii_digit)
        && line[7] == b' '
}

/// The space-separated words after the first occurrence of `key`, up to the end of the line.
fn word_list_after<'t>(text: &'t [u8], key: &[u8]) -> Vec<&'t [u8]> {
    match text.windows(key.len()).position(|w| w == key) {
        Some(start) => text[start + key.len()..]
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .collect(),
        None => Vec::new(),
    }
}

/// The run of digits right after the first occurrence of `key`.
fn word_after<'t>(text: &'t [u8], key: &[u8]) -> Option<&'t [u8]> {
    let start = text.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &text[start..];
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn parse_u64(digits: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("not a number: {:?}", String::from_utf8_lossy(digits)))
}

/// `` `db`.`table` `` (backticks inside names are doubled); returns the names and the rest.
fn parse_qualified_name(text: &[u8]) -> Result<(String, String, &[u8]), String> {
    let (schema, rest) = parse_quoted_identifier(text)?;
    let rest = rest
        .strip_prefix(b".")
        .ok_or("expected `.` between schema and table")?;
    let (table, rest) = parse_quoted_identifier(rest)?;
    Ok((schema, table, rest))
}

fn parse_quoted_identifier(text: &[u8]) -> Result<(String, &[u8]), String> {
    let mut rest = text
        .strip_prefix(b"`")
        .ok_or("expected a `quoted` identifier")?;
    let mut name = Vec::new();
    loop {
        match rest {
            [b'`', b'`', tail @ ..] => {
                name.push(b'`');
                rest = tail;
            }
            [b'`', tail @ ..] => {
                let name = String::from_utf8(name).map_err(|_| "identifier is not UTF-8")?;
                return Ok((name, tail));
            }
            [b, tail @ ..] => {
                name.push(*b);
                rest = tail;
            }
            [] => return Err("unterminated identifier".into()),
        }
    }
}

/// Splits the column list of a `# Columns(` block (without its closing `)`) into one entry per
/// column.
///
/// Columns are separated by `,` (outside parentheses, `'…'` and `` `…` ``), except that mysqlbinlog
/// prints a type it has no name for (the pre-5.6 DATETIME and TIMESTAMP: `INVALID_TYPE(12)`,
/// `INVALID_TYPE(7)`) without a separator after it, e.g. `INVALID_TYPE(12)INVALID_TYPE(7)`.
fn column_entries(list: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut pieces = Vec::new();
    let (mut depth, mut quote, mut start) = (0usize, None, 0);
    for (i, &b) in list.iter().enumerate() {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'`') => quote = Some(b),
            (None, b'(') => depth += 1,
            (None, b')') => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("unbalanced `)` in `# Columns(`")?
            }
            (None, b',') if depth == 0 => {
                pieces.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&list[start..]);
    const INVALID: &[u8] = b"INVALID_TYPE(";
    let mut entries = Vec::new();
    for mut piece in pieces {
        while piece.starts_with(INVALID) {
            let close = piece
                .iter()
                .position(|&b| b == b')')
                .ok_or("unterminated INVALID_TYPE( in `# Columns(`")?;
            entries.push(&piece[..=close]);
            piece = &piece[close + 1..];
        }
        if !piece.is_empty() {
            entries.push(piece);
        }
    }
    Ok(entries)
}

/// Whether a `# Columns(` entry, e.g. `` `a` INT UNSIGNED NOT NULL ``, has the word `UNSIGNED`
/// (outside its name, parentheses and quotes).
fn is_unsigned(entry: &[u8]) -> bool {
    let rest = match parse_quoted_identifier(entry) {
        Ok((_, rest)) => rest,
        Err(_) => entry,
    };
    let (mut depth, mut quote, mut word) = (0usize, false, Vec::new());
    for &b in rest.iter().chain(b" ".iter()) {
        match b {
            b'\'' => quote = !quote,
            _ if quote => {}
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b' ' if depth == 0 => {
                if word == b"UNSIGNED" {
                    return true;
                }
                word.clear();
            }
            _ if depth == 0 => word.push(b),
            _ => {}
        }
    }
    false
}

/// Undoes mysqlbinlog's quoting of a string value (`my_b_write_quoted`): `'…'` with `\b \f \n
/// \r \t \\ \'` and `\xNN`.
pub fn unquote(literal: &[u8]) -> Result<Vec<u8>, String> {
    let inner = literal
        .strip_prefix(b"'")
        .and_then(|l| l.strip_suffix(b"'"))
        .ok_or_else(|| format!("not a quoted value: {}", String::from_utf8_lossy(literal)))?;
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b == b'\'' {
            return Err("unescaped `'` inside a quoted value".into());
        }
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let escaped = *inner
            .get(i + 1)
            .ok_or("`\\` at the end of a quoted value")?;
        i += 2;
        out.push(match escaped {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'\\' => b'\\',
            b'\'' => b'\'',
            b'x' => {
                let hex = inner.get(i..i + 2).ok_or("truncated `\\x` escape")?;
                i += 2;
                let hex = std::str::from_utf8(hex).map_err(|_| "bad `\\x` escape")?;
                u8::from_str_radix(hex, 16).map_err(|_| format!("bad `\\x{hex}` escape"))?
            }
            other => return Err(format!("unknown escape `\\{}`", other as char)),
        });
    }
    Ok(out)
}

/// The JSON document of a whole (not partial) JSON value, as printed: `'<json text>'`.
///
/// mysqlbinlog prints a document whose top level is a string (or a date, time or other opaque
/// scalar) without JSON quotes, so the text is returned as it is and is not always valid JSON.
pub fn json_text(value: &OracleValue) -> Result<String, String> {
    if let Some(document) = &value.json_document {
        return Ok(document.clone());
    }
    let bytes = unquote(&value.literal)?;
    String::from_utf8(bytes).map_err(|_| "JSON text is not UTF-8".to_string())
}

/// Reads the diffs of every partial JSON value of an update into [`OracleValue::json_diffs`], and
/// where the before image holds the document they apply to (`binlog_row_image=FULL`), evaluates
/// them into [`OracleValue::json_document`]. Without the document (MINIMAL, NOBLOB) the new
/// document is not in the binlog, and the diffs are all there is to compare.
fn resolve_partial_json(row: &mut OracleRow) -> Result<(), String> {
    if row.op != OracleOp::Update {
        return Ok(());
    }
    for index in 0..row.after.len() {
        let Some(value) = &row.after[index] else {
            continue;
        };
        if !value.is_partial_json() {
            continue;
        }
        let what = || {
            format!(
                "partial JSON update of @{} in `{}`.`{}` at {}",
                index + 1,
                row.schema,
                row.table,
                row.at
            )
        };
        let expression = String::from_utf8(value.literal.clone())
            .map_err(|_| format!("{} is not UTF-8", what()))?;
        let diffs = json::parse_diff(&expression, index)
            .map_err(|e| format!("cannot read the {}: {e}: {expression}", what()))?;
        let document = match &row.before.get(index) {
            Some(Some(before)) => {
                let base = json::parse(&json_text(before)?)?;
                let document = json::apply_diffs(base, &diffs)
                    .map_err(|e| format!("cannot evaluate the {}: {e}: {expression}", what()))?;
                Some(document.to_mysql_text())
            }
            _ => None,
        };
        let value = row.after[index].as_mut().expect("checked above");
        value.json_diffs = Some(diffs);
        value.json_document = document;
    }
    Ok(())
}

/// A small JSON model that keeps numbers as their text, and an evaluator for the JSON diffs that
/// mysqlbinlog prints for partial JSON updates.
pub mod json {
    use std::fmt::Write as _;

    #[derive(Debug, Clone, PartialEq)]
    pub enum Json {
        Null,
        Bool(bool),
        /// The number exactly as written (no precision is lost for u64 or long decimals).
        Number(String),
        String(String),
        Array(Vec<Json>),
        /// Members in document order.
        Object(Vec<(String, Json)>),
    }

    /// Parses JSON text (RFC 8259).
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let value = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing text after JSON at byte {}", p.i));
        }
        Ok(value)
    }

    struct JsonParser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl JsonParser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }

        fn err<T>(&self, what: &str) -> Result<T, String> {
            Err(format!("invalid JSON at byte {}: {what}", self.i))
        }

        fn eat(&mut self, b: u8) -> bool {
            if self.s.get(self.i) == Some(&b) {
                self.i += 1;
                true
            } else {
                false
            }
        }

        fn value(&mut self) -> Result<Json, String> {
            self.ws();
            match self.s.get(self.i) {
                None => self.err("unexpected end"),
                Some(b'{') => {
                    self.i += 1;
                    let mut members = Vec::new();
                    self.ws();
                    if self.eat(b'}') {
                        return Ok(Json::Object(members));
                    }
                    loop {
                        self.ws();
                        if self.s.get(self.i) != Some(&b'"') {
                            return self.err("expected a member name");
                        }
                        let key = self.string()?;
                        self.ws();
                        if !self.eat(b':') {
                            return self.err("expected `:`");
                        }
                        let value = self.value()?;
                        members.push((key, value));
                        self.ws();
                        if self.eat(b'}') {
                            return Ok(Json::Object(members));
                        }
                        if !self.eat(b',') {
                            return self.err("expected `,` or `}`");
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.eat(b']') {
                        return Ok(Json::Array(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        if self.eat(b']') {
                            return Ok(Json::Array(items));
                        }
                        if !self.eat(b',') {
                            return self.err("expected `,` or `]`");
                        }
                    }
                }
                Some(b'"') => Ok(Json::String(self.string()?)),
                Some(b't') => self.keyword("true", Json::Bool(true)),
                Some(b'f') => self.keyword("false", Json::Bool(false)),
                Some(b'n') => self.keyword("null", Json::Null),
                Some(b'-' | b'0'..=b'9') => {
                    let start = self.i;
                    self.i += 1;
                    while self.s.get(self.i).is_some_and(|b| {
                        matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                    }) {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.i]).expect("ascii");
                    if !is_json_number(text) {
                        return self.err(&format!("bad number `{text}`"));
                    }
                    Ok(Json::Number(text.to_string()))
                }
                Some(_) => self.err("unexpected character"),
            }
        }

        fn keyword(&mut self, word: &str, value: Json) -> Result<Json, String> {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(value)
            } else {
                self.err("unknown literal")
            }
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let hex = self
                .s
                .get(self.i..self.i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    self.i += 4;
                    Ok(v)
                }
                None => self.err("bad \\u escape"),
            }
        }

        fn string(&mut self) -> Result<String, String> {
            self.i += 1; // opening quote
            let mut out = String::new();
            loop {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|&b| b != b'"' && b != b'\\' && b >= 0x20)
                {
                    self.i += 1;
                }
                out.push_str(
                    std::str::from_utf8(&self.s[start..self.i])
                        .map_err(|_| "JSON string is not UTF-8".to_string())?,
                );
                match self.s.get(self.i) {
                    Some(b'"') => {
                        self.i += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        self.i += 1;
                        let escaped = *self.s.get(self.i).ok_or("unterminated JSON string")?;
                        self.i += 1;
                        match escaped {
                            b'"' => out.push('"'),
                            b'\\' => out.push('\\'),
                            b'/' => out.push('/'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'n' => out.push('\n'),
                            b'r' => out.push('\r'),
                            b't' => out.push('\t'),
                            b'u' => {
                                let mut code = self.hex4()?;
                                if (0xD800..0xDC00).contains(&code) {
                                    if !(self.eat(b'\\') && self.eat(b'u')) {
                                        return self.err("lone surrogate");
                                    }
                                    let low = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&low) {
                                        return self.err("bad low surrogate");
                                    }
                                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                }
                                match char::from_u32(code) {
                                    Some(c) => out.push(c),
                                    None => return self.err("bad \\u code point"),
                                }
                            }
                            _ => return self.err("unknown escape"),
                        }
                    }
                    Some(_) => return self.err("control character in string"),
                    None => return self.err("unterminated string"),
                }
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    pub fn is_json_number(text: &str) -> bool {
        let b = text.as_bytes();
        let mut i = usize::from(b.first() == Some(&b'-'));
        let digits = |i: &mut usize| {
            let start = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - start
        };
        let int_start = i;
        let n = digits(&mut i);
        if n == 0 || (n > 1 && b[int_start] == b'0') {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return false;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return false;
            }
        }
        i == b.len()
    }

    impl Json {
        /// The document as MySQL prints it: `{"a": 1, "b": [1, 2]}`, members sorted the way MySQL
        /// stores them (by key length, then bytes).
        pub fn to_mysql_text(&self) -> String {
            let mut out = String::new();
            self.write_mysql(&mut out);
            out
        }

        fn write_mysql(&self, out: &mut String) {
            match self {
                Json::Null => out.push_str("null"),
                Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Json::Number(n) => out.push_str(n),
                Json::String(s) => write_json_string(out, s),
                Json::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        item.write_mysql(out);
                    }
                    out.push(']');
                }
                Json::Object(members) => {
                    let mut sorted: Vec<&(String, Json)> = members.iter().collect();
                    sorted.sort_by(|a, b| {
                        (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes()))
                    });
                    out.push('{');
                    for (i, (key, value)) in sorted.into_iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        write_json_string(out, key);
                        out.push_str(": ");
                        value.write_mysql(out);
                    }
                    out.push('}');
                }
            }
        }
    }

    fn write_json_string(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    /// One step of a JSON path.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Leg {
        Member(String),
        Index(usize),
    }

    /// Parses the paths that MySQL writes into JSON diffs: `$`, `.name`, `."quoted name"`, `[N]`.
    /// Wildcards, ranges and `last` never occur in diffs and are rejected.
    pub fn parse_path(path: &str) -> Result<Vec<Leg>, String> {
        let b = path.as_bytes();
        if b.first() != Some(&b'$') {
            return Err(format!("path `{path}` does not start with `$`"));
        }
        let mut legs = Vec::new();
        let mut i = 1;
        while i < b.len() {
            match b[i] {
                b'.' if b.get(i + 1) == Some(&b'"') => {
                    let mut p = JsonParser { s: b, i: i + 1 };
                    legs.push(Leg::Member(p.string()?));
                    i = p.i;
                }
                b'.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < b.len() && !matches!(b[end], b'.' | b'[') {
                        end += 1;
                    }
                    let name = &path[start..end];
                    if name.is_empty() || name.contains(['*', ' ', '"']) {
                        return Err(format!("unsupported member `{name}` in path `{path}`"));
                    }
                    legs.push(Leg::Member(name.to_string()));
                    i = end;
                }
                b'[' => {
                    let close = path[i..]
                        .find(']')
                        .map(|c| c + i)
                        .ok_or_else(|| format!("unterminated `[` in path `{path}`"))?;
                    let index = path[i + 1..close].trim().parse().map_err(|_| {
                        format!(
                            "unsupported array leg `{}` in path `{path}`",
                            &path[i..=close]
                        )
                    })?;
                    legs.push(Leg::Index(index));
                    i = close + 1;
                }
                _ => return Err(format!("unsupported path `{path}`")),
            }
        }
        Ok(legs)
    }

    /// The value at `legs[..legs.len() - 1]` (the container the last leg applies to).
    fn parent<'j>(doc: &'j mut Json, legs: &[Leg]) -> Result<&'j mut Json, String> {
        let mut node = doc;
        for leg in &legs[..legs.len().saturating_sub(1)] {
            node = match (node, leg) {
                (Json::Object(members), Leg::Member(name)) => members
                    .iter_mut()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v)
                    .ok_or_else(|| format!("no member `{name}`"))?,
                (Json::Array(items), Leg::Index(i)) => items
                    .get_mut(*i)
                    .ok_or_else(|| format!("no element [{i}]"))?,
                (_, leg) => return Err(format!("path leg {leg:?} does not fit the document")),
            };
        }
        Ok(node)
    }

    /// The function mysqlbinlog prints for a diff. The server's diff operations are REPLACE,
    /// INSERT and REMOVE; mysqlbinlog prints an INSERT whose path ends in an array element as
    /// `JSON_ARRAY_INSERT`, any other as `JSON_INSERT`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Function {
        Replace,
        Insert,
        ArrayInsert,
        Remove,
    }

    impl Function {
        fn from_name(name: &str) -> Option<Self> {
            Some(match name {
                "JSON_REPLACE" => Function::Replace,
                "JSON_INSERT" => Function::Insert,
                "JSON_ARRAY_INSERT" => Function::ArrayInsert,
                "JSON_REMOVE" => Function::Remove,
                _ => return None,
            })
        }

        /// The server's operation, as our decoder names it in a JSON diff value.
        pub fn operation(self) -> &'static str {
            match self {
                Function::Replace => "replace",
                Function::Insert | Function::ArrayInsert => "insert",
                Function::Remove => "remove",
            }
        }
    }

    /// One diff of a partial JSON update, as mysqlbinlog printed it.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Diff {
        pub function: Function,
        /// The path as printed (unquoted), e.g. `$.a[1]`.
        pub path: String,
        /// `None` for a removal.
        pub value: Option<Json>,
    }

    /// Applies diffs to a document, in order.
    pub fn apply_diffs(mut doc: Json, diffs: &[Diff]) -> Result<Json, String> {
        for diff in diffs {
            apply(&mut doc, diff.function, &diff.path, diff.value.clone())
                .map_err(|e| format!("{:?} '{}': {e}", diff.function, diff.path))?;
        }
        Ok(doc)
    }

    /// Applies one diff to `doc`, with the semantics of MySQL's `Json_diff` (a replaced or removed
    /// value must exist, an inserted member must not).
    fn apply(doc: &mut Json, op: Function, path: &str, value: Option<Json>) -> Result<(), String> {
        let legs = parse_path(path)?;
        let Some(last) = legs.last() else {
            return match (op, value) {
                (Function::Replace, Some(value)) => {
                    *doc = value;
                    Ok(())
                }
                _ => Err(format!("{op:?} of the whole document")),
            };
        };
        let parent = parent(doc, &legs)?;
        match (op, parent, last) {
            (Function::Replace, Json::Object(members), Leg::Member(name)) => {
                let slot = members
                    .iter_mut()
                    .find(|(k, _)| k == name)
                    .ok_or_else(|| format!("replaced member `{name}` does not exist"))?;
                slot.1 = value.expect("replace has a value");
            }
            (Function::Replace, Json::Array(items), Leg::Index(i)) => {
                let slot = items
                    .get_mut(*i)
                    .ok_or_else(|| format!("replaced element [{i}] does not exist"))?;
                *slot = value.expect("replace has a value");
            }
            (Function::Insert, Json::Object(members), Leg::Member(name)) => {
                if members.iter().any(|(k, _)| k == name) {
                    return Err(format!("inserted member `{name}` already exists"));
                }
                members.push((name.clone(), value.expect("insert has a value")));
            }
            (Function::ArrayInsert, Json::Array(items), Leg::Index(i)) => {
                let at = (*i).min(items.len());
                items.insert(at, value.expect("insert has a value"));
            }
            (Function::Remove, Json::Object(members), Leg::Member(name)) => {
                let at = members
                    .iter()
                    .position(|(k, _)| k == name)
                    .ok_or_else(|| format!("removed member `{name}` does not exist"))?;
                members.remove(at);
            }
            (Function::Remove, Json::Array(items), Leg::Index(i)) => {
                if *i >= items.len() {
                    return Err(format!("removed element [{i}] does not exist"));
                }
                items.remove(*i);
            }
            (op, _, leg) => return Err(format!("{op:?} at {leg:?} does not fit the document")),
        }
        Ok(())
    }

    /// Reads a partial JSON update as mysqlbinlog prints it, e.g.
    /// `JSON_REMOVE(\nJSON_REPLACE(@2, '$.a', 1,\n'$.b', 'x'),\n'$.c')` for column `index`
    /// (0-based), into its diffs in the order MySQL applied them.
    ///
    /// mysqlbinlog nests one call per run of diffs with the same function, the first run
    /// innermost, so reading the calls from the inside out gives the diffs in order. Values are
    /// printed as numbers, `true`/`false`/`null`, `'text'` (a JSON string; dates, times and opaque
    /// values are printed the same way) or `CAST('<json>' AS JSON)` (objects and arrays). An
    /// update that changed nothing is printed as the bare column, `@2`.
    pub fn parse_diff(expression: &str, index: usize) -> Result<Vec<Diff>, String> {
        let mut tokens = Tokens {
            s: expression.as_bytes(),
            i: 0,
        };
        let column = format!("@{}", index + 1);
        let mut diffs = Vec::new();
        calls(&mut tokens, &column, &mut diffs)?;
        tokens.ws();
        if tokens.i != tokens.s.len() {
            return Err(format!("trailing text at byte {}", tokens.i));
        }
        Ok(diffs)
    }

    fn calls(t: &mut Tokens, column: &str, diffs: &mut Vec<Diff>) -> Result<(), String> {
        t.ws();
        if t.s[t.i..].starts_with(b"@") {
            let name = t.word();
            if name != column {
                return Err(format!("diff of {column} refers to {name}"));
            }
            return Ok(());
        }
        let name = t.word();
        let function =
            Function::from_name(&name).ok_or_else(|| format!("unknown function `{name}`"))?;
        t.expect(b'(')?;
        calls(t, column, diffs)?;
        let before = diffs.len();
        while t.next_is(b',') {
            t.expect(b',')?;
            let path = t.quoted()?;
            parse_path(&path).map_err(|e| format!("{name}: {e}"))?;
            // mysqlbinlog names an INSERT by the last character of its path.
            let fits = match function {
                Function::Insert => !path.ends_with(']'),
                Function::ArrayInsert => path.ends_with(']'),
                Function::Replace | Function::Remove => true,
            };
            if !fits {
                return Err(format!("{name} with path '{path}'"));
            }
            let value = if function == Function::Remove {
                None
            } else {
                t.expect(b',')?;
                Some(t.value()?)
            };
            diffs.push(Diff {
                function,
                path,
                value,
            });
        }
        t.expect(b')')?;
        if diffs.len() == before {
            return Err(format!("{name} without a path"));
        }
        Ok(())
    }

    struct Tokens<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Tokens<'_> {
        fn ws(&mut self) {
            while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
                self.i += 1;
            }
        }

        fn next_is(&mut self, b: u8) -> bool {
            self.ws();
            self.s.get(self.i) == Some(&b)
        }

        fn expect(&mut self, b: u8) -> Result<(), String> {
            if self.next_is(b) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected `{}` at byte {}", b as char, self.i))
            }
        }

        /// A run of name characters: `JSON_REPLACE`, `@2`, `CAST`, `null`, a number.
        fn word(&mut self) -> String {
            self.ws();
            let start = self.i;
            while self.s.get(self.i).is_some_and(|&b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'-' | b'+' | b'.')
            }) {
                self.i += 1;
            }
            String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
        }

        /// A `'…'` string in mysqlbinlog's quoting, decoded.
        fn quoted(&mut self) -> Result<String, String> {
            self.ws();
            let start = self.i;
            if self.s.get(self.i) != Some(&b'\'') {
                return Err(format!("expected a quoted string at byte {}", self.i));
            }
            self.i += 1;
            loop {
                match self.s.get(self.i) {
                    Some(b'\\') => self.i += 2,
                    Some(b'\'') => {
                        self.i += 1;
                        break;
                    }
                    Some(_) => self.i += 1,
                    None => return Err("unterminated quoted string".into()),
                }
            }
            let bytes = super::unquote(&self.s[start..self.i])?;
            String::from_utf8(bytes).map_err(|_| "quoted string is not UTF-8".into())
        }

        fn value(&mut self) -> Result<Json, String> {
            if self.next_is(b'\'') {
                return Ok(Json::String(self.quoted()?));
            }
            let word = self.word();
            match word.as_str() {
                "null" => Ok(Json::Null),
                "true" => Ok(Json::Bool(true)),
                "false" => Ok(Json::Bool(false)),
                "CAST" => {
                    self.expect(b'(')?;
                    let text = self.quoted()?;
                    let rest = self.word();
                    let json = self.word();
                    if rest != "AS" || json != "JSON" {
                        return Err(format!("expected `AS JSON`, found `{rest} {json}`"));
                    }
                    self.expect(b')')?;
                    parse(&text)
                }
                number if is_json_number(number) => Ok(Json::Number(number.to_string())),
                other => Err(format!("unsupported value `{other}`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mysql97/decoded")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn value(row: &OracleRow, image: Image, column: usize) -> &OracleValue {
        let values = match image {
            Image::Before => &row.before,
            Image::After => &row.after,
        };
        values[column]
            .as_ref()
            .unwrap_or_else(|| panic!("@{} not in {image}", column + 1))
    }

    #[test]
    fn column_lists_count_columns_printed_without_separator() {
        let count = |list: &[u8]| column_entries(list).unwrap().len();
        assert_eq!(count(b"INT NOT NULL"), 1);
        assert_eq!(
            count(b"`a,b` DECIMAL(12,2),`e` ENUM('x,y', 'z') CHARSET utf8mb4,JSON"),
            3
        );
        assert_eq!(
            count(b"SMALLINT NOT NULL,TINYINT NOT NULL,INVALID_TYPE(12)INVALID_TYPE(7)"),
            4
        );
        assert_eq!(count(b"INVALID_TYPE(12)SMALLINT NOT NULL,INT"), 3);
    }

    #[test]
    fn unsigned_is_a_word_of_the_column_entry() {
        assert!(is_unsigned(b"`id` INT UNSIGNED NOT NULL"));
        assert!(is_unsigned(b"DECIMAL(8,3) UNSIGNED"));
        assert!(!is_unsigned(b"`UNSIGNED` INT"));
        assert!(!is_unsigned(b"`e` ENUM('UNSIGNED', 'x') CHARSET utf8mb4"));
        assert!(!is_unsigned(b"`u` INT UNSIGNEDX"));
    }

    #[test]
    fn mariadb_values_are_requoted_the_oracle_way() {
        let (literal, comment) = mariadb_value(
            b"'a\\x0ab\\x09c\\d'e /* x' /* VARSTRING(40) meta=40 nullable=1 is_null=0 */",
        )
        .unwrap();
        assert_eq!(
            comment.as_deref(),
            Some("VARSTRING(40) meta=40 nullable=1 is_null=0")
        );
        assert_eq!(unquote(&literal).unwrap(), b"a\nb\tc\\d'e /* x");
        let (literal, _) =
            mariadb_value(b"3.5                  /* FLOAT meta=4 nullable=1 is_null=0 */").unwrap();
        assert_eq!(literal, b"3.5");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unquote(&quote(&all)).unwrap(), all);
    }

    #[test]
    fn unquote_undoes_every_escape() {
        assert_eq!(
            unquote(br"'\x00\x07\b\t\n\x0b\f\r\x1f\'\\ x'").unwrap(),
            b"\x00\x07\x08\t\n\x0b\x0c\r\x1f'\\ x"
        );
        assert_eq!(unquote(b"'caf\xe9'").unwrap(), b"caf\xe9");
        assert!(unquote(b"'a'b'").is_err());
        assert!(unquote(br"'\q'").is_err());
        assert!(unquote(b"abc").is_err());
    }

    #[test]
    fn rows_of_the_minimal_metadata_file() {
        let rows = parse(
            &fixture("mysql97-02-meta-minimal-rowsv2.mysqlbinlog-vv.txt"),
            Dialect::Oracle,
        )
        .unwrap();
        assert_eq!(rows.len(), 3041);

        // The first all_types insert: mysqlbinlog stops at the GEOMETRY column @47.
        let first = &rows[0];
        assert_eq!((first.at, first.end_log_pos), (2283, 4084));
        assert_eq!(first.op, OracleOp::Insert);
        assert_eq!(
            (&*first.schema, &*first.table),
            ("cdc_fixture", "all_types")
        );
        assert_eq!(first.after.len(), 51);
        assert_eq!(
            first.truncated.as_ref().map(|t| (t.image, t.column)),
            Some((Image::After, 46))
        );
        assert_eq!(value(first, Image::After, 2).literal, b"-1 (255)");
        assert_eq!(
            value(first, Image::After, 12).type_comment,
            "DECIMAL(65,30) meta=16670 nullable=1 is_null=0"
        );
        assert_eq!(value(first, Image::After, 14).literal, b"3.5");
        assert_eq!(value(first, Image::After, 28).literal, b"'caf\xe9'");
        assert_eq!(value(first, Image::After, 42).literal, br"'\x07\b\t\n'");
        assert!(first.after[47..].iter().all(Option::is_none));

        // A truncated UPDATE: the WHERE image stops at @47 and no SET image is printed.
        let update = rows.iter().find(|r| r.op == OracleOp::Update).unwrap();
        assert_eq!(update.at, 4491);
        assert_eq!(
            update.truncated.as_ref().map(|t| t.image),
            Some(Image::Before)
        );
        assert!(update.after.is_empty());

        // Rows inside a TRANSACTION_PAYLOAD carry the payload's end as position.
        let compressed: Vec<_> = rows.iter().filter(|r| r.at == 16551).collect();
        assert_eq!(compressed.len(), 2);
        assert!(compressed
            .iter()
            .all(|r| r.end_log_pos == 16551 && r.payload_at == Some(16293)));
        assert_eq!(rows.iter().filter(|r| r.payload_at.is_some()).count(), 7);
        assert_eq!(
            compressed
                .iter()
                .map(|r| r.index_in_event)
                .collect::<Vec<_>>(),
            [0, 1]
        );

        // MINIMAL row image: the before image has only the key, the after image the changes.
        let minimal = rows
            .iter()
            .find(|r| r.table == "orders" && r.op == OracleOp::Update && r.before[2].is_none())
            .unwrap();
        assert!(minimal.before[0].is_some() && minimal.before[1].is_some());
        assert_eq!(
            minimal.after.iter().filter(|v| v.is_some()).count(),
            1,
            "{minimal:?}"
        );
    }

    #[test]
    fn partial_json_updates_are_evaluated_where_the_before_image_has_the_document() {
        let rows = parse(
            &fixture("mysql97-04-meta-full-rowsquery-partialjson.mysqlbinlog-vv.txt"),
            Dialect::Oracle,
        )
        .unwrap();
        // MINIMAL row images (the before image has only the key): the diffs alone. FULL row
        // images: the document after the update. `@2=@2` (at 20295) is the empty diff of an
        // update that did not change the document.
        let partial: Vec<(u64, String)> = rows
            .iter()
            .filter_map(|r| {
                let value = r.after.get(1)?.as_ref()?;
                let diffs = value.json_diffs.as_ref()?;
                let shown = match &value.json_document {
                    Some(document) => document.clone(),
                    None => diffs
                        .iter()
                        .map(|d| {
                            let value = d.value.as_ref().map(json::Json::to_mysql_text);
                            format!(
                                "{} {} {}",
                                d.function.operation(),
                                d.path,
                                value.unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                };
                Some((r.at, shown))
            })
            .collect();
        assert_eq!(
            rows.iter()
                .filter(|r| r.after.iter().flatten().any(OracleValue::is_partial_json))
                .count(),
            partial.len()
        );
        assert_eq!(
            partial,
            [
                (17168, "replace $.n 42"),
                (
                    17677,
                    r#"replace $.name "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb""#
                ),
                (18179, "remove $.nested.k "),
                (19270, r#"replace $[1] "TWO""#),
                (
                    19721,
                    r#"{"n": 43, "name": "a", "tags": ["x", "y", "z"], "nested": {"arr": [1, 2, 3], "new": {"z": 1.25}}}"#
                ),
                (
                    20295,
                    r#"{"n": 2, "name": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}"#
                ),
                (
                    20823,
                    r#"{"n": 44, "name": "a", "tags": ["x", "y", "z"], "nested": {"arr": [1, 2, 3], "new": {"z": 1.25}}}"#
                ),
                (23536, "insert $.small 1"),
            ]
            .map(|(at, shown)| (at, shown.to_string()))
        );
    }

    #[test]
    fn every_reference_file_parses() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql97/decoded");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read(&path).unwrap();
            parse(&text, Dialect::Oracle).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    fn evaluate(expression: &str, index: usize, base: json::Json) -> Result<json::Json, String> {
        json::apply_diffs(base, &json::parse_diff(expression, index)?)
    }

    #[test]
    fn nested_diffs_apply_innermost_first() {
        // The shape mysqlbinlog prints for a diff list [REPLACE, REPLACE, REMOVE, INSERT].
        let expression = "JSON_INSERT(\nJSON_REMOVE(\nJSON_REPLACE(@3, '$.a', 1,\n'$.\"b c\"', \
                          CAST('{\"x\": [1]}' AS JSON)),\n'$.d[0]'),\n'$.e', 'it\\'s')";
        let base = json::parse(r#"{"a": 0, "b c": null, "d": [true, false]}"#).unwrap();
        let doc = evaluate(expression, 2, base).unwrap();
        assert_eq!(
            doc.to_mysql_text(),
            r#"{"a": 1, "d": [false], "e": "it's", "b c": {"x": [1]}}"#
        );
    }

    #[test]
    fn array_insert_and_errors() {
        let base = json::parse("[1, 2]").unwrap();
        let doc = evaluate("JSON_ARRAY_INSERT(@1, '$[1]', 1.5e3)", 0, base).unwrap();
        assert_eq!(doc.to_mysql_text(), "[1, 1.5e3, 2]");

        let base = json::parse(r#"{"a": 1}"#).unwrap();
        for bad in [
            "JSON_REPLACE(@1, '$.missing', 1)",
            "JSON_INSERT(@1, '$.a', 1)",
            "JSON_INSERT(@1, '$.a[0]', 1)",
            "JSON_ARRAY_INSERT(@1, '$.b', 1)",
            "JSON_REMOVE(@1, '$[*]')",
            "JSON_SET(@1, '$.a', 1)",
            "JSON_REPLACE(@2, '$.a', 1)",
            "JSON_REPLACE(@1, '$.a', 1",
        ] {
            assert!(evaluate(bad, 0, base.clone()).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn json_numbers_keep_their_text() {
        let doc =
            json::parse(r#"[-9223372036854775808, 18446744073709551615, 1.50, -0.0e-5]"#).unwrap();
        assert_eq!(
            doc.to_mysql_text(),
            "[-9223372036854775808, 18446744073709551615, 1.50, -0.0e-5]"
        );
        for bad in ["01", "1.", ".5", "1e", "--1", "+1"] {
            assert!(json::parse(bad).is_err(), "{bad}");
        }
    }
}
