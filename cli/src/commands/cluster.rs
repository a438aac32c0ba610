//! `orion cluster members|status|join|remove`.

use orion_api::{ClusterStatus, MemberRole, MembersResponse, PeerIdentity};

use crate::args::{ClusterCommand, Output};
use crate::client::Client;
use crate::output::{print, Table};

fn print_members(output: Output, m: &MembersResponse) -> anyhow::Result<()> {
    print(output, m, |m| {
        let mut t = Table::new(&[
            "ID", "API", "PEER", "ROLE", "LEADER", "TERM", "MATCHED", "LAG",
        ]);
        for x in &m.members {
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
            ]);
        }
        t
    })
}

pub async fn run(client: &Client, output: Output, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Members { stale } => {
            let url = if stale {
                "/v1/cluster/members?stale=true"
            } else {
                "/v1/cluster/members"
            };
            let m: MembersResponse = client.get(url).await?;
            print_members(output, &m)?;
        }
        ClusterCommand::Status => {
            let s: ClusterStatus = client.get("/v1/cluster/status").await?;
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
            let me: PeerIdentity = newcomer.get("/v1/cluster/self").await?;
            eprintln!(
                "adding peer {} ({}) as a learner, then as a voter once it has caught up…",
                me.id, me.api_addr
            );
            let m: MembersResponse = client.post("/v1/cluster/members", &me).await?;
            print_members(output, &m)?;
        }
        ClusterCommand::Remove { id } => {
            let m: MembersResponse = client.delete(&format!("/v1/cluster/members/{id}")).await?;
            eprintln!("member {id} removed");
            print_members(output, &m)?;
        }
    }
    Ok(())
}
