//! The data directory's format version, so a newer binary can open an older data
//! directory and an older binary refuses a newer one before touching it.
//!
//! `<data-dir>/FORMAT` holds one number. A binary writes [`CURRENT`] when it
//! creates a data directory, opens every format up to [`CURRENT`] (migrating, if a
//! version ever needs it, and then writing the marker again), and refuses a higher
//! one with an error naming both versions. A data directory from before markers
//! (it has `raft/` but no `FORMAT`) is format 1.
//!
//! | format | what changed |
//! |---|---|
//! | 1 | no marker: everything before format versions |
//! | 2 | the marker itself; the layout is that of format 1, so opening a format-1 directory only writes the marker |
//!
//! A change a binary of the previous format could misread (a new RocksDB column
//! family, another key layout, a snapshot format) raises [`CURRENT`] and adds its
//! migration to [`open`]. The check runs first thing at start-up, before
//! `listen.json`, the credentials or RocksDB are written.

use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::info;

/// The format this binary writes, and the newest it opens.
pub const CURRENT: u32 = 2;

/// The marker's file name in the data directory.
pub const FORMAT_FILE: &str = "FORMAT";

/// Longest marker read, in bytes: it is one number.
const MAX_MARKER: u64 = 64;

/// Why a data directory was not opened. Nothing in it was changed.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "data directory {} is format {found}, but this orion ({}) reads formats 1 to \
         {supported}; run a newer orion on it",
        dir.display(),
        env!("CARGO_PKG_VERSION")
    )]
    Newer {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{} holds {content:?}, not a data format version (a number of at most {} bytes)",
        path.display(),
        MAX_MARKER
    )]
    Unreadable { path: PathBuf, content: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FormatError + '_ {
    move |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The format `dir` is in: its marker, 1 for a data directory from before markers,
/// `None` for a new one.
pub fn read(dir: &Path) -> Result<Option<u32>, FormatError> {
    let path = dir.join(FORMAT_FILE);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_MARKER => {
            return Err(FormatError::Unreadable {
                path,
                content: format!("{} bytes", meta.len()),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(dir.join("raft").exists().then_some(1));
        }
        Err(e) => return Err(io(&path)(e)),
    }
    let content = std::fs::read_to_string(&path).map_err(io(&path))?;
    content
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|v| *v >= 1)
        .map(Some)
        .ok_or(FormatError::Unreadable { path, content })
}

/// Checks `dir` (which exists) and brings its marker up to [`CURRENT`]: creates
/// it in a new data directory, upgrades an older one, refuses a newer one.
/// Returns the format found (`None`: a new directory).
pub fn open(dir: &Path) -> Result<Option<u32>, FormatError> {
    let found = read(dir)?;
    match found {
        Some(v) if v > CURRENT => {
            return Err(FormatError::Newer {
                dir: dir.to_path_buf(),
                found: v,
                supported: CURRENT,
            })
        }
        Some(CURRENT) => return Ok(found),
        // Format 1 → 2 changed nothing in the layout: only the marker is new.
        Some(v) => info!(dir = %dir.display(), from = v, to = CURRENT,
            "upgrading the data directory's format"),
        None => {}
    }
    write(dir, CURRENT)?;
    Ok(found)
}

/// Writes the marker atomically: a temporary file, synced, then renamed.
fn write(dir: &Path, version: u32) -> Result<(), FormatError> {
    let path = dir.join(FORMAT_FILE);
    let tmp = dir.join(format!("{FORMAT_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    writeln!(f, "{version}").map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_is_marked_current() {
        let dir = tempfile::tempdir().expect("ok");
        assert_eq!(open(dir.path()).expect("ok"), None);
        assert_eq!(read(dir.path()).expect("ok"), Some(CURRENT));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FORMAT_FILE)).expect("ok"),
            format!("{CURRENT}\n")
        );
        // Opening it again changes nothing.
        assert_eq!(open(dir.path()).expect("ok"), Some(CURRENT));
    }

    #[test]
    fn a_directory_from_before_markers_is_format_1_and_upgraded() {
        let dir = tempfile::tempdir().expect("ok");
        std::fs::create_dir(dir.path().join("raft")).expect("ok");
        assert_eq!(read(dir.path()).expect("ok"), Some(1));
        assert_eq!(open(dir.path()).expect("ok"), Some(1));
        assert_eq!(read(dir.path()).expect("ok"), Some(CURRENT));
    }

    #[test]
    fn a_newer_directory_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().expect("ok");
        std::fs::write(dir.path().join(FORMAT_FILE), format!("{}\n", CURRENT + 1)).expect("ok");
        let e = open(dir.path()).expect_err("an error");
        assert_eq!(
            e.to_string(),
            format!(
                "data directory {} is format {}, but this orion ({}) reads formats 1 to {CURRENT}; \
                 run a newer orion on it",
                dir.path().display(),
                CURRENT + 1,
                env!("CARGO_PKG_VERSION")
            )
        );
        // Nothing was changed.
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FORMAT_FILE)).expect("ok"),
            format!("{}\n", CURRENT + 1)
        );
    }

    #[test]
    fn a_marker_that_is_not_a_number_is_refused() {
        let dir = tempfile::tempdir().expect("ok");
        for bad in ["two\n", "0\n", "", "-1"] {
            std::fs::write(dir.path().join(FORMAT_FILE), bad).expect("ok");
            let e = open(dir.path()).expect_err("an error").to_string();
            assert!(e.contains("not a data format version"), "{bad:?}: {e}");
        }
        std::fs::write(dir.path().join(FORMAT_FILE), "1".repeat(100)).expect("ok");
        let e = open(dir.path()).expect_err("an error").to_string();
        assert!(e.contains("100 bytes"), "{e}");
    }
}
