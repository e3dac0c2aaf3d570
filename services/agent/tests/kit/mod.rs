//! A real agent process with the native driver, its `lbaas-dataplane`, an HTTP member and wrk:
//! what the data plane process tests and the restart benchmark drive.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lbaas::agent::v1::{
    Algorithm, ApplyPhase, ApplyRequest, ListenerConfig, ListenerProtocol, LoadBalancerConfig,
    MemberConfig, PoolConfig, agent_service_client::AgentServiceClient,
};

pub const AGENT_ID: &str = "dp-drill";
pub const DEVICE: &str = "dp-drill-native-0";

/// An HTTP/1.1 member (keep-alive) answering `ok` to everything; serves until the process ends.
pub async fn member() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(hyper::body::Bytes::from_static(b"ok\n")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A VIP of 127.0.0.0/8 of its own and a free port on it.
pub fn vip() -> SocketAddr {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let ip = std::net::Ipv4Addr::new(127, 89, bytes[0], bytes[1].max(1));
    let probe = std::net::TcpListener::bind((ip, 0)).unwrap();
    probe.local_addr().unwrap()
}

pub fn config(vip: SocketAddr, member: SocketAddr, weight: u32) -> LoadBalancerConfig {
    LoadBalancerConfig {
        id: "lb-1".into(),
        project_id: "p".into(),
        vip_address: vip.ip().to_string(),
        admin_state_up: true,
        listeners: vec![ListenerConfig {
            id: "l-1".into(),
            protocol: ListenerProtocol::Http as i32,
            port: u32::from(vip.port()),
            default_pool_id: "p-1".into(),
            admin_state_up: true,
            ..Default::default()
        }],
        pools: vec![PoolConfig {
            id: "p-1".into(),
            protocol: ListenerProtocol::Http as i32,
            algorithm: Algorithm::RoundRobin as i32,
            admin_state_up: true,
            members: vec![MemberConfig {
                id: "m-1".into(),
                address: member.ip().to_string(),
                port: u32::from(member.port()),
                weight,
                admin_state_up: true,
                backup: false,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The agent process (`lbaas-agent --driver native`), restartable, and its state.
pub struct Agent {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    child: Option<Child>,
}

impl Agent {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lbaas-dp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        Self {
            dir,
            listen,
            child: None,
        }
    }

    /// The device's state directory, where its data plane lives.
    pub fn device_dir(&self) -> PathBuf {
        self.dir.join(DEVICE)
    }

    /// Starts the agent and waits until it serves (its devices restored).
    pub async fn start(&mut self) {
        let log = std::fs::File::create(
            self.dir
                .join(format!("agent-{}.log", uuid::Uuid::new_v4().simple())),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lbaas-agent"))
            .args(["--agent-id", AGENT_ID, "--driver", "native"])
            .arg("--listen")
            .arg(self.listen.to_string())
            // No scheduler: this drill speaks to the agent directly.
            .args(["--scheduler-url", "http://127.0.0.1:9"])
            .args(["--vip-cidr", "127.89.0.0/16", "--plaintext", "true"])
            .arg("--state-dir")
            .arg(&self.dir)
            .arg("--dataplane-bin")
            .arg(env!("CARGO_BIN_EXE_lbaas-dataplane"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(channel) =
                tonic::transport::Endpoint::from_shared(format!("http://{}", self.listen))
                    .unwrap()
                    .connect()
                    .await
            {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let serving = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: "lbaas.agent.v1.AgentService".into(),
                    })
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1);
                if serving {
                    return;
                }
            }
            if let Some(Ok(Some(exit))) = self.child.as_mut().map(Child::try_wait) {
                panic!("the agent exited: {exit}; see {}", self.dir.display());
            }
            assert!(Instant::now() < deadline, "the agent did not serve");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Applies `config` at `generation` through the agent's API and waits for ACTIVE.
    pub async fn apply(&self, generation: i64, config: LoadBalancerConfig) {
        let mut client = AgentServiceClient::connect(format!("http://{}", self.listen))
            .await
            .unwrap();
        let mut events = client
            .apply(ApplyRequest {
                device_id: DEVICE.into(),
                generation,
                config: Some(config),
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(event) = events.message().await.unwrap() {
            match event.phase() {
                ApplyPhase::Active => return,
                ApplyPhase::Error => panic!("apply failed: {}", event.message),
                _ => {}
            }
        }
        panic!("the apply stream ended before ACTIVE");
    }

    /// The data plane's pid, from its pid file.
    pub fn dataplane_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.device_dir().join("dataplane.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        // Every data plane that served this directory (a takeover leaves two for a while).
        let dir = self.dir.display().to_string();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|p| p.parse::<i32>().ok())
                else {
                    continue;
                };
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.contains("lbaas-dataplane") && cmdline.contains(&dir) {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    !stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'))
}

/// wrk against `vip` for `seconds`: keep-alive, or a new connection per request.
pub fn wrk(vip: SocketAddr, seconds: u32, new_connection_each: bool) -> Child {
    let mut command = Command::new("wrk");
    command.args(["-t1", "-c8", &format!("-d{seconds}s"), "--latency"]);
    if new_connection_each {
        command.args(["-H", "Connection: close"]);
    }
    command
        .arg(format!("http://{vip}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk is not installed (apt-get install wrk)")
}

/// What wrk reported: requests done and the lines that tell of failures.
pub struct WrkReport {
    pub requests: u64,
    pub failures: Vec<String>,
    pub text: String,
}

pub fn wrk_report(child: Child) -> WrkReport {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let failures = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .map(str::to_owned)
        .collect();
    WrkReport {
        requests,
        failures,
        text,
    }
}

/// Waits until a GET through `vip` is answered `ok`; returns how long that took.
pub async fn until_serving(vip: SocketAddr, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if get(vip).await.is_some_and(|body| body.ends_with("ok\n")) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{vip} did not serve within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One GET on a new connection; the response, if any.
pub async fn get(vip: SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(vip),
    )
    .await
    .ok()?
    .ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(body)
}

/// Runs `lbaas-dataplane --takeover` on `dir` (an upgrade), its output in `dir`.
pub fn takeover(dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("takeover.log")).unwrap();
    use std::os::unix::process::CommandExt as _;
    Command::new(env!("CARGO_BIN_EXE_lbaas-dataplane"))
        .arg("--state-dir")
        .arg(dir)
        .arg("--takeover")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap()
}
