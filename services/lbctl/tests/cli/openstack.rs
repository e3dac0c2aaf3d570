//! The openstack CLI (python-openstackclient with python-octaviaclient, from PyPI) against
//! `lbctl stack`'s Octavia v2 REST API, by admin token and by password through the stack's
//! minimal Keystone endpoint: the whole tenant flow with `--wait`
//! (create, listener, pool, members, health monitor, L7 policy and rule, set, list, status, stats,
//! failover, quota, provider, flavor, amphora, delete --cascade), real traffic through the VIP on
//! HAProxy, and the CLI's Neutron subnet lookups answered from the scheduler's networks.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The VIP network and the members' network (127.0.0.0/8 is all loopback).
const VIP_CIDR: &str = "127.0.203.0/24";
const MEMBER_CIDR: &str = "127.0.204.0/24";

struct StackProcess {
    child: Child,
    rest: String,
    scheduler: String,
    token: String,
    dir: std::path::PathBuf,
}

impl Drop for StackProcess {
    fn drop(&mut self) {
        // SIGINT: the stack stops its services and its HAProxy.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `lbctl stack` on free ports and reads the addresses it prints.
fn start_stack() -> StackProcess {
    let dir = std::env::temp_dir().join(format!("lbctl-openstack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .args(["stack", "--data-dir"])
        .arg(&dir)
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--scheduler-listen",
            "127.0.0.1:0",
            "--agent-listen",
            "127.0.0.1:0",
            "--rest-listen",
            "127.0.0.1:0",
            "--vip-cidr",
            "127.0.202.0/24",
            "--driver",
            "haproxy",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("lbctl stack starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut rest = String::new();
    let mut scheduler = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stack output");
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["REST", url, ..] => rest = (*url).to_owned(),
            ["scheduler", url, ..] => scheduler = (*url).to_owned(),
            _ => {}
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    assert!(
        !rest.is_empty() && !scheduler.is_empty(),
        "the stack printed its addresses"
    );
    let token = std::fs::read_to_string(dir.join("rest-token"))
        .expect("the stack keeps its REST token")
        .trim()
        .to_owned();
    StackProcess {
        child,
        rest,
        scheduler,
        token,
        dir,
    }
}

/// The openstack CLI: `LBAAS_OPENSTACK_CLI`, else `openstack` on the PATH (`.ci/run` installs it).
fn openstack_bin() -> String {
    std::env::var("LBAAS_OPENSTACK_CLI").unwrap_or_else(|_| "openstack".into())
}

impl StackProcess {
    /// One CLI call; its stdout, or the test fails with its stderr.
    fn os(&self, args: &[&str]) -> String {
        let out = Command::new(openstack_bin())
            .args(args)
            .env_remove("OS_CLOUD")
            .env("OS_AUTH_TYPE", "admin_token")
            .env("OS_ENDPOINT", &self.rest)
            .env("OS_TOKEN", &self.token)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): install python-openstackclient and python-octaviaclient (pip), as .ci/run does",
                    openstack_bin()
                )
            });
        assert!(
            out.status.success(),
            "openstack {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One CLI call authenticated by password through the stack's Keystone endpoint (user and
    /// project demo, the REST token as the password): its output and whether it succeeded.
    fn os_password(&self, password: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(openstack_bin())
            .args(args)
            .env_remove("OS_CLOUD")
            .env("OS_AUTH_TYPE", "password")
            .env("OS_AUTH_URL", format!("{}/v3", self.rest))
            .env("OS_USERNAME", "demo")
            .env("OS_PASSWORD", password)
            .env("OS_PROJECT_NAME", "demo")
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_IDENTITY_API_VERSION", "3")
            .output()
            .expect("the openstack CLI runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn os_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        let out = self.os(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn lbctl(&self, args: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_lbctl"))
            .args(["--scheduler", &self.scheduler])
            .args(args)
            .output()
            .expect("lbctl runs");
        assert!(
            out.status.success(),
            "lbctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A member: answers every HTTP request with its name.
fn member(address: &str, name: &'static str) -> u16 {
    let listener = TcpListener::bind((address, 0)).expect("member binds");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
            });
        }
    });
    port
}

/// One HTTP/1.0 GET: (status, body).
fn get(vip: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect((vip, 80)).expect("the VIP accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: lb\r\n\r\n").expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls until `f` holds (the CLI's `--wait` covers provisioning; health and stats come later).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

#[test]
#[ignore = "needs the openstack CLI (pip install python-openstackclient python-octaviaclient) and HAProxy; CI installs both and runs ignored tests"]
fn openstack_cli_drives_the_stack() {
    let stack = start_stack();
    stack.lbctl(&["lb", "network", "create", "public", "--cidr", VIP_CIDR]);
    stack.lbctl(&["lb", "network", "create", "members", "--cidr", MEMBER_CIDR]);
    let port_a = member("127.0.204.10", "member-a");
    let port_b = member("127.0.204.11", "member-b");

    // The subnet lookup goes through the REST face's Neutron answers.
    let subnets = stack.os_json(&["subnet", "list"]);
    assert!(
        subnets
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["Name"] == "public")),
        "{subnets}"
    );
    // An availability zone (lbctl defines it by device labels; the CLI lists it and creates in it).
    let amphorae = stack.os_json(&["loadbalancer", "amphora", "list"]);
    let ids: Vec<String> = amphorae
        .as_array()
        .map(|a| a.iter().map(|d| field(d, "id").to_owned()).collect())
        .unwrap_or_default();
    assert!(!ids.is_empty(), "{amphorae}");
    for id in &ids {
        stack.lbctl(&["lb", "device", "set", id, "--label", "room=one"]);
    }
    stack.lbctl(&[
        "lb",
        "availabilityzone",
        "create",
        "--name",
        "room-one",
        "--label",
        "room=one",
    ]);
    let zones = stack.os_json(&["loadbalancer", "availabilityzone", "list"]);
    assert_eq!(zones[0]["name"], "room-one", "{zones}");
    let zone = stack.os_json(&["loadbalancer", "availabilityzone", "show", "room-one"]);
    assert!(
        zone["enabled"] == true || zone["enabled"] == "True",
        "{zone}"
    );

    let lb = stack.os_json(&[
        "loadbalancer",
        "create",
        "--name",
        "web",
        "--vip-subnet-id",
        "public",
        "--availability-zone",
        "room-one",
        "--wait",
    ]);
    assert_eq!(field(&lb, "provisioning_status"), "ACTIVE", "{lb}");
    assert_eq!(field(&lb, "availability_zone"), "room-one", "{lb}");
    assert_eq!(field(&lb, "vip_subnet_id"), "public");
    let vip = field(&lb, "vip_address").to_owned();
    assert!(vip.starts_with("127.0.203."), "{vip}");

    let listener = stack.os_json(&[
        "loadbalancer",
        "listener",
        "create",
        "--name",
        "http",
        "--protocol",
        "HTTP",
        "--protocol-port",
        "80",
        "web",
        "--wait",
    ]);
    assert_eq!(field(&listener, "protocol"), "HTTP");
    let pool = stack.os_json(&[
        "loadbalancer",
        "pool",
        "create",
        "--name",
        "backends",
        "--protocol",
        "HTTP",
        "--lb-algorithm",
        "ROUND_ROBIN",
        "--listener",
        "http",
        "--wait",
    ]);
    assert_eq!(field(&pool, "lb_algorithm"), "ROUND_ROBIN");
    for (name, address, port) in [("a", "127.0.204.10", port_a), ("b", "127.0.204.11", port_b)] {
        let m = stack.os_json(&[
            "loadbalancer",
            "member",
            "create",
            "--name",
            name,
            "--address",
            address,
            "--protocol-port",
            &port.to_string(),
            "--subnet-id",
            "members",
            "backends",
            "--wait",
        ]);
        assert_eq!(field(&m, "provisioning_status"), "ACTIVE", "{m}");
    }
    let hm = stack.os_json(&[
        "loadbalancer",
        "healthmonitor",
        "create",
        "--name",
        "check",
        "--type",
        "HTTP",
        "--url-path",
        "/",
        "--delay",
        "1",
        "--timeout",
        "1",
        "--max-retries",
        "1",
        "backends",
        "--wait",
    ]);
    assert_eq!(field(&hm, "type"), "HTTP");
    let policy = stack.os_json(&[
        "loadbalancer",
        "l7policy",
        "create",
        "--name",
        "no-admin",
        "--action",
        "REJECT",
        "http",
        "--wait",
    ]);
    assert_eq!(field(&policy, "action"), "REJECT");
    let rule = stack.os_json(&[
        "loadbalancer",
        "l7rule",
        "create",
        "--type",
        "PATH",
        "--compare-type",
        "STARTS_WITH",
        "--value",
        "/admin",
        "no-admin",
        "--wait",
    ]);
    assert_eq!(field(&rule, "compare_type"), "STARTS_WITH");

    // Real traffic: both members answer in turn; the L7 rule rejects /admin.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (status, body) = get(&vip, "/");
        assert_eq!(status, 200, "{body}");
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "round robin over both members: {seen:?}");
    assert_eq!(get(&vip, "/admin/users").0, 403);

    // Set: member b drained by weight 0, then only a answers.
    stack.os(&[
        "loadbalancer",
        "member",
        "set",
        "--weight",
        "0",
        "backends",
        "b",
        "--wait",
    ]);
    for _ in 0..4 {
        assert_eq!(get(&vip, "/").1, "member-a");
    }
    stack.os(&[
        "loadbalancer",
        "set",
        "--description",
        "front door",
        "web",
        "--wait",
    ]);
    let shown = stack.os_json(&["loadbalancer", "show", "web"]);
    assert_eq!(field(&shown, "description"), "front door");

    // Lists resolve names on the server.
    let lbs = stack.os_json(&["loadbalancer", "list", "--name", "web"]);
    assert_eq!(lbs.as_array().map(Vec::len), Some(1), "{lbs}");
    let members = stack.os_json(&["loadbalancer", "member", "list", "backends"]);
    assert_eq!(members.as_array().map(Vec::len), Some(2), "{members}");

    // Status tree and stats, as the health and stats reports arrive.
    eventually("members ONLINE in the status tree", || {
        // `status show` prints JSON of its own (it takes no -f).
        let out = stack.os(&["loadbalancer", "status", "show", "web"]);
        let status: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let members = &status["loadbalancer"]["listeners"][0]["pools"][0]["members"];
        members
            .as_array()
            .is_some_and(|m| m.len() == 2 && m.iter().all(|m| m["operating_status"] == "ONLINE"))
    });
    eventually("connections counted in the stats", || {
        let stats = stack.os_json(&["loadbalancer", "stats", "show", "web"]);
        stats["total_connections"].as_u64().unwrap_or_default() > 0
    });
    let listener_stats = stack.os_json(&["loadbalancer", "listener", "stats", "show", "http"]);
    assert!(listener_stats.get("bytes_in").is_some(), "{listener_stats}");

    // Failover: rebuilt on its device, serving again.
    stack.os(&["loadbalancer", "failover", "web", "--wait"]);
    assert_eq!(get(&vip, "/").1, "member-a");

    // Quotas: set, shown, reset; defaults readable.
    stack.os(&[
        "loadbalancer",
        "quota",
        "set",
        "--loadbalancer",
        "5",
        "demo",
    ]);
    let quota = stack.os_json(&["loadbalancer", "quota", "show", "demo"]);
    assert_eq!(quota["load_balancer"], 5, "{quota}");
    stack.os(&["loadbalancer", "quota", "reset", "demo"]);
    let quota = stack.os_json(&["loadbalancer", "quota", "show", "demo"]);
    assert_eq!(quota["load_balancer"], -1, "{quota}");
    stack.os_json(&["loadbalancer", "quota", "defaults", "show"]);

    // Providers, flavors, amphorae.
    let providers = stack.os_json(&["loadbalancer", "provider", "list"]);
    assert_eq!(providers[0]["name"], "lbaas", "{providers}");
    let capabilities = stack.os_json(&["loadbalancer", "provider", "capability", "list", "lbaas"]);
    assert!(capabilities.as_array().is_some_and(|c| !c.is_empty()));
    stack.os_json(&["loadbalancer", "flavor", "list"]);
    let amphorae = stack.os_json(&["loadbalancer", "amphora", "list", "--loadbalancer", "web"]);
    assert_eq!(amphorae[0]["role"], "STANDALONE", "{amphorae}");

    // Bad input (the CLI checks ports itself, not addresses) is the API's 400, with the field named.
    let bad = Command::new(openstack_bin())
        .args([
            "loadbalancer",
            "member",
            "create",
            "--address",
            "300.1.2.3",
            "--protocol-port",
            "80",
            "backends",
        ])
        .env_remove("OS_CLOUD")
        .env("OS_AUTH_TYPE", "admin_token")
        .env("OS_ENDPOINT", &stack.rest)
        .env("OS_TOKEN", &stack.token)
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("address") && err.contains("400"), "{err}");

    // Password auth through the Keystone endpoint: a token, then the API through the catalog.
    let (ok, out) = stack.os_password(&stack.token, &["token", "issue", "-f", "json"]);
    assert!(ok, "{out}");
    let issued: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(issued["project_id"], "demo", "{issued}");
    let (ok, out) = stack.os_password(&stack.token, &["loadbalancer", "list", "-f", "json"]);
    assert!(ok && out.contains("\"web\""), "{out}");
    let (ok, out) = stack.os_password("wrong", &["loadbalancer", "list"]);
    assert!(!ok && out.contains("401"), "{out}");

    // Cascade delete, waited for.
    stack.os(&["loadbalancer", "delete", "--cascade", "--wait", "web"]);
    let lbs = stack.os_json(&["loadbalancer", "list"]);
    assert_eq!(lbs.as_array().map(Vec::len), Some(0), "{lbs}");
    assert!(
        TcpStream::connect((vip.as_str(), 80)).is_err(),
        "the VIP is gone"
    );
}
