//! The native driver: the agent's side of the native data plane, which runs in a process of its own
//! (`crate::dataplane`). The driver starts that process the way the HAProxy driver starts HAProxy's
//! master (in its own process group, so a terminal's Ctrl-C or the agent's death leaves it
//! serving), talks to it over its Unix control socket, adopts it when the agent restarts, and
//! starts it again, serving its saved config, when it dies. A binary that is missing or that fails
//! to start is an error with its reason (the process's log is `dataplane.log`), never a fallback to
//! an in-process data plane.
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use lbaas::{
    agent::v1::{DiagnosticCheck, ListenerStats, LoadBalancerConfig, MemberHealthStatus},
    dataplane::v1::{
        ApplyRequest, DiagnoseRequest, GetStatusRequest, GetStatusResponse, StopRequest,
        data_plane_service_client::DataPlaneServiceClient,
    },
};
use tonic::transport::Channel;

use super::super::{DeviceHealth, Driver, DriverError, DriverOptions};
use crate::dataplane::{LOG, PID_FILE, SOCKET};

/// How long a starting data plane may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a status read may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub struct NativeDriver {
    dir: PathBuf,
    /// The data plane's command: a program and the arguments before `--state-dir`.
    command: Vec<OsString>,
    client: DataPlaneServiceClient<Channel>,
    /// Set by `stop`: a data plane stopped on purpose is not brought back.
    stopped: AtomicBool,
    /// One start at a time.
    starting: tokio::sync::Mutex<()>,
}

impl NativeDriver {
    pub fn new(options: &DriverOptions) -> Self {
        let socket = options.state_dir.join(SOCKET);
        // The URI is a placeholder: every connection goes to the Unix socket.
        let channel = tonic::transport::Endpoint::from_static("http://dataplane.local")
            .connect_timeout(Duration::from_secs(1))
            .connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }));
        Self {
            dir: options.state_dir.clone(),
            command: options.dataplane.clone(),
            client: DataPlaneServiceClient::new(channel)
                .max_decoding_message_size(256 * 1024 * 1024)
                .max_encoding_message_size(256 * 1024 * 1024),
            stopped: AtomicBool::new(false),
            starting: tokio::sync::Mutex::new(()),
        }
    }

    async fn status(&self) -> Result<GetStatusResponse, DriverError> {
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(GetStatusRequest {});
        request.set_timeout(STATUS_TIMEOUT);
        match tokio::time::timeout(STATUS_TIMEOUT, client.get_status(request)).await {
            Ok(Ok(status)) => Ok(status.into_inner()),
            Ok(Err(e)) => Err(DriverError::Unavailable(format!(
                "the data plane does not answer: {}",
                e.message()
            ))),
            Err(_) => Err(DriverError::Unavailable(
                "the data plane does not answer".into(),
            )),
        }
    }

    /// The pid in the pid file, if that process is alive and is a data plane.
    fn live_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.join(PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // A zombie is dead.
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        (!zombie && cmdline.contains(&*self.dir.to_string_lossy())).then_some(pid)
    }

    /// Starts the data plane process and waits until it answers.
    async fn spawn(&self) -> Result<u32, DriverError> {
        let unavailable = DriverError::Unavailable;
        let Some((program, args)) = self.command.split_first() else {
            return Err(unavailable(
                "no data plane binary is configured (--dataplane-bin)".into(),
            ));
        };
        let log_path = self.dir.join(LOG);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| unavailable(format!("cannot open {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| unavailable(format!("cannot open {}: {e}", log_path.display())))?;
        let started = std::time::Instant::now();
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .arg("--state-dir")
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: signals meant for the agent's group leave it serving.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                unavailable(format!(
                    "cannot start the data plane {}: {e}",
                    Path::new(program).display()
                ))
            })?;
        let mut wait = Duration::from_millis(2);
        loop {
            if let Ok(status) = self.status().await {
                tracing::info!(pid = status.pid, took_ms = started.elapsed().as_millis() as u64, dir = %self.dir.display(), "data plane started");
                // Reaped when it exits (it outlives the agent otherwise).
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                return Ok(status.pid);
            }
            if let Ok(Some(exit)) = child.try_wait() {
                return Err(unavailable(format!(
                    "the data plane exited at start ({exit}): {}",
                    last_lines(&log_path)
                )));
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.start_kill();
                return Err(unavailable(format!(
                    "the data plane did not answer within {}s: {}",
                    START_TIMEOUT.as_secs(),
                    last_lines(&log_path)
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    }

    /// Makes sure a data plane serves: adopts the running one, or starts one. Returns whether it
    /// started one.
    async fn ensure(&self) -> Result<bool, DriverError> {
        let _one = self.starting.lock().await;
        if self.status().await.is_ok() {
            return Ok(false);
        }
        if let Some(pid) = self.live_pid() {
            // Alive but silent: starting, handing over to a successor, or stuck. Not a second
            // one beside it.
            return Err(DriverError::Unavailable(format!(
                "the data plane (pid {pid}) is running but does not answer"
            )));
        }
        self.spawn().await.map(|_| true)
    }
}

fn last_lines(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    let joined = lines.into_iter().rev().collect::<Vec<_>>().join(" | ");
    if joined.is_empty() {
        "no output".into()
    } else {
        joined
    }
}

fn from_status(status: tonic::Status) -> DriverError {
    match status.code() {
        tonic::Code::InvalidArgument => DriverError::Rejected(status.message().to_owned()),
        tonic::Code::Unimplemented => DriverError::Unsupported {
            driver: "native",
            operation: super::operation_name(status.message()),
        },
        _ => DriverError::Unavailable(format!("data plane: {}", status.message())),
    }
}

#[async_trait::async_trait]
impl Driver for NativeDriver {
    fn name(&self) -> &'static str {
        "native"
    }

    fn capabilities(&self) -> Vec<String> {
        super::capabilities()
    }

    async fn start(&self) -> Result<(), DriverError> {
        self.stopped.store(false, Ordering::SeqCst);
        match self.ensure().await? {
            true => tracing::info!(dir = %self.dir.display(), "started the data plane"),
            false => tracing::info!(dir = %self.dir.display(), "adopted the running data plane"),
        }
        Ok(())
    }

    async fn apply(&self, desired: &[LoadBalancerConfig]) -> Result<(), DriverError> {
        self.stopped.store(false, Ordering::SeqCst);
        let mut client = self.client.clone();
        let request = ApplyRequest {
            load_balancers: desired.to_vec(),
        };
        match client.apply(request.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == tonic::Code::Unavailable => {
                // Gone (or handing over): bring one up and try once more.
                self.ensure().await?;
                client.apply(request).await.map(|_| ()).map_err(from_status)
            }
            Err(e) => Err(from_status(e)),
        }
    }

    async fn health(&self) -> DeviceHealth {
        match self.status().await {
            Ok(status) => DeviceHealth {
                healthy: status.healthy,
                detail: format!("data plane pid {}: {}", status.pid, status.detail),
            },
            Err(e) => DeviceHealth {
                healthy: false,
                detail: e.to_string(),
            },
        }
    }

    async fn member_health(&self) -> Result<Vec<MemberHealthStatus>, DriverError> {
        Ok(self.status().await?.members)
    }

    async fn stats(&self) -> Result<Vec<ListenerStats>, DriverError> {
        Ok(self.status().await?.listeners)
    }

    async fn recover(&self) -> Result<bool, DriverError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.ensure().await
    }

    async fn diagnostics(&self) -> Result<Vec<DiagnosticCheck>, DriverError> {
        let mut client = self.client.clone();
        let mut checks = client
            .diagnose(DiagnoseRequest {})
            .await
            .map_err(from_status)?
            .into_inner()
            .checks;
        if let Ok(status) = self.status().await {
            checks.insert(
                0,
                DiagnosticCheck {
                    name: "data plane process".into(),
                    ok: status.healthy,
                    detail: format!(
                        "pid {}, version {}: {}",
                        status.pid, status.version, status.detail
                    ),
                },
            );
        }
        Ok(checks)
    }

    async fn stop(&self) -> Result<(), DriverError> {
        self.stopped.store(true, Ordering::SeqCst);
        let mut client = self.client.clone();
        match client.stop(StopRequest {}).await {
            Ok(_) => {}
            // Nothing is running: nothing to stop.
            Err(e) if e.code() == tonic::Code::Unavailable => {}
            Err(e) => return Err(from_status(e)),
        }
        // Wait for it to go, so its addresses are free when this returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.live_pid().is_some() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}
