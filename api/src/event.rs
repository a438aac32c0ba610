//! Change records kept in a bounded window so clients can watch from a cursor.
//!
//! One write (one Raft entry, one revision) can make several changes: an apply of
//! three services, five replicas placed in one reconcile. Each change is one
//! [`Event`], numbered by `seq` within its revision, so the pair
//! ([`EventCursor`]) names every event and orders them all.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as stored in the event window and sent on `GET /v1/watch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// The revision of the write that made this change.
    pub revision: u64,
    /// The change's place among the changes of that write, from 0.
    #[serde(default)]
    pub seq: u32,
    pub kind: EventKind,
    /// The kind of object: `Variable`, `Service`, `Node`, `Replica`.
    pub resource: String,
    /// The object's key within its kind (a variable's path, a service's name).
    pub key: String,
    /// The object after a put, or as it was just before a delete.
    #[schema(value_type = Object)]
    pub object: serde_json::Value,
}

impl Event {
    /// Where this event is in the stream of all events.
    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            revision: self.revision,
            seq: self.seq,
        }
    }
}

/// The position of one event: its revision and its `seq` within that revision.
/// Written `REV.SEQ` (the SSE `id` of a watch event). Orders events as they happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventCursor {
    pub revision: u64,
    pub seq: u32,
}

impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.revision, self.seq)
    }
}

/// The longest cursor or start position text accepted (`u64` `.` `u32`, with room).
pub const MAX_CURSOR_LEN: usize = 32;

impl std::str::FromStr for EventCursor {
    type Err = crate::Invalid;

    /// Parses `REV.SEQ`, as sent in a watch event's `id`.
    fn from_str(s: &str) -> Result<Self, crate::Invalid> {
        EventCursor::parse_text(s).map_err(crate::Invalid)
    }
}

impl EventCursor {
    fn parse_text(s: &str) -> Result<Self, String> {
        match WatchStart::from_str(s)? {
            WatchStart::After(c) => Ok(c),
            WatchStart::Revision(_) => Err(format!(
                "{s:?} is not an event cursor: expected REV.SEQ, as in a watch event's id"
            )),
        }
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// From the first event of this revision on (`from=REV`); `0` means the oldest
    /// event still in the window.
    Revision(u64),
    /// After this event, which the client has already seen (`from=REV.SEQ`, or the
    /// SSE `Last-Event-ID` header).
    After(EventCursor),
}

impl std::str::FromStr for WatchStart {
    type Err = crate::Invalid;

    /// `REV` or `REV.SEQ`, decimal.
    fn from_str(s: &str) -> Result<Self, crate::Invalid> {
        WatchStart::parse_text(s).map_err(crate::Invalid)
    }
}

impl WatchStart {
    fn parse_text(s: &str) -> Result<Self, String> {
        if s.len() > MAX_CURSOR_LEN {
            return Err(format!(
                "watch position is {} characters long; at most {MAX_CURSOR_LEN} (REV or REV.SEQ)",
                s.len()
            ));
        }
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        let bad = || format!("watch position {s:?} is neither REV nor REV.SEQ (decimal numbers)");
        match s.split_once('.') {
            None if digits(s) => s.parse().map(WatchStart::Revision).map_err(|_| bad()),
            Some((rev, seq)) if digits(rev) && digits(seq) => {
                let revision = rev.parse().map_err(|_| bad())?;
                let seq = seq.parse().map_err(|_| {
                    format!(
                        "watch position {s:?}: the sequence number is over {}",
                        u32::MAX
                    )
                })?;
                Ok(WatchStart::After(EventCursor { revision, seq }))
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_print_parse_and_order() {
        let c = EventCursor {
            revision: 12,
            seq: 3,
        };
        assert_eq!(c.to_string(), "12.3");
        assert_eq!("12.3".parse::<EventCursor>(), Ok(c));
        assert!(
            c < EventCursor {
                revision: 12,
                seq: 4
            }
        );
        assert!(
            c < EventCursor {
                revision: 13,
                seq: 0
            }
        );
        assert!("12".parse::<EventCursor>().is_err());
    }

    #[test]
    fn watch_start_takes_a_revision_or_a_cursor_and_nothing_else() {
        assert_eq!("7".parse(), Ok(WatchStart::Revision(7)));
        assert_eq!(
            "7.0".parse(),
            Ok(WatchStart::After(EventCursor {
                revision: 7,
                seq: 0
            }))
        );
        for bad in [
            "",
            ".",
            "7.",
            ".1",
            "-1",
            "1.2.3",
            "a",
            "1 ",
            "7.4294967296",
        ] {
            assert!(bad.parse::<WatchStart>().is_err(), "{bad:?} accepted");
        }
        let long = "1".repeat(MAX_CURSOR_LEN + 1);
        assert!(matches!(long.parse::<WatchStart>(), Err(m) if m.message().contains("at most")));
        assert!("99999999999999999999999".parse::<WatchStart>().is_err());
    }

    #[test]
    fn events_stored_before_seq_existed_read_as_seq_zero() {
        let old = r#"{"revision":4,"kind":"put","resource":"Variable","key":"a","object":null}"#;
        let e: Event = serde_json::from_str(old).expect("old event");
        assert_eq!(
            e.cursor(),
            EventCursor {
                revision: 4,
                seq: 0
            }
        );
    }
}
