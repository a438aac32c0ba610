//! `orion var put|get|delete|list`.

use orion_api::{DeleteResponse, ListResponse, PutVariable, VariableResponse, WriteResponse};

use crate::args::{Output, VarCommand};
use crate::output::{print, Table};
use orion_client::{Client, Consistency, VariableQuery};

pub async fn run(client: &Client, output: Output, command: VarCommand) -> anyhow::Result<()> {
    match command {
        VarCommand::Put {
            path,
            value,
            expected_revision,
            secret,
        } => {
            let r: WriteResponse = client
                .put_variable(
                    &path,
                    &PutVariable {
                        value,
                        expected_revision,
                        secret,
                    },
                )
                .await?;
            println!("{} written at revision {}", r.variable.path, r.revision);
        }
        VarCommand::Delete {
            path,
            expected_revision,
        } => {
            let r: DeleteResponse = client.delete_variable(&path, expected_revision).await?;
            println!("{} deleted at revision {}", r.deleted.path, r.revision);
        }
        VarCommand::Get { path, stale } => {
            let r: VariableResponse = client.variable(&path, Consistency::stale_if(stale)).await?;
            print(output, &r, |r| {
                let mut t = Table::new(&["PATH", "VALUE", "REVISION", "CREATED", "VERSION"]);
                let v = &r.variable;
                t.row(vec![
                    v.path.clone(),
                    v.value.clone(),
                    v.mod_revision.to_string(),
                    v.create_revision.to_string(),
                    v.version.to_string(),
                ]);
                t
            })?;
        }
        VarCommand::List {
            prefix,
            stale,
            limit,
        } => {
            let r: ListResponse = client
                .variables(&VariableQuery {
                    prefix,
                    start_after: None,
                    limit,
                    consistency: Consistency::stale_if(stale),
                })
                .await?;
            print(output, &r, |r| {
                let mut t = Table::new(&["PATH", "VALUE", "REVISION"]);
                for v in &r.items {
                    t.row(vec![
                        v.path.clone(),
                        v.value.clone(),
                        v.mod_revision.to_string(),
                    ]);
                }
                t
            })?;
        }
    }
    Ok(())
}
