//! The `orion.yaml` spec layer: what users write, read into typed resources.
//!
//! A file holds one or more YAML documents separated by `---`, each one resource
//! with a `kind`. Parsing never stops at the first problem in a document: it
//! reports every one, each as `file:line:column: field: message`, including the
//! checks that need several fields at once (a health check's port must be one of
//! `ports`, backoff `initial <= max`, names unique per kind across documents).
//!
//! ```text
//!  text ──serde-saphyr──► node::Node tree ──decode──► Resource::Service(ServiceSpec)
//!        (syntax errors)   (line:column on      (type, range and cross-field
//!                           every key/value)     checks, all collected)
//! ```
//!
//! # Layout
//! - [`parse`]: [`parse_documents`], the entry point, and the `kind` dispatch.
//! - [`service`]: `kind: Service`, its typed form and its defaults.
//! - [`job`]: `kind: Job`, run to completion, once or on a schedule.
//! - [`cron`]: job schedules (five-field cron, IANA zones) and their slots.
//! - [`constraint`]: placement constraints (`zone == a`, `zone in (a, b)`, ...).
//! - [`quantity`]: CPU (`250m`, `0.5`) and memory (`64Mi`, `1Gi`) amounts.
//! - [`duration`]: `500ms`, `2s`, `1m30s`.
//! - [`expand`]: `${NAME}` expansion in commands.
//! - [`hooks`]: a service's lifecycle hooks (`before_start`, `after_deploy`, `on_failure`).
//! - [`schema`]: the JSON Schema of a document, for editors (`orion schema`).
//! - [`error`]: [`SpecError`] and [`SpecErrors`].
//!
//! Bounds: [`MAX_REPLICAS`] per service, [`MAX_ENV_VARIABLES`] variable-backed env
//! entries per service, [`MAX_RESOURCES_PER_APPLY`] per apply.
//! - `node`, `decode` and `names` (private): the positioned YAML tree, the readers that
//!   turn it into typed values while collecting errors, and the name and command rules.

pub mod constraint;
pub mod cron;
mod decode;
pub mod duration;
pub mod error;
pub mod expand;
pub mod hooks;
pub mod job;
mod names;
mod node;
pub mod parse;
pub mod quantity;
pub mod schema;
pub mod service;

use serde::{Deserialize, Serialize};

pub use constraint::Constraint;
pub use error::{SpecError, SpecErrors};
pub use hooks::{CommandHook, EventHook, HookAction, Hooks};
pub use job::{ConcurrencyPolicy, HistoryLimit, JobSpec, MAX_COMPLETIONS};
pub use parse::{check_apply_size, parse_documents, MAX_RESOURCES_PER_APPLY};
pub use schema::json_schema;
pub use service::{
    Backoff, HealthCheck, Placement, Probe, Resources, RestartMode, RestartPolicy, ServiceSpec,
    UpdateStrategy, VariableRef, MAX_ENV_VARIABLES, MAX_REPLICAS,
};

/// One document of an `orion.yaml`.
// At most `MAX_RESOURCES_PER_APPLY` exist at once, so the padding of a Job
// (half a Service) costs nothing worth a Box in every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "PascalCase")]
pub enum Resource {
    Service(ServiceSpec),
    Job(JobSpec),
}

impl Resource {
    /// The `kind:` this resource was written with.
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Service(_) => "Service",
            Resource::Job(_) => "Job",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Resource::Service(s) => &s.name,
            Resource::Job(j) => &j.name,
        }
    }
}
