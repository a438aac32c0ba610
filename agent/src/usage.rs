//! How busy the node is, for the heartbeat.

use orion_api::agent_proto::NodeUsage;

/// The node's load and memory, from /proc (zeros where unreadable).
pub(crate) fn usage() -> NodeUsage {
    let load_milli = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|l| l.parse::<f64>().ok())
        })
        .map_or(0, |l| (l * 1000.0) as u64);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_else(|e| {
        tracing::debug!(cause = %e, "cannot read /proc/meminfo; reporting no memory figures");
        String::new()
    });
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    NodeUsage {
        load_milli,
        memory_total_bytes: field("MemTotal:"),
        memory_available_bytes: field("MemAvailable:"),
    }
}
