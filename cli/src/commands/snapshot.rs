//! `orion snapshot save|status|restore`: backups of the replicated state.
//!
//! `save` streams `GET /v1/cluster/snapshot` into `FILE.tmp`, checks it (checksum,
//! format, header), fsyncs it and renames it to `FILE`, so `FILE` is either a
//! whole, verified backup or untouched. `status` checks a file offline. `restore`
//! is offline too: it writes a new data directory (`orion_apiserver::recovery`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::args::{GlobalOpts, SnapshotCommand};
use crate::output::{print, Table};

/// What a backup holds, as printed.
#[derive(Debug, Serialize)]
struct Summary {
    file: PathBuf,
    revision: u64,
    term: u64,
    bytes: u64,
    crc32c: String,
    pairs: u64,
    /// Unix milliseconds.
    created_at_ms: Option<u64>,
    /// Voters of the cluster it was taken from.
    voters: Vec<u64>,
}

fn summary(file: &Path, info: &orion_raft::recovery::BackupInfo<orion_raft::Member>) -> Summary {
    Summary {
        file: file.to_path_buf(),
        revision: info.revision(),
        term: info.term(),
        bytes: info.bytes,
        crc32c: format!("{:08x}", info.crc32c),
        pairs: info.pairs,
        created_at_ms: info.created_at_millis(),
        voters: info.meta.last_membership.membership().voter_ids().collect(),
    }
}

pub async fn run(command: SnapshotCommand, global: &GlobalOpts) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Save { opts, file } => {
            let opts = opts.or_global(global);
            let client = crate::context::client(&opts)?;
            let s = save(&client, &file).await?;
            println!(
                "saved {}: revision {}, term {}, {} bytes, crc32c {}, {} pairs",
                s.file.display(),
                s.revision,
                s.term,
                s.bytes,
                s.crc32c,
                s.pairs
            );
            Ok(())
        }
        SnapshotCommand::Status { file, output } => {
            let output = global.output.unwrap_or(output);
            let info = orion_raft::recovery::inspect(&file)
                .with_context(|| format!("{} is not a usable backup", file.display()))?;
            print(output, &summary(&file, &info), |s| {
                let mut t = Table::new(&["REVISION", "TERM", "BYTES", "CRC32C", "PAIRS", "VOTERS"]);
                t.row(vec![
                    s.revision.to_string(),
                    s.term.to_string(),
                    s.bytes.to_string(),
                    s.crc32c.clone(),
                    s.pairs.to_string(),
                    format!("{:?}", s.voters),
                ]);
                t
            })
        }
        SnapshotCommand::Restore {
            file,
            new_ca,
            server,
        } => {
            let mut server = *server;
            if server.id.is_none() && server.config.is_none() {
                server.id = Some(1);
            }
            let config = super::server::config_from(server)?;
            if config.force_new_cluster {
                anyhow::bail!(
                    "restore makes a new cluster from the backup: drop --force-new-cluster"
                );
            }
            let r = orion_apiserver::recovery::restore(&file, &config, new_ca)?;
            println!(
                "restored {} into {}: revision {}, term {}, {} pairs; a one-peer cluster of member {}",
                file.display(),
                r.data_dir.display(),
                r.revision,
                r.term,
                r.pairs,
                config.id
            );
            println!(
                "start it with `orion server --id {} --data-dir {} ...` (the same addresses), then join fresh peers to it",
                config.id,
                r.data_dir.display()
            );
            if r.new_ca {
                println!(
                    "new CA: every old token and certificate stops working; its first start writes an admin token to {}",
                    r.admin_token_file.display()
                );
            }
            Ok(())
        }
    }
}

/// Streams a backup into `file` through `file.tmp`; verifies it before the rename.
async fn save(client: &orion_client::Client, file: &Path) -> anyhow::Result<Summary> {
    let mut tmp_name = file.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let written = download(client, &tmp).await;
    let checked = written.and_then(|()| {
        orion_raft::recovery::inspect(&tmp)
            .map_err(|e| anyhow::anyhow!("the backup received is not usable: {e}"))
    });
    let info = match checked {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, file)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), file.display()))?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync {}", dir.display()))?;
    Ok(summary(file, &info))
}

async fn download(client: &orion_client::Client, tmp: &Path) -> anyhow::Result<()> {
    let mut out =
        std::fs::File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut stream = client.open_snapshot().await?;
    while let Some(chunk) = stream
        .chunk()
        .await
        .context("the backup stream broke; nothing was saved")?
    {
        out.write_all(&chunk)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    out.sync_all()
        .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    Ok(())
}
