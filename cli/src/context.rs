//! The CLI's config file: named contexts of servers, CA and token, like kubeconfig.
//! `$ORION_CONFIG`, else `~/.config/orion/config.yaml`; written with mode 0600.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::args::ClientOpts;
use orion_client::Client;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub servers: Vec<String>,
    /// The cluster CA certificate, PEM.
    pub ca: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

pub const LOGIN_HINT: &str = "run `orion context add NAME --server URL --token TOKEN` \
     (an admin makes tokens with `orion token create --role developer`; `orion dev` writes a \
     context for its cluster)";

pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORION_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set ORION_CONFIG")?;
    Ok(PathBuf::from(home).join(".config/orion/config.yaml"))
}

impl Config {
    pub fn load() -> anyhow::Result<Self> {
        let path = path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_norway::from_str(&text)
                .with_context(|| format!("{} is not a valid Orion config", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_norway::to_string(self)?;
        orion_tls::files::write_private(&path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// Builds a client from the flags, falling back on the chosen context.
pub fn client(opts: &ClientOpts) -> anyhow::Result<Client> {
    let config = Config::load()?;
    let name = opts.context.clone().or(config.current_context.clone());
    let ctx = match &name {
        Some(n) => match config.contexts.get(n) {
            Some(c) => Some(c.clone()),
            None if opts.context.is_some() => {
                bail!("no context named {n:?} in {}", path()?.display())
            }
            None => None,
        },
        None => None,
    };
    let servers = if opts.server.is_empty() {
        match &ctx {
            Some(c) => c.servers.clone(),
            None => bail!("no cluster configured: {LOGIN_HINT}"),
        }
    } else {
        opts.server.clone()
    };
    let ca = match (&opts.ca_file, &ctx) {
        (Some(f), _) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the CA file {}", f.display()))?,
        (None, Some(c)) => c.ca.clone(),
        (None, None) => bail!("no CA certificate for {}: {LOGIN_HINT}", servers.join(",")),
    };
    let token = opts
        .token
        .clone()
        .or_else(|| ctx.and_then(|c| c.token))
        .filter(|t| !t.trim().is_empty());
    Ok(Client::builder(&servers)
        .ca(&ca)
        .token(token)
        .request_id(opts.request_id.as_deref())
        // The client's notes (a write sent again, and why) are for the user.
        .on_note(|note| eprintln!("note: {note}"))
        .build()?)
}

pub async fn run(command: crate::args::ContextCommand) -> anyhow::Result<()> {
    use crate::args::ContextCommand;
    let mut config = Config::load()?;
    match command {
        ContextCommand::Add {
            name,
            server,
            token,
            ca_file,
        } => {
            let ca = match ca_file {
                Some(f) => std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?,
                None => orion_client::join::fetch_ca(&server, &token).await?,
            };
            config.contexts.insert(
                name.clone(),
                Context {
                    servers: server,
                    ca,
                    token: Some(token),
                },
            );
            config.current_context = Some(name.clone());
            let path = config.save()?;
            println!("context {name:?} saved to {} and in use", path.display());
        }
        ContextCommand::Use { name } => {
            if !config.contexts.contains_key(&name) {
                bail!("no context named {name:?}; `orion context list` shows them");
            }
            config.current_context = Some(name.clone());
            config.save()?;
            println!("using context {name:?}");
        }
        ContextCommand::List => {
            for (name, c) in &config.contexts {
                let mark = if config.current_context.as_deref() == Some(name) {
                    "*"
                } else {
                    " "
                };
                println!("{mark} {name}  {}", c.servers.join(","));
            }
        }
    }
    Ok(())
}
