//! `orion var put|get|delete|list`.

use orion_api::{DeleteResponse, ListResponse, PutVariable, VariableResponse, WriteResponse};

use crate::args::{Output, VarCommand};
use crate::output::{print, Table};
use orion_client::{query_value, Client};

fn var_url(path: &str) -> String {
    format!("/v1/variables/{}", query_value(path))
}

pub async fn run(client: &Client, output: Output, command: VarCommand) -> anyhow::Result<()> {
    match command {
        VarCommand::Put {
            path,
            value,
            expected_revision,
            secret,
        } => {
            let r: WriteResponse = client
                .put(
                    &var_url(&path),
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
            let mut url = var_url(&path);
            if let Some(rev) = expected_revision {
                url.push_str(&format!("?expected_revision={rev}"));
            }
            let r: DeleteResponse = client.delete(&url).await?;
            println!("{} deleted at revision {}", r.deleted.path, r.revision);
        }
        VarCommand::Get { path, stale } => {
            let url = format!(
                "{}{}",
                var_url(&path),
                if stale { "?stale=true" } else { "" }
            );
            let r: VariableResponse = client.get(&url).await?;
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
            let mut url = format!("/v1/variables?prefix={}", query_value(&prefix));
            if stale {
                url.push_str("&stale=true");
            }
            if let Some(l) = limit {
                url.push_str(&format!("&limit={l}"));
            }
            let r: ListResponse = client.get(&url).await?;
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
