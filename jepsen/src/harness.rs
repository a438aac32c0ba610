//! Running a scenario on fresh namespaces: the `orion` binary, a thread inside
//! the client namespace, and a runtime on it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::hosts::{self, Net};

/// The `orion` binary of the same build: next to this executable, or one folder
/// up (test executables live in `target/<profile>/deps/`).
pub fn orion_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("orion"))
        .collect::<Vec<_>>();
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => bail!("no orion binary at {candidates:?}; build the workspace first"),
    }
}

/// A single-threaded runtime for the client thread.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Creates `hosts` host namespaces and runs `f` on a thread inside the client
/// namespace; everything is torn down when it returns, also on panic. On failure
/// the error carries the tail of every log in `dir` (peers' and agents').
pub fn in_namespaces<T: Send + 'static>(
    hosts: usize,
    dir: &Path,
    f: impl FnOnce(&Net, &Path) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    if !hosts::available() {
        bail!("network namespaces need root and iproute2");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = dir.to_path_buf();
    let outcome = std::thread::spawn(move || {
        let net = Net::create(hosts)?;
        net.enter_client_ns()?;
        f(&net, &path)
    })
    .join();
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            files.sort();
            let mut logs = String::new();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                logs.push_str(&format!("\n--- {name} ---\n"));
                logs.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            Err(e.context(logs))
        }
        Err(_) => bail!("the scenario thread panicked"),
    }
}
