//! `orion server`: one control-plane peer.

use orion_apiserver::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::args::ServerArgs;

/// Builds the config from `--config FILE` (if any) with the flags on top.
pub fn config_from(args: ServerArgs) -> anyhow::Result<ServerConfig> {
    let mut c = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::default(),
    };
    if let Some(v) = args.id {
        c.id = v;
    }
    if let Some(v) = args.data_dir {
        c.data_dir = v;
    }
    if let Some(v) = args.api_addr {
        c.api_addr = v;
    }
    if args.peer_addr.is_some() {
        c.peer_addr = args.peer_addr;
    }
    if args.agent_addr.is_some() {
        c.agent_addr = args.agent_addr;
    }
    if args.advertise_agent_addr.is_some() {
        c.advertise_agent_addr = args.advertise_agent_addr;
    }
    if args.advertise_api_addr.is_some() {
        c.advertise_api_addr = args.advertise_api_addr;
    }
    if args.advertise_peer_addr.is_some() {
        c.advertise_peer_addr = args.advertise_peer_addr;
    }
    c.bootstrap |= args.bootstrap;
    c.force_new_cluster = args.force_new_cluster;
    if !args.join.is_empty() {
        c.join = args.join;
    }
    if args.token.is_some() {
        c.token = args.token;
    }
    if !args.tls_san.is_empty() {
        c.tls_san = args.tls_san;
    }
    c.validate()?;
    Ok(c)
}

pub async fn run(args: ServerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = config_from(args)?;
    orion_apiserver::run(config, shutdown).await?;
    Ok(())
}
