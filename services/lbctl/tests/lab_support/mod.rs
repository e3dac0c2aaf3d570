//! A lab (`lbctl lab up`) driven from a test or a bench: started as a child process, used through
//! `lbctl` itself (the commands a person types), inspected with `ip -n`, and removed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const LBCTL: &str = env!("CARGO_BIN_EXE_lbctl");

pub struct Lab {
    pub id: u8,
    pub hosts: u32,
    pub api: String,
    pub scheduler: String,
    child: Option<Child>,
    pub dir: tempdir::Dir,
}

pub mod tempdir {
    /// A folder removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs a command; its stdout, or a panic with everything it said.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespaces of lab `id` that exist now.
pub fn namespaces(id: u8) -> Vec<String> {
    run("ip", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("lbl{id}-")))
        .map(str::to_owned)
        .collect()
}

impl Lab {
    /// `lbctl lab up` with `hosts` device hosts running `driver`; returns once it prints `ready`.
    pub fn up(id: u8, hosts: u32, driver: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lbaas-lab-{id}-{}", std::process::id()));
        let mut child = Command::new(LBCTL)
            .args([
                "lab",
                "up",
                "--id",
                &id.to_string(),
                "--hosts",
                &hosts.to_string(),
                "--driver",
                driver,
                "--data-dir",
                &dir.display().to_string(),
                "--api-listen",
                "127.0.0.1:0",
                "--scheduler-port",
                "0",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("lbctl lab up");
        let stdout = child.stdout.take().unwrap();
        let mut api = String::new();
        let mut scheduler = String::new();
        let mut said = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            said.push(line.clone());
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["api", url, ..] => api = (*url).to_owned(),
                ["scheduler", url, ..] => scheduler = (*url).to_owned(),
                ["ready"] => break,
                _ => {}
            }
        }
        // What the lab says later (on its way down) goes to the test's output.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("lab: {line}");
            }
        });
        assert!(
            !api.is_empty() && !scheduler.is_empty(),
            "lab {id} did not come up:\n{}",
            said.join("\n")
        );
        Self {
            id,
            hosts,
            api,
            scheduler,
            child: Some(child),
            dir: tempdir::Dir(dir),
        }
    }

    /// `lbctl` against this lab's api and scheduler.
    pub fn lbctl(&self, args: &[&str]) -> String {
        let mut all = vec!["--api", &self.api, "--scheduler", &self.scheduler];
        all.extend_from_slice(args);
        run(LBCTL, &all)
    }

    /// `lbctl` that must fail: what it printed on stderr.
    pub fn lbctl_fails(&self, args: &[&str]) -> String {
        let mut all = vec!["--api", &self.api, "--scheduler", &self.scheduler];
        all.extend_from_slice(args);
        let out = Command::new(LBCTL).args(&all).output().unwrap();
        assert!(
            !out.status.success(),
            "lbctl {} succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Where a load balancer is placed: (MASTER's agent, BACKUP's agent or "").
    pub fn placement(&self, lb: &str) -> (String, String) {
        let p = self.lbctl_json(&["lb", "placement", lb]);
        let devices = p["devices"].as_array().unwrap();
        let agent = |role: &str| {
            devices
                .iter()
                .find(|d| d["role"] == role)
                .map(|d| d["agent_id"].as_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        (agent("MASTER"), agent("BACKUP"))
    }

    /// `show table` from the HAProxy of host `host` (its runtime API, through socat).
    pub fn haproxy_tables(&self, host: u32) -> String {
        let device = format!("lbl{}-h{host}-haproxy-0", self.id);
        let socket = self
            .dir
            .0
            .join(format!("h{host}"))
            .join(&device)
            .join("stats.sock");
        let out = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "echo 'show table' | ip netns exec {} socat stdio {}",
                    self.host_ns(host),
                    socket.display()
                ),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether keepalived runs in host `host`'s namespace.
    pub fn runs_keepalived(&self, host: u32) -> bool {
        let pids = run("ip", &["netns", "pids", &self.host_ns(host)]);
        pids.split_whitespace().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "keepalived")
        })
    }

    /// Creates the flavor `pair`: ACTIVE_STANDBY.
    pub fn create_pair_flavor(&self) {
        self.lbctl(&[
            "lb",
            "flavor",
            "create",
            "--name",
            "pair",
            "--topology",
            "ACTIVE_STANDBY",
        ]);
    }

    /// `lbctl ... -o json`, parsed.
    pub fn lbctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-o", "json"]);
        let out = self.lbctl(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    pub fn host_ns(&self, host: u32) -> String {
        format!("lbl{}-h{host}", self.id)
    }

    pub fn client_ns(&self) -> String {
        format!("lbl{}-client", self.id)
    }

    /// The tenant's member backends (`lbctl lab serve`), as ADDRESS:PORT.
    pub fn members(&self) -> Vec<String> {
        let octet = 100 + u32::from(self.id);
        vec![
            format!("10.{octet}.2.201:8080"),
            format!("10.{octet}.2.202:8080"),
        ]
    }

    /// The same members on IPv6, as [ADDRESS]:PORT.
    pub fn members6(&self) -> Vec<String> {
        let octet = 100 + u32::from(self.id);
        vec![
            format!("[fd00:{octet:x}:2::201]:8080"),
            format!("[fd00:{octet:x}:2::202]:8080"),
        ]
    }

    /// The MAC address of `dev` in namespace `ns`.
    pub fn mac(&self, ns: &str, dev: &str) -> String {
        let out = run("ip", &["-n", ns, "-o", "link", "show", "dev", dev]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC in {out}"))
            .to_owned()
    }

    /// The link-layer address the client's neighbour table has for `ip` (empty if none).
    pub fn client_neighbour(&self, ip: &str) -> String {
        let out = run("ip", &["-n", &self.client_ns(), "neigh", "show", ip]);
        out.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }

    /// The hosts whose VIP interface holds `vip` (as a /32 or /128 of its own).
    pub fn hosts_holding(&self, vip: &str) -> Vec<u32> {
        (1..=self.hosts)
            .filter(|h| {
                Command::new("ip")
                    .args(["-n", &self.host_ns(*h), "-o", "addr", "show", "dev", "vip"])
                    .output()
                    .is_ok_and(|o| {
                        let text = String::from_utf8_lossy(&o.stdout);
                        text.contains(&format!(" {vip}/32 "))
                            || text.contains(&format!(" {vip}/128 "))
                    })
            })
            .collect()
    }

    /// Waits (up to 10 s) until exactly `expected` hold `vip`.
    pub fn wait_holders(&self, vip: &str, expected: &[u32]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.hosts_holding(vip);
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{vip} is held by hosts {now:?}, not {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `lbctl lab get URL --json` from the client namespace.
    pub fn get_from_client(&self, url: &str, deadline_ms: u64) -> serde_json::Value {
        let out = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.client_ns(),
                LBCTL,
                "lab",
                "get",
                url,
                "--json",
                "--deadline-ms",
                &deadline_ms.to_string(),
                // A SYN to a dead host is lost, not refused: retry often, for a fine measure.
                "--attempt-ms",
                "100",
            ],
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Creates an HTTP load balancer on the lab's VIP network in front of both members and waits
    /// for it to be ACTIVE; returns (id, VIP).
    pub fn create_web(&self, name: &str, extra: &[&str]) -> (String, String) {
        let members = self.members();
        let mut args = vec![
            "lb",
            "create",
            name,
            "--vip-network-id",
            "lab-vip",
            "--listener",
            "HTTP:80",
            "--member",
            &members[0],
            "--member",
            &members[1],
            "--wait",
        ];
        args.extend_from_slice(extra);
        let lb = self.lbctl_json(&args);
        assert_eq!(lb["provisioning_status"], "ACTIVE", "{lb}");
        (
            lb["id"].as_str().unwrap().to_owned(),
            lb["vip_address"].as_str().unwrap().to_owned(),
        )
    }

    /// Kills device host `host` (`lbctl lab kill-host`).
    pub fn kill_host(&self, host: u32) {
        run(
            LBCTL,
            &[
                "lab",
                "kill-host",
                "--id",
                &self.id.to_string(),
                &host.to_string(),
            ],
        );
    }

    /// Stops the lab as Ctrl-C does and checks it removed everything it made.
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            run("kill", &["-TERM", &child.id().to_string()]);
            let status = child.wait().unwrap();
            assert!(status.success(), "lab {} exited with {status}", self.id);
        }
        assert!(
            namespaces(self.id).is_empty(),
            "lab {} left {:?}",
            self.id,
            namespaces(self.id)
        );
    }

    /// Kills the lab's own process as a crash would (its namespaces stay behind).
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(LBCTL)
            .args(["lab", "down", "--id", &self.id.to_string()])
            .output();
    }
}
