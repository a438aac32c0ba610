//! `orion`: the peer, the agent and the CLI in one binary. Parses, sets up logging,
//! and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // One TLS crypto provider for the whole process: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = orion::Cli::parse();
    orion::commands::main(cli)
}
