//! Fuzz checks for the parsers of this crate that take outside input, and the
//! seeded mutator the test suite replays them with.
//!
//! Each check takes raw bytes, feeds them to a parser and asserts more than "no
//! panic": what parses round-trips, every error names its problem, limits hold.
//! The cargo-fuzz targets in `fuzz/` (run by `make fuzz`, nightly) call these same
//! functions; the suite replays the committed corpus `fuzz/corpus/<target>/` plus a
//! bounded number of mutations of it with [`replay`] (stable, a few seconds).
//!
//! - [`spec`]: `orion.yaml` ([`crate::spec::parse_documents`]) and the quantity,
//!   duration, constraint and `${NAME}` parsers, on the same text.
//! - [`agent_frames`]: the agent link's length-prefixed protobuf frames
//!   ([`crate::agent_proto::FrameCodec`]) and their conversion to checked types.
//! - [`watch_position`]: `from=REV[.SEQ]` and `Last-Event-ID` ([`WatchStart`],
//!   [`EventCursor`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::codec::{Decoder, Encoder};

use crate::agent_proto::{
    AgentMessage, ExecResult, Frame, FrameCodec, FrameError, ServerMessage, StreamRequest,
    MAX_FRAME,
};
use crate::event::{EventCursor, WatchStart, MAX_CURSOR_LEN};
use crate::spec::{self, Resource};

/// The file name spec errors are reported against.
const SPEC_FILE: &str = "fuzz.yaml";

/// `orion.yaml` text: parses, and what parses survives a JSON round trip (the
/// form the replicated state stores); every error carries the file, a message,
/// and is sorted by position. The scalar parsers get the whole text and each line.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match spec::parse_documents(SPEC_FILE, text) {
        Ok(resources) => {
            assert!(resources.len() <= text.matches("kind").count());
            for r in &resources {
                let json = serde_json::to_string(r).expect("a resource serializes");
                let back: Resource = serde_json::from_str(&json).expect("a resource reads back");
                assert_eq!(&back, r, "JSON round trip changed the resource");
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without any problem in it");
            for e in &errors.0 {
                assert_eq!(e.file, SPEC_FILE);
                assert!(!e.message.trim().is_empty(), "empty message: {e:?}");
            }
            let positions: Vec<_> = errors.0.iter().map(|e| (e.line, e.column)).collect();
            assert!(positions.is_sorted(), "errors out of order: {positions:?}");
            assert!(!errors.to_string().is_empty());
        }
    }
    spec_scalar(text);
    for line in text.lines().take(64) {
        spec_scalar(line);
        if let Some((_, value)) = line.split_once(':') {
            spec_scalar(value);
        }
    }
}

/// The scalar parsers of a spec: CPU, memory, duration, constraint, `${NAME}`.
fn spec_scalar(text: &str) {
    use spec::{constraint, duration, expand, quantity};
    if let Err(e) = quantity::parse_cpu_millis(text) {
        assert!(!e.message().is_empty());
    }
    if let Err(e) = quantity::parse_memory_bytes(text) {
        assert!(!e.message().is_empty());
    }
    match duration::parse_duration_ms(text) {
        Ok(ms) => {
            let shown = duration::format_duration_ms(ms);
            assert_eq!(
                duration::parse_duration_ms(&shown).ok(),
                Some(ms),
                "{text:?} → {ms}ms → {shown:?} does not read back"
            );
        }
        Err(e) => assert!(!e.message().is_empty()),
    }
    match constraint::parse_constraint(text) {
        Ok(c) => {
            let shown = c.to_string();
            assert_eq!(
                constraint::parse_constraint(&shown).ok().as_ref(),
                Some(&c),
                "{text:?} → {shown:?} does not read back"
            );
            assert!(!c.label().is_empty());
        }
        Err(e) => assert!(!e.message().is_empty()),
    }
    let env = BTreeMap::from([
        ("HOME".to_owned(), "/home/orion".to_owned()),
        ("PORT".to_owned(), "8080".to_owned()),
        ("EMPTY".to_owned(), String::new()),
    ]);
    match expand::expand(text, &env) {
        Ok(out) => {
            if !text.contains('$') {
                assert_eq!(out, text, "text without `$` changed by expansion");
            }
        }
        Err(e) => assert!(!e.message().is_empty()),
    }
}

/// Agent link frames. The first byte picks the message type (the agent's, the
/// leader's, a stream's opening request, an exec result); the rest is read two
/// ways: as one frame body behind a correct length prefix (reaching the protobuf
/// decoder and the checks of `from_wire`), and as a raw stream cut into chunks of
/// the size the second byte gives (reaching the length prefix and partial reads).
/// Every frame read is encoded again and must read back the same.
pub fn agent_frames(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => frames_of::<AgentMessage>(rest),
        1 => frames_of::<ServerMessage>(rest),
        2 => frames_of::<StreamRequest>(rest),
        _ => frames_of::<ExecResult>(rest),
    }
}

fn frames_of<T: Frame + std::fmt::Debug>(data: &[u8]) {
    // One body behind a correct prefix.
    let len = u32::try_from(data.len()).expect("fuzz inputs are far below 4 GiB");
    let mut framed = BytesMut::from(&len.to_be_bytes()[..]);
    framed.extend_from_slice(data);
    let mut codec = FrameCodec::<T>::new();
    match codec.decode_eof(&mut framed) {
        Ok(Some(frame)) => {
            assert!(framed.is_empty(), "a whole frame left bytes behind");
            round_trip(&frame);
        }
        Ok(None) => panic!("a complete frame of {len} bytes decoded to nothing"),
        Err(e) => check_frame_error::<T>(&e),
    }

    // The same bytes as a stream, in chunks.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 64) + 1;
    let mut codec = FrameCodec::<T>::new();
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => round_trip(&frame),
                Ok(None) => break,
                Err(e) => {
                    check_frame_error::<T>(&e);
                    return;
                }
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => round_trip(&frame),
            Ok(None) => {
                assert!(
                    buf.is_empty(),
                    "a clean end with {} bytes unread",
                    buf.len()
                );
                return;
            }
            Err(e) => {
                check_frame_error::<T>(&e);
                return;
            }
        }
    }
}

fn round_trip<T: Frame + std::fmt::Debug>(frame: &T) {
    let mut codec = FrameCodec::<T>::new();
    let mut out = BytesMut::new();
    codec
        .encode(frame, &mut out)
        .expect("a decoded frame encodes");
    assert!(out.len() <= MAX_FRAME + 4);
    let back = codec
        .decode_eof(&mut out)
        .expect("an encoded frame decodes")
        .expect("an encoded frame is complete");
    // Debug, not PartialEq: a NaN in a float field is itself but not equal.
    assert_eq!(
        format!("{back:?}"),
        format!("{frame:?}"),
        "{} frame changed in an encode/decode round trip",
        T::NAME
    );
}

fn check_frame_error<T: Frame>(e: &FrameError) {
    let text = e.to_string();
    assert!(!text.is_empty());
    match e {
        FrameError::TooLarge { len, max } => assert!(len > max),
        FrameError::Truncated { have, want } => assert!(have < want, "{text}"),
        FrameError::Malformed { message, .. } | FrameError::Invalid { message, .. } => {
            assert_eq!(*message, T::NAME);
        }
        FrameError::Io(_) => panic!("I/O error from an in-memory buffer: {text}"),
    }
}

/// A watch start position (`from=`) and an event cursor (`Last-Event-ID`): what
/// parses prints back to the same text's value; errors name the problem and
/// the length limit holds.
pub fn watch_position(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<WatchStart>() {
        Ok(start) => {
            assert!(text.len() <= MAX_CURSOR_LEN);
            let shown = match start {
                WatchStart::Revision(r) => r.to_string(),
                WatchStart::After(c) => c.to_string(),
            };
            assert_eq!(shown.parse::<WatchStart>(), Ok(start));
        }
        Err(e) => {
            assert!(!e.message().is_empty());
            if text.len() > MAX_CURSOR_LEN {
                assert!(e.message().contains("at most"), "{}", e.message());
            }
        }
    }
    match text.parse::<EventCursor>() {
        Ok(c) => {
            assert_eq!(text.parse::<WatchStart>(), Ok(WatchStart::After(c)));
            assert_eq!(c.to_string().parse::<EventCursor>(), Ok(c));
        }
        Err(e) => assert!(!e.message().is_empty()),
    }
}

/// Example manifests: the first is a complete, valid service.
const SPEC_SEEDS: &[&str] = &[
    include_str!("../../examples/web.yaml"),
    "kind: Service\nname: web\ncommand: [python3, -m, http.server, \"${PORT}\"]\nports: [http]\nreplicas: 3\nresources: {cpu: 250m, memory: 64Mi}\nplacement:\n  constraints: [\"zone in (a, b)\", \"gpu exists\", \"disk != hdd\"]\nhealth:\n  http: {port: http, path: /healthz}\n  interval: 2s\n  timeout: 500ms\nrestart:\n  backoff: {initial: 1s, max: 1m30s}\n",
    "kind: Service\nname: a\ncommand: [sleep, '1000']\n---\nkind: Service\nname: a\ncommand: [true]\n",
    "kind: Nope\nname: x\n",
    "- just\n- a list\n",
    "kind: Service\nname: \"bad name\"\nreplicas: -1\nresources: {cpu: 0, memory: 1.5Ki}\n",
    "0.5\n250m\n1Gi\n1h2m3s4ms\nzone == a\nzone != a\n$${HOME} ${PORT}\n",
];

/// Seeds for [`spec`]: example and broken manifests.
pub fn spec_seeds() -> Vec<Vec<u8>> {
    SPEC_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// Seeds for [`agent_frames`]: each message type's first byte with real bodies.
pub fn agent_frame_seeds() -> Vec<Vec<u8>> {
    use crate::agent_proto::{DesiredReplica, LogCursor, NodeUsage, ReplicaReport, ReplicaState};
    fn seed<T: Frame>(which: u8, msg: &T) -> Vec<u8> {
        use prost::Message;
        let mut s = vec![which, 7];
        s.extend(msg.to_wire().encode_to_vec());
        s
    }
    let service = spec::parse_documents("seed.yaml", SPEC_SEEDS[0])
        .ok()
        .and_then(|mut r| r.pop())
        .and_then(|r| match r {
            Resource::Service(s) => Some(s),
            Resource::Job(_) => None,
        });
    let mut seeds = vec![
        seed(
            0,
            &AgentMessage::Hello {
                node: "node-a".into(),
                labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
                capacity: crate::spec::Resources::default(),
            },
        ),
        seed(
            0,
            &AgentMessage::Heartbeat {
                replicas_running: 2,
                usage: NodeUsage {
                    load_milli: 1500,
                    memory_total_bytes: 8 << 30,
                    memory_available_bytes: 3 << 30,
                },
            },
        ),
        seed(
            0,
            &AgentMessage::Status {
                replicas: vec![ReplicaReport {
                    id: "web-0".into(),
                    pid: Some(4242),
                    state: ReplicaState::Running,
                    restarts: 1,
                    reason: Some("exited with code 1".into()),
                    ports: BTreeMap::from([("http".to_owned(), 31000)]),
                    generation: 2,
                    exit_code: None,
                }],
            },
        ),
        seed(
            1,
            &ServerMessage::Redirect {
                agent_addr: Some("10.0.0.2:7600".into()),
            },
        ),
        seed(
            1,
            &ServerMessage::Welcome {
                node: "node-a".into(),
            },
        ),
        seed(
            2,
            &StreamRequest::Logs {
                replica: "web-0".into(),
                tail: 100,
                follow: true,
                from: Some(LogCursor {
                    stdout: 10,
                    stderr: 0,
                }),
                records: true,
            },
        ),
        seed(
            2,
            &StreamRequest::Exec {
                replica: "web-0".into(),
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                timeout_ms: 0,
                env: Default::default(),
            },
        ),
        seed(
            2,
            &StreamRequest::Restart {
                replica: "web-0".into(),
            },
        ),
        seed(
            3,
            &ExecResult {
                exit_code: Some(0),
                signal: None,
                stdout: "ok\n".into(),
                stderr: String::new(),
                error: None,
            },
        ),
    ];
    if let Some(service) = service {
        seeds.push(seed(
            1,
            &ServerMessage::Desired {
                revision: 42,
                replicas: vec![DesiredReplica {
                    id: "web-0".into(),
                    generation: 3,
                    service,
                    variables: crate::agent_proto::VariableValues {
                        values: [("DB_URL".to_string(), "postgres://db".to_string())].into(),
                        missing: vec!["prod/token".into()],
                    },
                }],
            },
        ));
    }
    seeds
}

/// Seeds for [`watch_position`].
pub fn watch_position_seeds() -> Vec<Vec<u8>> {
    [
        "0",
        "7",
        "12.3",
        "18446744073709551615.4294967295",
        "1.2.3",
        "7.",
        "",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// The corpus directory of fuzz target `target` in this checkout (read when the
/// test runs: checkouts sharing a target dir share test binaries).
pub fn corpus_dir(target: &str) -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.join("../fuzz/corpus").join(target)
}

/// Runs `check` on every file of the committed corpus of `target`, on `seeds`, and
/// on `mutations` seeded mutations of them (deterministic: the same inputs on every
/// run). `ORION_FUZZ_SECONDS=N` instead mutates for N seconds with a random seed
/// (printed, to replay a failure with `ORION_FUZZ_SEED`), for long runs on stable.
/// Returns how many inputs were checked.
pub fn replay(target: &str, seeds: Vec<Vec<u8>>, mutations: usize, check: impl Fn(&[u8])) -> usize {
    let mut inputs = corpus_files(&corpus_dir(target));
    assert!(
        !inputs.is_empty(),
        "no corpus for fuzz target {target} in {}",
        corpus_dir(target).display()
    );
    inputs.extend(seeds);
    for input in &inputs {
        check(input);
    }
    let long_run = std::env::var("ORION_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let seed = std::env::var("ORION_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            if long_run.is_some() {
                rand::random()
            } else {
                0x0f1e_2d3c
            }
        });
    if long_run.is_some() {
        eprintln!("fuzz {target}: ORION_FUZZ_SEED={seed}");
    }
    let mut mutator = Mutator::new(seed);
    let started = Instant::now();
    let mut done = inputs.len();
    let mut n = 0usize;
    loop {
        match long_run {
            Some(limit) if started.elapsed() >= limit => break,
            None if n >= mutations => break,
            _ => {}
        }
        let input = mutator.mutate(&inputs);
        check(&input);
        n += 1;
        done += 1;
    }
    if long_run.is_some() {
        eprintln!(
            "fuzz {target}: {done} inputs in {:.0?}, no failure",
            started.elapsed()
        );
    }
    done
}

/// Writes `seeds` into the corpus of `target` as `seed-<n>` files, for a first
/// cargo-fuzz run (`cargo test -- --ignored write_fuzz_seeds`).
pub fn write_seeds(target: &str, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir)?;
    for (n, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{n}")), seed)?;
    }
    Ok(())
}

fn corpus_files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// A small byte-level mutator in the style of libFuzzer's: flips, inserts,
/// deletions, copies within an input, splices with another, and interesting
/// numbers and tokens. Seeded, so a failing input can be found again.
pub struct Mutator {
    rng: StdRng,
}

/// Tokens the parsers give meaning to, spliced in by [`Mutator`].
const TOKENS: &[&[u8]] = &[
    b"---\n",
    b": ",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"'",
    b"&a ",
    b"*a",
    b"!!str ",
    b"<<: ",
    b"\n  ",
    b"kind: Service\n",
    b"name: ",
    b"${",
    b"$$",
    b"==",
    b"!=",
    b" in (",
    b")",
    b", ",
    b" exists",
    b"ms",
    b"s",
    b"m",
    b"h",
    b"Mi",
    b"Gi",
    b"Ki",
    b".",
    b"=",
    b"\n",
    b"[a]\n",
    b"\"\"\"",
    b"orion.",
    b"-----BEGIN CERTIFICATE REQUEST-----\n",
    b"\n-----END CERTIFICATE REQUEST-----\n",
    b"18446744073709551616",
    b"4294967296",
    b"-1",
    b"\x00",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x00\xff\x00\x00",
    b"\x08\x96\x01",
    b"\x12\x00",
    b"\x1a\x05hello",
    b"\x0a\x80\x80\x80\x80\x10",
];

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Mutator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A mutation of one of `inputs` (1 to 8 edits).
    pub fn mutate(&mut self, inputs: &[Vec<u8>]) -> Vec<u8> {
        let mut out = match inputs.len() {
            0 => Vec::new(),
            n => inputs[self.rng.random_range(0..n)].clone(),
        };
        for _ in 0..self.rng.random_range(1..=8) {
            self.edit(&mut out, inputs);
        }
        out.truncate(1 << 16);
        out
    }

    fn edit(&mut self, out: &mut Vec<u8>, inputs: &[Vec<u8>]) {
        let len = out.len();
        let at = |rng: &mut StdRng| {
            if len == 0 {
                0
            } else {
                rng.random_range(0..=len)
            }
        };
        match self.rng.random_range(0..8) {
            0 if len > 0 => {
                let i = self.rng.random_range(0..len);
                out[i] ^= 1 << self.rng.random_range(0..8);
            }
            1 => {
                let i = at(&mut self.rng);
                out.insert(i, self.rng.random());
            }
            2 if len > 0 => {
                let i = self.rng.random_range(0..len);
                let n = self.rng.random_range(1..=(len - i).min(16));
                out.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = self.rng.random_range(0..len);
                let n = self.rng.random_range(1..=(len - i).min(64));
                let copy = out[i..i + n].to_vec();
                let j = at(&mut self.rng);
                out.splice(j..j, copy);
            }
            4 if !inputs.is_empty() => {
                let other = &inputs[self.rng.random_range(0..inputs.len())];
                if !other.is_empty() {
                    let i = self.rng.random_range(0..other.len());
                    let n = self.rng.random_range(1..=other.len() - i);
                    let j = at(&mut self.rng);
                    out.truncate(j);
                    out.extend_from_slice(&other[i..i + n]);
                }
            }
            5 if len > 0 => {
                let i = self.rng.random_range(0..len);
                out[i] = self.rng.random();
            }
            _ => {
                let token = TOKENS[self.rng.random_range(0..TOKENS.len())];
                let i = at(&mut self.rng);
                out.splice(i..i, token.iter().copied());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_corpus_spec() {
        replay("spec", spec_seeds(), 3_000, spec);
    }

    #[test]
    fn fuzz_corpus_agent_frames() {
        replay("agent_frames", agent_frame_seeds(), 20_000, agent_frames);
    }

    #[test]
    fn fuzz_corpus_watch_position() {
        replay(
            "watch_position",
            watch_position_seeds(),
            20_000,
            watch_position,
        );
    }

    #[test]
    #[ignore = "writes the seed corpus into the checkout"]
    fn write_fuzz_seeds() {
        write_seeds("spec", &spec_seeds()).expect("spec seeds");
        write_seeds("agent_frames", &agent_frame_seeds()).expect("frame seeds");
        write_seeds("watch_position", &watch_position_seeds()).expect("cursor seeds");
    }

    #[test]
    fn the_mutator_is_deterministic_and_changes_its_input() {
        let inputs = vec![b"kind: Service\n".to_vec()];
        let (mut a, mut b) = (Mutator::new(1), Mutator::new(1));
        let runs: Vec<_> = (0..50).map(|_| a.mutate(&inputs)).collect();
        assert_eq!(runs, (0..50).map(|_| b.mutate(&inputs)).collect::<Vec<_>>());
        assert!(runs.iter().any(|r| r != &inputs[0]));
    }
}
