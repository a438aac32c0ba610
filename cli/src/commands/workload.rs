//! `orion apply`, `orion get`, `orion delete` for workloads.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use orion_api::{
    ApplyRequest, ApplyResponse, Change, DeletedService, NodeList, ReplicaList, ServiceList,
    ServiceResponse, SourceFile,
};

use crate::args::{Kind, Output};
use crate::output::{print, Table};
use orion_client::{Client, Consistency, EventQuery, LogQuery};

/// Reads the `-f` arguments: files, folders (their `.yaml`/`.yml` files, sorted) or `-`.
fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let mut content = String::new();
            std::io::stdin()
                .read_to_string(&mut content)
                .context("cannot read standard input")?;
            files.push(SourceFile {
                name: "<stdin>".into(),
                content,
            });
        } else if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read folder {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            entries.sort();
            if entries.is_empty() {
                bail!("{} holds no .yaml or .yml files", path.display());
            }
            for p in entries {
                files.push(read_file(&p)?);
            }
        } else {
            files.push(read_file(path)?);
        }
    }
    Ok(files)
}

fn read_file(path: &Path) -> anyhow::Result<SourceFile> {
    let content =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(SourceFile {
        name: path.display().to_string(),
        content,
    })
}

/// Applies the files; returns the services that were created or changed.
pub async fn apply(client: &Client, paths: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let files = read_sources(paths)?;
    let r: ApplyResponse = client.apply(&ApplyRequest { files }).await?;
    let mut changed = Vec::new();
    for x in &r.results {
        let change = match x.change {
            Change::Created => "created",
            Change::Configured => "configured",
            Change::Unchanged => "unchanged",
        };
        println!("{}/{} {change}", x.kind.to_lowercase(), x.name);
        if x.change != Change::Unchanged && x.kind == "Service" {
            changed.push(x.name.clone());
        }
    }
    Ok(changed)
}

fn services_table(items: &[orion_api::ServiceObject]) -> Table {
    let mut t = Table::new(&["NAME", "REPLICAS", "COMMAND", "GENERATION", "REVISION"]);
    for s in items {
        t.row(vec![
            s.spec.name.clone(),
            s.spec.replicas.to_string(),
            s.spec.command.join(" "),
            s.generation.to_string(),
            s.mod_revision.to_string(),
        ]);
    }
    t
}

/// Prints the list (or the one object) and returns the revision it was read at.
pub async fn get(
    client: &Client,
    output: Output,
    kind: Kind,
    name: Option<String>,
    stale: bool,
) -> anyhow::Result<u64> {
    let consistency = Consistency::stale_if(stale);
    let revision = match (kind, name) {
        (Kind::Services, None) => {
            let r: ServiceList = client.services(consistency).await?;
            print(output, &r, |r| services_table(&r.items))?;
            r.revision
        }
        (Kind::Services, Some(name)) => {
            let r: ServiceResponse = client.service(&name, consistency).await?;
            print(output, &r, |r| {
                services_table(std::slice::from_ref(&r.service))
            })?;
            r.revision
        }
        (Kind::Jobs, name) => super::job::get(client, output, name, consistency).await?,
        (Kind::Nodes, name) => {
            let mut r: NodeList = client.nodes(consistency).await?;
            if let Some(name) = &name {
                r.items.retain(|n| &n.name == name);
                r.usage.retain(|n, _| n == name);
                if r.items.is_empty() {
                    bail!("node {name:?} does not exist (`orion get nodes` lists them)");
                }
            }
            print(output, &r, |r| {
                let mut t = Table::new(&[
                    "NAME", "STATUS", "CPU", "MEMORY", "LABELS", "LOAD", "MEM FREE",
                ]);
                for n in &r.items {
                    let u = r.usage.get(&n.name);
                    let mut status = format!("{:?}", n.status).to_lowercase();
                    if n.draining {
                        status += ",draining";
                    } else if n.cordoned {
                        status += ",cordoned";
                    }
                    t.row(vec![
                        n.name.clone(),
                        status,
                        format!("{}m", n.capacity.cpu_millis),
                        format!("{}Mi", n.capacity.memory_bytes >> 20),
                        n.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(","),
                        u.map_or("-".into(), |u| {
                            format!("{:.2}", u.load_milli as f64 / 1000.0)
                        }),
                        u.map_or("-".into(), |u| {
                            format!("{}Mi", u.memory_available_bytes >> 20)
                        }),
                    ]);
                }
                t
            })?;
            r.revision
        }
        (Kind::Replicas, name) => {
            let mut r: ReplicaList = client.replicas(consistency).await?;
            if let Some(name) = &name {
                // A replica id (`web-0`) or a service name (`web`), as `orion logs`.
                let is_id = r.items.iter().any(|x| &x.id() == name);
                r.items.retain(|x| {
                    if is_id {
                        &x.id() == name
                    } else {
                        &x.service == name
                    }
                });
                r.observed
                    .retain(|id, _| r.items.iter().any(|x| &x.id() == id));
                r.unplaced.retain(|u| !is_id && &u.service == name);
                if r.items.is_empty() && r.unplaced.is_empty() {
                    bail!("no replica or service named {name:?}");
                }
            }
            print(output, &r, |r| {
                let wide = output == Output::Wide;
                let mut header = vec!["REPLICA", "NODE", "STATE", "PID", "RESTARTS", "GENERATION"];
                if wide {
                    header.extend(["PORTS", "CPU", "MEMORY", "CREATED", "REASON"]);
                }
                let mut t = Table::new(&header);
                for x in &r.items {
                    let seen = r.observed.get(&x.id());
                    let mut row = vec![
                        x.id(),
                        x.node.clone(),
                        seen.map_or("pending".into(), |s| s.state.to_string()),
                        seen.and_then(|s| s.pid)
                            .map_or("-".into(), |p| p.to_string()),
                        seen.map_or("-".into(), |s| s.restarts.to_string()),
                        x.generation.to_string(),
                    ];
                    if wide {
                        let ports = seen.map(|s| {
                            s.ports
                                .iter()
                                .map(|(name, port)| format!("{name}={port}"))
                                .collect::<Vec<_>>()
                                .join(",")
                        });
                        row.extend([
                            ports.filter(|p| !p.is_empty()).unwrap_or("-".into()),
                            format!("{}m", x.resources.cpu_millis),
                            format!("{}Mi", x.resources.memory_bytes >> 20),
                            x.create_revision.to_string(),
                            seen.and_then(|s| s.reason.clone()).unwrap_or_default(),
                        ]);
                    }
                    t.row(row);
                }
                t
            })?;
            for u in &r.unplaced {
                eprintln!("not placed: {u}");
            }
            r.revision
        }
    };
    Ok(revision)
}

pub async fn delete(client: &Client, kind: Kind, name: &str) -> anyhow::Result<()> {
    match kind {
        Kind::Nodes | Kind::Replicas => {
            bail!("{kind:?} are not deleted by hand: the controllers own them (delete or scale the service)")
        }
        Kind::Jobs => super::job::delete(client, name).await?,
        Kind::Services => {
            let r: DeletedService = client.delete_service(name).await?;
            println!(
                "service/{} deleted at revision {}",
                r.deleted.spec.name, r.revision
            );
        }
    }
    Ok(())
}

/// `orion logs`: one replica's lines, or each replica's of a service in turn.
pub async fn logs(client: &Client, target: &str, follow: bool, tail: usize) -> anyhow::Result<()> {
    let list: ReplicaList = client.replicas(Consistency::Linearizable).await?;
    let mut ids: Vec<String> = if list.items.iter().any(|r| r.id() == target) {
        vec![target.to_string()]
    } else {
        list.items
            .iter()
            .filter(|r| r.service == target)
            .map(|r| r.id())
            .collect()
    };
    if ids.is_empty() {
        // A job's task attempt, or every attempt of a job's kept runs.
        ids = super::job::task_ids(client, target).await?;
    }
    if ids.is_empty() {
        bail!("no replica, service, job or job task named {target:?}");
    }
    if follow && ids.len() > 1 {
        bail!(
            "--follow takes one replica; {target} has {}: {}",
            ids.len(),
            ids.join(", ")
        );
    }
    if follow {
        return super::logs::follow(client, &ids[0], tail).await;
    }
    let query = LogQuery {
        tail,
        follow,
        records: false,
        from: None,
    };
    for id in ids {
        client.logs(&id, &query, std::io::stdout().lock()).await?;
    }
    Ok(())
}

/// `orion exec`: prints the command's output and returns its exit code.
pub async fn exec(client: &Client, replica: &str, command: Vec<String>) -> anyhow::Result<i32> {
    let r: orion_api::agent_proto::ExecResult = client.exec(replica, command).await?;
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    Ok(r.exit_code.unwrap_or(128 + r.signal.unwrap_or(0)))
}

/// `orion restart REPLICA`.
pub async fn restart(client: &Client, replica: &str) -> anyhow::Result<()> {
    let r = client.restart_replica(replica).await?;
    let pid = r.pid.map_or("-".to_owned(), |p| p.to_string());
    println!(
        "restarted {} on node {}: pid {pid}, {} restarts",
        r.replica, r.node, r.restarts
    );
    Ok(())
}

/// `orion describe service NAME`.
pub async fn describe(client: &Client, kind: Kind, name: &str) -> anyhow::Result<()> {
    if kind == Kind::Jobs {
        return super::job::describe(client, name).await;
    }
    if kind != Kind::Services {
        bail!("only services and jobs can be described");
    }
    let svc: ServiceResponse = client.service(name, Consistency::Linearizable).await?;
    let replicas: ReplicaList = client.replicas(Consistency::Linearizable).await?;
    let o = &svc.service;
    println!("Name:        {}", o.spec.name);
    println!("Replicas:    {} desired", o.spec.replicas);
    println!(
        "Generation:  {} (created at revision {}, changed at {})",
        o.generation, o.create_revision, o.mod_revision
    );
    println!(
        "Rollout:     {}{}{}",
        o.rollout.state,
        if o.rollout.paused { " (paused)" } else { "" },
        match o.rollout.surge {
            0 => String::new(),
            n => format!(
                ", {n} surge slot(s) open (ordinals from {})",
                o.spec.replicas
            ),
        }
    );
    if let Some(reason) = &o.rollout.reason {
        println!("  {reason}");
    }
    println!("Spec:");
    for line in serde_norway::to_string(&o.spec)?.lines() {
        println!("  {line}");
    }
    println!("Replicas:");
    let mut t = Table::new(&["  REPLICA", "NODE", "STATE", "PID", "RESTARTS", "REASON"]);
    for r in replicas.items.iter().filter(|r| r.service == o.spec.name) {
        let seen = replicas.observed.get(&r.id());
        t.row(vec![
            format!("  {}", r.id()),
            r.node.clone(),
            seen.map_or("pending".into(), |s| s.state.to_string()),
            seen.and_then(|s| s.pid)
                .map_or("-".into(), |p| p.to_string()),
            seen.map_or("-".into(), |s| s.restarts.to_string()),
            seen.and_then(|s| s.reason.clone()).unwrap_or_default(),
        ]);
    }
    print!("{}", t.render());
    for u in replicas
        .unplaced
        .iter()
        .filter(|u| u.service == o.spec.name)
    {
        println!("  not placed: {u}");
    }
    print_hook_runs(&o.hooks);
    let events: Vec<orion_api::Event> = client
        .events(&EventQuery {
            resource: None,
            prefix: o.spec.name.clone(),
            limit: Some(20),
        })
        .await?;
    println!("Events:");
    for e in events
        .iter()
        .filter(|e| e.key == o.spec.name || e.key.starts_with(&format!("{}-", o.spec.name)))
    {
        println!(
            "  {:<12} {:<8} {} {}",
            e.cursor().to_string(),
            format!("{:?}", e.kind).to_lowercase(),
            e.resource,
            e.key
        );
    }
    Ok(())
}

/// The `Hook runs:` part of `describe service`, newest first (nothing without runs).
fn print_hook_runs(hooks: &orion_api::hook_run::HookRuns) {
    if hooks.runs.is_empty() {
        return;
    }
    println!("Hook runs:");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut t = Table::new(&[
        "  HOOK",
        "GENERATION",
        "ATTEMPT",
        "OUTCOME",
        "RESULT",
        "AGE",
        "TRIGGER",
        "OUTPUT",
    ]);
    for run in hooks.runs.iter().rev() {
        let result = match (run.exit_code, run.http_status) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(status)) => format!("HTTP {status}"),
            (None, None) => "-".into(),
        };
        let output = run.output.lines().last().unwrap_or_default().to_string();
        t.row(vec![
            format!("  {}", run.hook),
            run.generation.to_string(),
            run.attempt.to_string(),
            run.outcome.to_string(),
            result,
            crate::output::human_millis(now.saturating_sub(run.started_unix_ms)),
            run.trigger.clone(),
            output,
        ]);
    }
    print!("{}", t.render());
}

/// `--watch`: the list (unless `from` is given), then each change of that kind as it
/// happens, one per line (`-o json`: one event per line), until Ctrl-C. Survives peer
/// failures and falls back to a fresh list when away too long ([`crate::watch`]).
pub async fn watch_and_get(
    client: &Client,
    output: Output,
    kind: Kind,
    name: Option<String>,
    stale: bool,
    from: Option<orion_api::WatchStart>,
) -> anyhow::Result<()> {
    use crate::watch::Handler as _;
    let mut printer = ChangePrinter {
        client,
        output,
        kind,
        name: name.clone(),
        stale,
    };
    let start = match from {
        Some(start) => start,
        None => orion_api::WatchStart::Revision(printer.relist().await?.saturating_add(1)),
    };
    let prefix = name.unwrap_or_default();
    crate::watch::follow(client, &prefix, start, &mut printer).await
}

/// Prints the changes `get --watch` asked for.
struct ChangePrinter<'a> {
    client: &'a Client,
    output: Output,
    kind: Kind,
    name: Option<String>,
    stale: bool,
}

impl crate::watch::Handler for ChangePrinter<'_> {
    fn event(&mut self, e: &orion_api::Event) -> anyhow::Result<()> {
        let resource = match self.kind {
            Kind::Services => "Service",
            Kind::Nodes => "Node",
            Kind::Replicas => "Replica",
            Kind::Jobs => "Job",
        };
        if e.resource != resource || self.name.as_ref().is_some_and(|n| *n != e.key) {
            return Ok(());
        }
        match self.output {
            Output::Json => println!("{}", serde_json::to_string(e)?),
            Output::Yaml => print!("---\n{}", serde_norway::to_string(e)?),
            Output::Table | Output::Wide => println!(
                "{:<12} {:<7} {}/{}",
                e.cursor().to_string(),
                format!("{:?}", e.kind).to_lowercase(),
                e.resource.to_lowercase(),
                e.key
            ),
        }
        Ok(())
    }

    async fn relist(&mut self) -> anyhow::Result<u64> {
        get(
            self.client,
            self.output,
            self.kind,
            self.name.clone(),
            self.stale,
        )
        .await
    }
}
