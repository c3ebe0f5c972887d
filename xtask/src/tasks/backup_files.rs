//! The files of backups/ while they are written: `.<stem>.partial-<pid>`, created exclusively and
//! held under an `flock` by their maker (and the pg_dump it starts, which shares the descriptor) for
//! as long as they are written. A partial file whose lock can be taken was left by a maker that is
//! gone (killed, crashed): [`sweep_partials`] deletes those. The lock, not the pid in the name,
//! decides: a pid may be reused by then, a lock dies with every process holding it.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const PARTIAL: &str = ".partial-";

/// A new partial file, readable by its owner only (a dump holds the database's data), locked.
pub fn create_partial(dir: &Path, stem: &str) -> Result<(PathBuf, File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!(".{stem}{PARTIAL}{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("lock {}", path.display()));
    }
    Ok((path, file))
}

/// Deletes the partial files in `dir` whose makers are gone; returns their names.
pub fn sweep_partials(dir: &Path) -> Result<Vec<String>> {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut swept = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with('.') && name.contains(PARTIAL) && entry.file_type().is_ok_and(|t| t.is_file()))
        {
            continue;
        }
        let Ok(file) =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(entry.path())
        else {
            continue;
        };
        // SAFETY: flock on a descriptor we own; it is released when `file` closes.
        let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if free {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("delete {}", entry.path().display()))?;
            swept.push(name);
        }
    }
    Ok(swept)
}

/// Whether two archives hold the same dump: equal bytes after the header, which carries the time of
/// the dump (pg_dump writes the same catalog and rows the same way each time). Read in chunks: a
/// dump may be larger than memory.
pub fn same_dump(a: &Path, b: &Path) -> Result<bool> {
    let open = |path: &Path| -> Result<(std::io::BufReader<File>, u64)> {
        let file = File::open(path).with_context(|| format!("read {}", path.display()))?;
        let len = file.metadata().with_context(|| format!("read {}", path.display()))?.len();
        Ok((std::io::BufReader::with_capacity(1 << 16, file), len))
    };
    let ((mut a, a_len), (mut b, b_len)) = (open(a)?, open(b)?);
    if a_len != b_len {
        return Ok(false);
    }
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut first = true;
    loop {
        let (n, m) = (read_full(&mut a, &mut x)?, read_full(&mut b, &mut y)?);
        if n != m {
            return Ok(false);
        }
        let (x, y) = (&x[..n], &y[..m]);
        let equal = if first {
            // The header is a few hundred bytes: it lies within the first chunk.
            matches!((after_header(x), after_header(y)), (Some(p), Some(q)) if p == q)
        } else {
            x == y
        };
        if !equal {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
        first = false;
    }
}

/// Fills `buffer` as far as the reader goes; the count read (0 at the end).
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]).context("read a backup")? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The custom format's body: what follows magic, version, sizes, format, compression, creation
/// time (7 integers), and the database, server and pg_dump names (3 strings).
fn after_header(bytes: &[u8]) -> Option<&[u8]> {
    let (major, minor, int_size) = (*bytes.get(5)?, *bytes.get(6)?, *bytes.get(8)? as usize);
    let mut at = 11;
    let int = |at: &mut usize| -> Option<i64> {
        let sign = *bytes.get(*at)?;
        let digits = bytes.get(*at + 1..*at + 1 + int_size)?;
        *at += 1 + int_size;
        let value = digits.iter().rev().fold(0i64, |v, b| (v << 8) | i64::from(*b));
        Some(if sign == 0 { value } else { -value })
    };
    if (major, minor) >= (1, 15) {
        at += 1; // the compression algorithm, one byte
    } else {
        int(&mut at)?;
    }
    for _ in 0..7 {
        int(&mut at)?;
    }
    for _ in 0..3 {
        let len = int(&mut at)?;
        at += usize::try_from(len.max(0)).ok()?;
    }
    bytes.get(at..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_of_gone_makers_are_swept_and_held_ones_kept() {
        let dir = crate::os::TempDir::new("partials").unwrap();
        let (held, _file) = create_partial(dir.path(), "db--main--1").unwrap();
        let gone = dir.path().join(".db--main--2.partial-1");
        std::fs::write(&gone, "data").unwrap();
        std::fs::write(dir.path().join("db--main--3.dump"), "kept").unwrap();
        assert_eq!(sweep_partials(dir.path()).unwrap(), [".db--main--2.partial-1"]);
        assert!(held.exists() && !gone.exists());
        assert!(dir.path().join("db--main--3.dump").exists());
    }

    #[test]
    fn dumps_differing_only_in_their_header_are_the_same() {
        let header = |second: u8, db: &[u8]| {
            let mut h = b"PGDMP\x01\x0e\x00\x04\x08\x01".to_vec();
            h.extend([1, 255, 255, 255, 255]); // compression -1
            for value in [second, 2, 3, 4, 5, 126, 0] {
                h.extend([0, value, 0, 0, 0]);
            }
            for text in [db, b"15.1", b"15.1"] {
                h.extend([0, text.len() as u8, 0, 0, 0]);
                h.extend(text);
            }
            h
        };
        let dir = crate::os::TempDir::new("same-dump").unwrap();
        let write = |name: &str, second: u8, body: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, [header(second, b"shop"), body.to_vec()].concat()).unwrap();
            path
        };
        let (a, b, c) = (write("a", 1, b"rows"), write("b", 59, b"rows"), write("c", 1, b"rowz"));
        assert!(same_dump(&a, &b).unwrap());
        assert!(!same_dump(&a, &c).unwrap());
    }
}
