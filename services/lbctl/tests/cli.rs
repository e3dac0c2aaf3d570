//! End to end: the real api, scheduler and agent (noop driver) on 127.0.0.1:0 with SQLite in a
//! temporary directory, driven only through the built `lbctl` binary: every object kind created,
//! listed and shown in table, JSON and YAML, changed with `--wait`, a field violation reported,
//! and the load balancer deleted with `--cascade --wait`. Then the operator commands against the
//! scheduler's provider API: devices, flavors, networks, agents, providers and placement explained.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "cli/openstack.rs"]
mod openstack;

use std::{net::SocketAddr, path::PathBuf, process::Output, time::Duration};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

const ADMIN_TOKEN: &str = "admin-secret";
/// A member's token: the tenant API takes it, the provider API does not.
const MEMBER_TOKEN: &str = "member-secret";

struct Stack {
    api: SocketAddr,
    scheduler: SocketAddr,
    dir: PathBuf,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn wait_serving(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            if let Ok(answer) = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                && answer.get_ref().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Stack {
    async fn start() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("lbctl-e2e-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = dir.join("tokens");
        std::fs::write(
            &tokens,
            format!("{ADMIN_TOKEN} ops admin\n{MEMBER_TOKEN} someone member\n"),
        )
        .unwrap();
        let secret_key = dir.join("secret.key");
        std::fs::write(&secret_key, lbaas_api::certs::SecretKey::generate_hex()).unwrap();
        let sqlite = |name: &str| format!("sqlite://{}", dir.join(name).display());

        let scheduler_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agent_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheduler = scheduler_listener.local_addr().unwrap();
        let api = api_listener.local_addr().unwrap();
        let agent = agent_listener.local_addr().unwrap();

        let scheduler_config = lbaas_scheduler::SchedulerConfig {
            listen: scheduler,
            database_url: sqlite("scheduler.db"),
            strategy: "least-loaded".into(),
            heartbeat_interval_ms: 200,
            agent_timeout_ms: 2000,
            failover_max_down_share: 0.5,
            placement_seed: 0,
            fleet_refresh_ms: 200,
            token_file: Some(tokens.clone()),
            metrics_listen: None,
            jwt: Default::default(),
            tls: lbaas::server::tls::TlsConfig::plaintext(),
        };
        let api_config = lbaas_api::ApiConfig {
            rest_listen: None,
            rest_keystone: false,
            listen: api,
            database_url: sqlite("api.db"),
            scheduler_url: format!("http://{scheduler}"),
            token_file: Some(tokens),
            metrics_listen: None,
            allow_project_header: true,
            deploy_deadline_ms: 30_000,
            reconcile_interval_ms: 500,
            reserved_ips: vec![std::net::IpAddr::from([169, 254, 169, 254])],
            access_log_format: lbaas_api::store::OCTAVIA_TENANT_LOG_FORMAT.into(),
            quota_load_balancers: -1,
            quota_listeners: -1,
            quota_pools: -1,
            quota_members: -1,
            quota_health_monitors: -1,
            quota_l7_policies: -1,
            quota_l7_rules: -1,
            secret_key_file: Some(secret_key),
            jwt: Default::default(),
            tls: lbaas::server::tls::TlsConfig::plaintext(),
        };
        let agent_config = lbaas_agent::AgentConfig {
            agent_id: "lbctl-e2e".into(),
            listen: agent,
            scheduler_url: format!("http://{scheduler}"),
            advertise_url: None,
            driver: "noop".into(),
            devices: 1,
            capacity: 10,
            vip_cidr: "127.0.201.0/24".into(),
            state_dir: dir.join("agent"),
            haproxy_bin: "haproxy".into(),
            dataplane_bin: None,
            dataplane_command: vec![env!("CARGO_BIN_EXE_lbctl").into(), "dataplane".into()],
            noop_apply_delay_ms: 300,
            health_interval_ms: 100,
            stats_interval_ms: 500,
            stop_data_plane_on_exit: true,
            metrics_listen: None,
            network: Default::default(),
            tls: lbaas::server::tls::TlsConfig::plaintext(),
        };
        let (stop, rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(lbaas_scheduler::run(
                scheduler_config,
                scheduler_listener,
                stopped(rx.clone()),
            )),
            tokio::spawn(lbaas_api::run(
                api_config,
                api_listener,
                stopped(rx.clone()),
            )),
            tokio::spawn(lbaas_agent::run(agent_config, agent_listener, stopped(rx))),
        ];
        for addr in [scheduler, api, agent] {
            wait_serving(addr).await;
        }
        // The agent's device must be registered before a load balancer can be placed.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{scheduler}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut devices =
            lbaas::scheduler::v1::device_service_client::DeviceServiceClient::new(channel);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut request =
                tonic::Request::new(lbaas::scheduler::v1::ListDevicesRequest::default());
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
            );
            if devices
                .list_devices(request)
                .await
                .is_ok_and(|r| !r.get_ref().devices.is_empty())
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no device registered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            api,
            scheduler,
            dir,
            stop,
            tasks,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await
                .expect("service task panicked")
                .expect("service exited with an error");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one run of lbctl did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The command failed with `error: CODE: ...` on stderr, and stderr holds each of `lines`
    /// (field violations, as lbctl prints them) as a whole line.
    fn assert_refused(&self, code: &str, lines: &[&str]) {
        assert!(!self.ok, "{}", self.stdout);
        assert!(
            self.stderr.starts_with(&format!("error: {code}: ")),
            "{}",
            self.stderr
        );
        for want in lines {
            assert!(
                self.stderr.lines().any(|l| l == *want),
                "{want:?} missing from:\n{}",
                self.stderr
            );
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

struct Cli {
    api: String,
    scheduler: String,
    project: String,
}

impl Cli {
    async fn run_with(&self, extra: &[&str], args: &[&str]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lbctl"));
        command
            .arg("--api")
            .arg(&self.api)
            .arg("--scheduler")
            .arg(&self.scheduler)
            .arg("--project")
            .arg(&self.project)
            .args(extra)
            .args(args)
            .env_remove("LBAAS_TOKEN")
            .env_remove("LBAAS_SCHEDULER_URL")
            .kill_on_drop(true);
        let Output {
            status,
            stdout,
            stderr,
        } = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .unwrap_or_else(|_| panic!("lbctl {args:?} hung"))
            .unwrap();
        Run {
            ok: status.success(),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(&[], args).await
    }

    /// Runs and expects success.
    async fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args).await;
        assert!(
            run.ok,
            "lbctl {args:?} failed\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run
    }

    /// Runs with the admin token and expects success.
    async fn admin(&self, args: &[&str]) -> Run {
        let run = self.run_with(&["--token", ADMIN_TOKEN], args).await;
        assert!(
            run.ok,
            "lbctl --token ADMIN {args:?} failed\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run
    }
}

fn write_temp(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lbctl_manages_every_object_kind() {
    let stack = Stack::start().await;
    let cli = Cli {
        api: format!("http://{}", stack.api),
        scheduler: format!("http://{}", stack.scheduler),
        project: format!("lbctl{}", std::process::id()),
    };

    // A load balancer, waited for; JSON with enum names and proto field names.
    let run = cli
        .ok(&[
            "loadbalancer",
            "create",
            "--name",
            "web",
            "--tag",
            "e2e",
            "--wait",
            "-o",
            "json",
        ])
        .await;
    let lb = run.json();
    assert_eq!(lb["name"], "web");
    assert_eq!(lb["provisioning_status"], "ACTIVE");
    assert_eq!(lb["operating_status"], "ONLINE");
    assert_eq!(lb["tags"], serde_json::json!(["e2e"]));
    let lb_id = lb["id"].as_str().unwrap().to_owned();
    assert!(run.stderr.contains("PENDING_CREATE"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("load balancer {lb_id} is ACTIVE after")),
        "{}",
        run.stderr
    );

    // A listener (parent by name), with openstack's options.
    let listener = cli
        .ok(&[
            "loadbalancer",
            "listener",
            "create",
            "--protocol",
            "HTTP",
            "--protocol-port",
            "8080",
            "--name",
            "l1",
            "--insert-headers",
            "X-Forwarded-For=true,X-Forwarded-Proto=true",
            "--allowed-cidr",
            "10.0.0.0/8",
            "--timeout-client-data",
            "5000",
            "--wait",
            "web",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(listener["protocol"], "HTTP");
    assert_eq!(listener["protocol_port"], 8080);
    assert_eq!(listener["loadbalancer_id"], lb_id.as_str());
    assert_eq!(listener["provisioning_status"], "ACTIVE");
    assert_eq!(listener["allowed_cidrs"], serde_json::json!(["10.0.0.0/8"]));
    assert_eq!(listener["timeout_client_data_ms"], 5000);
    assert_eq!(
        listener["insert_headers"],
        serde_json::json!({"X-Forwarded-For": "true", "X-Forwarded-Proto": "true"})
    );
    let listener_id = listener["id"].as_str().unwrap().to_owned();

    // Its default pool, by listener name only (the load balancer is the listener's).
    let pool = cli
        .ok(&[
            "lb",
            "pool",
            "create",
            "--name",
            "p1",
            "--protocol",
            "HTTP",
            "--lb-algorithm",
            "ROUND_ROBIN",
            "--listener",
            "l1",
            "--session-persistence",
            "type=APP_COOKIE,cookie_name=JSESSIONID",
            "--wait",
            "-f",
            "json",
        ])
        .await
        .json();
    assert_eq!(pool["lb_algorithm"], "ROUND_ROBIN");
    assert_eq!(pool["listener_id"], listener_id.as_str());
    assert_eq!(pool["loadbalancer_id"], lb_id.as_str());
    assert_eq!(
        pool["session_persistence"],
        serde_json::json!({"type": "APP_COOKIE", "cookie_name": "JSESSIONID"})
    );

    // TLS options to members (openstack's --alpn-protocol, --tls-version, --tls-ciphers), and
    // unset back to the default.
    let secure = cli
        .ok(&[
            "lb",
            "pool",
            "create",
            "--name",
            "p-tls",
            "--protocol",
            "HTTP",
            "--lb-algorithm",
            "ROUND_ROBIN",
            "--loadbalancer",
            "web",
            "--enable-tls",
            "--alpn-protocol",
            "h2",
            "--alpn-protocol",
            "http/1.1",
            "--tls-version",
            "TLSv1.3",
            "--tls-ciphers",
            "TLS_AES_128_GCM_SHA256",
            "--wait",
            "-f",
            "json",
        ])
        .await
        .json();
    assert_eq!(
        secure["alpn_protocols"],
        serde_json::json!(["h2", "http/1.1"])
    );
    assert_eq!(secure["tls_versions"], serde_json::json!(["TLSv1.3"]));
    assert_eq!(secure["tls_ciphers"], "TLS_AES_128_GCM_SHA256");
    cli.ok(&["lb", "pool", "unset", "--tls-ciphers", "--wait", "p-tls"])
        .await;
    let secure = cli
        .ok(&["lb", "pool", "show", "p-tls", "-f", "json"])
        .await
        .json();
    assert_eq!(secure["tls_ciphers"], lbaas::tls_options::DEFAULT_CIPHERS);
    assert_eq!(secure["tls_versions"], serde_json::json!(["TLSv1.3"]));
    cli.ok(&["lb", "pool", "delete", "--wait", "p-tls"]).await;

    // Members: the pool comes last, as in openstack.
    let member = cli
        .ok(&[
            "lb",
            "member",
            "create",
            "--address",
            "127.0.0.1",
            "--protocol-port",
            "8001",
            "--name",
            "m1",
            "--weight",
            "3",
            "--wait",
            "p1",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(member["address"], "127.0.0.1");
    assert_eq!(member["weight"], 3);
    assert_eq!(member["provisioning_status"], "ACTIVE");
    cli.ok(&[
        "lb",
        "member",
        "create",
        "--address",
        "127.0.0.2",
        "--protocol-port",
        "8001",
        "--backup",
        "p1",
    ])
    .await;

    let monitor = cli
        .ok(&[
            "lb",
            "healthmonitor",
            "create",
            "--type",
            "HTTP",
            "--delay",
            "5",
            "--timeout",
            "3",
            "--max-retries",
            "2",
            "--url-path",
            "/health",
            "--expected-codes",
            "200-204",
            "--name",
            "hm1",
            "--wait",
            "p1",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(monitor["type"], "HTTP");
    assert_eq!(monitor["url_path"], "/health");
    assert_eq!(monitor["loadbalancer_id"], lb_id.as_str());

    // L7: a second pool, a policy sending /api there, and its rule.
    cli.ok(&[
        "lb",
        "pool",
        "create",
        "--name",
        "p2",
        "--protocol",
        "HTTP",
        "--lb-algorithm",
        "LEAST_CONNECTIONS",
        "--loadbalancer",
        "web",
    ])
    .await;
    let policy = cli
        .ok(&[
            "lb",
            "l7policy",
            "create",
            "--action",
            "REDIRECT_TO_POOL",
            "--redirect-pool",
            "p2",
            "--name",
            "api",
            "--wait",
            "l1",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(policy["action"], "REDIRECT_TO_POOL");
    assert_eq!(policy["position"], 1);
    let rule = cli
        .ok(&[
            "lb",
            "l7rule",
            "create",
            "--type",
            "PATH",
            "--compare-type",
            "STARTS_WITH",
            "--value",
            "/api",
            "--wait",
            "api",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(rule["type"], "PATH");
    assert_eq!(rule["compare_type"], "STARTS_WITH");
    assert_eq!(rule["invert"], false);
    let rule_id = rule["id"].as_str().unwrap().to_owned();

    // A certificate, and a TERMINATED_HTTPS listener serving it.
    let key = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let cert_file = write_temp(&stack.dir, "cert.pem", &key.cert.pem());
    let key_file = write_temp(&stack.dir, "key.pem", &key.signing_key.serialize_pem());
    let cert = cli
        .ok(&[
            "certificate",
            "create",
            "--certificate-file",
            &cert_file,
            "--private-key-file",
            &key_file,
            "--name",
            "x",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(cert["subject_names"], serde_json::json!(["x"]));
    assert!(cert.get("private_key_pem").is_none());
    let cert_id = cert["id"].as_str().unwrap().to_owned();
    let tls = cli
        .ok(&[
            "lb",
            "listener",
            "create",
            "--protocol",
            "TERMINATED_HTTPS",
            "--protocol-port",
            "8443",
            "--default-tls-container-ref",
            &cert_id,
            "--hsts-max-age",
            "600",
            "--hsts-preload",
            "--wait",
            &lb_id,
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(tls["protocol"], "TERMINATED_HTTPS");
    assert_eq!(tls["default_tls_container_ref"], cert_id.as_str());
    assert_eq!(
        (
            &tls["hsts_max_age"],
            &tls["hsts_include_subdomains"],
            &tls["hsts_preload"]
        ),
        (
            &serde_json::json!(600),
            &serde_json::json!(false),
            &serde_json::json!(true)
        )
    );
    // Lists filtered and ordered on any attribute; what is not one is refused with the field.
    let only_tls = cli
        .ok(&[
            "lb",
            "listener",
            "list",
            "--filter",
            "protocol=TERMINATED_HTTPS",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(only_tls.as_array().unwrap().len(), 1, "{only_tls}");
    assert_eq!(only_tls[0]["protocol_port"], 8443);
    let sorted = cli
        .ok(&[
            "lb",
            "listener",
            "list",
            "--sort",
            "protocol_port:desc",
            "-o",
            "json",
        ])
        .await
        .json();
    let ports: Vec<i64> = sorted
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["protocol_port"].as_i64().unwrap())
        .collect();
    assert!(
        ports.len() > 1 && ports.windows(2).all(|w| w[0] >= w[1]),
        "{ports:?}"
    );
    cli.run(&["lb", "listener", "list", "--filter", "nope=1"])
        .await
        .assert_refused(
            "INVALID_ARGUMENT",
            &["  filter.equals: \"nope\" is not an attribute of Listener to filter or order on"],
        );
    let certs = cli.ok(&["certificate", "list"]).await.stdout;
    assert!(
        certs.contains("| id ") && certs.contains(&cert_id),
        "{certs}"
    );

    // Lists and shows: tables by default, JSON and YAML on request.
    let table = cli.ok(&["loadbalancer", "list"]).await.stdout;
    let header = table.lines().nth(1).unwrap();
    assert_eq!(
        header
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>(),
        [
            "id",
            "name",
            "project_id",
            "vip_address",
            "provisioning_status",
            "operating_status",
            "flavor"
        ]
    );
    assert!(
        table.contains(&lb_id) && table.contains("| web "),
        "{table}"
    );
    let show = cli.ok(&["lb", "show", "web"]).await.stdout;
    assert!(show.starts_with("+--"), "{show}");
    assert!(show.contains("| Field "), "{show}");
    assert!(
        show.lines()
            .any(|l| l.starts_with("| provisioning_status ") && l.contains("| ACTIVE ")),
        "{show}"
    );
    let members = cli.ok(&["lb", "member", "list", "p1"]).await.stdout;
    assert!(
        members.contains("| 127.0.0.1 ") && members.contains("| 127.0.0.2 "),
        "{members}"
    );
    let listeners = cli
        .ok(&[
            "lb",
            "listener",
            "list",
            "--loadbalancer",
            "web",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(listeners.as_array().unwrap().len(), 2);
    let yaml = cli
        .ok(&["lb", "pool", "show", "p1", "-o", "yaml"])
        .await
        .stdout;
    assert!(
        yaml.contains("\nsession_persistence:\n  type: APP_COOKIE\n  cookie_name: JSESSIONID\n"),
        "{yaml}"
    );
    assert!(yaml.contains("\nprotocol: HTTP\n"), "{yaml}");
    let yaml = cli
        .ok(&["lb", "l7rule", "list", "api", "-o", "yaml"])
        .await
        .stdout;
    assert!(yaml.starts_with(&format!("- id: {rule_id}\n")), "{yaml}");
    assert!(yaml.contains("\n  value: /api\n"), "{yaml}");
    let value = cli
        .ok(&["lb", "show", "web", "-f", "value", "-c", "vip_address"])
        .await
        .stdout;
    assert!(value.trim().parse::<std::net::IpAddr>().is_ok(), "{value}");
    let tree = cli
        .ok(&["lb", "status", "show", "web", "-o", "json"])
        .await
        .json();
    assert_eq!(tree["load_balancer"]["provisioning_status"], "ACTIVE");
    assert_eq!(tree["listeners"].as_array().unwrap().len(), 2);
    let stats = cli
        .ok(&["lb", "stats", "show", "web", "-o", "json"])
        .await
        .json();
    assert!(stats["bytes_in"].is_u64());

    // Changes with --wait: only the given fields change.
    let run = cli
        .ok(&["lb", "member", "set", "--weight", "7", "--wait", "p1", "m1"])
        .await;
    assert!(run.stdout.is_empty(), "set prints nothing unless asked");
    assert!(run.stderr.contains("PENDING_UPDATE"), "{}", run.stderr);
    assert!(run.stderr.contains("is ACTIVE after"), "{}", run.stderr);
    let member = cli
        .ok(&["lb", "member", "show", "p1", "m1", "-o", "json"])
        .await
        .json();
    assert_eq!(member["weight"], 7);
    assert_eq!(member["name"], "m1");
    assert_eq!(member["provisioning_status"], "ACTIVE");
    let lb = cli
        .ok(&[
            "lb",
            "set",
            "--name",
            "web2",
            "--tag",
            "more",
            "--access-log-target",
            "udp://127.0.0.1:5140",
            "--wait",
            "web",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(lb["name"], "web2");
    assert_eq!(lb["access_log_target"], "udp://127.0.0.1:5140");
    cli.run(&["lb", "set", "--access-log-target", "syslog://x", "web2"])
        .await
        .assert_refused(
            "INVALID_ARGUMENT",
            &["  load_balancer.access_log_target: must be udp://ADDRESS:PORT or tcp://ADDRESS:PORT"],
        );
    let lb = cli
        .ok(&[
            "lb",
            "unset",
            "--access-log-target",
            "--wait",
            "web2",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(lb["access_log_target"], "");
    assert_eq!(lb["tags"], serde_json::json!(["e2e", "more"]));
    assert_eq!(lb["provisioning_status"], "ACTIVE");
    let listener = cli
        .ok(&[
            "lb",
            "listener",
            "unset",
            "--insert-headers",
            "--wait",
            "l1",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(listener["insert_headers"], serde_json::json!({}));
    assert_eq!(listener["allowed_cidrs"], serde_json::json!(["10.0.0.0/8"]));
    let rule = cli
        .ok(&[
            "lb", "l7rule", "set", "--invert", "api", &rule_id, "-o", "json",
        ])
        .await
        .json();
    assert_eq!(rule["invert"], true);
    assert_eq!(rule["value"], "/api");

    // Quotas: read as the project, set as an admin.
    let quota = cli.ok(&["lb", "quota", "show", "-o", "json"]).await.json();
    assert_eq!(quota["load_balancers"], -1);
    let denied = cli
        .run(&["lb", "quota", "set", "--loadbalancer", "5", &cli.project])
        .await;
    assert!(!denied.ok);
    assert!(
        denied.stderr.starts_with("error: PERMISSION_DENIED: "),
        "{}",
        denied.stderr
    );
    let set = cli
        .run_with(
            &["--token", ADMIN_TOKEN],
            &[
                "lb",
                "quota",
                "set",
                "--loadbalancer",
                "5",
                &cli.project,
                "-o",
                "json",
            ],
        )
        .await;
    assert!(set.ok, "{}", set.stderr);
    assert_eq!(set.json()["load_balancers"], 5);
    assert_eq!(set.json()["pools"], -1);

    // A bad request: the gRPC code, then each field violation on a line of its own.
    let bad = cli
        .run(&[
            "lb",
            "member",
            "create",
            "--address",
            "not-an-ip",
            "--protocol-port",
            "70000",
            "p1",
        ])
        .await;
    bad.assert_refused(
        "INVALID_ARGUMENT",
        &[
            "  member.address: is not an IP address",
            "  member.protocol_port: must be between 1 and 65535",
        ],
    );
    assert!(bad.stdout.is_empty());
    let missing = cli.run(&["lb", "show", "nope"]).await;
    assert!(!missing.ok);
    assert!(missing.stderr.starts_with("error: "), "{}", missing.stderr);

    // A non-empty load balancer needs --cascade; with it, --wait follows it until it is gone.
    let refused = cli.run(&["lb", "delete", "web2"]).await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.starts_with("error: FAILED_PRECONDITION: "),
        "{}",
        refused.stderr
    );
    let run = cli
        .ok(&["lb", "delete", "--cascade", "--wait", "web2"])
        .await;
    assert!(
        run.stderr
            .contains(&format!("load balancer {lb_id} is deleted after")),
        "{}",
        run.stderr
    );
    let left = cli.ok(&["lb", "list", "-o", "json"]).await.json();
    assert_eq!(left, serde_json::json!([]));
    cli.ok(&["certificate", "delete", "x"]).await;
    assert_eq!(
        cli.ok(&["certificate", "list", "-o", "yaml"]).await.stdout,
        "[]\n"
    );

    stack.stop().await;
}

/// The cells of a table's header row.
fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The one element of a JSON array whose `key` is `value`.
fn find<'a>(list: &'a serde_json::Value, key: &str, value: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|v| v[key] == value)
        .unwrap_or_else(|| panic!("no {key} {value} in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lbctl_operates_the_provider_api() {
    let stack = Stack::start().await;
    let cli = Cli {
        api: format!("http://{}", stack.api),
        scheduler: format!("http://{}", stack.scheduler),
        project: format!("ops{}", std::process::id()),
    };

    // The provider API is the admin's: no token, or a member's, is refused.
    let anonymous = cli.run(&["lb", "device", "list"]).await;
    assert!(!anonymous.ok);
    assert!(anonymous.stdout.is_empty(), "{}", anonymous.stdout);
    assert!(
        anonymous.stderr.starts_with("error: UNAUTHENTICATED: "),
        "{}",
        anonymous.stderr
    );
    let member = cli
        .run_with(&["--token", MEMBER_TOKEN], &["lb", "flavor", "list"])
        .await;
    assert!(!member.ok);
    assert!(
        member.stderr.starts_with("error: PERMISSION_DENIED: ")
            && member.stderr.trim_end().ends_with("needs the admin role"),
        "{}",
        member.stderr
    );

    // Devices: the agent's one, as JSON and in a table (alias amphora).
    let devices = cli
        .admin(&["lb", "device", "list", "-o", "json"])
        .await
        .json();
    let device = find(&devices, "agent_id", "lbctl-e2e").clone();
    let device_id = device["id"].as_str().unwrap().to_owned();
    assert_eq!(device["driver"], "noop");
    assert_eq!(device["state"], "ACTIVE");
    assert_eq!(device["capacity"], 10);
    assert_eq!(device["load"], 0);
    assert_eq!(device["vip_cidr"], "127.0.201.0/24");
    let table = cli.admin(&["lb", "amphora", "list"]).await.stdout;
    assert_eq!(
        header(&table),
        [
            "id", "agent_id", "driver", "state", "load", "capacity", "vip_cidr"
        ]
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("| {device_id} ")) && l.contains("| ACTIVE ")),
        "{table}"
    );
    let mine = cli
        .admin(&["lb", "device", "list", "--agent", "nobody", "-o", "json"])
        .await
        .json();
    assert_eq!(mine, serde_json::json!([]));

    // device set: only what is given changes; read back.
    let run = cli
        .admin(&[
            "lb",
            "device",
            "set",
            "--capacity",
            "20",
            "--label",
            "tier=gold",
            &device_id,
        ])
        .await;
    assert!(run.stdout.is_empty(), "set prints nothing unless asked");
    let shown = cli
        .admin(&["lb", "device", "show", &device_id, "-o", "json"])
        .await
        .json();
    assert_eq!(shown["capacity"], 20);
    assert_eq!(shown["labels"], serde_json::json!({"tier": "gold"}));
    assert_eq!(shown["state"], "ACTIVE");
    assert_eq!(shown["driver"], "noop");
    let capacity = cli
        .admin(&[
            "lb", "device", "show", &device_id, "-f", "value", "-c", "capacity",
        ])
        .await
        .stdout;
    assert_eq!(capacity, "20\n");
    let nothing = cli
        .run_with(
            &["--token", ADMIN_TOKEN],
            &["lb", "device", "set", &device_id],
        )
        .await;
    assert!(!nothing.ok);
    assert!(
        nothing.stderr.contains("nothing to change"),
        "{}",
        nothing.stderr
    );
    let missing = cli
        .run_with(
            &["--token", ADMIN_TOKEN],
            &["lb", "device", "delete", "nope"],
        )
        .await;
    assert!(!missing.ok);
    assert!(
        missing.stderr.starts_with("error: NOT_FOUND: ") && missing.stderr.contains("nope"),
        "{}",
        missing.stderr
    );

    // Flavors: one the device fits, one it does not, and a bad one.
    let flavor = cli
        .admin(&[
            "lb",
            "flavor",
            "create",
            "--name",
            "gold",
            "--description",
            "the gold devices",
            "--driver",
            "noop",
            "--strategy",
            "least-loaded",
            "--required-label",
            "tier=gold",
            "--device-kind",
            "virtual",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(
        flavor,
        serde_json::json!({
            "name": "gold",
            "description": "the gold devices",
            "driver": "noop",
            "strategy": "least-loaded",
            "required_labels": {"tier": "gold"},
            "device_kind": "VIRTUAL",
            "on_demand": false,
            "on_demand_capacity": 0,
            "topology": "SINGLE",
        })
    );
    cli.admin(&[
        "lb",
        "flavor",
        "create",
        "--name",
        "platinum",
        "--required-label",
        "tier=platinum",
    ])
    .await;
    let bad = cli
        .run_with(
            &["--token", ADMIN_TOKEN],
            &[
                "lb",
                "flavor",
                "create",
                "--name",
                "no good",
                "--strategy",
                "fastest",
            ],
        )
        .await;
    bad.assert_refused(
        "INVALID_ARGUMENT",
        &["  service_type.name: must be 1-64 letters, digits, '-' or '_'"],
    );
    assert!(
        bad.stderr
            .lines()
            .any(|l| l.starts_with("  service_type.strategy: unknown weigher \"fastest\"")),
        "{}",
        bad.stderr
    );
    let show = cli.admin(&["lb", "flavor", "show", "gold"]).await.stdout;
    assert!(show.contains("| Field "), "{show}");
    for (field, value) in [
        ("driver", "noop"),
        ("device_kind", "VIRTUAL"),
        ("required_labels", "tier=gold"),
        ("strategy", "least-loaded"),
    ] {
        assert!(
            show.lines().any(
                |l| l.starts_with(&format!("| {field} ")) && l.contains(&format!("| {value} "))
            ),
            "{field}: {show}"
        );
    }
    let flavors = cli
        .admin(&["lb", "flavor", "list", "-o", "json"])
        .await
        .json();
    assert_eq!(flavors.as_array().unwrap().len(), 2, "{flavors}");
    assert_eq!(find(&flavors, "name", "gold")["driver"], "noop");
    assert_eq!(
        find(&flavors, "name", "platinum")["required_labels"],
        serde_json::json!({"tier": "platinum"})
    );
    let table = cli.admin(&["lb", "flavor", "list"]).await.stdout;
    assert_eq!(
        header(&table),
        [
            "name",
            "driver",
            "strategy",
            "device_kind",
            "required_labels",
            "on_demand"
        ]
    );

    // Placement explained: gold goes to the device, platinum nowhere, and why.
    let explained = cli
        .admin(&["lb", "explain", "--flavor", "gold", "-o", "json"])
        .await
        .json();
    assert_eq!(explained["chosen_device_id"], device_id.as_str());
    assert_eq!(explained["strategy"], "load");
    let candidate = find(&explained["candidates"], "device_id", &device_id);
    assert_eq!(candidate["eligible"], true);
    assert!(candidate["score"].is_f64(), "{candidate}");
    assert_eq!(candidate["weights"][0]["weigher"], "load");
    let table = cli
        .admin(&["lb", "explain", "--flavor", "gold", "--project", "p1"])
        .await
        .stdout;
    assert!(
        table.starts_with("project p1 strategy load (seed "),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("| * ") && l.contains(&format!("| {device_id} "))),
        "{table}"
    );
    assert!(
        table.contains(&format!("\nchosen {device_id}: ")),
        "{table}"
    );
    let refused = cli
        .admin(&["lb", "explain", "--flavor", "platinum", "-o", "json"])
        .await
        .json();
    assert_eq!(refused["chosen_device_id"], "");
    let candidate = find(&refused["candidates"], "device_id", &device_id);
    assert_eq!(candidate["eligible"], false);
    assert_eq!(candidate["rejected_by"], "labels");
    assert_eq!(candidate["reason"], "label tier=platinum missing");
    let table = cli
        .admin(&["lb", "explain", "--flavor", "platinum"])
        .await
        .stdout;
    assert!(
        table.lines().any(|l| l.contains(&format!("| {device_id} "))
            && l.contains("| labels ")
            && l.contains("| label tier=platinum missing ")),
        "{table}"
    );
    assert!(table.contains("\nno device fits: "), "{table}");
    let unknown = cli
        .run_with(
            &["--token", ADMIN_TOKEN],
            &["lb", "explain", "--flavor", "nope"],
        )
        .await;
    unknown.assert_refused(
        "INVALID_ARGUMENT",
        &["  flavor: no service type is named \"nope\""],
    );

    // A tenant's load balancer on the flavor: placed on the device, which now carries it.
    let lb = cli
        .ok(&[
            "lb", "create", "--name", "fast", "--flavor", "gold", "--wait", "-o", "json",
        ])
        .await
        .json();
    assert_eq!(lb["provisioning_status"], "ACTIVE");
    assert_eq!(lb["flavor"], "gold");
    let vip: std::net::Ipv4Addr = lb["vip_address"].as_str().unwrap().parse().unwrap();
    assert_eq!(vip.octets()[..3], [127, 0, 201]);
    let load = cli
        .admin(&[
            "lb", "device", "show", &device_id, "-f", "value", "-c", "load",
        ])
        .await
        .stdout;
    assert_eq!(load, "1\n");
    // Resize to a flavor no device can take: refused with the reason, nothing changed.
    let resize = cli
        .run(&["lb", "set", "--flavor", "platinum", "fast"])
        .await;
    assert!(
        !resize.ok
            && resize.stderr.starts_with("error: FAILED_PRECONDITION: ")
            && resize.stderr.contains("label tier=platinum missing"),
        "{}",
        resize.stderr
    );
    let kept = cli.ok(&["lb", "show", "fast", "-o", "json"]).await.json();
    assert_eq!(
        (&kept["flavor"], &kept["provisioning_status"]),
        (&serde_json::json!("gold"), &serde_json::json!("ACTIVE"))
    );

    // Networks.
    let network = cli
        .admin(&[
            "lb",
            "network",
            "create",
            "--cidr",
            "127.0.230.7/24",
            "blue",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(
        network,
        serde_json::json!({
            "name": "blue",
            "cidr": "127.0.230.0/24",
            "gateway": "",
            "allocation_start": "127.0.230.1",
            "allocation_end": "127.0.230.254",
        })
    );
    let table = cli.admin(&["lb", "network", "list"]).await.stdout;
    assert_eq!(
        header(&table),
        [
            "name",
            "cidr",
            "gateway",
            "allocation_start",
            "allocation_end"
        ]
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("| blue | 127.0.230.0/24 |")),
        "{table}"
    );
    let taken = cli
        .run_with(
            &["--token", ADMIN_TOKEN],
            &["lb", "network", "create", "--cidr", "10.0.0.0/8", "blue"],
        )
        .await;
    assert!(
        !taken.ok && taken.stderr.starts_with("error: ALREADY_EXISTS: "),
        "{}",
        taken.stderr
    );
    cli.admin(&["lb", "network", "delete", "blue"]).await;
    let networks = cli
        .admin(&["lb", "network", "list", "-o", "json"])
        .await
        .json();
    assert!(
        !networks
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "blue"),
        "{networks}"
    );

    // Agents and providers.
    let agents = cli
        .admin(&["lb", "agent", "list", "-o", "json"])
        .await
        .json();
    assert_eq!(agents["failover_held"], false);
    let agent = find(&agents["agents"], "id", "lbctl-e2e");
    assert_eq!(agent["alive"], true);
    assert_eq!(agent["device_ids"], serde_json::json!([device_id]));
    assert_eq!(agent["drivers"], serde_json::json!(["noop"]));
    assert!(agent["silent_for_ms"].as_i64().unwrap() < 2000, "{agent}");
    let table = cli.admin(&["lb", "agent", "list"]).await.stdout;
    assert_eq!(
        header(&table),
        [
            "id",
            "address",
            "alive",
            "silent_for_ms",
            "device_ids",
            "drivers"
        ]
    );
    assert!(
        table.lines().any(|l| l.starts_with("| lbctl-e2e ")
            && l.contains("| True ")
            && l.contains(&format!("| {device_id} "))
            && l.contains("| noop ")),
        "{table}"
    );
    assert!(
        table.lines().last().unwrap().starts_with("failover: armed"),
        "{table}"
    );
    let providers = cli
        .admin(&["lb", "provider", "list", "-o", "json"])
        .await
        .json();
    let noop = find(&providers, "name", "noop");
    assert_eq!(noop["agents"], serde_json::json!(["lbctl-e2e"]));
    assert_eq!(noop["devices"], serde_json::json!([device_id]));
    let mut capabilities: Vec<&str> = device["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    capabilities.sort_unstable();
    assert!(capabilities.contains(&"protocol:HTTP"), "{capabilities:?}");
    assert_eq!(noop["capabilities"], serde_json::json!(capabilities));
    let table = cli.admin(&["lb", "provider", "list"]).await.stdout;
    assert_eq!(header(&table), ["name", "agents", "devices"]);
    assert!(
        table.lines().any(|l| l.starts_with("| noop ")
            && l.contains("| lbctl-e2e ")
            && l.contains(&format!("| {device_id} "))),
        "{table}"
    );
    let table = cli
        .admin(&["lb", "provider", "capability", "list", "noop"])
        .await
        .stdout;
    assert_eq!(header(&table), ["name", "devices"]);
    for capability in &capabilities {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("| {capability} "))
                    && l.contains(&format!("| {device_id} "))),
            "{capability}: {table}"
        );
    }
    let none = cli
        .run_with(
            &["--token", ADMIN_TOKEN],
            &["lb", "provider", "capability", "list", "octavia"],
        )
        .await;
    assert!(!none.ok);
    assert_eq!(
        none.stderr.trim_end(),
        "error: no live agent runs the provider \"octavia\" (providers: noop)"
    );

    // Each side connects only to its own service.
    let apart = Cli {
        scheduler: "http://127.0.0.1:1".into(),
        ..cli
    };
    let listed = apart.ok(&["lb", "list", "-o", "json"]).await.json();
    assert_eq!(listed[0]["name"], "fast");
    let unreachable = apart
        .run_with(&["--token", ADMIN_TOKEN], &["lb", "agent", "list"])
        .await;
    assert!(!unreachable.ok);
    assert!(
        unreachable
            .stderr
            .starts_with("error: cannot reach the scheduler at http://127.0.0.1:1"),
        "{}",
        unreachable.stderr
    );
    let cli = Cli {
        scheduler: format!("http://{}", stack.scheduler),
        ..apart
    };

    // Clean up: the load balancer leaves the device, then the flavors go.
    cli.ok(&["lb", "delete", "--wait", "fast"]).await;
    let load = cli
        .admin(&[
            "lb", "device", "show", &device_id, "-f", "value", "-c", "load",
        ])
        .await
        .stdout;
    assert_eq!(load, "0\n");
    cli.admin(&["lb", "flavor", "delete", "gold"]).await;
    cli.admin(&["lb", "flavor", "delete", "platinum"]).await;
    assert_eq!(
        cli.admin(&["lb", "flavor", "list", "-o", "yaml"])
            .await
            .stdout,
        "[]\n"
    );
    let gone = cli
        .run_with(&["--token", ADMIN_TOKEN], &["lb", "flavor", "show", "gold"])
        .await;
    assert!(
        !gone.ok && gone.stderr.starts_with("error: NOT_FOUND: "),
        "{}",
        gone.stderr
    );

    stack.stop().await;
}
