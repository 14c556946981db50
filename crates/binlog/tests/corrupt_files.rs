//! Truncated and corrupted binlog files: the reader must return an error naming the offset, never
//! panic, and never return rows from a damaged event.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use cdcd_binlog::{FileReader, Record};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql97/binlog");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 7, "fixtures missing in {}", dir.display());
    files
}

/// Reads a whole file; `Err` carries the error text. Panics are caught and reported as such.
fn read_all(path: &Path) -> Result<usize, String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<usize, String> {
        let mut reader = FileReader::open(path).map_err(|e| e.to_string())?;
        let mut changes = 0;
        while let Some(record) = reader.next_record().map_err(|e| e.to_string())? {
            if matches!(record, Record::Change(_)) {
                changes += 1;
            }
        }
        Ok(changes)
    }));
    outcome.unwrap_or_else(|_| panic!("reading {} panicked", path.display()))
}

/// Offsets where events start, from the event headers.
fn event_boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut at = 4;
    let mut out = vec![at];
    while at + 13 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
        at += size;
        out.push(at);
    }
    out
}

/// A small deterministic generator, so failures reproduce.
fn positions(seed: u64, count: usize, max: usize) -> Vec<usize> {
    let mut x = seed;
    (0..count)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize % max
        })
        .collect()
}

#[test]
fn truncated_files_fail_with_the_offset_and_never_panic() {
    let dir = std::env::temp_dir().join(format!("cdcd-truncated-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut checked = 0;
    for file in fixtures() {
        let bytes = std::fs::read(&file).unwrap();
        let boundaries = event_boundaries(&bytes);
        for cut in positions(7, 60, bytes.len()) {
            let path = dir.join("cut.binlog");
            std::fs::write(&path, &bytes[..cut]).unwrap();
            match read_all(&path) {
                Ok(_) => assert!(
                    boundaries.contains(&cut),
                    "{} cut at {cut} (inside an event) was read without error",
                    file.display()
                ),
                Err(message) => assert!(
                    message.contains("offset") || message.contains("not a binlog"),
                    "{} cut at {cut}: error without an offset: {message}",
                    file.display()
                ),
            }
            checked += 1;
        }
    }
    println!(
        "{checked} truncated files read: every cut inside an event was an error naming its offset"
    );
}

#[test]
fn corrupted_bytes_are_errors_not_panics_or_silent_changes() {
    let dir = std::env::temp_dir().join(format!("cdcd-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut errors, mut checked) = (0, 0);
    for file in fixtures() {
        let bytes = std::fs::read(&file).unwrap();
        let intact = read_all(&file).expect("the fixture itself reads");
        for (i, at) in positions(11, 80, bytes.len()).into_iter().enumerate() {
            if at < 4 {
                continue;
            }
            let mut damaged = bytes.clone();
            damaged[at] ^= 1 << (i % 8);
            let path = dir.join("damaged.binlog");
            std::fs::write(&path, &damaged).unwrap();
            checked += 1;
            match read_all(&path) {
                Err(message) => {
                    assert!(message.contains("offset"), "error without an offset: {message}");
                    errors += 1;
                }
                // Without checksums (mysql97-06) a flipped bit in a value can go unnoticed, as it
                // would for MySQL itself; with CRC32 it must be caught.
                Ok(changes) => assert!(
                    file.to_string_lossy().contains("checksum-none") || changes == intact,
                    "{}: flipping a bit at {at} changed the rows ({changes} vs {intact}) without an error",
                    file.display()
                ),
            }
        }
    }
    println!("{checked} corrupted files read without a panic; {errors} rejected with an error");
}
