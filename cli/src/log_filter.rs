//! Keeps openraft's ordinary-fault noise out of the log at its default level.
//!
//! openraft 0.9 logs every failed peer RPC at ERROR: each AppendEntries to a peer
//! that is down (ten a second per peer), each vote request during an election,
//! each leadership check of a read that met a slow peer. A peer being down is an
//! ordinary fault, not something an operator must act on, and thousands of ERROR
//! lines per fault hide the ones that are. So those events are dropped here, and
//! `orion_raft`'s peer network says the same thing once: a WARN when a peer stops
//! answering, an INFO when it answers again (`Contacts::record`), DEBUG between.
//!
//! Only openraft's ERROR events whose message is one of [`TRANSIENT`], and its
//! WARN for each failed replication call ([`REPLICATION_WARN`]), are dropped; every other openraft ERROR (a storage fault, a fatal core error) still
//! shows. An `ORION_LOG` that shows openraft's DEBUG lines (`debug`, `trace`,
//! `openraft=debug`, ...) turns this filter off: whoever debugs openraft sees it
//! exactly as it logs.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// The messages of openraft 0.9.25's ERROR events about a peer that did not
/// answer (`replication/mod.rs`, `core/raft_core.rs`).
pub const TRANSIENT: [&str; 4] = [
    "RPCError",
    "timeout while confirming leadership for read request",
    "timeout",
    "while requesting vote",
];

/// The start of openraft's WARN line for every failed replication call, whatever
/// failed. A storage fault behind it has its own ERROR line, which is kept.
pub const REPLICATION_WARN: &str = "error replication to target=";

/// A per-layer [`Filter`] that drops openraft's [`TRANSIENT`] ERROR events.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietPeerFaults;

impl QuietPeerFaults {
    fn may_drop(meta: &Metadata<'_>) -> bool {
        *meta.level() <= Level::WARN && meta.target().starts_with("openraft")
    }
}

impl<S> Filter<S> for QuietPeerFaults {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !Self::may_drop(meta) {
            return true;
        }
        let mut message = Message(None);
        event.record(&mut message);
        !message.0.is_some_and(|m| is_transient(*meta.level(), &m))
    }
}

/// Whether an openraft ERROR or WARN message is one of the ordinary peer faults.
pub fn is_transient(level: Level, message: &str) -> bool {
    match level {
        Level::ERROR => TRANSIENT.contains(&message),
        Level::WARN => message.starts_with(REPLICATION_WARN),
        _ => false,
    }
}

/// Whether an `ORION_LOG` filter shows openraft at DEBUG or TRACE: a bare `debug`
/// or `trace` directive, or one for an `openraft` target.
pub fn shows_openraft_debug(directives: &str) -> bool {
    directives.split(',').map(str::trim).any(|d| {
        let (target, level) = match d.split_once('=') {
            Some((t, l)) => (Some(t), l),
            None => (None, d),
        };
        let verbose = level.eq_ignore_ascii_case("debug") || level.eq_ignore_ascii_case("trace");
        verbose && target.is_none_or(|t| t.starts_with("openraft"))
    })
}

/// The `message` field of an event, as text.
struct Message(Option<String>);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn only_a_filter_showing_openraft_debug_turns_it_off() {
        assert!(!shows_openraft_debug(""));
        assert!(!shows_openraft_debug("info,openraft=warn"));
        assert!(!shows_openraft_debug("orion_raft=debug"));
        assert!(shows_openraft_debug("debug"));
        assert!(shows_openraft_debug("info, openraft=trace"));
        assert!(shows_openraft_debug("openraft::replication=debug"));
    }

    #[test]
    fn drops_openraft_peer_faults_and_keeps_every_other_error() {
        let out = Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(out.clone())
            .with_ansi(false)
            .with_filter(QuietPeerFaults);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "openraft::replication", err = "unreachable", "RPCError");
            tracing::error!(target: "openraft::core::raft_core", error = "x", "timeout");
            tracing::error!(target: "openraft::core::raft_core", "while requesting vote");
            tracing::error!(target: "openraft::storage", "LogFlush error: disk full");
            tracing::error!(target: "orion_raft", "RPCError");
            tracing::warn!(target: "openraft::replication", "RPCError");
            tracing::warn!(target: "openraft::replication", error = "x", "error replication to target=2");
            tracing::error!(target: "openraft::replication", error = "disk", "error replication to target=2");
        });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("LogFlush error: disk full"), "{text}");
        assert!(lines[1].contains("orion_raft") && lines[1].contains("RPCError"));
        assert!(
            lines[2].contains("WARN") && lines[2].contains("RPCError"),
            "{text}"
        );
        assert!(
            lines[3].contains("ERROR") && lines[3].contains("target=2"),
            "{text}"
        );
    }
}
