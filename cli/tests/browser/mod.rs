//! A real headless Chromium for the dashboard's tests, driven over the W3C
//! WebDriver protocol through Debian's `chromedriver`.
//!
//! The WebDriver client is the dozen W3C commands these tests use, as JSON over
//! `reqwest` (already a test dependency). `fantoccini` was tried first: its
//! dependency tree (the `webdriver` crate, ICU, a second `http` and `cookie`)
//! changed the workspace's feature unification enough to rebuild RocksDB's C++
//! for every test build, which the suite's time budget cannot carry.
//!
//! The browser trusts the test cluster's CA through its own NSS database (in a
//! temp `HOME`), so TLS is verified as for any user; no certificate errors are
//! ignored. chromedriver runs in its own process group on a port the OS picked;
//! dropping [`Browser`] kills that group and every process that still names the
//! browser's profile folder, also when the test fails.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Desktop and phone viewport sizes of the screenshots.
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

/// A WebDriver session: the commands the tests use.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
}

/// The W3C key an element reference is sent under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Client {
    async fn call(
        http: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = http.request(method.clone(), url);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b)?);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let v: Value = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{method} {url}: not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if !status.is_success() {
            bail!(
                "{method} {url}: {status}: {} {}",
                v["value"]["error"].as_str().unwrap_or_default(),
                v["value"]["message"].as_str().unwrap_or_default()
            );
        }
        Ok(v["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        Self::call(
            &self.http,
            reqwest::Method::POST,
            &format!("{}{path}", self.session),
            Some(body),
        )
        .await
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.post("/url", json!({ "url": url })).await.map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Like [`Client::execute`]; the script calls its last argument with the result.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    async fn find(&self, css: &str) -> Result<String> {
        let v = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no element reference for {css}: {v}"))
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        let id = self.find(css).await?;
        self.post(&format!("/element/{id}/click"), json!({}))
            .await
            .map(|_| ())
    }

    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let id = self.find(css).await?;
        self.post(&format!("/element/{id}/clear"), json!({}))
            .await?;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await
            .map(|_| ())
    }

    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let v = Self::call(
            &self.http,
            reqwest::Method::GET,
            &format!("{}/screenshot", self.session),
            None,
        )
        .await?;
        let b64 = v
            .as_str()
            .ok_or_else(|| anyhow!("a screenshot is a string"))?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }

    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await
            .map(|_| ())
    }

    pub async fn close(&self) -> Result<()> {
        Self::call(&self.http, reqwest::Method::DELETE, &self.session, None)
            .await
            .map(|_| ())
    }
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    /// Holds the NSS db (`HOME`) and the browser profile; removed on drop.
    dir: tempfile::TempDir,
    profile: PathBuf,
    shots: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn certutil(args: &[&str]) -> Result<()> {
    let out = Command::new("certutil")
        .args(args)
        .output()
        .context("running certutil (Debian package libnss3-tools)")?;
    if !out.status.success() {
        bail!(
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session that trusts `ca_pem`.
    /// Screenshots go to `<target tmp>/ui-screenshots/<test>/`.
    pub async fn start(ca_pem: &str, test: &str) -> Result<Browser> {
        let dir = tempfile::tempdir()?;
        let home = dir.path().join("home");
        let nssdb = home.join(".pki").join("nssdb");
        std::fs::create_dir_all(&nssdb)?;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem)?;
        let db = format!("sql:{}", nssdb.display());
        certutil(&["-N", "-d", &db, "--empty-password"])?;
        certutil(&[
            "-A",
            "-d",
            &db,
            "-n",
            "orion-test-ca",
            "-t",
            "C,,",
            "-i",
            &ca.display().to_string(),
        ])?;
        let profile = dir.path().join("profile");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("ui-screenshots")
            .join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots)?;

        // chromedriver has no `--port=0`: take a port the OS picked, and retry if
        // another process took it in between.
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let log = std::fs::File::create(dir.path().join("chromedriver.log"))?;
            let mut driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .env("HOME", &home)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting {CHROMEDRIVER}"))?;
            match Self::connect(port, &profile, &mut driver).await {
                Ok(client) => {
                    return Ok(Browser {
                        client,
                        driver,
                        dir,
                        profile,
                        shots,
                    })
                }
                Err(e) => {
                    kill_group(&mut driver);
                    last_err = Some(e);
                }
            }
        }
        let log = std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default();
        Err(last_err
            .unwrap_or_else(|| anyhow::anyhow!("no attempt"))
            .context(format!("chromedriver did not start; its log:\n{log}")))
    }

    async fn connect(port: u16, profile: &Path, driver: &mut Child) -> Result<Client> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = driver.try_wait()? {
                bail!("chromedriver exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("chromedriver is not listening on {port} after 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // The tests run as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let created = Client::call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/session"),
            Some(json!({ "capabilities": { "alwaysMatch": caps } })),
        )
        .await
        .context("a WebDriver session with headless Chromium")?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {created}"))?;
        let client = Client {
            http,
            session: format!("{base}/session/{id}"),
        };
        Ok(client)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.client.execute(script, args).await
    }

    /// Waits until `script` returns something truthy; returns it. On timeout the
    /// error says what was awaited and what the page last showed.
    pub async fn wait_js(&self, what: &str, timeout: Duration, script: &str) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last: Value;
        loop {
            match self.client.execute(script, vec![]).await {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => last = v,
                Err(e) => last = Value::String(format!("script error: {e}")),
            }
            if Instant::now() > deadline {
                let text = self
                    .client
                    .execute("return document.body.innerText.slice(0, 3000)", vec![])
                    .await
                    .unwrap_or_default();
                let shot = self.shot(&format!("timeout-{}", slug(what))).await;
                bail!(
                    "waited {timeout:?} for {what}; last value {last}; screenshot {shot:?}; page:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element; tries again (a few times) if the page redrew it
    /// between finding and clicking.
    pub async fn click(&self, css: &str) -> Result<()> {
        let mut tries = 0;
        loop {
            match self.client.click(css).await {
                Ok(()) => return Ok(()),
                Err(e) if tries >= 5 => return Err(e.context(format!("clicking {css}"))),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        self.client
            .type_into(css, text)
            .await
            .with_context(|| format!("typing into {css}"))
    }

    /// Saves a screenshot of the current page as `<name>.png`; returns its path.
    pub async fn shot(&self, name: &str) -> Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Screenshots of the current page in light and dark, at desktop and phone
    /// widths: `<name>-<theme>-<desktop|phone>.png`. Puts the theme and size back.
    pub async fn shots(&self, name: &str) -> Result<()> {
        for (size, w, hgt) in [
            ("desktop", DESKTOP.0, DESKTOP.1),
            ("phone", PHONE.0, PHONE.1),
        ] {
            self.client.set_window_size(w, hgt).await?;
            for theme in ["light", "dark"] {
                self.js(
                    "document.documentElement.dataset.theme = arguments[0]; return true",
                    vec![json!(theme)],
                )
                .await?;
                // Two frames, so the new theme and width are painted.
                self.client
                    .execute_async(
                        "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)))",
                        vec![],
                    )
                    .await?;
                self.shot(&format!("{name}-{theme}-{size}")).await?;
            }
        }
        self.js(
            "delete document.documentElement.dataset.theme; return true",
            vec![],
        )
        .await?;
        self.client.set_window_size(DESKTOP.0, DESKTOP.1).await?;
        Ok(())
    }

    pub fn screenshot_dir(&self) -> &Path {
        &self.shots
    }

    /// Ends the WebDriver session, then the driver and every browser process.
    pub async fn quit(mut self) -> Result<()> {
        let client = self.client.clone();
        let closed = client.close().await;
        kill_group(&mut self.driver);
        kill_profile_processes(&self.profile);
        closed?;
        Ok(())
    }

    /// Processes still running with this browser's profile (none after drop).
    pub fn profile(&self) -> PathBuf {
        self.profile.clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
        kill_profile_processes(&self.profile);
    }
}

fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Pids of processes whose command line names `profile` (the browser and its
/// helpers, whichever process group they ended up in).
pub fn profile_processes(profile: &Path) -> Vec<i32> {
    let needle = profile.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

fn kill_profile_processes(profile: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = profile_processes(profile);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect()
}
