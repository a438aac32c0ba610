//! The commands. Each client command builds a [`Client`],
//! makes its calls and prints the answer in the chosen format.

pub mod agent;
pub mod cluster;
pub mod dev;
pub mod job;
pub mod logs;
pub mod node;
pub mod rollout;
pub mod server;
pub mod snapshot;
pub mod token;
pub mod var;
pub mod workload;

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, ClientOpts, Command, LogFormat};

/// Runs the parsed command line and maps the outcome to an exit code.
pub fn main(cli: Cli) -> ExitCode {
    let (default_level, format) = match &cli.command {
        Command::Server(args) => ("info", args.log_format),
        Command::Agent(args) => ("info", args.log_format),
        Command::Dev(_) => ("info", LogFormat::Text),
        _ => ("warn", LogFormat::Text),
    };
    init_tracing(default_level, format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if is_refused_config(&e) {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The exit status of a peer or agent that refuses its configuration, or of a
/// peer removed from its cluster (sysexits' `EX_CONFIG`): starting it again cannot help, so the systemd units in `deploy/`
/// do not (`RestartPreventExitStatus=78`).
pub const EX_CONFIG: u8 = 78;

/// A setting the agent refuses (its file or flags), before it starts.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct InvalidConfig(pub String);

fn is_refused_config(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<InvalidConfig>()
            || matches!(
                cause.downcast_ref::<orion_apiserver::Error>(),
                Some(
                    orion_apiserver::Error::Config(_)
                        | orion_apiserver::Error::Removed(_)
                        | orion_apiserver::Error::DataFormat(_)
                )
            )
    })
}

fn init_tracing(default_level: &str, format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let explicit = EnvFilter::try_from_env("ORION_LOG").ok();
    // Unless ORION_LOG asks for openraft's debug lines (see `log_filter`).
    let directives = std::env::var("ORION_LOG").unwrap_or_default();
    let quiet = (!crate::log_filter::shows_openraft_debug(&directives))
        .then_some(crate::log_filter::QuietPeerFaults);
    let filter =
        explicit.unwrap_or_else(|| EnvFilter::new(format!("{default_level},openraft=warn")));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Json => layer.json().boxed(),
        LogFormat::Text => layer.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer.with_filter(quiet))
        .try_init();
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    // Flags written before the subcommand fill the ones not written after it.
    let g = |opts: ClientOpts| opts.or_global(&global);
    match cli.command {
        Command::Server(args) => server::run(*args, shutdown_on_signal()).await,
        Command::Dev(args) => dev::run(args, shutdown_on_signal()).await,
        Command::Agent(args) => agent::run(args, shutdown_on_signal()).await,
        Command::Cluster { opts, command } => {
            let opts = g(opts);
            cluster::run(&crate::context::client(&opts)?, opts.output, command).await
        }
        Command::Apply {
            opts,
            files,
            wait,
            timeout,
        } => {
            let opts = g(opts);
            let client = crate::context::client(&opts)?;
            let changed = workload::apply(&client, &files).await?;
            if wait {
                let timeout = rollout::parse_timeout(&timeout)?;
                rollout::wait_all(&client, &changed, timeout).await?;
            }
            Ok(())
        }
        Command::Node { opts, command } => {
            let opts = g(opts);
            node::run(&crate::context::client(&opts)?, opts.output, command).await
        }
        Command::Rollout { opts, command } => {
            let opts = g(opts);
            rollout::run(&crate::context::client(&opts)?, opts.output, command).await
        }
        Command::Get {
            opts,
            kind,
            name,
            stale,
            watch,
            from,
        } => {
            let opts = g(opts);
            let client = crate::context::client(&opts)?;
            if watch {
                let from = from
                    .map(|f| f.parse().map_err(|m| anyhow::anyhow!("--from: {m}")))
                    .transpose()?;
                workload::watch_and_get(&client, opts.output, kind, name, stale, from).await
            } else {
                workload::get(&client, opts.output, kind, name, stale).await?;
                Ok(())
            }
        }
        Command::Describe { opts, kind, name } => {
            let opts = g(opts);
            workload::describe(&crate::context::client(&opts)?, kind, &name).await
        }
        Command::Delete { opts, kind, name } => {
            let opts = g(opts);
            workload::delete(&crate::context::client(&opts)?, kind, &name).await
        }
        Command::Logs {
            opts,
            target,
            follow,
            tail,
        } => workload::logs(&crate::context::client(&g(opts))?, &target, follow, tail).await,
        Command::Exec {
            opts,
            replica,
            command,
        } => {
            let code =
                workload::exec(&crate::context::client(&g(opts))?, &replica, command).await?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Job { opts, command } => {
            let opts = g(opts);
            job::run(&crate::context::client(&opts)?, opts.output, command).await
        }
        Command::Restart { opts, replica } => {
            workload::restart(&crate::context::client(&g(opts))?, &replica).await
        }
        Command::Openapi => {
            let doc = orion_apiserver::routes::openapi();
            print!("{}", orion_apiserver::openapi::document_text(&doc));
            Ok(())
        }
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&orion_api::spec::json_schema())?
            );
            Ok(())
        }
        Command::Token { opts, command } => {
            let opts = g(opts);
            token::run(&crate::context::client(&opts)?, opts.output, command).await
        }
        Command::Context { command } => crate::context::run(command).await,
        Command::Snapshot(args) => snapshot::run(args.command, &global).await,
        Command::Version { opts, client } => cluster::version(&g(opts), client).await,
        Command::Var { opts, command } => {
            let opts = g(opts);
            var::run(&crate::context::client(&opts)?, opts.output, command).await
        }
    }
}

/// A token cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot listen for SIGTERM; Ctrl-C still works");
                    let _ = tokio::signal::ctrl_c().await;
                    t.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        t.cancel();
    });
    token
}
