//! The native data plane process (`lbaas-dataplane`, also `lbctl dataplane`): runs the native
//! engine apart from the agent, so traffic does not stop when the agent does.
//!
//! Everything lives in the device's state directory:
//! - `dataplane.sock`: the control API (`lbaas.dataplane.v1.DataPlaneService`, gRPC on a Unix
//!   socket) the agent applies configs through and reads health and counters from;
//! - `dataplane-desired.pb`: the last config applied, so a restarted data plane serves it again
//!   before any agent speaks to it;
//! - `dataplane.pid`: the serving process;
//! - `handover.sock`: upgrades. A new binary started with `--takeover` asks the running one for
//!   its listening sockets; they come as file descriptors over this socket (SCM_RIGHTS, as sozu
//!   and Envoy's hot restart pass theirs), one line `tcp|udp ADDRESS` per descriptor, then `END`.
//!   The successor applies the saved config on those very sockets (so the kernel's accept queues
//!   carry over and no connection is refused), takes the control socket's path, and answers
//!   `READY`; the predecessor then stops accepting, ends each HTTP/1 connection after its current
//!   response (`Connection: close`), sends GOAWAY on HTTP/2, waits for open connections to finish
//!   (at most `--drain-timeout-ms`) and exits.
//!
//! The process stops on the `Stop` call (forgetting its config), on SIGTERM or SIGINT (keeping it),
//! or when its state directory disappears (its device was removed).
use std::{
    io::{BufRead as _, Write as _},
    net::SocketAddr,
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use lbaas::dataplane::v1::{
    ApplyRequest, ApplyResponse, DiagnoseRequest, DiagnoseResponse, GetStatusRequest,
    GetStatusResponse, StopRequest, StopResponse,
    data_plane_service_server::{DataPlaneService, DataPlaneServiceServer},
};
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::driver::{
    Driver as _, DriverError,
    native::{Engine, Inherited},
};

/// The control socket, in the state directory.
pub const SOCKET: &str = "dataplane.sock";
/// The upgrade socket, in the state directory.
pub const HANDOVER: &str = "handover.sock";
/// The serving process's pid, in the state directory.
pub const PID_FILE: &str = "dataplane.pid";
/// The last config applied, in the state directory.
pub const DESIRED: &str = "dataplane-desired.pb";
/// Where the process's logs go when the agent starts it.
pub const LOG: &str = "dataplane.log";

/// `lbaas-dataplane`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DataPlaneArgs {
    /// The device's state directory (control and upgrade sockets, pid file, saved config).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Take over the listening sockets of the data plane serving this state directory (an
    /// upgrade); it drains its connections and exits.
    #[arg(long)]
    pub takeover: bool,
    /// How long a replaced data plane lets open connections finish before it exits.
    #[arg(long, default_value_t = 30_000)]
    pub drain_timeout_ms: u64,
}

struct Plane {
    engine: Engine,
    dir: PathBuf,
    started_unix_ms: i64,
    /// Set while a successor takes over: applies wait for it (the agent retries them there).
    handing_over: AtomicBool,
    apply_lock: tokio::sync::Mutex<()>,
    /// Why the process ends: `Some(true)` forgets the config (Stop), `Some(false)` keeps it.
    stop: tokio::sync::watch::Sender<Option<bool>>,
    /// Why the saved config could not be served at start, if it could not.
    start_problem: std::sync::Mutex<Option<String>>,
}

fn status_of(e: DriverError) -> Status {
    match e {
        DriverError::Rejected(reason) => Status::invalid_argument(reason),
        DriverError::Unavailable(reason) => Status::unavailable(reason),
        DriverError::Unsupported { operation, .. } => Status::unimplemented(operation),
    }
}

/// The control API over one plane.
struct Control(Arc<Plane>);

impl std::ops::Deref for Control {
    type Target = Plane;
    fn deref(&self) -> &Plane {
        &self.0
    }
}

#[tonic::async_trait]
impl DataPlaneService for Control {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let _guard = self.apply_lock.lock().await;
        if self.handing_over.load(Ordering::SeqCst) {
            return Err(Status::unavailable(
                "the data plane is handing over to its successor",
            ));
        }
        let request = request.into_inner();
        self.engine
            .apply(&request.load_balancers)
            .await
            .map_err(status_of)?;
        save_desired(&self.dir, &request)
            .map_err(|e| Status::internal(format!("cannot save the config: {e}")))?;
        if let Ok(mut problem) = self.start_problem.lock() {
            *problem = None;
        }
        Ok(Response::new(ApplyResponse {
            listeners: u32::try_from(self.engine.listening_sockets().await.len())
                .unwrap_or(u32::MAX),
        }))
    }

    async fn get_status(
        &self,
        _request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let health = self.engine.health().await;
        let problem = self.start_problem.lock().ok().and_then(|p| p.clone());
        Ok(Response::new(GetStatusResponse {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            healthy: health.healthy && problem.is_none(),
            detail: match problem {
                Some(problem) => format!("{}; the saved config failed: {problem}", health.detail),
                None => health.detail,
            },
            members: self.engine.member_health().await.map_err(status_of)?,
            listeners: self.engine.stats().await.map_err(status_of)?,
            started_unix_ms: self.started_unix_ms,
        }))
    }

    async fn diagnose(
        &self,
        _request: Request<DiagnoseRequest>,
    ) -> Result<Response<DiagnoseResponse>, Status> {
        Ok(Response::new(DiagnoseResponse {
            checks: self.engine.diagnostics().await.map_err(status_of)?,
        }))
    }

    async fn stop(&self, _request: Request<StopRequest>) -> Result<Response<StopResponse>, Status> {
        let _guard = self.apply_lock.lock().await;
        let _ = self.engine.stop().await;
        let _ = std::fs::remove_file(self.dir.join(DESIRED));
        let _ = self.stop.send(Some(true));
        Ok(Response::new(StopResponse {}))
    }
}

/// The config holds TLS private keys: 0600, durably, as every key file of the agent.
fn save_desired(dir: &Path, request: &ApplyRequest) -> std::io::Result<()> {
    crate::private_files::write_private(&dir.join(DESIRED), &request.encode_to_vec())
}

fn load_desired(dir: &Path) -> Option<ApplyRequest> {
    let bytes = std::fs::read(dir.join(DESIRED)).ok()?;
    ApplyRequest::decode(bytes.as_slice()).ok()
}

/// Binds a Unix socket at `dir/name` without a moment where the path is missing: bound under a
/// temporary name, then renamed over the old one.
fn bind_unix(dir: &Path, name: &str) -> anyhow::Result<tokio::net::UnixListener> {
    let tmp = dir.join(format!("{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = tokio::net::UnixListener::bind(&tmp)
        .with_context(|| format!("binding {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(name))
        .with_context(|| format!("moving {} into place", tmp.display()))?;
    Ok(listener)
}

/// Runs the data plane until it is stopped, replaced or its state directory disappears.
pub async fn run(args: DataPlaneArgs) -> anyhow::Result<()> {
    let dir = args.state_dir.clone();
    anyhow::ensure!(
        dir.is_dir(),
        "state directory {} does not exist",
        dir.display()
    );
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let plane = Arc::new(Plane {
        engine: Engine::new(),
        dir: dir.clone(),
        started_unix_ms,
        handing_over: AtomicBool::new(false),
        apply_lock: tokio::sync::Mutex::new(()),
        stop: tokio::sync::watch::channel(None).0,
        start_problem: std::sync::Mutex::new(None),
    });

    // An upgrade: the predecessor's sockets first, so the saved config is served on them.
    let predecessor = if args.takeover {
        let path = dir.join(HANDOVER);
        let (stream, sockets) = tokio::task::spawn_blocking(move || receive_sockets(&path))
            .await
            .context("receiving the sockets")??;
        tracing::info!(
            sockets = sockets.len(),
            "took the listening sockets over from the running data plane"
        );
        plane.engine.inherit(sockets);
        Some(stream)
    } else {
        // Never two data planes on one directory: the second would fight for the addresses.
        if UnixStream::connect(dir.join(SOCKET)).is_ok() {
            anyhow::bail!(
                "a data plane already serves {} (start the new one with --takeover to replace it)",
                dir.display()
            );
        }
        None
    };
    if let Some(saved) = load_desired(&dir)
        && let Err(e) = plane.engine.apply(&saved.load_balancers).await
    {
        tracing::error!(error = %e, "cannot serve the saved config");
        if let Ok(mut problem) = plane.start_problem.lock() {
            *problem = Some(e.to_string());
        }
    }
    let unused = plane.engine.drop_inherited();
    if unused > 0 {
        tracing::info!(unused, "closed inherited sockets no load balancer uses");
    }

    let control = bind_unix(&dir, SOCKET)?;
    let handover = bind_unix(&dir, HANDOVER)?;
    std::fs::write(dir.join(PID_FILE), std::process::id().to_string())
        .context("writing the pid file")?;
    if let Some(mut stream) = predecessor {
        // The predecessor drains once it reads this.
        tokio::task::spawn_blocking(move || stream.write_all(b"READY\n"))
            .await
            .context("answering the predecessor")??;
    }
    tracing::info!(dir = %dir.display(), pid = std::process::id(), "data plane serving");

    let mut stopped = plane.stop.subscribe();
    let server = tonic::transport::Server::builder()
        .add_service(DataPlaneServiceServer::new(Control(plane.clone())))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(control),
            async move {
                let _ = stopped.wait_for(Option::is_some).await;
            },
        );
    let server = tokio::spawn(server);
    let handing = tokio::spawn(serve_handover(plane.clone(), handover));
    let watcher = tokio::spawn(watch_dir(plane.clone()));

    let mut stopped = plane.stop.subscribe();
    tokio::select! {
        _ = stopped.wait_for(Option::is_some) => {}
        () = lbaas::server::shutdown_signal() => {
            let _ = plane.stop.send(Some(false));
        }
    }
    watcher.abort();
    handing.abort();
    let _ = server.await;
    let replaced = plane.handing_over.load(Ordering::SeqCst);
    if replaced {
        // The sockets, the pid file and the saved config are the successor's now.
        let open = plane
            .engine
            .drain(Duration::from_millis(args.drain_timeout_ms))
            .await;
        tracing::info!(still_open = open, "drained; the successor serves");
    } else {
        let _ = plane.engine.stop().await;
        for name in [SOCKET, HANDOVER, PID_FILE] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        tracing::info!("data plane stopped");
    }
    Ok(())
}

/// Stops the process when its state directory goes (the device was removed).
async fn watch_dir(plane: Arc<Plane>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !plane.dir.exists() {
            tracing::warn!(dir = %plane.dir.display(), "the state directory is gone: stopping");
            let _ = plane.stop.send(Some(false));
            return;
        }
    }
}

/// Answers successors: hands them the listening sockets, and ends this process once one is
/// serving.
async fn serve_handover(plane: Arc<Plane>, listener: tokio::net::UnixListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let apply_guard = plane.apply_lock.lock().await;
        plane.handing_over.store(true, Ordering::SeqCst);
        let sockets = plane.engine.listening_sockets().await;
        let count = sockets.len();
        let outcome = tokio::task::spawn_blocking(move || hand_over(stream, sockets)).await;
        drop(apply_guard);
        match outcome {
            Ok(Ok(())) => {
                tracing::info!(
                    sockets = count,
                    "the successor serves: draining and exiting"
                );
                let _ = plane.stop.send(Some(false));
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a takeover failed: serving on");
            }
            Err(e) => tracing::warn!(error = %e, "a takeover failed: serving on"),
        }
        plane.handing_over.store(false, Ordering::SeqCst);
    }
}

/// The predecessor's side: waits for `TAKEOVER`, sends each socket, then waits for `READY`.
fn hand_over(stream: UnixStream, sockets: Vec<(bool, SocketAddr, OwnedFd)>) -> std::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    use std::mem::MaybeUninit;
    stream.set_nonblocking(false)?;
    // The successor applies its whole config before it answers; a big one takes a while.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.trim() != "TAKEOVER" {
        return Err(std::io::Error::other(format!(
            "unexpected request {line:?}"
        )));
    }
    for (udp, addr, fd) in &sockets {
        let text = format!("{} {addr}\n", if *udp { "udp" } else { "tcp" });
        let fds = [fd.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(std::io::Error::other("no room for a descriptor"));
        }
        sendmsg(
            &stream,
            &[std::io::IoSlice::new(text.as_bytes())],
            &mut control,
            SendFlags::empty(),
        )?;
    }
    (&stream).write_all(b"END\n")?;
    line.clear();
    reader.read_line(&mut line)?;
    if line.trim() == "READY" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the successor did not take over: {:?}",
            line.trim()
        )))
    }
}

/// The successor's side: asks for the sockets at `path` and reads them. Returns the stream, to
/// answer `READY` on once serving.
fn receive_sockets(path: &Path) -> anyhow::Result<(UnixStream, Vec<(Inherited, SocketAddr)>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    use std::mem::MaybeUninit;
    let mut stream = UnixStream::connect(path)
        .with_context(|| format!("no data plane to take over answers at {}", path.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(b"TAKEOVER\n")?;
    let mut text = Vec::new();
    let mut fds: std::collections::VecDeque<OwnedFd> = Default::default();
    let mut sockets = Vec::new();
    loop {
        let mut buf = [0u8; 512];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            &stream,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        anyhow::ensure!(got.bytes > 0, "the data plane closed the handover early");
        text.extend_from_slice(&buf[..got.bytes]);
        // Each whole line names the next descriptor received.
        while let Some(end) = text.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = text.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line).trim().to_owned();
            if line == "END" {
                anyhow::ensure!(fds.is_empty(), "descriptors without a name");
                return Ok((stream, sockets));
            }
            let (kind, addr) = line
                .split_once(' ')
                .with_context(|| format!("bad handover line {line:?}"))?;
            let addr: SocketAddr = addr
                .parse()
                .with_context(|| format!("bad address in {line:?}"))?;
            let fd = fds
                .pop_front()
                .with_context(|| format!("no descriptor came with {line:?}"))?;
            let socket = match kind {
                "tcp" => Inherited::Tcp(std::net::TcpListener::from(fd)),
                "udp" => Inherited::Udp(std::net::UdpSocket::from(fd)),
                other => anyhow::bail!("unknown socket kind {other:?}"),
            };
            sockets.push((socket, addr));
        }
    }
}
