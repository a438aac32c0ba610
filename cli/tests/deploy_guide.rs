//! `deploy/README.md`, run as written: every ```sh block, in order, as root on the
//! machine its first line names (`# on ctl-1`, or several names).
//!
//! Each machine is a network namespace with the guide's address (10.0.0.x on one
//! bridge, as `orion-jepsen` builds its hosts) and a mount namespace of its own, in
//! which `/etc`, `/var/lib`, `/usr/local`, `/root` and `/run` are overlays on the
//! real ones: `useradd`, `install … /usr/local/bin/orion`, `/etc/orion/server.toml`
//! and `/var/lib/orion` are the machine's, and the real filesystem is untouched.
//!
//! Two programs the guide uses need a stand-in, because namespaces have no systemd
//! and no ssh; both are small scripts placed in `/usr/local/sbin` of every machine:
//! - `systemctl daemon-reload` checks every installed unit with `systemd-analyze
//!   verify`; `systemctl start` (or `enable --now`) starts a unit's `ExecStart=` as its `User=`, with its
//!   `Environment=`/`EnvironmentFile=`, `StateDirectory=` and `UMask=`, read from
//!   the unit file the guide installed (or Debian's, for `haproxy`), detached, its
//!   output in `/var/lib/systemctl-shim/<unit>.log`;
//! - `scp HOST:FILE FILE` and `scp FILE HOST:FILE` copy between the machines'
//!   filesystems (`nsenter` into the other machine's mount namespace).
//!
//! At the end a service applied through the load balancer runs on the worker.
//! Dropping the lab kills everything running in the namespaces and removes them,
//! also when the test fails.

mod fixture;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orion_launch::netns::{self, Bridge};

/// The machines of the guide: name, address, a short tag for veth names.
const MACHINES: [(&str, &str, &str); 6] = [
    ("lb", "10.0.0.10", "lb"),
    ("ctl-1", "10.0.0.11", "c1"),
    ("ctl-2", "10.0.0.12", "c2"),
    ("ctl-3", "10.0.0.13", "c3"),
    ("worker-1", "10.0.0.21", "w1"),
    ("admin", "10.0.0.5", "ad"),
];
/// The folders each machine has of its own.
const PRIVATE: [&str; 5] = ["/etc", "/var/lib", "/usr/local", "/root", "/run"];
/// The longest one block may take (it waits for peers with its own `timeout 60`).
const BLOCK_DEADLINE: Duration = Duration::from_secs(240);
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One ```sh block of the guide and the machines it runs on.
#[derive(Debug)]
struct Block {
    line: usize,
    machines: Vec<String>,
    script: String,
}

fn repo() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.join("..")
}

/// The guide's blocks. Every `sh` block must name its machines: a block the test
/// would skip is a step nobody checks.
fn blocks(guide: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = guide.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| l.trim() != "```")
            .collect();
        let first = body.first().copied().unwrap_or_default();
        let Some(names) = first.strip_prefix("# on ") else {
            panic!(
                "deploy/README.md:{}: a sh block must start with `# on <machine>…`",
                n + 2
            );
        };
        let machines: Vec<String> = names.split_whitespace().map(str::to_string).collect();
        for m in &machines {
            assert!(
                MACHINES.iter().any(|(name, _, _)| name == m),
                "deploy/README.md:{}: no machine {m:?} in the guide's table",
                n + 2
            );
        }
        out.push(Block {
            line: n + 1,
            machines,
            script: body[1..].join("\n") + "\n",
        });
    }
    out
}

/// One machine: its namespaces, kept alive by a holder process, and the folder of
/// its overlays.
struct Machine {
    holder: Child,
    dir: PathBuf,
}

/// The machines, on one bridge. Field order is drop order: the bridge first (it
/// kills what runs in the namespaces and removes them), then the folders.
struct Lab {
    #[allow(dead_code)] // held for its Drop
    bridge: Bridge,
    machines: BTreeMap<String, Machine>,
    /// The folder the guide's blocks run in: the `orion` binary and `deploy/`.
    release: PathBuf,
    #[allow(dead_code)] // held for its Drop
    dir: tempfile::TempDir,
}

impl Lab {
    fn create() -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bridge =
            Bridge::create(&format!("od{}", std::process::id()), 24).expect("bridge namespace");
        let mut machines = BTreeMap::new();
        for (name, ip, tag) in MACHINES {
            let host = bridge.attach(name, tag, ip).expect("machine namespace");
            let root = dir.path().join(name);
            let mut mounts = String::new();
            for folder in PRIVATE {
                let key = folder.trim_start_matches('/').replace('/', "-");
                let (upper, work) = (root.join(&key).join("upper"), root.join(&key).join("work"));
                std::fs::create_dir_all(&upper).expect("overlay upper");
                std::fs::create_dir_all(&work).expect("overlay work");
                mounts += &format!(
                    "mount -t overlay overlay -o lowerdir={folder},upperdir={},workdir={} {folder} && ",
                    upper.display(),
                    work.display()
                );
            }
            let mut holder = bridge
                .command(&host.ns, "unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(format!("{mounts}echo ready && exec sleep infinity"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start the machine's holder");
            let mut ready = String::new();
            let stdout = holder.stdout.take().expect("holder stdout");
            BufReader::new(stdout)
                .read_line(&mut ready)
                .expect("holder output");
            assert_eq!(ready.trim(), "ready", "mounting {name}'s overlays failed");
            machines.insert(name.to_string(), Machine { holder, dir: root });
        }
        let release = dir.path().join("release");
        std::fs::create_dir_all(&release).expect("release folder");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_orion"), release.join("orion"))
            .expect("link the binary");
        std::os::unix::fs::symlink(repo().join("deploy"), release.join("deploy"))
            .expect("link deploy/");
        let lab = Lab {
            bridge,
            machines,
            release,
            dir,
        };
        lab.install_stand_ins();
        lab
    }

    fn pid(&self, machine: &str) -> u32 {
        self.machines[machine].holder.id()
    }

    /// Writes `systemctl` and `scp` into every machine's `/usr/local/sbin`.
    fn install_stand_ins(&self) {
        let table: String = self
            .machines
            .keys()
            .map(|m| format!("        {m}) echo {} ;;\n", self.pid(m)))
            .collect();
        let scp = SCP.replace("@TABLE@", &table);
        for name in self.machines.keys() {
            for (program, text) in [("systemctl", SYSTEMCTL), ("scp", scp.as_str())] {
                let path = Path::new("/usr/local/sbin").join(program);
                self.write(name, &path, text, 0o755);
            }
        }
    }

    /// Writes a file inside a machine's mount namespace.
    fn write(&self, machine: &str, path: &Path, text: &str, mode: u32) {
        let mut child = self
            .enter(machine)
            .args([
                "sh",
                "-c",
                "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\" && chmod \"$2\" \"$1\"",
                "sh",
            ])
            .arg(path)
            .arg(format!("{mode:o}"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("nsenter");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        assert!(
            child.wait().expect("wait").success(),
            "writing {path:?} on {machine}"
        );
    }

    /// A command in the machine's network and mount namespaces, run from the
    /// release folder, as root with a clean environment.
    fn enter(&self, machine: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.pid(machine).to_string())
            .args(["-m", "-n"])
            .arg(format!("--wd={}", self.release.display()))
            .args(["--", "env", "-i", "HOME=/root", "LANG=C.UTF-8", "USER=root"])
            .arg(format!("PATH={PATH}"));
        c
    }

    /// Runs one script on a machine; returns (success, stdout, stderr).
    fn run(&self, machine: &str, script: &str) -> (bool, String, String) {
        let mut child = self
            .enter(machine)
            .args(["bash", "-euo", "pipefail", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter");
        let out = read_all(child.stdout.take());
        let err = read_all(child.stderr.take());
        let deadline = Instant::now() + BLOCK_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (out, mut err) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        if status.is_none() {
            err += &format!("\n(killed after {BLOCK_DEADLINE:?})");
        }
        (status.is_some_and(|s| s.success()), out, err)
    }

    /// The log of a unit started by the stand-in `systemctl`, read from the
    /// machine's overlay.
    fn unit_log(&self, machine: &str, unit: &str) -> String {
        let path = self.machines[machine]
            .dir
            .join("var-lib/upper/systemctl-shim")
            .join(format!("{unit}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn dump_unit_logs(&self) {
        for (machine, unit) in [
            ("ctl-1", "orion-server"),
            ("ctl-2", "orion-server"),
            ("ctl-3", "orion-server"),
            ("worker-1", "orion-agent"),
            ("lb", "haproxy"),
        ] {
            let log = self.unit_log(machine, unit);
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "----- {unit} on {machine} (last {} lines) -----",
                tail.len()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_unit_logs();
        }
        // The bridge kills the holders with everything else in the namespaces.
        for m in self.machines.values_mut() {
            let _ = m.holder.kill();
            let _ = m.holder.wait();
        }
    }
}

#[test]
fn the_deploy_guide_runs_as_written_on_fresh_machines() {
    if !netns::available() {
        panic!("this test needs root and iproute2 (network namespaces)");
    }
    let guide = std::fs::read_to_string(repo().join("deploy/README.md")).expect("read the guide");
    let blocks = blocks(&guide);
    assert!(blocks.len() >= 8, "the guide has its steps: {blocks:?}");
    let lab = Lab::create();
    for block in &blocks {
        for machine in &block.machines {
            let (ok, out, err) = lab.run(machine, &block.script);
            assert!(
                ok,
                "deploy/README.md:{} on {machine} failed:\n{}\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
                block.line, block.script
            );
        }
    }

    // The service the guide applied runs on the worker: two replicas, up.
    let (ok, out, err) = lab.run("admin", "orion get replicas web");
    assert!(ok, "get replicas: {err}");
    let running = out
        .lines()
        .filter(|l| l.contains("worker-1") && (l.contains("running") || l.contains("healthy")))
        .count();
    assert_eq!(running, 2, "two replicas of web run on worker-1:\n{out}");
    // Every peer answers through the load balancer's name, and none logged an
    // error an operator would have to act on.
    let (ok, out, err) = lab.run("admin", "orion cluster members");
    assert!(ok && out.matches(" voter ").count() == 3, "{out}{err}");
    for machine in ["ctl-1", "ctl-2", "ctl-3"] {
        let log = lab.unit_log(machine, "orion-server");
        let errors = fixture::unexpected_errors(&log, &[]);
        assert!(errors.is_empty(), "ERROR lines on {machine}: {errors:#?}");
    }
}

/// systemd's own score of the units' sandboxing (0 is the best, 100 the worst):
/// the peer needs nothing but its data directory and sockets; the agent is looser,
/// because its replicas inherit its restrictions.
#[test]
fn the_units_are_hardened_by_systemds_own_measure() {
    for (unit, threshold) in [("orion-server", 20), ("orion-agent", 50)] {
        let path = repo().join("deploy").join(format!("{unit}.service"));
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(format!("--threshold={threshold}"))
            .arg(&path)
            .output()
            .expect("run systemd-analyze");
        let text = String::from_utf8_lossy(&out.stdout);
        let overall = text.lines().last().unwrap_or_default().to_string();
        eprintln!("{unit}: {overall}");
        assert!(
            out.status.success(),
            "{unit}'s exposure is above {threshold}/100: {overall}\n{text}"
        );
    }
}

/// Reads a child's pipe to its end on a thread of its own (so neither pipe can
/// fill up and stall the child while the other is read).
fn read_all(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = pipe {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

/// The `systemctl` stand-in (see the module docs).
const SYSTEMCTL: &str = r#"#!/bin/bash
# systemctl stand-in for cli/tests/deploy_guide.rs: these namespaces have no systemd.
set -euo pipefail
state=/var/lib/systemctl-shim
mkdir -p "$state"
unit_file() {
    for d in /etc/systemd/system /lib/systemd/system; do
        if [ -f "$d/$1.service" ]; then echo "$d/$1.service"; return; fi
    done
    echo "Unit $1.service not found." >&2
    exit 5
}
key() { sed -n "s/^$1=//p" "$2"; }
running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
start() {
    local unit=$1 file
    file=$(unit_file "$unit")
    if running "$unit"; then return 0; fi
    (
        while read -r envfile; do
            optional=${envfile#-}
            if [ -f "$optional" ]; then set -a; . "$optional"; set +a
            elif [ "$optional" = "$envfile" ]; then echo "$envfile missing" >&2; exit 1; fi
        done < <(key EnvironmentFile "$file")
        while read -r env; do eval "export $env"; done < <(key Environment "$file")
        user=$(key User "$file" | tail -n 1)
        mode=$(key StateDirectoryMode "$file" | tail -n 1)
        for d in $(key StateDirectory "$file"); do
            mkdir -p "/var/lib/$d"
            if [ -n "$user" ]; then chown "$user:" "/var/lib/$d"; fi
            chmod "${mode:-0755}" "/var/lib/$d"
        done
        umask_value=$(key UMask "$file" | tail -n 1)
        if [ -n "$umask_value" ]; then umask "$umask_value"; fi
        command=$(key ExecStart "$file" | tail -n 1)
        as=""
        if [ -n "$user" ]; then as="setpriv --reuid=$user --regid=$user --init-groups --"; fi
        eval "exec setsid $as $command" >>"$state/$unit.log" 2>&1 </dev/null
    ) &
    echo $! >"$state/$unit.pid"
}
stop() {
    local unit=$1
    if ! running "$unit"; then return 0; fi
    local pid
    pid=$(cat "$state/$unit.pid")
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid"
}
now=false
args=()
for a in "$@"; do
    case "$a" in --now) now=true ;; -*) ;; *) args+=("$a") ;; esac
done
verb=${args[0]:-}
units=("${args[@]:1}")
case "$verb" in
    # What systemd would refuse to load fails here too.
    daemon-reload) for f in /etc/systemd/system/*.service; do [ -f "$f" ] && systemd-analyze verify "$f"; done ;;
    enable) if $now; then for u in "${units[@]}"; do start "${u%.service}"; done; fi ;;
    start) for u in "${units[@]}"; do start "${u%.service}"; done ;;
    stop) for u in "${units[@]}"; do stop "${u%.service}"; done ;;
    restart) for u in "${units[@]}"; do stop "${u%.service}"; start "${u%.service}"; done ;;
    disable) if $now; then for u in "${units[@]}"; do stop "${u%.service}"; done; fi ;;
    is-active) running "${units[0]%.service}" && echo active || { echo inactive; exit 3; } ;;
    *) echo "systemctl stand-in: $verb is not supported" >&2; exit 1 ;;
esac
"#;

/// The `scp` stand-in; `@TABLE@` becomes the machines' holder pids.
const SCP: &str = r#"#!/bin/bash
# scp stand-in for cli/tests/deploy_guide.rs: copies between the machines' mount namespaces.
set -euo pipefail
pid_of() {
    case "$1" in
@TABLE@        *) echo "scp: no machine $1" >&2; exit 1 ;;
    esac
}
[ $# -eq 2 ] || { echo "usage: scp HOST:FILE FILE | scp FILE HOST:FILE" >&2; exit 1; }
src=$1 dst=$2
if [[ $src == *:* ]]; then
    nsenter -t "$(pid_of "${src%%:*}")" -m cat "${src#*:}" >"$dst"
elif [[ $dst == *:* ]]; then
    nsenter -t "$(pid_of "${dst%%:*}")" -m sh -c 'cat >"$1"' sh "${dst#*:}" <"$src"
else
    cp "$src" "$dst"
fi
"#;
