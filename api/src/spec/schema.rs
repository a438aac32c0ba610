//! The JSON Schema (draft 2020-12) of one `orion.yaml` document, for editors.
//!
//! Written by hand from the same field lists the parser checks against; a test
//! keeps the two in step. The schema describes what users *write* (`cpu: 250m`,
//! `interval: 2s`), not the typed JSON form.

use serde_json::{json, Value};

/// The schema of one document; `orion schema` prints it.
pub fn json_schema() -> Value {
    let name = json!({
        "type": "string",
        "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        "description": "lowercase letters, digits and '-', 1 to 63 long"
    });
    let duration = json!({
        "type": "string",
        "pattern": "^(0|([0-9]+(ms|s|m|h))+)$",
        "description": "a duration like 500ms, 2s, 1m30s or 1h"
    });
    let command = json!({
        "type": "array",
        "items": {"type": ["string", "number", "boolean"]},
        "minItems": 1,
        "description": "the program and its arguments; no shell is involved"
    });
    let job = job_schema();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://orion.dev/schema/orion.yaml.json",
        "title": "orion.yaml document",
        "oneOf": [{"$ref": "#/$defs/Service"}, {"$ref": "#/$defs/Job"}],
        "$defs": {
            "name": name,
            "duration": duration,
            "command": command,
            "Service": {
                "type": "object",
                "description": "a long-running command kept at `replicas` copies",
                "additionalProperties": false,
                "required": ["kind", "name", "command"],
                "properties": {
                    "kind": {"const": "Service"},
                    "name": {"$ref": "#/$defs/name"},
                    "replicas": {"type": "integer", "minimum": 0, "maximum": super::service::MAX_REPLICAS, "default": 1},
                    "command": {"$ref": "#/$defs/command"},
                    "args": {
                        "type": "array",
                        "items": {"type": ["string", "number", "boolean"]},
                        "description": "extra arguments after `command`"
                    },
                    "env": {
                        "type": "object",
                        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                        "additionalProperties": {
                            "oneOf": [
                                {"type": ["string", "number", "boolean"]},
                                {
                                    "type": "object",
                                    "description": "the value of an Orion variable, resolved when a replica starts",
                                    "required": ["variable"],
                                    "additionalProperties": false,
                                    "properties": {
                                        "variable": {"type": "string", "maxLength": 512},
                                        "restart_on_change": {
                                            "type": "boolean",
                                            "description": "a change of the variable rolls the service"
                                        }
                                    }
                                }
                            ]
                        }
                    },
                    "working_dir": {"type": "string"},
                    "ports": {
                        "type": "array",
                        "items": {"$ref": "#/$defs/name"},
                        "uniqueItems": true,
                        "description": "named ports; each replica gets a free port per name as ORION_PORT_<NAME> (the first also as PORT)"
                    },
                    "resources": {"$ref": "#/$defs/resources"},
                    "health": {"$ref": "#/$defs/health"},
                    "restart": {"$ref": "#/$defs/restart"},
                    "placement": {"$ref": "#/$defs/placement"},
                    "strategy": {"$ref": "#/$defs/strategy"},
                    "hooks": {"$ref": "#/$defs/hooks"}
                }
            },
            "Job": job,
            "resources": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "cpu": {
                        "type": ["string", "number"],
                        "pattern": "^([0-9]+m|[0-9]*\\.?[0-9]+)$",
                        "description": "CPU: 250m (millicores), 0.5 or 2 (cores)",
                        "default": "100m"
                    },
                    "memory": {
                        "type": ["string", "integer"],
                        "pattern": "^[0-9]*\\.?[0-9]+(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?$",
                        "description": "memory: 64Mi, 1Gi, 500M or a byte count",
                        "default": "64Mi"
                    }
                }
            },
            "health": {
                "type": "object",
                "additionalProperties": false,
                "description": "exactly one of http, tcp or exec",
                "oneOf": [
                    {"required": ["http"]},
                    {"required": ["tcp"]},
                    {"required": ["exec"]}
                ],
                "properties": {
                    "http": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["port"],
                        "properties": {
                            "port": {"$ref": "#/$defs/name", "description": "one of `ports`"},
                            "path": {"type": "string", "pattern": "^/", "default": "/"}
                        }
                    },
                    "tcp": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["port"],
                        "properties": {
                            "port": {"$ref": "#/$defs/name", "description": "one of `ports`"}
                        }
                    },
                    "exec": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["command"],
                        "properties": {"command": {"$ref": "#/$defs/command"}}
                    },
                    "interval": {"$ref": "#/$defs/duration", "default": "10s"},
                    "timeout": {"$ref": "#/$defs/duration", "default": "1s"},
                    "failures": {"type": "integer", "minimum": 1, "default": 3},
                    "successes": {"type": "integer", "minimum": 1, "default": 1},
                    "initial_delay": {"$ref": "#/$defs/duration", "default": "0s"},
                    "startup_grace": {"$ref": "#/$defs/duration", "default": "10s", "description": "until the first passing check, failures this soon after start do not count"}
                }
            },
            "restart": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "policy": {"enum": ["always", "on-failure", "never"], "default": "always"},
                    "backoff": {
                        "type": "object",
                        "additionalProperties": false,
                        "description": "initial must not be longer than max",
                        "properties": {
                            "initial": {"$ref": "#/$defs/duration", "default": "1s"},
                            "max": {"$ref": "#/$defs/duration", "default": "1m"}
                        }
                    }
                }
            },
            "placement": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "constraints": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "description": "`label == value`, `label != value`, `label in (a, b)` or `label exists`"
                        }
                    }
                }
            },
            "strategy": {
                "type": "object",
                "additionalProperties": false,
                "description": "rolling update; max_unavailable and max_surge cannot both be 0",
                "properties": {
                    "max_unavailable": {"type": "integer", "minimum": 0, "default": 1},
                    "max_surge": {"type": "integer", "minimum": 0, "default": 1},
                    "min_healthy_time": {"$ref": "#/$defs/duration", "default": "0s", "description": "how long a new replica stays healthy before the next batch starts"},
                    "healthy_deadline": {"$ref": "#/$defs/duration", "default": "5m", "description": "a new replica not available by then fails the rollout"},
                    "auto_rollback": {"type": "boolean", "default": false, "description": "a failed rollout restores the previous revision"}
                }
            },
            "hooks": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "before_start": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["command"],
                        "description": "run by the agent before each start of each replica; a failure blocks the start",
                        "properties": {
                            "command": {"$ref": "#/$defs/command"},
                            "timeout": {"$ref": "#/$defs/duration", "default": "30s"}
                        }
                    },
                    "after_deploy": {"$ref": "#/$defs/event_hook", "description": "run once when a rollout completes"},
                    "on_failure": {"$ref": "#/$defs/event_hook", "description": "run when a replica fails beyond its restart policy or a rollout fails"}
                }
            },
            "event_hook": {
                "type": "object",
                "additionalProperties": false,
                "description": "`command` with `node`, or `webhook`",
                "oneOf": [{"required": ["command", "node"]}, {"required": ["webhook"]}],
                "properties": {
                    "command": {"$ref": "#/$defs/command"},
                    "node": {"$ref": "#/$defs/name", "description": "the node whose agent runs `command`"},
                    "webhook": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["url"],
                        "properties": {
                            "url": {"type": "string", "pattern": "^https?://", "maxLength": super::hooks::MAX_WEBHOOK_URL_LEN},
                            "headers": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": super::hooks::MAX_WEBHOOK_HEADERS}
                        }
                    },
                    "timeout": {"$ref": "#/$defs/duration", "default": "30s"},
                    "retries": {"type": "integer", "minimum": 0, "maximum": super::hooks::MAX_HOOK_RETRIES, "default": super::hooks::DEFAULT_HOOK_RETRIES}
                }
            }
        }
    })
}

/// The `kind: Job` document (its own function: one `json!` this size would pass
/// the macro's recursion limit).
fn job_schema() -> Value {
    json!({
        "type": "object",
        "description": "a command run to completion, with retries; with a schedule, periodically",
        "additionalProperties": false,
        "required": ["kind", "name", "command"],
        "properties": {
            "kind": {"const": "Job"},
            "name": {"$ref": "#/$defs/name"},
            "command": {"$ref": "#/$defs/command"},
            "args": {
                "type": "array",
                "items": {"type": ["string", "number", "boolean"]},
                "description": "extra arguments after `command`"
            },
            "env": {
                "type": "object",
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                "additionalProperties": {"type": ["string", "number", "boolean"]}
            },
            "working_dir": {"type": "string"},
            "resources": {"$ref": "#/$defs/resources"},
            "placement": {"$ref": "#/$defs/placement"},
            "completions": {"type": "integer", "minimum": 1, "maximum": super::job::MAX_COMPLETIONS, "default": 1, "description": "tasks that must exit 0"},
            "parallelism": {"type": "integer", "minimum": 1, "maximum": super::job::MAX_COMPLETIONS, "default": 1, "description": "tasks running at once"},
            "backoff_limit": {"type": "integer", "minimum": 0, "maximum": super::job::MAX_BACKOFF_LIMIT, "default": 6, "description": "failed attempts retried before the run fails"},
            "backoff": {
                "type": "object",
                "additionalProperties": false,
                "description": "delay before each retry, doubling; initial must not be longer than max",
                "properties": {
                    "initial": {"$ref": "#/$defs/duration", "default": "10s"},
                    "max": {"$ref": "#/$defs/duration", "default": "6m"}
                }
            },
            "active_deadline": {"$ref": "#/$defs/duration", "description": "a run going on longer fails, its tasks killed"},
            "schedule": {"type": "string", "maxLength": super::cron::MAX_SCHEDULE_LEN, "description": "five-field cron: minute hour day-of-month month day-of-week, e.g. */5 * * * *"},
            "time_zone": {"type": "string", "default": "UTC", "description": "IANA zone the schedule is read in, e.g. Europe/Paris"},
            "concurrency_policy": {"enum": ["allow", "forbid", "replace"], "default": "allow"},
            "starting_deadline": {"$ref": "#/$defs/duration", "description": "a scheduled run later than this is skipped"},
            "history_limit": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "successful": {"type": "integer", "minimum": 0, "maximum": super::job::MAX_HISTORY, "default": 3},
                    "failed": {"type": "integer", "minimum": 0, "maximum": super::job::MAX_HISTORY, "default": 1}
                }
            },
            "suspend": {"type": "boolean", "default": false, "description": "no new scheduled runs"}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::service::{
        BACKOFF_FIELDS, EXEC_FIELDS, HEALTH_FIELDS, HTTP_FIELDS, PLACEMENT_FIELDS,
        RESOURCES_FIELDS, SERVICE_FIELDS, STRATEGY_FIELDS, TCP_FIELDS,
    };

    /// Follows a `$ref` inside this schema.
    fn resolve<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r.trim_start_matches('#');
                schema
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}"))
            }
            None => node,
        }
    }

    fn object<'a>(schema: &'a Value, node: &'a Value, fields: &[&str], at: &str) -> &'a Value {
        let node = resolve(schema, node);
        assert_eq!(
            node.get("additionalProperties"),
            Some(&Value::Bool(false)),
            "{at} must forbid unknown fields"
        );
        let props = node
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("{at} has no properties"));
        let mut listed: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut expected = fields.to_vec();
        listed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(listed, expected, "{at}: schema and parser disagree");
        node
    }

    #[test]
    fn schema_lists_exactly_the_fields_the_parser_accepts() {
        let s = json_schema();
        let service = object(&s, &s["$defs"]["Service"], SERVICE_FIELDS, "Service");
        let p = &service["properties"];
        object(&s, &p["resources"], RESOURCES_FIELDS, "resources");
        let health = object(&s, &p["health"], HEALTH_FIELDS, "health");
        object(
            &s,
            &health["properties"]["http"],
            HTTP_FIELDS,
            "health.http",
        );
        object(&s, &health["properties"]["tcp"], TCP_FIELDS, "health.tcp");
        object(
            &s,
            &health["properties"]["exec"],
            EXEC_FIELDS,
            "health.exec",
        );
        let restart = object(&s, &p["restart"], &["policy", "backoff"], "restart");
        object(
            &s,
            &restart["properties"]["backoff"],
            BACKOFF_FIELDS,
            "backoff",
        );
        object(&s, &p["placement"], PLACEMENT_FIELDS, "placement");
        object(&s, &p["strategy"], STRATEGY_FIELDS, "strategy");
        use crate::spec::hooks::{
            BEFORE_START_FIELDS, EVENT_HOOK_FIELDS, HOOKS_FIELDS, WEBHOOK_FIELDS,
        };
        let hooks = object(&s, &p["hooks"], HOOKS_FIELDS, "hooks");
        object(
            &s,
            &hooks["properties"]["before_start"],
            BEFORE_START_FIELDS,
            "hooks.before_start",
        );
        let event = object(
            &s,
            &hooks["properties"]["after_deploy"],
            EVENT_HOOK_FIELDS,
            "hooks.after_deploy",
        );
        object(
            &s,
            &event["properties"]["webhook"],
            WEBHOOK_FIELDS,
            "hooks.*.webhook",
        );
        let job = object(&s, &s["$defs"]["Job"], crate::spec::job::JOB_FIELDS, "Job");
        let p = &job["properties"];
        object(&s, &p["backoff"], BACKOFF_FIELDS, "Job.backoff");
        object(
            &s,
            &p["history_limit"],
            crate::spec::job::HISTORY_FIELDS,
            "Job.history_limit",
        );
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    }
}
