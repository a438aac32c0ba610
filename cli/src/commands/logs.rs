//! `orion logs -f`: follow one replica's log through leader changes.
//!
//! The stream is asked for in record form (`records=true`): one JSON
//! [`LogRecord`] per line, each carrying how far into its stream's live file the
//! reader is. The CLI prints each line and keeps that cursor, so when the stream
//! breaks (the leader that relays it, or the peer the CLI talks to, died) it
//! reconnects, through any server of the context and with backoff, and asks for
//! what comes after the cursor: no line is lost or printed twice. The agent and
//! its files did not die, so the offsets still hold; a file that was rotated or
//! truncated in between is announced by a notice on stderr.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use orion_api::agent_proto::{LogCursor, LogRecord, LogRecordKind, LogStreamName};

use orion_client::{Client, ClientError, LogQuery, StatusCode, Stream};

/// Longest line of records accepted from the server (a log line is cut by the
/// agent at 1 MiB; JSON escaping may double it).
const MAX_RECORD: usize = 4 << 20;

/// How long to keep trying to reconnect before giving up: longer than any
/// election and agent reconnect, short enough not to hang forever on a cluster
/// that is gone.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

/// Where the reader stands in each stream; `None` until the first record says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    stdout: Option<u64>,
    stderr: Option<u64>,
}

impl Cursor {
    fn advance(&mut self, record: &LogRecord) {
        match record.stream {
            LogStreamName::Stdout => self.stdout = Some(record.offset),
            LogStreamName::Stderr => self.stderr = Some(record.offset),
        }
    }

    /// The resume point, once both streams are known.
    fn resume(&self) -> Option<LogCursor> {
        Some(LogCursor {
            stdout: self.stdout?,
            stderr: self.stderr?,
        })
    }
}

/// The request for the first connection, or for a resume from `cursor`.
fn logs_query(tail: usize, cursor: Option<LogCursor>) -> LogQuery {
    LogQuery {
        tail,
        follow: true,
        records: true,
        from: cursor,
    }
}

/// Worth retrying: no peer reachable, no leader yet, the agent not reconnected
/// yet (503), or too many sessions open for a moment (429).
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable(_) => true,
        ClientError::Api { status, .. } => {
            status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
        }
        // Unknown is a write's outcome; a log read is never one.
        _ => false,
    }
}

/// Splits newline-delimited records out of the bytes received so far; what
/// follows the last newline stays in `pending` for the next chunk.
fn take_records(pending: &mut Vec<u8>) -> anyhow::Result<Vec<LogRecord>> {
    let mut out = Vec::new();
    while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=nl).collect();
        let record: LogRecord = serde_json::from_slice(&line[..nl])
            .context("the server sent a log record this CLI cannot read")?;
        out.push(record);
    }
    if pending.len() > MAX_RECORD {
        anyhow::bail!("the server sent a log record over {MAX_RECORD} bytes");
    }
    Ok(out)
}

/// How a connection ended.
enum Ended {
    /// The stream broke or ended: reconnect and resume.
    Broke(String),
}

/// Prints records from one connection until it ends; keeps `cursor` at the last
/// record printed.
async fn print_records(
    mut stream: Stream,
    cursor: &mut Cursor,
    out: &mut impl Write,
) -> anyhow::Result<Ended> {
    let mut pending = Vec::new();
    loop {
        let chunk = match stream.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(ClientError::Broken(cause)) => return Ok(Ended::Broke(cause)),
            Err(e) => return Ok(Ended::Broke(e.to_string())),
        };
        pending.extend_from_slice(&chunk);
        for record in take_records(&mut pending)? {
            match record.kind {
                LogRecordKind::Line => {
                    out.write_all(record.text.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .context("cannot write to standard output")?;
                }
                LogRecordKind::Notice => eprintln!("orion: {}", record.text),
                LogRecordKind::Mark => {}
            }
            cursor.advance(&record);
        }
        out.flush().context("cannot write to standard output")?;
    }
    Ok(Ended::Broke("the server ended the stream".into()))
}

/// Follows replica `id`'s log until Ctrl-C, reconnecting as needed.
pub async fn follow(client: &Client, id: &str, tail: usize) -> anyhow::Result<()> {
    let mut cursor = Cursor::default();
    let mut stdout = std::io::stdout().lock();
    // When and why the stream last broke, while reconnecting.
    let mut broke: Option<(Instant, String)> = None;
    loop {
        // Before both streams are known (the tail was cut short), start over with
        // no tail rather than repeat lines: the marks come right after the tail.
        let resume = cursor.resume();
        let query = match (broke.is_some(), resume) {
            (false, _) => logs_query(tail, None),
            (true, Some(c)) => logs_query(0, Some(c)),
            (true, None) => logs_query(0, None),
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times()
            .with_total_delay(Some(GIVE_UP_AFTER));
        let connect = || async { client.open_logs(id, &query).await };
        let opened = connect
            .retry(backoff)
            .when(|e| broke.is_some() && transient(e))
            .notify(|e, wait| {
                tracing::debug!(cause = %e, ?wait, "log stream not back yet; retrying");
            })
            .await;
        let stream = match opened {
            Ok(r) => r,
            Err(e) if broke.is_some() => {
                return Err(e).with_context(|| {
                    format!("the log stream of {id} broke and could not be resumed")
                })
            }
            Err(e) => return Err(e.into()),
        };
        if let Some((at, why)) = broke.take() {
            let url = stream.url();
            let base = url.split("/v1/").next().unwrap_or(url);
            eprintln!(
                "orion: log stream resumed via {base} after {:.1} s ({why})",
                at.elapsed().as_secs_f64()
            );
        }
        let Ended::Broke(why) = print_records(stream, &mut cursor, &mut stdout).await?;
        eprintln!("orion: the log stream broke ({why}); reconnecting…");
        broke = Some((Instant::now(), why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_across_chunks_come_out_whole_and_advance_the_cursor() {
        let a = r#"{"stream":"stdout","offset":6,"text":"hello"}"#;
        let b = r#"{"stream":"stderr","offset":0,"kind":"mark"}"#;
        let all = format!("{a}\n{b}\n");
        let (first, second) = all.split_at(10);
        let mut pending = first.as_bytes().to_vec();
        assert!(take_records(&mut pending).is_ok_and(|r| r.is_empty()));
        pending.extend_from_slice(second.as_bytes());
        let records = take_records(&mut pending).unwrap_or_default();
        assert_eq!(records.len(), 2);
        assert!(pending.is_empty());
        let mut cursor = Cursor::default();
        cursor.advance(&records[0]);
        assert_eq!(cursor.resume(), None, "stderr not known yet");
        cursor.advance(&records[1]);
        assert_eq!(
            cursor.resume(),
            Some(LogCursor {
                stdout: 6,
                stderr: 0
            })
        );
        assert_eq!(records[1].kind, LogRecordKind::Mark);
    }

    /// The path it makes (`…/logs?follow=true&records=true&tail=0&stdout_offset=120
    /// &stderr_offset=7`) is checked in `orion-client`, which writes it.
    #[test]
    fn a_resume_asks_for_what_follows_the_cursor_and_no_tail() {
        let c = LogCursor {
            stdout: 120,
            stderr: 7,
        };
        assert_eq!(
            logs_query(0, Some(c)),
            LogQuery {
                tail: 0,
                follow: true,
                records: true,
                from: Some(c),
            }
        );
    }

    #[test]
    fn only_unavailability_is_retried() {
        let api = |status| ClientError::Api {
            status,
            error: orion_api::ApiError::internal("x"),
        };
        assert!(transient(&ClientError::Unreachable("down".into())));
        assert!(transient(&api(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(transient(&api(StatusCode::TOO_MANY_REQUESTS)));
        assert!(!transient(&api(StatusCode::NOT_FOUND)));
        assert!(!transient(&api(StatusCode::UNAUTHORIZED)));
        assert!(!transient(&ClientError::Invalid("bad url".into())));
    }

    #[test]
    fn garbage_from_the_server_is_an_error_not_a_panic() {
        let mut pending = b"not json\n".to_vec();
        assert!(take_records(&mut pending).is_err());
    }
}
