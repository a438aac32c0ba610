//! The library behind the `orion` binary: argument types, contexts, output
//! formatting, and the commands themselves (their REST calls are `orion-client`'s).
//!
//! # Layout
//! - [`args`]: the command line (clap derive).
//! - REST calls go through `orion-client` ([`orion_client::Client`]).
//! - [`output`]: `-o table|json|yaml`.
//! - [`commands`]: one module per command group (`server`, `dev`, `cluster`, `var`).
//! - [`watch`]: a watch of the cluster's changes that reconnects and resumes by itself.

pub mod args;
pub mod commands;
pub mod context;
pub mod log_filter;
pub mod output;
pub mod watch;

pub use args::Cli;
