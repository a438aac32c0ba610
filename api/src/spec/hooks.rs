//! A service's lifecycle hooks (`hooks:`): `before_start`, a command the agent runs
//! before each start of each replica, and `after_deploy` / `on_failure`, a command
//! run on a chosen node or a webhook the leader calls, when a rollout completes or
//! a replica fails beyond its restart policy.
//!
//! Bounds (each named in its error): a command has at most [`MAX_HOOK_ARGS`] parts;
//! a timeout is 1ms to [`MAX_HOOK_TIMEOUT_MS`]; `retries` at most
//! [`MAX_HOOK_RETRIES`]; a URL at most [`MAX_WEBHOOK_URL_LEN`] bytes; at most
//! [`MAX_WEBHOOK_HEADERS`] headers of at most [`MAX_WEBHOOK_HEADER_LEN`] bytes each.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::decode::{Decoder, Fields};
use super::names::{decode_command, validate_name};
use super::node::Node;

pub(crate) const HOOKS_FIELDS: &[&str] = &["before_start", "after_deploy", "on_failure"];
pub(crate) const BEFORE_START_FIELDS: &[&str] = &["command", "timeout"];
pub(crate) const EVENT_HOOK_FIELDS: &[&str] = &["command", "node", "webhook", "timeout", "retries"];
pub(crate) const WEBHOOK_FIELDS: &[&str] = &["url", "headers"];

/// Most parts (program and arguments) of a hook's command.
pub const MAX_HOOK_ARGS: usize = 256;
/// Longest timeout a hook may have: ten minutes.
pub const MAX_HOOK_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// A hook's `timeout` when the spec gives none: 30 seconds.
pub const DEFAULT_HOOK_TIMEOUT_MS: u64 = 30_000;
/// Most retries of an `after_deploy` or `on_failure` hook after its first attempt.
pub const MAX_HOOK_RETRIES: u32 = 10;
/// Retries of an `after_deploy` or `on_failure` hook when the spec gives none.
pub const DEFAULT_HOOK_RETRIES: u32 = 2;
/// Longest webhook URL, in bytes.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// Most headers of one webhook.
pub const MAX_WEBHOOK_HEADERS: usize = 32;
/// Longest webhook header value, in bytes.
pub const MAX_WEBHOOK_HEADER_LEN: usize = 4096;

/// The `hooks:` block of a service; every hook is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run by the agent before each start of each replica, with the replica's
    /// environment (ports included), working directory and user. A failure (a
    /// non-zero exit or the timeout) blocks that start: the replica is `failed`
    /// with the hook's reason and tried again on the restart backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_start: Option<CommandHook>,
    /// Run once when the rollout of a generation completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_deploy: Option<EventHook>,
    /// Run when a replica exits with a failure and its restart policy does not
    /// restart it, and when a rollout fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<EventHook>,
}

impl Hooks {
    /// Whether no hook is set.
    pub fn is_empty(&self) -> bool {
        *self == Hooks::default()
    }
}

/// A command with a timeout (`before_start`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandHook {
    /// The program and its arguments (`${NAME}` is expanded from the replica's
    /// environment, as in the service's command).
    pub command: Vec<String>,
    /// Killed (and failed) when it runs longer (default 30s).
    pub timeout_ms: u64,
}

/// An `after_deploy` or `on_failure` hook: what to run, how long one attempt may
/// take, and how many times a failed attempt is tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventHook {
    pub action: HookAction,
    /// One attempt fails when it takes longer (default 30s).
    pub timeout_ms: u64,
    /// Attempts after the first one that failed (default 2, at most 10).
    pub retries: u32,
}

/// What an `after_deploy` or `on_failure` hook does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HookAction {
    /// Run `command` on node `node`, through its agent (in the agent's work folder
    /// for hooks, with `ORION_SERVICE`, `ORION_GENERATION`, `ORION_HOOK` and
    /// `ORION_TRIGGER` set).
    Command { command: Vec<String>, node: String },
    /// `POST` a JSON description of the event to `url` (http or https), with
    /// `headers`. A 2xx answer is success.
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
}

fn decode_hook_command(dec: &mut Decoder, node: &Node, field: &str) -> Option<Vec<String>> {
    let command = decode_command(dec, node, field)?;
    if command.len() > MAX_HOOK_ARGS {
        dec.error(
            node.at,
            field,
            format!(
                "{} parts is above the limit of {MAX_HOOK_ARGS}",
                command.len()
            ),
        );
        return None;
    }
    Some(command)
}

fn decode_timeout(dec: &mut Decoder, f: &Fields, path: &str) -> Option<u64> {
    let Some(node) = f.get("timeout") else {
        return Some(DEFAULT_HOOK_TIMEOUT_MS);
    };
    let field = format!("{path}.timeout");
    let ms = dec.duration(node, &field)?;
    if ms == 0 {
        dec.error(node.at, &field, "must be greater than zero");
        return None;
    }
    if ms > MAX_HOOK_TIMEOUT_MS {
        dec.error(
            node.at,
            &field,
            format!(
                "{} is above the limit of {}",
                super::duration::format_duration_ms(ms),
                super::duration::format_duration_ms(MAX_HOOK_TIMEOUT_MS)
            ),
        );
        return None;
    }
    Some(ms)
}

fn decode_before_start(dec: &mut Decoder, node: &Node) -> Option<CommandHook> {
    let path = "hooks.before_start";
    let f = dec.fields(node, path, BEFORE_START_FIELDS)?;
    let command = dec
        .required(&f, "command")
        .and_then(|n| decode_hook_command(dec, n, &format!("{path}.command")));
    let timeout = decode_timeout(dec, &f, path);
    Some(CommandHook {
        command: command?,
        timeout_ms: timeout?,
    })
}

/// Whether `url` is an `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_WEBHOOK_URL_LEN {
        return Err(format!(
            "the URL is {} bytes long, above the limit of {MAX_WEBHOOK_URL_LEN}",
            url.len()
        ));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` must start with https:// or http://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{url}` names no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` holds a space or a control character"));
    }
    Ok(())
}

/// An HTTP header name: an RFC 9110 token.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn decode_webhook(dec: &mut Decoder, node: &Node, path: &str) -> Option<HookAction> {
    let path = format!("{path}.webhook");
    let f = dec.fields(node, &path, WEBHOOK_FIELDS)?;
    let url = dec.required(&f, "url").and_then(|n| {
        let field = format!("{path}.url");
        let url = dec.string(n, &field)?;
        dec.check(n, &field, check_url(&url))?;
        Some(url)
    });
    let headers = match f.get("headers") {
        None => Some(BTreeMap::new()),
        Some(n) => {
            let field = format!("{path}.headers");
            let h = dec.mapping(n, &field)?;
            if h.entries().len() > MAX_WEBHOOK_HEADERS {
                dec.error(
                    n.at,
                    &field,
                    format!(
                        "{} headers is above the limit of {MAX_WEBHOOK_HEADERS}",
                        h.entries().len()
                    ),
                );
                return None;
            }
            let mut headers = BTreeMap::new();
            let mut ok = true;
            for (key, value) in h.entries() {
                let field = format!("{field}.{}", key.name);
                if !is_header_name(&key.name) {
                    dec.error(
                        key.at,
                        &field,
                        format!("`{}` is not a valid header name", key.name),
                    );
                    ok = false;
                    continue;
                }
                let Some(v) = dec.text(value, &field) else {
                    ok = false;
                    continue;
                };
                if v.len() > MAX_WEBHOOK_HEADER_LEN {
                    dec.error(
                        value.at,
                        &field,
                        format!(
                            "the value is {} bytes long, above the limit of {MAX_WEBHOOK_HEADER_LEN}",
                            v.len()
                        ),
                    );
                    ok = false;
                } else if v.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                    dec.error(value.at, &field, "the value holds a control character");
                    ok = false;
                } else {
                    headers.insert(key.name.clone(), v);
                }
            }
            ok.then_some(headers)
        }
    };
    Some(HookAction::Webhook {
        url: url?,
        headers: headers?,
    })
}

fn decode_event_hook(dec: &mut Decoder, node: &Node, name: &str) -> Option<EventHook> {
    let path = format!("hooks.{name}");
    let f = dec.fields(node, &path, EVENT_HOOK_FIELDS)?;
    let action = match (f.get("command"), f.get("webhook")) {
        (Some(_), Some(_)) => {
            let at = f.key_at("webhook").unwrap_or(f.at);
            dec.error(
                at,
                &format!("{path}.webhook"),
                "only one of `command` or `webhook` may be given",
            );
            None
        }
        (None, None) => {
            dec.error(f.at, &path, "needs `command` (with `node`) or `webhook`");
            None
        }
        (Some(command), None) => {
            let command = decode_hook_command(dec, command, &format!("{path}.command"));
            let node = match f.get("node") {
                None => {
                    dec.error(
                        f.at,
                        &format!("{path}.node"),
                        "missing required field: the node to run `command` on",
                    );
                    None
                }
                Some(n) => {
                    let field = format!("{path}.node");
                    let name = dec.string(n, &field)?;
                    dec.check(n, &field, validate_name(&name))?;
                    Some(name)
                }
            };
            Some(HookAction::Command {
                command: command?,
                node: node?,
            })
        }
        (None, Some(webhook)) => {
            if let Some(at) = f.key_at("node") {
                dec.error(
                    at,
                    &format!("{path}.node"),
                    "`node` goes with `command`, not with `webhook`",
                );
                return None;
            }
            decode_webhook(dec, webhook, &path)
        }
    };
    let timeout = decode_timeout(dec, &f, &path);
    let retries = match f.get("retries") {
        None => Some(DEFAULT_HOOK_RETRIES),
        Some(n) => {
            let field = format!("{path}.retries");
            let r = dec.uint::<u32>(n, &field)?;
            if r > MAX_HOOK_RETRIES {
                dec.error(
                    n.at,
                    &field,
                    format!("{r} is above the limit of {MAX_HOOK_RETRIES} retries"),
                );
                return None;
            }
            Some(r)
        }
    };
    Some(EventHook {
        action: action?,
        timeout_ms: timeout?,
        retries: retries?,
    })
}

/// Decodes a service's `hooks:` block, recording every error.
pub(crate) fn decode_hooks(dec: &mut Decoder, node: &Node) -> Option<Hooks> {
    let f = dec.fields(node, "hooks", HOOKS_FIELDS)?;
    let before_start = match f.get("before_start") {
        None => Some(None),
        Some(n) => decode_before_start(dec, n).map(Some),
    };
    let after_deploy = match f.get("after_deploy") {
        None => Some(None),
        Some(n) => decode_event_hook(dec, n, "after_deploy").map(Some),
    };
    let on_failure = match f.get("on_failure") {
        None => Some(None),
        Some(n) => decode_event_hook(dec, n, "on_failure").map(Some),
    };
    Some(Hooks {
        before_start: before_start?,
        after_deploy: after_deploy?,
        on_failure: on_failure?,
    })
}

#[cfg(test)]
mod tests {
    use crate::spec::{parse_documents, Resource};

    fn hooks(yaml: &str) -> Result<super::Hooks, String> {
        let doc = format!("kind: Service\nname: web\ncommand: [sleep, '60']\nhooks:\n{yaml}");
        match parse_documents("orion.yaml", &doc) {
            Ok(mut r) => match r.pop() {
                Some(Resource::Service(s)) => Ok(s.hooks),
                _ => Err("no service".into()),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn hooks_read_with_defaults() {
        let h = hooks(
            "  before_start: {command: [sh, -c, 'echo hi']}\n  after_deploy: {command: [true], node: web-1, retries: 0}\n  on_failure: {webhook: {url: 'https://example.com/h', headers: {Authorization: Bearer x}}, timeout: 5s}\n",
        );
        let h = h.unwrap_or_else(|e| panic!("{e}"));
        let before = h.before_start.unwrap_or_else(|| panic!("no before_start"));
        assert_eq!(before.timeout_ms, super::DEFAULT_HOOK_TIMEOUT_MS);
        let after = h.after_deploy.unwrap_or_else(|| panic!("no after_deploy"));
        assert_eq!(after.retries, 0);
        assert!(
            matches!(after.action, super::HookAction::Command { ref node, .. } if node == "web-1")
        );
        let fail = h.on_failure.unwrap_or_else(|| panic!("no on_failure"));
        assert_eq!((fail.timeout_ms, fail.retries), (5000, 2));
    }

    #[test]
    fn bad_hooks_are_refused_naming_the_field_and_the_bound() {
        for (yaml, expected) in [
            (
                "  before_start: {command: []}\n",
                "hooks.before_start.command",
            ),
            (
                "  before_start: {command: [x], timeout: 11m}\n",
                "above the limit of 10m",
            ),
            (
                "  before_start: {command: [x], timeout: 0}\n",
                "greater than zero",
            ),
            (
                "  after_deploy: {command: [x]}\n",
                "hooks.after_deploy.node",
            ),
            (
                "  after_deploy: {command: [x], node: a, webhook: {url: 'https://a'}}\n",
                "only one of",
            ),
            ("  after_deploy: {timeout: 1s}\n", "needs `command`"),
            (
                "  on_failure: {webhook: {url: 'ftp://a'}}\n",
                "must start with https://",
            ),
            (
                "  on_failure: {webhook: {url: 'https://'}}\n",
                "names no host",
            ),
            (
                "  on_failure: {webhook: {url: 'https://a'}, retries: 11}\n",
                "limit of 10 retries",
            ),
            (
                "  on_failure: {webhook: {url: 'https://a', headers: {'a b': c}}}\n",
                "not a valid header name",
            ),
            (
                "  on_failure: {webhook: {url: 'https://a'}, node: x}\n",
                "goes with `command`",
            ),
            ("  after: {}\n", "unknown field `after`"),
        ] {
            let err = hooks(yaml)
                .err()
                .unwrap_or_else(|| panic!("{yaml} was accepted"));
            assert!(err.contains(expected), "{yaml}: {err}");
        }
        let long = format!(
            "  on_failure: {{webhook: {{url: 'https://a/{}'}}}}\n",
            "x".repeat(3000)
        );
        let err = hooks(&long).err().unwrap_or_default();
        assert!(err.contains("above the limit of 2048"), "{err}");
    }
}
