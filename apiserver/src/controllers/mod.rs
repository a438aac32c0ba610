//! Leader-only controllers. Each is a level-triggered loop: read the whole desired
//! and current state, compute what to change with a pure function, propose it,
//! wait for the next change. Running it twice changes nothing the second time.

pub mod hooks;
pub mod jobs;
pub mod nodes;
pub mod replicas;
pub mod rollout;
pub mod variables;
