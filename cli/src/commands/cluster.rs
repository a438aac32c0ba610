//! `orion cluster members|status|join|remove|transfer-leader`.

use orion_api::{ClusterStatus, MemberRole, MembersResponse, PeerIdentity};

use crate::args::{ClientOpts, ClusterCommand, Output};
use crate::output::{human_millis, print, Table};
use orion_client::{Client, Consistency};

fn print_members(output: Output, m: &MembersResponse) -> anyhow::Result<()> {
    print(output, m, |m| {
        let mut t = Table::new(&[
            "ID",
            "API",
            "PEER",
            "ROLE",
            "LEADER",
            "TERM",
            "MATCHED",
            "LAG",
            "REACHABLE",
            "LAST CONTACT",
        ]);
        for x in &m.members {
            // The leader itself, and members seen from a follower (`--stale`),
            // have no health: only the leader calls every member.
            let (reachable, contact) = match (x.is_leader, x.reachable) {
                (true, _) => ("leader".to_owned(), "-".to_owned()),
                (false, None) => ("unknown".to_owned(), "-".to_owned()),
                (false, Some(r)) => (
                    if r { "yes" } else { "no" }.to_owned(),
                    x.last_contact_ms
                        .map_or("never".into(), |ms| format!("{} ago", human_millis(ms))),
                ),
            };
            t.row(vec![
                x.id.to_string(),
                x.api_addr.clone(),
                x.peer_addr.clone(),
                match x.role {
                    MemberRole::Voter => "voter".into(),
                    MemberRole::Learner => "learner".into(),
                },
                if x.is_leader {
                    "*".into()
                } else {
                    String::new()
                },
                m.term.to_string(),
                x.matched_index.map_or("-".into(), |i| i.to_string()),
                x.lag.map_or("-".into(), |i| i.to_string()),
                reachable,
                contact,
            ]);
        }
        t
    })
}

pub async fn run(client: &Client, output: Output, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Members { stale } => {
            let m: MembersResponse = client.members(Consistency::stale_if(stale)).await?;
            print_members(output, &m)?;
        }
        ClusterCommand::Status => {
            let s: ClusterStatus = client.status().await?;
            print(output, &s, |s| {
                let mut t = Table::new(&[
                    "ID", "STATE", "LEADER", "TERM", "LAST LOG", "APPLIED", "SNAPSHOT", "VOTERS",
                ]);
                t.row(vec![
                    s.id.to_string(),
                    s.state.clone(),
                    s.leader.map_or("-".into(), |l| l.to_string()),
                    s.term.to_string(),
                    s.last_log_index.to_string(),
                    s.last_applied.to_string(),
                    s.snapshot_index.to_string(),
                    s.voters
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ]);
                t
            })?;
        }
        ClusterCommand::Join { url } => {
            let newcomer = client.at(&url);
            let me: PeerIdentity = newcomer.identity().await?;
            eprintln!(
                "adding peer {} ({}) as a learner, then as a voter once it has caught up…",
                me.id, me.api_addr
            );
            let m: MembersResponse = client.add_member(&me).await?;
            print_members(output, &m)?;
        }
        ClusterCommand::Remove { id } => {
            let m: MembersResponse = client.remove_member(id).await?;
            eprintln!("member {id} removed");
            print_members(output, &m)?;
        }
        ClusterCommand::TransferLeader { id } => {
            let t = client.transfer_leader(id).await?;
            print(output, &t, |t| {
                let mut table = Table::new(&["FROM", "TO", "LEADER", "TERM", "TOOK"]);
                table.row(vec![
                    t.from.to_string(),
                    t.to.to_string(),
                    t.leader.to_string(),
                    t.term.to_string(),
                    human_millis(t.took_ms),
                ]);
                table
            })?;
            eprintln!(
                "leadership moved from member {} to member {} in {}",
                t.from,
                t.leader,
                human_millis(t.took_ms)
            );
        }
    }
    Ok(())
}

/// `orion version`: this CLI's version, then the server's as the contacted peer
/// reports it. A server that cannot be reached is said so, not an error: the
/// client's version is still worth printing on a machine with no cluster.
pub async fn version(opts: &ClientOpts, client_only: bool) -> anyhow::Result<()> {
    let client_version = env!("CARGO_PKG_VERSION");
    if client_only {
        match opts.output {
            Output::Json | Output::Yaml => print(
                opts.output,
                &serde_json::json!({ "client": client_version }),
                |_| Table::new(&[]),
            )?,
            Output::Table | Output::Wide => println!("client: orion {client_version}"),
        }
        return Ok(());
    }
    let server = match crate::context::client(opts) {
        Err(e) => Err(format!("{e:#}")),
        Ok(client) => client.status().await.map_err(|e| e.to_string()),
    };
    match opts.output {
        Output::Json | Output::Yaml => {
            let value = serde_json::json!({
                "client": client_version,
                "server": server.as_ref().ok().map(|s| &s.version),
                "server_error": server.as_ref().err(),
            });
            print(opts.output, &value, |_| Table::new(&[]))?;
        }
        Output::Table | Output::Wide => {
            println!("client: orion {client_version}");
            match &server {
                Ok(s) if s.version.is_empty() => {
                    println!(
                        "server: orion (a version from before it was reported), peer {}",
                        s.id
                    )
                }
                Ok(s) => println!("server: orion {}, peer {}", s.version, s.id),
                Err(e) => println!("server: unknown ({e})"),
            }
        }
    }
    Ok(())
}
