//! Reading binlog files from disk (`cdcd tail --file`), with the same decoder as the network.
//!
//! Events are framed here, not by mysql_common, so that a truncated or corrupt file is an error
//! naming the offset rather than a panic inside the parser.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion, EventType};
use mysql_common::binlog::events::TransactionPayloadEvent;
use mysql_common::binlog::EventStreamReader;

use cdcd_event::Flavor;

use crate::decoder::{Decoder, Record};
use crate::error::{Error, Result};
use crate::filter::TableFilter;

const MAGIC: &[u8; 4] = b"\xfebin";
const HEADER_LEN: usize = 19;

/// Reads one or more binlog files in order and yields their records.
pub struct FileReader {
    paths: VecDeque<PathBuf>,
    current: Option<OpenFile>,
    decoder: Decoder,
    /// Records of the last event, in reverse order (so that the next is popped from the end).
    pending: Vec<Record>,
}

struct OpenFile {
    path: String,
    input: BufReader<File>,
    offset: u64,
    events: EventStreamReader,
    payload: Option<Cursor<Vec<u8>>>,
}

impl FileReader {
    /// Opens a single file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_all(&[path.to_path_buf()], TableFilter::default(), Vec::new())
    }

    /// Opens several files to be read one after the other (as `binlog.000001 binlog.000002`),
    /// keeping the tables `filter` selects and skipping the event types in `skip_event_types`.
    pub fn open_all(
        paths: &[PathBuf],
        filter: TableFilter,
        skip_event_types: Vec<u8>,
    ) -> Result<Self> {
        let first = paths.first().ok_or_else(|| Error::File {
            path: String::new(),
            message: "no binlog file given".into(),
        })?;
        let name = file_name(first);
        let mut reader = FileReader {
            paths: paths.iter().cloned().collect(),
            current: None,
            decoder: Decoder::new(Flavor::MySql, &name, filter)
                .with_skipped_types(skip_event_types)
                .without_checksum_verification(),
            pending: Vec::new(),
        };
        reader.open_next()?;
        Ok(reader)
    }

    fn open_next(&mut self) -> Result<bool> {
        let Some(path) = self.paths.pop_front() else {
            self.current = None;
            return Ok(false);
        };
        let shown = path.display().to_string();
        let io_err = |source| Error::Io {
            path: shown.clone(),
            source,
        };
        let mut input = BufReader::with_capacity(1 << 20, File::open(&path).map_err(io_err)?);
        let mut magic = [0u8; 4];
        let n = read_fully(&mut input, &mut magic).map_err(io_err)?;
        if n < 4 || &magic != MAGIC {
            return Err(Error::File {
                path: shown,
                message: "not a binlog file (it does not start with the binlog magic bytes \
                          fe 62 69 6e)"
                    .into(),
            });
        }
        self.current = Some(OpenFile {
            path: shown,
            input,
            offset: 4,
            events: EventStreamReader::new(BinlogVersion::Version4),
            payload: None,
        });
        Ok(true)
    }

    /// The next record, or `None` after the last file.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(record) = self.pending.pop() {
                return Ok(Some(record));
            }
            let Some(file) = self.current.as_mut() else {
                return Ok(None);
            };
            match file.next_event()? {
                Some(event) => {
                    self.decoder.handle(&event, &mut self.pending)?;
                    self.pending.reverse();
                }
                None => {
                    if self.decoder.in_transaction() {
                        let path = file.path.clone();
                        if !self.paths.is_empty() {
                            return Err(Error::File {
                                path,
                                message: "the file ends inside a transaction, and the next file \
                                          cannot continue it"
                                    .into(),
                            });
                        }
                        // The last file may be the active binlog, still being written: the rows
                        // seen so far were emitted, the commit was not.
                        tracing::warn!(%path, "binlog ends inside a transaction");
                    }
                    if !self.open_next()? {
                        return Ok(None);
                    }
                    let next = self.current.as_ref().map(|f| file_name(Path::new(&f.path)));
                    if let Some(name) = next {
                        self.decoder.set_file(&name);
                    }
                }
            }
        }
    }
}

impl OpenFile {
    fn next_event(&mut self) -> Result<Option<mysql_common::binlog::events::Event>> {
        if let Some(payload) = &mut self.payload {
            let at = payload.position() as usize;
            let left = payload.get_ref().len() - at.min(payload.get_ref().len());
            if left > 0 {
                // mysql_common reads an inner event's body with an unchecked `read_exact`;
                // check that it is all there first.
                let size = payload
                    .get_ref()
                    .get(at + 9..at + 13)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
                if !size.is_some_and(|size| (HEADER_LEN..=left).contains(&size)) {
                    return Err(Error::File {
                        path: self.path.clone(),
                        message: format!(
                            "the transaction payload before offset {} holds a truncated event",
                            self.offset
                        ),
                    });
                }
                let event =
                    self.events
                        .read_decompressed(&mut *payload)
                        .map_err(|e| Error::File {
                            path: self.path.clone(),
                            message: format!(
                                "the transaction payload before offset {} is corrupt: {e}",
                                self.offset
                            ),
                        })?;
                return Ok(event);
            }
            self.payload = None;
        }
        let at = self.offset;
        let mut header = [0u8; HEADER_LEN];
        let io_err = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let n = read_fully(&mut self.input, &mut header).map_err(io_err)?;
        if n == 0 {
            return Ok(None);
        }
        let truncated = |what: &str, got: usize, want: usize| Error::File {
            path: self.path.clone(),
            message: format!(
                "truncated at offset {}: the event starting at offset {at} needs {want} bytes of \
                 {what}, the file has {got}",
                at + got as u64
            ),
        };
        if n < HEADER_LEN {
            return Err(truncated("header", n, HEADER_LEN));
        }
        let size = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes")) as usize;
        if !(HEADER_LEN..=1 << 30).contains(&size) {
            return Err(Error::File {
                path: self.path.clone(),
                message: format!(
                    "corrupt event header at offset {at}: event size {size} is impossible"
                ),
            });
        }
        let mut buf = vec![0u8; size];
        buf[..HEADER_LEN].copy_from_slice(&header);
        let n = read_fully(&mut self.input, &mut buf[HEADER_LEN..]).map_err(io_err)?;
        if n < size - HEADER_LEN {
            return Err(truncated("body", n + HEADER_LEN, size));
        }
        self.offset += size as u64;
        self.verify_checksum(&buf, at)?;
        let event = self
            .events
            .read(&buf[..])
            .map_err(|e| Error::File {
                path: self.path.clone(),
                message: format!("cannot parse the event at offset {at}: {e}"),
            })?
            .ok_or_else(|| Error::File {
                path: self.path.clone(),
                message: format!("no event at offset {at}"),
            })?;
        if event.header().event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            let tpe: TransactionPayloadEvent<'_> = event.read_event().map_err(|e| Error::File {
                path: self.path.clone(),
                message: format!("cannot parse the transaction payload at offset {at}: {e}"),
            })?;
            // The size comes from the file: a hint only, capped.
            let mut bytes = Vec::with_capacity((tpe.uncompressed_size() as usize).min(64 << 20));
            tpe.decompressed()
                .and_then(|mut r| r.read_to_end(&mut bytes))
                .map_err(|e| Error::File {
                    path: self.path.clone(),
                    message: format!(
                        "cannot decompress the transaction payload at offset {at}: {e}"
                    ),
                })?;
            self.payload = Some(Cursor::new(bytes));
        }
        Ok(Some(event))
    }
}

impl OpenFile {
    /// Checks an event's CRC32 on its raw bytes, before any parser sizes anything from them.
    fn verify_checksum(&self, event: &[u8], at: u64) -> Result<()> {
        let is_fde = event[4] == EventType::FORMAT_DESCRIPTION_EVENT as u8;
        let crc32 = if is_fde {
            // The FDE names the algorithm in the byte before its own checksum.
            event.len() >= HEADER_LEN + 5 && event[event.len() - 5] == 1
        } else {
            matches!(
                self.events.get_fde().footer().get_checksum_alg(),
                Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
            )
        };
        if !crc32 {
            return Ok(());
        }
        if event.len() < HEADER_LEN + 4 {
            return Err(Error::File {
                path: self.path.clone(),
                message: format!("the event at offset {at} is too short to hold its checksum"),
            });
        }
        let (body, stored) = event.split_at(event.len() - 4);
        let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
        let computed = if is_fde {
            // The server sets LOG_EVENT_BINLOG_IN_USE_F in the FDE while the file is open, after
            // computing the checksum with it clear.
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&body[..17]);
            hasher.update(&[body[17] & !1]);
            hasher.update(&body[18..]);
            hasher.finalize()
        } else {
            crc32fast::hash(body)
        };
        if stored != computed {
            return Err(Error::Checksum {
                at: crate::error::Location {
                    file: self.path.clone(),
                    pos: at,
                },
                stored,
                computed,
            });
        }
        Ok(())
    }
}

fn read_fully(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
