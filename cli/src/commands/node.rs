//! `orion node cordon|uncordon|drain|delete`.

use std::time::Duration;

use anyhow::bail;
use orion_api::workload::MAX_DRAIN_DEADLINE_SECS;
use orion_api::NodeObject;
use orion_client::{Client, Consistency, NodeAction};

use crate::args::{NodeCommand, Output};
use crate::output::{print, Table};

/// How often `drain` looks at the node's replicas while following.
const POLL: Duration = Duration::from_millis(500);

pub async fn run(client: &Client, output: Output, command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Cordon { node } => {
            let n = client.schedule_node(&node, NodeAction::Cordon).await?;
            show(output, &n, "cordoned: it takes no new replicas")
        }
        NodeCommand::Uncordon { node } => {
            let n = client.schedule_node(&node, NodeAction::Uncordon).await?;
            show(output, &n, "uncordoned: it takes replicas again")
        }
        NodeCommand::Delete { node } => {
            let n = client.delete_node(&node).await?;
            show(output, &n, "deleted: its replicas are placed elsewhere")
        }
        NodeCommand::Drain {
            node,
            deadline,
            detach,
        } => {
            let deadline = super::rollout::parse_timeout(&deadline)?;
            if deadline.as_secs() > MAX_DRAIN_DEADLINE_SECS {
                bail!("--deadline {deadline:?} is above the limit of 7 days");
            }
            let action = NodeAction::Drain {
                deadline_seconds: deadline.as_secs().max(1),
            };
            let n = client.schedule_node(&node, action).await?;
            if detach {
                return show(output, &n, "draining");
            }
            follow(client, &node, deadline).await
        }
    }
}

fn show(output: Output, n: &NodeObject, what: &str) -> anyhow::Result<()> {
    match output {
        Output::Json | Output::Yaml => print(output, n, |_| Table::new(&[])),
        Output::Table | Output::Wide => {
            println!("node/{} {what}", n.name);
            Ok(())
        }
    }
}

/// Prints each change of the number of replicas on `node` until there are none
/// (exit 0), or fails once the drain deadline is well past.
async fn follow(client: &Client, node: &str, deadline: Duration) -> anyhow::Result<()> {
    let give_up = tokio::time::Instant::now() + deadline + Duration::from_secs(60);
    let mut last = None;
    loop {
        let list = client.replicas(Consistency::Linearizable).await?;
        let left: Vec<String> = list
            .items
            .iter()
            .filter(|r| r.node == node)
            .map(|r| r.id())
            .collect();
        if last != Some(left.len()) {
            if left.is_empty() {
                println!("node/{node} drained: no replicas left; it stays cordoned until `orion node uncordon {node}`");
                return Ok(());
            }
            println!(
                "node/{node} draining: {} left ({})",
                left.len(),
                left.join(", ")
            );
            last = Some(left.len());
        }
        if tokio::time::Instant::now() > give_up {
            bail!(
                "node/{node} still runs {} replicas a minute past the drain deadline: {}",
                left.len(),
                left.join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
