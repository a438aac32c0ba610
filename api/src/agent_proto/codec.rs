//! The one framed codec of the agent link, used by the agent and the gateway.
//!
//! A frame is a 4-byte big-endian length, then that many bytes of one protobuf
//! message ([`LengthDelimitedCodec`] around prost). [`FrameCodec`] refuses a length
//! over its maximum before reading the body, refuses a stream that ends inside a
//! frame, and turns the decoded message into its checked type ([`Frame`]). Every
//! failure is a [`FrameError`] naming what was wrong; after one, [`FrameReader`]
//! yields nothing more, and the caller closes the stream and logs the error.
//!
//! Fields a peer does not know are skipped by prost, so a newer peer's message
//! still decodes (see the tests).

use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder, FramedRead, LengthDelimitedCodec};

use super::MAX_FRAME;

/// Bytes of the length prefix.
const HEADER: usize = 4;

/// A message that travels as one frame.
pub trait Frame: Sized {
    /// The generated message it is on the wire.
    type Wire: Message + Default;
    /// The wire message's name, for errors (e.g. `AgentFrame`).
    const NAME: &'static str;
    /// The wire form.
    fn to_wire(&self) -> Self::Wire;
    /// Checks what the peer sent ([`FrameError::Invalid`] says what is wrong).
    fn from_wire(wire: Self::Wire) -> Result<Self, FrameError>;
}

/// Why a frame could not be read or written. Each closes the stream it came from.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix (or a frame to send) is over the limit.
    #[error("a frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    /// The stream ended after `have` bytes of a frame that needs `want`.
    #[error("the stream ended inside a frame ({have} of {want} bytes)")]
    Truncated { have: usize, want: usize },
    /// The body is not the protobuf encoding of `message`.
    #[error("undecodable {message} frame: {source}")]
    Malformed {
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// The body decodes but breaks the protocol (a missing field, an unknown kind).
    #[error("invalid {message} frame: {reason}")]
    Invalid {
        message: &'static str,
        reason: String,
    },
    #[error("stream I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    pub(crate) fn invalid<T: Frame>(reason: impl Into<String>) -> Self {
        FrameError::Invalid {
            message: T::NAME,
            reason: reason.into(),
        }
    }
}

/// Encodes and decodes frames of `T` (see the module docs).
pub struct FrameCodec<T> {
    inner: LengthDelimitedCodec,
    max: usize,
    /// The body length of the frame being read, once its header is in.
    want: Option<usize>,
    _frame: PhantomData<fn() -> T>,
}

impl<T> FrameCodec<T> {
    /// Frames of at most [`MAX_FRAME`] bytes.
    pub fn new() -> Self {
        Self::with_max(MAX_FRAME)
    }

    /// Frames of at most `max` bytes.
    pub fn with_max(max: usize) -> Self {
        FrameCodec {
            inner: LengthDelimitedCodec::builder()
                .length_field_type::<u32>()
                .max_frame_length(max)
                .new_codec(),
            max,
            want: None,
            _frame: PhantomData,
        }
    }
}

impl<T> Default for FrameCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Frame> Decoder for FrameCodec<T> {
    type Item = T;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, FrameError> {
        if self.want.is_none() {
            if let Some(header) = src.first_chunk::<HEADER>() {
                let len = u32::from_be_bytes(*header) as usize;
                if len > self.max {
                    return Err(FrameError::TooLarge { len, max: self.max });
                }
                self.want = Some(len);
            }
        }
        let Some(body) = self.inner.decode(src)? else {
            return Ok(None);
        };
        self.want = None;
        let wire = T::Wire::decode(body.freeze()).map_err(|source| FrameError::Malformed {
            message: T::NAME,
            source,
        })?;
        T::from_wire(wire).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<T>, FrameError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        match self.want {
            None if src.is_empty() => Ok(None),
            // The inner codec has consumed the header of the frame it waits for.
            Some(len) => Err(FrameError::Truncated {
                have: HEADER + src.len(),
                want: HEADER + len,
            }),
            None => Err(FrameError::Truncated {
                have: src.len(),
                want: HEADER,
            }),
        }
    }
}

impl<T: Frame> Encoder<&T> for FrameCodec<T> {
    type Error = FrameError;

    fn encode(&mut self, msg: &T, dst: &mut BytesMut) -> Result<(), FrameError> {
        let body = msg.to_wire().encode_to_vec();
        if body.len() > self.max {
            return Err(FrameError::TooLarge {
                len: body.len(),
                max: self.max,
            });
        }
        self.inner.encode(Bytes::from(body), dst)?;
        Ok(())
    }
}

/// Reads frames of `T` from a stream. Cancel-safe: a `select!` may drop
/// [`FrameReader::next`] without losing bytes.
pub struct FrameReader<R, T> {
    frames: FramedRead<R, FrameCodec<T>>,
    failed: bool,
}

impl<R: AsyncRead + Unpin, T: Frame> FrameReader<R, T> {
    pub fn new(read: R) -> Self {
        FrameReader {
            frames: FramedRead::new(read, FrameCodec::new()),
            failed: false,
        }
    }

    /// The next frame; `Ok(None)` once the stream ended cleanly between frames.
    /// After an error the stream is done: every later call is `Ok(None)`.
    pub async fn next(&mut self) -> Result<Option<T>, FrameError> {
        if self.failed {
            return Ok(None);
        }
        let next = self.frames.next().await.transpose();
        self.failed = next.is_err();
        next
    }

    /// The stream, e.g. to stop it after an error.
    pub fn get_mut(&mut self) -> &mut R {
        self.frames.get_mut()
    }
}

/// Writes one frame of `msg` to `send`.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Frame>(
    send: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let mut buf = BytesMut::new();
    FrameCodec::<T>::new().encode(msg, &mut buf)?;
    send.write_all(&buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{
        wire, AgentMessage, ExecResult, NodeUsage, ReplicaReport, ReplicaState, ServerMessage,
        StreamRequest,
    };
    use super::*;

    /// The bytes of one frame holding `wire`, as any version of a peer writes it.
    fn frame_of(wire: &impl Message) -> Vec<u8> {
        let body = wire.encode_to_vec();
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    async fn read_all<T: Frame>(bytes: &[u8]) -> (Vec<T>, Option<FrameError>) {
        let mut reader = FrameReader::<_, T>::new(bytes);
        let mut frames = Vec::new();
        loop {
            match reader.next().await {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return (frames, None),
                Err(e) => {
                    // Closed after the error: nothing more comes out of it.
                    assert!(matches!(reader.next().await, Ok(None)));
                    return (frames, Some(e));
                }
            }
        }
    }

    #[tokio::test]
    async fn messages_round_trip() {
        let report = ReplicaReport {
            id: "web-0".into(),
            pid: Some(42),
            state: ReplicaState::Healthy,
            restarts: 2,
            reason: None,
            ports: BTreeMap::from([("http".into(), 20001)]),
            generation: 3,
            exit_code: Some(0),
        };
        let sent = vec![
            AgentMessage::Hello {
                node: "n1".into(),
                labels: BTreeMap::from([("zone".into(), "a".into())]),
                capacity: crate::spec::Resources::default(),
            },
            AgentMessage::Heartbeat {
                replicas_running: 1,
                usage: NodeUsage {
                    load_milli: 250,
                    memory_total_bytes: 1 << 30,
                    memory_available_bytes: 1 << 29,
                },
            },
            AgentMessage::Status {
                replicas: vec![report],
            },
        ];
        let mut bytes = Vec::new();
        for m in &sent {
            write_frame(&mut bytes, m).await.expect("encode");
        }
        let (got, err) = read_all::<AgentMessage>(&bytes).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, sent);

        let mut bytes = Vec::new();
        let exec = StreamRequest::Exec {
            replica: "web-0".into(),
            command: vec!["ls".into()],
            timeout_ms: 0,
            env: Default::default(),
        };
        write_frame(&mut bytes, &exec).await.expect("encode");
        let (got, _) = read_all::<StreamRequest>(&bytes).await;
        assert_eq!(got, vec![exec]);

        let mut bytes = Vec::new();
        let redirect = ServerMessage::Redirect { agent_addr: None };
        write_frame(&mut bytes, &redirect).await.expect("encode");
        let (got, _) = read_all::<ServerMessage>(&bytes).await;
        assert_eq!(got, vec![redirect]);
    }

    /// A heartbeat as a later version of the protocol may write it: a field this
    /// version does not know, in the frame and in the heartbeat.
    #[derive(Clone, PartialEq, prost::Message)]
    struct NewerHeartbeat {
        #[prost(uint32, tag = "1")]
        replicas_running: u32,
        #[prost(message, optional, tag = "2")]
        usage: Option<wire::NodeUsage>,
        #[prost(string, tag = "3")]
        cpu_model: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct NewerAgentFrame {
        /// The `heartbeat` case of the `kind` oneof.
        #[prost(message, optional, tag = "2")]
        heartbeat: Option<NewerHeartbeat>,
        #[prost(uint64, tag = "15")]
        sent_at_unix_ms: u64,
    }

    #[tokio::test]
    async fn a_newer_peers_frame_with_unknown_fields_decodes() {
        let newer = NewerAgentFrame {
            heartbeat: Some(NewerHeartbeat {
                replicas_running: 3,
                usage: Some(wire::NodeUsage {
                    load_milli: 1500,
                    memory_total_bytes: 8 << 30,
                    memory_available_bytes: 2 << 30,
                }),
                cpu_model: "riscv".into(),
            }),
            sent_at_unix_ms: 1_700_000_000_000,
        };
        let (got, err) = read_all::<AgentMessage>(&frame_of(&newer)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            got,
            vec![AgentMessage::Heartbeat {
                replicas_running: 3,
                usage: NodeUsage {
                    load_milli: 1500,
                    memory_total_bytes: 8 << 30,
                    memory_available_bytes: 2 << 30,
                },
            }]
        );
    }

    /// An exec result as the first version of the protocol wrote it, before
    /// `error` (field 5) existed.
    #[derive(Clone, PartialEq, prost::Message)]
    struct OlderExecResult {
        #[prost(int32, optional, tag = "1")]
        exit_code: Option<i32>,
        #[prost(int32, optional, tag = "2")]
        signal: Option<i32>,
        #[prost(string, tag = "3")]
        stdout: String,
        #[prost(string, tag = "4")]
        stderr: String,
    }

    #[tokio::test]
    async fn an_older_peers_frame_without_a_new_field_decodes() {
        let older = OlderExecResult {
            exit_code: Some(0),
            signal: None,
            stdout: "hi\n".into(),
            stderr: String::new(),
        };
        let (got, err) = read_all::<ExecResult>(&frame_of(&older)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            got,
            vec![ExecResult {
                exit_code: Some(0),
                signal: None,
                stdout: "hi\n".into(),
                stderr: String::new(),
                error: None,
            }]
        );
    }

    #[tokio::test]
    async fn an_oversize_length_prefix_closes_the_stream_before_the_body() {
        let mut bytes = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"never read");
        let (got, err) = read_all::<AgentMessage>(&bytes).await;
        assert!(got.is_empty());
        let err = err.expect("an oversize frame is an error");
        assert!(
            matches!(err, FrameError::TooLarge { len, max } if len == MAX_FRAME + 1 && max == MAX_FRAME)
        );
        assert_eq!(
            err.to_string(),
            format!(
                "a frame of {} bytes is over the {MAX_FRAME}-byte limit",
                MAX_FRAME + 1
            )
        );
    }

    #[tokio::test]
    async fn an_oversize_message_is_not_sent() {
        let big = ExecResult {
            exit_code: Some(0),
            signal: None,
            stdout: "x".repeat(MAX_FRAME),
            stderr: String::new(),
            error: None,
        };
        let mut bytes = Vec::new();
        let err = write_frame(&mut bytes, &big).await.expect_err("too big");
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
        assert!(bytes.is_empty());
    }

    #[tokio::test]
    async fn a_truncated_frame_closes_the_stream_with_what_was_missing() {
        let hello = AgentMessage::Hello {
            node: "n1".into(),
            labels: BTreeMap::new(),
            capacity: crate::spec::Resources::default(),
        };
        let mut whole = Vec::new();
        write_frame(&mut whole, &hello).await.expect("encode");
        // A whole frame, then one cut short in its body.
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&whole[..whole.len() - 3]);
        let (got, err) = read_all::<AgentMessage>(&bytes).await;
        assert_eq!(got, vec![hello]);
        let err = err.expect("a truncated frame is an error");
        assert!(
            matches!(err, FrameError::Truncated { have, want } if have == whole.len() - 3 && want == whole.len()),
            "{err}"
        );
        assert!(err.to_string().contains("ended inside a frame"), "{err}");
        // Cut short in its length prefix.
        let (_, err) = read_all::<AgentMessage>(&whole[..2]).await;
        assert!(
            matches!(err, Some(FrameError::Truncated { have: 2, want: 4 })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_protobuf_is_malformed() {
        // Field 1 as a length-delimited value that runs past the end of the body.
        let bytes = [0, 0, 0, 3, 0x0a, 0x7f, 0x01];
        let (got, err) = read_all::<AgentMessage>(&bytes).await;
        assert!(got.is_empty());
        let err = err.expect("an undecodable frame is an error");
        assert!(
            matches!(
                err,
                FrameError::Malformed {
                    message: "AgentFrame",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("undecodable AgentFrame frame"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_frame_without_a_kind_is_invalid() {
        // An empty body decodes as an AgentFrame with no case of its oneof set.
        let (got, err) = read_all::<AgentMessage>(&[0, 0, 0, 0]).await;
        assert!(got.is_empty());
        let err = err.expect("a frame with no kind is an error");
        assert!(
            matches!(
                err,
                FrameError::Invalid {
                    message: "AgentFrame",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn random_garbage_never_panics_and_closes_the_stream() {
        // xorshift64: deterministic, so a failure can be replayed.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2_000 {
            let len = (next() % 64) as usize;
            let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Raw garbage, and garbage behind a correct length prefix.
            let mut framed = (body.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&body);
            for bytes in [&body, &framed] {
                let (frames, err) = read_all::<AgentMessage>(bytes).await;
                // Random bytes may happen to be a valid frame; what is not is an
                // error with a reason, and the stream yields nothing after it.
                if let Some(e) = err {
                    assert!(!e.to_string().is_empty(), "round {round}");
                } else {
                    assert!(frames.len() <= bytes.len() / HEADER, "round {round}");
                }
                let _ = read_all::<ServerMessage>(bytes).await;
                let _ = read_all::<StreamRequest>(bytes).await;
            }
        }
    }
}
