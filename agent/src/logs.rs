//! Replica logs: `root/logs/<id>/{stdout,stderr}.log`, rotated by size.
//!
//! # Why the child writes the file itself (copy-truncate rotation)
//! A replica must survive an agent restart (see `supervisor/records.rs`). If its output
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
//!
//! # Reading from an offset (resuming `orion logs -f`)
//! [`tail_at`] and [`LogReader`] give every line with the byte offset just past
//! it in the live file. A reader that lost its stream (a leader change) asks to
//! resume from the last offset it printed; the agent and the files did not die,
//! so it gets exactly the lines after it. A live file shorter than the offset was
//! rotated or truncated since: [`LogEvent::Truncated`] says so and reading starts
//! again from its beginning (lines written in between may be in `.1`, or lost).

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

/// The last `n` complete lines of a stream, oldest first, like [`tail`], each with
/// the live-file offset a reader resumes from after it (0 for lines of rotated
/// files: everything in the live file comes after them), and the live file's own
/// resume offset: the end of its last complete line. A trailing partial line is
/// left for [`LogReader`] to send once it is complete.
pub fn tail_at(dir: &Path, stream: LogStream, n: usize) -> Result<(Vec<LogLine>, u64)> {
    let live = log_path(dir, stream);
    let bytes = match fs::read(&live) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_at(live)(e)),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, _) in bytes[..complete]
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
    {
        lines.push(LogLine {
            text: String::from_utf8_lossy(&bytes[start..i]).into_owned(),
            end: (i + 1) as u64,
        });
        start = i + 1;
    }
    if lines.len() > n {
        lines.drain(..lines.len() - n);
    } else if lines.len() < n {
        let live_count = lines.len();
        let older = tail(dir, stream, n)?;
        // `tail` counts the live file's partial line as a line; skip it and the
        // complete ones we have, keep what comes before, from rotated files.
        let partial = usize::from(complete < bytes.len());
        let keep = older.len().saturating_sub(live_count + partial);
        let mut merged: Vec<LogLine> = older
            .into_iter()
            .take(keep)
            .map(|text| LogLine { text, end: 0 })
            .collect();
        merged.append(&mut lines);
        lines = merged;
    }
    Ok((lines, complete as u64))
}

/// One complete line of a live log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Without its newline; invalid UTF-8 replaced.
    pub text: String,
    /// The offset just past its newline: where a reader resumes after it.
    pub end: u64,
}

/// What a [`LogReader`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    Line(LogLine),
    /// The file is shorter than the reader's position: rotated or truncated. The
    /// reader starts again from its beginning; lines written in between may be
    /// missing (in `stdout.log.1`, or lost).
    Truncated {
        at: u64,
        len: u64,
    },
}

/// Reads a live log file from a byte offset on, complete line by complete line.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    /// How far the file has been read (the partial line included).
    pos: u64,
    /// Bytes after the last newline read, waiting for theirs.
    partial: Vec<u8>,
    /// The last poll stopped at [`POLL_BYTES`] with more to read.
    behind: bool,
}

/// Most bytes one [`LogReader::poll`] reads, so a huge backlog is sent in pieces.
const POLL_BYTES: u64 = 1 << 20;

/// Longest line kept whole; a longer one is cut here (as a line of its own).
const MAX_LINE: usize = 1 << 20;

impl LogReader {
    /// A reader of `path` that starts at `offset` (the start of a line).
    pub fn new(path: PathBuf, offset: u64) -> Self {
        LogReader {
            path,
            pos: offset,
            partial: Vec::new(),
            behind: false,
        }
    }

    /// Where a reader resumes after the last line returned.
    pub fn resume_offset(&self) -> u64 {
        self.pos - self.partial.len() as u64
    }

    /// Whether the last poll left bytes to read (call again without waiting).
    pub fn behind(&self) -> bool {
        self.behind
    }

    /// The complete lines written since the last call (at most [`POLL_BYTES`]),
    /// and a [`LogEvent::Truncated`] first if the file shrank. A file that does
    /// not exist (yet) holds nothing.
    pub fn poll(&mut self) -> Vec<LogEvent> {
        let mut events = Vec::new();
        self.behind = false;
        let Ok(mut file) = File::open(&self.path) else {
            return events;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.pos {
            events.push(LogEvent::Truncated {
                at: self.resume_offset(),
                len,
            });
            self.pos = 0;
            self.partial.clear();
        }
        if len == self.pos || file.seek(SeekFrom::Start(self.pos)).is_err() {
            return events;
        }
        let mut buf = Vec::new();
        let Ok(got) = file
            .take((len - self.pos).min(POLL_BYTES))
            .read_to_end(&mut buf)
        else {
            return events;
        };
        let mut line_start = self.resume_offset();
        self.pos += got as u64;
        self.behind = self.pos < len;
        self.partial.extend_from_slice(&buf);
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            line_start += line.len() as u64;
            events.push(LogEvent::Line(LogLine {
                text: String::from_utf8_lossy(&line[..line.len() - 1]).into_owned(),
                end: line_start,
            }));
        }
        if self.partial.len() >= MAX_LINE {
            let line = std::mem::take(&mut self.partial);
            line_start += line.len() as u64;
            events.push(LogEvent::Line(LogLine {
                text: String::from_utf8_lossy(&line).into_owned(),
                end: line_start,
            }));
        }
        events
    }
}

/// Follows a live log file from `offset`: sends what [`LogReader::poll`] finds,
/// now and then every `every`, until `cancel` fires or the receiver is dropped.
pub fn follow(
    path: PathBuf,
    offset: u64,
    every: Duration,
    cancel: CancellationToken,
) -> mpsc::Receiver<LogEvent> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut reader = LogReader::new(path, offset);
        loop {
            let read = match tokio::task::spawn_blocking(move || {
                let events = reader.poll();
                (reader, events)
            })
            .await
            {
                Ok((r, events)) => {
                    reader = r;
                    events
                }
                Err(_) => return,
            };
            let more = reader.behind();
            for event in read {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            if more {
                // A backlog: read on without waiting.
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    });
    rx
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

    #[test]
    fn tail_at_gives_resume_offsets_and_leaves_a_partial_line() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_at("tempdir"))?;
        let live = log_path(dir.path(), LogStream::Stdout);
        fs::write(rotated_path(&live, 1), "old\n").map_err(io_at(&live))?;
        fs::write(&live, "a\nbb\npart").map_err(io_at(&live))?;
        let (lines, end) = tail_at(dir.path(), LogStream::Stdout, 10)?;
        let got: Vec<(&str, u64)> = lines.iter().map(|l| (l.text.as_str(), l.end)).collect();
        assert_eq!(got, [("old", 0), ("a", 2), ("bb", 5)]);
        assert_eq!(end, 5, "the partial line is not sent yet");
        let (lines, end) = tail_at(dir.path(), LogStream::Stdout, 1)?;
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].text.as_str(), end), ("bb", 5));
        let (lines, end) = tail_at(dir.path(), LogStream::Stderr, 5)?;
        assert!(lines.is_empty());
        assert_eq!(end, 0, "a stream that never wrote starts at 0");
        Ok(())
    }

    #[test]
    fn a_reader_resumes_exactly_after_its_offset_and_notices_truncation() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_at("tempdir"))?;
        let live = log_path(dir.path(), LogStream::Stdout);
        fs::write(&live, "one\ntwo\nthr").map_err(io_at(&live))?;
        let mut reader = LogReader::new(live.clone(), 4);
        assert_eq!(
            reader.poll(),
            [LogEvent::Line(LogLine {
                text: "two".into(),
                end: 8
            })]
        );
        assert_eq!(reader.resume_offset(), 8);
        let mut f = open_for_child(dir.path(), LogStream::Stdout)?;
        writeln!(f, "ee").map_err(io_at(&live))?;
        assert_eq!(
            reader.poll(),
            [LogEvent::Line(LogLine {
                text: "three".into(),
                end: 14
            })]
        );
        // Truncated behind the reader's back, then a short line written.
        fs::write(&live, "x\n").map_err(io_at(&live))?;
        assert_eq!(
            reader.poll(),
            [
                LogEvent::Truncated { at: 14, len: 2 },
                LogEvent::Line(LogLine {
                    text: "x".into(),
                    end: 2
                })
            ]
        );
        // A resume from an offset past the end of a shorter file says so too.
        let mut late = LogReader::new(live, 100);
        assert_eq!(late.poll()[0], LogEvent::Truncated { at: 100, len: 2 });
        Ok(())
    }

    /// The next line's text, skipping truncation notices.
    async fn next(rx: &mut mpsc::Receiver<LogEvent>) -> Option<String> {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .ok()
                .flatten()?
            {
                LogEvent::Line(l) => return Some(l.text),
                LogEvent::Truncated { .. } => continue,
            }
        }
    }

    #[tokio::test]
    async fn follow_sees_new_lines_and_rotation() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_at("tempdir"))?;
        let live = log_path(dir.path(), LogStream::Stdout);
        fs::write(&live, "old\n").map_err(io_at(&live))?;
        let cancel = CancellationToken::new();
        let end = fs::metadata(&live).map_err(io_at(&live))?.len();
        let mut lines = follow(live.clone(), end, Duration::from_millis(10), cancel.clone());
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
