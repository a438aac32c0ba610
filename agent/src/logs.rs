//! Replica logs: `root/logs/<id>/{stdout,stderr}.log`, rotated by size.
//!
//! # Why the child writes the file itself (copy-truncate rotation)
//! A replica must survive an agent restart (see [`crate::state`]). If its output
//! went through a pipe to the agent, the pipe would break when the agent exits and
//! the next write would kill the replica with `SIGPIPE`. So the child's stdout and
//! stderr are the log files themselves, opened with `O_APPEND`, and the agent
//! rotates them from outside, like logrotate's `copytruncate`: when `stdout.log`
//! reaches [`LogConfig::max_bytes`], `.1..` shift up, the last `max_bytes` of it are
//! copied to `stdout.log.1` and it is truncated to zero; `O_APPEND` makes the
//! child's next write land at the new end.
//!
//! The cost, accepted: lines written between the copy and the truncate are lost,
//! and between two checks ([`LogConfig::check_every`]) the live file may grow past
//! the limit by what the process writes in that time. After every check each file
//! is at most `max_bytes`, so the total is bounded by `(keep + 1) * max_bytes`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{io_at, Result};

/// How big log files may grow and how many rotated ones are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// A file is rotated once it reaches this size (default 10 MiB).
    pub max_bytes: u64,
    /// Rotated files kept besides the live one: `stdout.log.1 ..= .keep` (default 3).
    pub keep: usize,
    /// How often the supervisor checks sizes (default 1 s).
    pub check_every: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_bytes: 10 << 20,
            keep: 3,
            check_every: Duration::from_secs(1),
        }
    }
}

/// Which output of the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub const ALL: [LogStream; 2] = [LogStream::Stdout, LogStream::Stderr];

    pub fn file_name(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout.log",
            LogStream::Stderr => "stderr.log",
        }
    }
}

/// `root/logs/<id>`: where one replica's logs live.
pub fn replica_dir(root: &Path, id: &str) -> PathBuf {
    root.join("logs").join(id)
}

/// The live log file of one stream.
pub fn log_path(dir: &Path, stream: LogStream) -> PathBuf {
    dir.join(stream.file_name())
}

/// `stdout.log.N`.
fn rotated_path(live: &Path, n: usize) -> PathBuf {
    let mut name = live.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens (creating the folder and file) the live file for a child to write to.
/// `O_APPEND`, so rotation by truncation keeps the child's writes in place.
pub fn open_for_child(dir: &Path, stream: LogStream) -> Result<File> {
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let path = log_path(dir, stream);
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_at(path))
}

/// Rotates `live` if it has reached `config.max_bytes`; returns whether it did.
/// Blocking file I/O: call it from `spawn_blocking`.
pub fn rotate_if_needed(live: &Path, config: &LogConfig) -> Result<bool> {
    let len = match fs::metadata(live) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_at(live)(e)),
    };
    if len < config.max_bytes.max(1) {
        return Ok(false);
    }
    if config.keep > 0 {
        for n in (1..config.keep).rev() {
            let from = rotated_path(live, n);
            if from.exists() {
                let to = rotated_path(live, n + 1);
                fs::rename(&from, &to).map_err(io_at(&from))?;
            }
        }
        let first = rotated_path(live, 1);
        let mut src = File::open(live).map_err(io_at(live))?;
        let start = len.saturating_sub(config.max_bytes);
        src.seek(SeekFrom::Start(start)).map_err(io_at(live))?;
        let mut out = File::create(&first).map_err(io_at(&first))?;
        io::copy(&mut src.take(len - start), &mut out).map_err(io_at(&first))?;
        out.flush().map_err(io_at(&first))?;
    }
    OpenOptions::new()
        .write(true)
        .open(live)
        .and_then(|f| f.set_len(0))
        .map_err(io_at(live))?;
    Ok(true)
}

/// The last `n` lines of a stream, oldest first, reading into rotated files when
/// the live one holds fewer. A replica that never ran has no lines.
pub fn tail(dir: &Path, stream: LogStream, n: usize) -> Result<Vec<String>> {
    let live = log_path(dir, stream);
    let mut files = vec![live.clone()];
    let mut k = 1;
    loop {
        let p = rotated_path(&live, k);
        if !p.exists() {
            break;
        }
        files.push(p);
        k += 1;
    }
    // Newest file first; collect lines from the end until we have n.
    let mut lines: Vec<String> = Vec::new();
    for path in files {
        if lines.len() >= n {
            break;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_at(path)(e)),
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut these: Vec<String> = text.lines().map(str::to_owned).collect();
        let need = n - lines.len();
        if these.len() > need {
            these.drain(..these.len() - need);
        }
        these.append(&mut lines);
        lines = these;
    }
    Ok(lines)
}

/// Follows a live log file: sends each complete new line, starting at the current
/// end, until `cancel` fires or the receiver is dropped. Notices rotation (the file
/// shrank) and starts again from its beginning. Polls every `every`.
pub fn follow(path: PathBuf, every: Duration, cancel: CancellationToken) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(256);
    // The end as of this call, not of when the task first runs.
    let mut offset = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    tokio::spawn(async move {
        let mut partial = Vec::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let read = read_from(&path, &mut offset, &mut partial);
            for line in read {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// New complete lines of `path` after `offset`; a shorter file means it was rotated.
fn read_from(path: &Path, offset: &mut u64, partial: &mut Vec<u8>) -> Vec<String> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        *offset = 0;
        partial.clear();
    }
    if file.seek(SeekFrom::Start(*offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let Ok(got) = file.take(len - *offset).read_to_end(&mut buf) else {
        return Vec::new();
    };
    *offset += got as u64;
    partial.extend_from_slice(&buf);
    let mut lines = Vec::new();
    while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = partial.drain(..=nl).collect();
        lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_bounded_tail() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_at("tempdir"))?;
        let config = LogConfig {
            max_bytes: 100,
            keep: 2,
            check_every: Duration::from_millis(10),
        };
        let live = log_path(dir.path(), LogStream::Stdout);
        for round in 0..5 {
            let mut f = open_for_child(dir.path(), LogStream::Stdout)?;
            for i in 0..30 {
                writeln!(f, "r{round} l{i}").map_err(io_at(&live))?;
            }
            assert!(rotate_if_needed(&live, &config)?);
            assert_eq!(fs::metadata(&live).map_err(io_at(&live))?.len(), 0);
        }
        assert!(rotated_path(&live, 1).exists());
        assert!(rotated_path(&live, 2).exists());
        assert!(!rotated_path(&live, 3).exists());
        for n in 1..=2 {
            let p = rotated_path(&live, n);
            assert!(fs::metadata(&p).map_err(io_at(&p))?.len() <= 100);
        }
        let last = tail(dir.path(), LogStream::Stdout, 2)?;
        assert_eq!(last, vec!["r4 l28".to_owned(), "r4 l29".to_owned()]);
        Ok(())
    }

    #[test]
    fn tail_spans_rotated_files() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_at("tempdir"))?;
        let live = log_path(dir.path(), LogStream::Stderr);
        fs::write(rotated_path(&live, 1), "a\nb\n").map_err(io_at(&live))?;
        fs::write(&live, "c\n").map_err(io_at(&live))?;
        assert_eq!(tail(dir.path(), LogStream::Stderr, 2)?, vec!["b", "c"]);
        assert_eq!(
            tail(dir.path(), LogStream::Stderr, 10)?,
            vec!["a", "b", "c"]
        );
        assert!(tail(dir.path(), LogStream::Stdout, 3)?.is_empty());
        Ok(())
    }

    async fn next(rx: &mut mpsc::Receiver<String>) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn follow_sees_new_lines_and_rotation() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_at("tempdir"))?;
        let live = log_path(dir.path(), LogStream::Stdout);
        fs::write(&live, "old\n").map_err(io_at(&live))?;
        let cancel = CancellationToken::new();
        let mut lines = follow(live.clone(), Duration::from_millis(10), cancel.clone());
        let mut f = open_for_child(dir.path(), LogStream::Stdout)?;
        write!(f, "new ").map_err(io_at(&live))?;
        writeln!(f, "line").map_err(io_at(&live))?;
        assert_eq!(next(&mut lines).await.as_deref(), Some("new line"));
        let config = LogConfig {
            max_bytes: 1,
            keep: 1,
            check_every: Duration::from_millis(10),
        };
        assert!(rotate_if_needed(&live, &config)?);
        writeln!(f, "after").map_err(io_at(&live))?;
        assert_eq!(next(&mut lines).await.as_deref(), Some("after"));
        cancel.cancel();
        assert_eq!(next(&mut lines).await, None);
        Ok(())
    }
}
