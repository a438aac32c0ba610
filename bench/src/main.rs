//! `orion-bench`: a write load generator for an Orion cluster.
//!
//! `orion-bench --servers https://127.0.0.1:7401 --clients 32 --seconds 10` runs that
//! many concurrent clients, each putting variables as fast as it is answered, and
//! prints acknowledged writes per second and latency percentiles. The run is bounded
//! by `--seconds` and only ever talks to the URLs it is given.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Write load against an Orion cluster")]
struct Args {
    /// API URLs; client i uses URL i mod n.
    #[arg(long, value_delimiter = ',', default_value = "https://127.0.0.1:7401")]
    servers: Vec<String>,
    /// The cluster CA (default: the one `orion dev` made).
    #[arg(
        long,
        env = "ORION_CA_FILE",
        default_value = ".orion-dev/peer-1/tls/ca.crt"
    )]
    ca_file: std::path::PathBuf,
    /// A developer or admin token (default: the admin token `orion dev` made).
    #[arg(long, env = "ORION_TOKEN")]
    token: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients == 0 || args.servers.is_empty() {
        bail!("need at least one client and one server");
    }
    let ca = std::fs::read_to_string(&args.ca_file)
        .with_context(|| format!("cannot read the CA {}", args.ca_file.display()))?;
    let token = match &args.token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(".orion-dev/peer-1/admin.token")
            .context("no --token, and no .orion-dev/peer-1/admin.token")?,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token.trim())
            .parse()
            .context("token")?,
    );
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(orion_tls::config::client_config(&ca, None)?)
        .default_headers(headers)
        .pool_max_idle_per_host(args.clients)
        .build()
        .context("http client")?;
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let value = "x".repeat(args.value_size);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let url = format!(
            "{}/v1/variables",
            args.servers[c % args.servers.len()].trim_end_matches('/')
        );
        let http = http.clone();
        let body = serde_json::json!({ "value": value });
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < end {
                let started = Instant::now();
                let ok = http
                    .put(format!("{url}/bench/{c}/{}", i % 1000))
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    latencies.push(started.elapsed());
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "clients={} writes={} errors={} writes/s={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        args.clients,
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    Ok(())
}
