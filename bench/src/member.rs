//! One server process of a benchmark cluster (an Orion peer or an etcd member): how to
//! start it again after `kill -9`, and kill-on-drop so no run leaves processes behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

pub struct Member {
    /// The client URL (`https://127.0.0.1:port`).
    pub url: String,
    /// The program and its arguments, kept so a killed member restarts the same way.
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// Its stdout and stderr, appended to across restarts.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn new(program: &Path, args: Vec<String>, log: PathBuf) -> Self {
        Member {
            url: String::new(),
            program: program.to_path_buf(),
            args,
            envs: Vec::new(),
            log,
            child: None,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Drops an environment variable from the next [`Member::start`] on.
    pub fn remove_env(&mut self, key: &str) {
        self.envs.retain(|(k, _)| k != key);
    }

    /// Replaces the arguments used by the next [`Member::start`].
    pub fn set_args(&mut self, args: Vec<String>) {
        self.args = args;
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.url);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Fails if the process has exited, naming its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                anyhow::bail!(
                    "{} exited ({status}); see {}",
                    self.program.display(),
                    self.log.display()
                );
            }
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9`, as a machine crash would, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}
