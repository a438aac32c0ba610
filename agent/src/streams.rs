//! The log and exec streams: the leader opens a QUIC stream on an agent's
//! connection for each `orion logs` or `orion exec`, so a busy log never delays the
//! control stream. The first frame is a [`StreamRequest`]; logs are answered with
//! raw bytes (or JSON [`LogRecord`] lines), exec with one [`ExecResult`] frame,
//! a restart with one [`RestartResult`] frame once the new process runs.

use std::sync::Arc;
use std::time::Duration;

use orion_api::agent_proto::{
    write_frame, ExecResult, FrameReader, LogCursor, LogRecord, LogRecordKind, LogStreamName,
    RestartResult, StreamRequest,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::logs::{self, LogEvent, LogStream};
use crate::metrics::AgentMetrics;
use crate::supervisor::Supervisor;

/// How long an exec may run before it is killed, unless the request says.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest timeout an exec request may ask for (a hook's bound).
const MAX_EXEC_TIMEOUT: Duration =
    Duration::from_millis(orion_api::spec::hooks::MAX_HOOK_TIMEOUT_MS);

/// How long a restart may take beyond the stop grace: the new process must be running by then.
const RESTART_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the leader's log and exec requests, each on its own stream.
pub(crate) async fn accept_streams(
    conn: quinn::Connection,
    supervisor: Arc<Supervisor>,
    metrics: Arc<AgentMetrics>,
) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(handle_stream(
            send,
            recv,
            supervisor.clone(),
            metrics.clone(),
        ));
    }
}

async fn handle_stream(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    supervisor: Arc<Supervisor>,
    metrics: Arc<AgentMetrics>,
) {
    let request = match FrameReader::<_, StreamRequest>::new(recv).next().await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            warn!(cause = %e, "closing a bad log or exec stream from the leader");
            let _ = send.reset(1u32.into());
            return;
        }
    };
    match request {
        StreamRequest::Exec {
            replica,
            command,
            timeout_ms,
            env,
        } => {
            let timeout = match timeout_ms {
                0 => EXEC_TIMEOUT,
                ms => Duration::from_millis(ms).min(MAX_EXEC_TIMEOUT),
            };
            let result = match supervisor.exec(&replica, &command, &env, timeout).await {
                Ok(out) => ExecResult {
                    exit_code: out.exit_code,
                    signal: out.signal,
                    stdout: out.stdout,
                    stderr: out.stderr,
                    error: None,
                },
                Err(e) => ExecResult {
                    exit_code: None,
                    signal: None,
                    stdout: String::new(),
                    stderr: String::new(),
                    error: Some(e.to_string()),
                },
            };
            match write_frame(&mut send, &result).await {
                Ok(()) => {
                    let _ = send.finish();
                }
                Err(e) => debug!(%replica, cause = %e, "cannot answer an exec request"),
            }
        }
        StreamRequest::Restart { replica } => {
            let timeout = supervisor.stop_grace() + RESTART_START_TIMEOUT;
            let result = match supervisor.restart(&replica, timeout).await {
                Ok(status) => {
                    tracing::info!(%replica, pid = ?status.pid, restarts = status.restarts, "replica restarted on request");
                    RestartResult {
                        pid: status.pid,
                        restarts: status.restarts,
                        error: None,
                    }
                }
                Err(e) => RestartResult {
                    pid: None,
                    restarts: 0,
                    error: Some(e.to_string()),
                },
            };
            match write_frame(&mut send, &result).await {
                Ok(()) => {
                    let _ = send.finish();
                }
                Err(e) => debug!(%replica, cause = %e, "cannot answer a restart request"),
            }
        }
        StreamRequest::Logs {
            replica,
            tail,
            follow,
            from,
            records,
        } => {
            let _counted = metrics.log_stream();
            let dir = supervisor.log_dir(&replica);
            let mut out = LogWriter { send, records };
            if send_logs(&mut out, &dir, tail, follow, from).await.is_ok() {
                let _ = out.send.finish();
            }
        }
    }
}

/// Writes log lines to the leader's stream: raw text, or [`LogRecord`]s.
struct LogWriter {
    send: quinn::SendStream,
    records: bool,
}

/// The leader stopped reading.
struct Gone;

impl LogWriter {
    async fn line(&mut self, stream: LogStream, text: &str, offset: u64) -> Result<(), Gone> {
        let bytes = if self.records {
            record_line(stream, text, offset, LogRecordKind::Line)?
        } else {
            format!("{text}\n")
        };
        self.send
            .write_all(bytes.as_bytes())
            .await
            .map_err(|_| Gone)
    }

    /// A [`LogRecordKind::Notice`] or [`LogRecordKind::Mark`] (records only: raw
    /// text has no place for them that cannot be mistaken for the replica's output).
    async fn meta(
        &mut self,
        kind: LogRecordKind,
        stream: LogStream,
        text: &str,
        offset: u64,
    ) -> Result<(), Gone> {
        if !self.records {
            return Ok(());
        }
        let bytes = record_line(stream, text, offset, kind)?;
        self.send
            .write_all(bytes.as_bytes())
            .await
            .map_err(|_| Gone)
    }
}

fn record_line(
    stream: LogStream,
    text: &str,
    offset: u64,
    kind: LogRecordKind,
) -> Result<String, Gone> {
    let record = LogRecord {
        stream: match stream {
            LogStream::Stdout => LogStreamName::Stdout,
            LogStream::Stderr => LogStreamName::Stderr,
        },
        offset,
        text: text.to_owned(),
        kind,
    };
    // A struct of strings and numbers always serializes; should it not, the
    // stream ends rather than carry a line that is not a record.
    let mut line = serde_json::to_string(&record).map_err(|e| {
        warn!(cause = %e, "cannot encode a log record; ending the log stream");
        Gone
    })?;
    line.push('\n');
    Ok(line)
}

/// What a truncation means to the reader, in words.
fn truncation_notice(stream: LogStream, at: u64, len: u64) -> String {
    format!(
        "{} is {len} bytes, shorter than offset {at} this reader had reached: it was \
         rotated or truncated since; following it from its start (lines written just \
         before that may be missing, or are in {}.1)",
        stream.file_name(),
        stream.file_name()
    )
}

/// `orion logs`: the tail of both streams (or, resuming, what the live files hold
/// after the reader's cursor), then with `follow` every new line as it comes.
async fn send_logs(
    out: &mut LogWriter,
    dir: &std::path::Path,
    tail: usize,
    follow: bool,
    from: Option<LogCursor>,
) -> Result<(), Gone> {
    let mut cursor = [0u64; 2];
    match from {
        Some(c) => cursor = [c.stdout, c.stderr],
        None => {
            for (k, stream) in LogStream::ALL.into_iter().enumerate() {
                let (lines, end) = match logs::tail_at(dir, stream, tail) {
                    Ok(tail) => tail,
                    Err(e) => {
                        // Sent as a notice to a reader of records; raw text has no
                        // place for it.
                        warn!(cause = %e, "cannot read the replica's log tail");
                        out.meta(LogRecordKind::Notice, stream, &e.to_string(), 0)
                            .await?;
                        (Vec::new(), 0)
                    }
                };
                for line in lines {
                    out.line(stream, &line.text, line.end).await?;
                }
                out.meta(LogRecordKind::Mark, stream, "", end).await?;
                cursor[k] = end;
            }
        }
    }
    let every = Duration::from_millis(200);
    if !follow {
        // A resumed read without follow: what was written since, once.
        if from.is_some() {
            for (k, stream) in LogStream::ALL.into_iter().enumerate() {
                let mut reader = logs::LogReader::new(logs::log_path(dir, stream), cursor[k]);
                loop {
                    for event in reader.poll() {
                        send_event(out, stream, event).await?;
                    }
                    if !reader.behind() {
                        break;
                    }
                }
            }
        }
        return Ok(());
    }
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let mut streams = LogStream::ALL.map(|stream| {
        let k = usize::from(stream == LogStream::Stderr);
        logs::follow(
            logs::log_path(dir, stream),
            cursor[k],
            every,
            cancel.clone(),
        )
    });
    let [outs, errs] = &mut streams;
    loop {
        let (stream, event) = tokio::select! {
            e = outs.recv() => (LogStream::Stdout, e),
            e = errs.recv() => (LogStream::Stderr, e),
            _ = out.send.stopped() => return Err(Gone),
        };
        let Some(event) = event else { return Ok(()) };
        send_event(out, stream, event).await?;
    }
}

async fn send_event(out: &mut LogWriter, stream: LogStream, event: LogEvent) -> Result<(), Gone> {
    match event {
        LogEvent::Line(line) => out.line(stream, &line.text, line.end).await,
        LogEvent::Truncated { at, len } => {
            let text = truncation_notice(stream, at, len);
            out.meta(LogRecordKind::Notice, stream, &text, 0).await
        }
    }
}
