//! A watch of the cluster's changes that survives peer failures.
//!
//! [`follow`] reads `GET /v1/watch` (server-sent events) from any peer of the
//! [`Client`] and hands each event to a [`Handler`] exactly once, in order:
//!
//! - When the stream breaks (the peer died, the connection dropped, nothing, not
//!   even a keep-alive, arrived for [`IDLE_LIMIT`]) it reconnects by itself, to the
//!   same or any other peer, and resumes after the last event it handed over. Any
//!   peer serves a watch from its own applied state, so no leader is needed.
//!   Retries follow a capped exponential schedule with jitter ([`RETRY_MIN`] to
//!   [`RETRY_MAX`]); the first retry is immediate, since the client's failover tries
//!   every peer in turn anyway.
//! - When the cluster answers that the position left the event window (`410`, code
//!   `relist_required`), it says so on stderr, has the handler list again, and
//!   watches from the list's revision, as a Kubernetes informer does.
//! - A refusal that retrying cannot fix (bad token, bad request) ends it with that
//!   error.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use orion_api::{ErrorBody, ErrorCode, Event, EventCursor, WatchStart};
use tokio::time::Instant;

use orion_client::{Client, ClientError, StatusCode, WatchQuery};

/// No bytes for this long means the connection is dead (the server sends a
/// keep-alive every 15 s).
pub const IDLE_LIMIT: Duration = Duration::from_secs(45);
/// The first delay between two failed attempts, after the immediate first retry.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest delay between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// The longest SSE line or message accepted (an event carries one object).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// What [`follow`] needs from its caller.
pub trait Handler {
    /// One event, in order, never twice.
    fn event(&mut self, event: &Event) -> anyhow::Result<()>;
    /// List afresh (the watch fell behind the window); returns the list's revision.
    fn relist(&mut self) -> impl std::future::Future<Output = anyhow::Result<u64>>;
}

/// Follows the watch from `start` until an error retrying cannot fix. Events are
/// those whose key starts with `prefix`.
pub async fn follow(
    client: &Client,
    prefix: &str,
    start: WatchStart,
    handler: &mut impl Handler,
) -> anyhow::Result<()> {
    let mut position = start;
    let mut relist = false;
    let schedule = || {
        ExponentialBuilder::default()
            .with_min_delay(RETRY_MIN)
            .with_max_delay(RETRY_MAX)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = schedule();
    // When the current outage began and whether it was reported.
    let mut outage: Option<Instant> = None;
    let mut first_retry = true;
    loop {
        if relist {
            match handler.relist().await {
                Ok(revision) => {
                    position = WatchStart::Revision(revision.saturating_add(1));
                    relist = false;
                }
                Err(e) if !is_transient(&e) => return Err(e),
                Err(e) => {
                    report_outage(&mut outage, &format!("{e:#}"));
                    wait(&mut delays, &mut first_retry).await;
                    continue;
                }
            }
        }
        let query = WatchQuery {
            from: Some(position),
            prefix: prefix.to_string(),
        };
        let activity = Cell::new(Instant::now());
        let mut sink = SseSink::new(handler, position, &activity, outage);
        let result = tokio::select! {
            r = client.watch(&query, &mut sink) => r.map_err(Broke::Client),
            () = idle(&activity) => Err(Broke::Idle),
        };
        let SseSink {
            position: reached,
            fatal,
            server_error,
            resumed,
            delivered,
            ..
        } = sink;
        position = reached;
        if resumed {
            outage = None;
        }
        // Only a stream that delivered resets the schedule, so a peer that accepts and
        // hangs up at once (shutting down) is not asked again in a tight loop.
        if delivered {
            delays = schedule();
            first_retry = true;
        }
        if let Some(e) = fatal {
            return Err(e);
        }
        let cause = match (server_error, result) {
            (Some(e), _) | (None, Err(Broke::Client(ClientError::Api { error: e, .. })))
                if e.code == ErrorCode::RelistRequired =>
            {
                eprintln!(
                    "watch: away for longer than the cluster's event window ({}); listing again",
                    e.message
                );
                relist = true;
                continue;
            }
            (Some(e), _) => format!("the server ended the stream: {}", e.message),
            (None, Err(Broke::Client(ClientError::Api { status, error })))
                if permanent_status(status) =>
            {
                anyhow::bail!("the watch was refused: {error} ({status})");
            }
            (None, Err(Broke::Client(e))) => e.to_string(),
            (None, Err(Broke::Idle)) => {
                format!("nothing arrived for {}s", IDLE_LIMIT.as_secs())
            }
            (None, Ok(())) => "the server closed the stream".into(),
        };
        report_outage(&mut outage, &cause);
        wait(&mut delays, &mut first_retry).await;
    }
}

/// Why one attempt ended.
enum Broke {
    Client(ClientError),
    Idle,
}

/// `REV` or `REV.SEQ`, as `from=` takes it.
fn position_text(position: WatchStart) -> String {
    match position {
        WatchStart::Revision(r) => r.to_string(),
        WatchStart::After(c) => c.to_string(),
    }
}

/// Says once per outage, on stderr, that the watch is reconnecting.
fn report_outage(outage: &mut Option<Instant>, cause: &str) {
    if outage.is_none() {
        eprintln!("watch: {cause}; reconnecting");
        *outage = Some(Instant::now());
    } else {
        tracing::debug!(cause, "watch: still reconnecting");
    }
}

async fn wait(delays: &mut impl Iterator<Item = Duration>, first_retry: &mut bool) {
    if std::mem::take(first_retry) {
        return;
    }
    tokio::time::sleep(delays.next().unwrap_or(RETRY_MAX)).await;
}

/// Resolves once nothing has arrived for [`IDLE_LIMIT`].
async fn idle(activity: &Cell<Instant>) {
    loop {
        let deadline = activity.get() + IDLE_LIMIT;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Refusals that do not go away by asking again.
fn permanent_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_FOUND
    )
}

/// A failed call worth repeating: the cluster was unreachable or said "not now".
fn is_transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api { status, .. }) => !permanent_status(*status),
        Some(_) => true,
        None => false,
    }
}

/// Parses the SSE byte stream as it arrives and hands the events over.
struct SseSink<'a, H: Handler> {
    handler: &'a mut H,
    /// After the last event handed over (or where the attempt started).
    position: WatchStart,
    /// The last event handed over, to drop any repeat.
    last: Option<EventCursor>,
    activity: &'a Cell<Instant>,
    /// Bytes not yet split into lines.
    buf: Vec<u8>,
    /// The message being read: its `id`, `event` and `data` fields.
    id: Option<String>,
    event: Option<String>,
    data: String,
    /// An `error` event the server ended the stream with.
    server_error: Option<orion_api::ApiError>,
    /// A failure that ends the watch (the handler failed, the server spoke nonsense).
    fatal: Option<anyhow::Error>,
    /// This attempt received something, so the peer is serving the watch.
    resumed: bool,
    /// This attempt handed over at least one event.
    delivered: bool,
    /// When the outage this attempt may end began.
    outage: Option<Instant>,
}

impl<'a, H: Handler> SseSink<'a, H> {
    fn new(
        handler: &'a mut H,
        position: WatchStart,
        activity: &'a Cell<Instant>,
        outage: Option<Instant>,
    ) -> Self {
        let last = match position {
            WatchStart::After(c) => Some(c),
            WatchStart::Revision(_) => None,
        };
        SseSink {
            handler,
            position,
            last,
            activity,
            buf: Vec::new(),
            id: None,
            event: None,
            data: String::new(),
            server_error: None,
            fatal: None,
            resumed: false,
            delivered: false,
            outage,
        }
    }

    fn line(&mut self, line: &str) -> anyhow::Result<()> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return Ok(()); // a comment: the keep-alive
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = Some(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                if self.data.len() > MAX_MESSAGE_BYTES {
                    anyhow::bail!("the watch sent a message over {MAX_MESSAGE_BYTES} bytes");
                }
            }
            _ => {} // retry and unknown fields
        }
        Ok(())
    }

    fn dispatch(&mut self) -> anyhow::Result<()> {
        let id = self.id.take();
        let kind = self.event.take();
        let data = std::mem::take(&mut self.data);
        match kind.as_deref() {
            Some("error") => {
                let body: ErrorBody = serde_json::from_str(&data)
                    .with_context(|| format!("the watch sent an unreadable error: {data}"))?;
                self.server_error = Some(body.error);
            }
            Some("put" | "delete") => {
                let id = id.context("the watch sent an event without an id")?;
                let cursor: EventCursor = id
                    .parse()
                    .map_err(|m| anyhow::anyhow!("the watch sent event id {id:?}: {m}"))?;
                if self.last.is_some_and(|last| cursor <= last) {
                    tracing::debug!(%cursor, "watch: dropped an event seen before");
                    return Ok(());
                }
                let event: Event = serde_json::from_str(&data)
                    .with_context(|| format!("the watch sent an unreadable event {id}"))?;
                self.handler.event(&event)?;
                self.delivered = true;
                self.last = Some(cursor);
                self.position = WatchStart::After(cursor);
            }
            _ => {}
        }
        Ok(())
    }
}

impl<H: Handler> io::Write for &mut SseSink<'_, H> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.activity.set(Instant::now());
        if !self.resumed {
            self.resumed = true;
            if let Some(since) = self.outage {
                eprintln!(
                    "watch: resumed after {:.2}s, from {}",
                    since.elapsed().as_secs_f64(),
                    position_text(self.position)
                );
            }
        }
        self.buf.extend_from_slice(bytes);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let line = text.strip_suffix('\r').unwrap_or(&text).to_string();
            if let Err(e) = self.line(&line) {
                let message = format!("{e:#}");
                self.fatal = Some(e);
                return Err(io::Error::other(message));
            }
        }
        if self.buf.len() > MAX_MESSAGE_BYTES {
            let e = anyhow::anyhow!("the watch sent a line over {MAX_MESSAGE_BYTES} bytes");
            let message = e.to_string();
            self.fatal = Some(e);
            return Err(io::Error::other(message));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[derive(Default)]
    struct Collect(Vec<String>);

    impl Handler for Collect {
        fn event(&mut self, event: &Event) -> anyhow::Result<()> {
            self.0.push(format!("{} {}", event.cursor(), event.key));
            Ok(())
        }
        async fn relist(&mut self) -> anyhow::Result<u64> {
            Ok(0)
        }
    }

    fn sse(cursor: &str, key: &str) -> String {
        let (rev, seq) = cursor.split_once('.').expect("cursor");
        format!(
            "id: {cursor}\nevent: put\ndata: {{\"revision\":{rev},\"seq\":{seq},\"kind\":\"put\",\"resource\":\"Variable\",\"key\":\"{key}\",\"object\":null}}\n\n"
        )
    }

    #[test]
    fn parses_events_split_anywhere_and_drops_repeats() {
        let mut h = Collect::default();
        let activity = Cell::new(Instant::now());
        let start = WatchStart::After(EventCursor {
            revision: 3,
            seq: 0,
        });
        let mut sink = SseSink::new(&mut h, start, &activity, None);
        let text = format!(
            ":keep-alive\n\n{}{}{}{}",
            sse("3.0", "seen"),
            sse("3.1", "a"),
            sse("4.0", "b").replace('\n', "\r\n"),
            sse("3.1", "again")
        );
        // One byte at a time: lines and messages span writes.
        for b in text.as_bytes() {
            (&mut sink)
                .write_all(std::slice::from_ref(b))
                .expect("write");
        }
        assert_eq!(
            sink.position,
            WatchStart::After(EventCursor {
                revision: 4,
                seq: 0
            })
        );
        assert!(sink.resumed);
        drop(sink);
        assert_eq!(h.0, ["3.1 a", "4.0 b"]);
    }

    #[test]
    fn an_error_event_is_kept_and_nonsense_is_fatal() {
        let mut h = Collect::default();
        let activity = Cell::new(Instant::now());
        let mut sink = SseSink::new(&mut h, WatchStart::Revision(1), &activity, None);
        (&mut sink)
            .write_all(b"event: error\ndata: {\"error\":{\"code\":\"relist_required\",\"message\":\"gone\"}}\n\n")
            .expect("write");
        assert_eq!(
            sink.server_error.as_ref().map(|e| e.code),
            Some(ErrorCode::RelistRequired)
        );
        let bad = (&mut sink).write_all(b"id: 7\nevent: put\ndata: {}\n\n");
        assert!(bad.is_err());
        assert!(sink.fatal.is_some());
    }
}
