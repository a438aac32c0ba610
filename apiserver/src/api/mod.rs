//! The HTTP handlers, one module per resource. Each takes only the parts of the
//! peer's state it uses (axum sub-states, see `state.rs`).

pub mod certificates;
pub mod cluster;
pub mod common;
pub mod health;
pub mod internal;
pub mod jobs;
pub mod metrics;
pub mod nodes;
pub mod overview;
pub mod replicas;
pub mod rollout;
pub mod services;
pub mod streams;
pub mod tokens;
pub mod ui;
pub mod variables;
pub mod watch;
