//! The HAProxy driver: renders haproxy.cfg, checks it with `haproxy -c`, and runs HAProxy in
//! master-worker mode, reloading through the master CLI so listening sockets pass to the new
//! worker and no connection is dropped.
//!
//! HAProxy runs daemonized, not as a child of the agent: the data plane keeps serving while the
//! agent restarts, and a restarted agent adopts the running master through its socket.
//!
//! TERMINATED_HTTPS listeners' certificates (with their keys) are files in `<state dir>/certs`,
//! mode 0600 in a 0700 folder: written durably before the config that names them is checked, and
//! removed once a config that no longer names them is live.

#[cfg(test)]
mod fixtures;
mod l7;
mod master;
mod plan;
pub mod render;
mod runtime;
mod tables;
#[cfg(test)]
mod tests;
mod tls;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use lbaas::agent::v1::{DiagnosticCheck, LoadBalancerConfig};
use tokio::sync::Mutex;

use self::{
    master::MasterCli,
    render::{CertFiles, ConfigRenderer, Rendered},
};
use super::{DeviceHealth, Driver, DriverError, DriverOptions};

/// How long a started or reloaded HAProxy may take to show a new worker.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Drives one HAProxy instance (one device).
pub struct HaproxyDriver {
    /// The device this instance is, for metrics.
    device: String,
    bin: PathBuf,
    dir: PathBuf,
    /// Serialises starts, reloads and runtime changes of this instance.
    lock: Mutex<()>,
    /// What the running HAProxy serves, when known exactly (after a reload or runtime change that
    /// succeeded); `None` (after a failure, or a restart of the agent) forces the next change
    /// through a reload.
    running: std::sync::Mutex<Option<Live>>,
}

/// The configuration HAProxy runs: the load balancers and what they render to.
#[derive(Clone)]
struct Live {
    configs: Vec<LoadBalancerConfig>,
    rendered: Rendered,
}

impl HaproxyDriver {
    pub fn new(options: &DriverOptions) -> Self {
        Self {
            device: options.device_id.clone(),
            bin: options.haproxy_bin.clone(),
            dir: options.state_dir.clone(),
            lock: Mutex::new(()),
            running: std::sync::Mutex::new(None),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }

    fn master(&self) -> MasterCli {
        MasterCli::new(self.dir.join("master.sock"))
    }

    fn stats_socket(&self) -> PathBuf {
        self.dir.join("stats.sock")
    }

    /// Where certificate files go: absolute, since HAProxy reads them from its own working
    /// directory.
    fn cert_dir(&self) -> PathBuf {
        let dir = self.dir.join("certs");
        std::path::absolute(&dir).unwrap_or(dir)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("haproxy.pid")
    }

    /// The master's pid, from the pid file HAProxy writes at start.
    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn render(&self, desired: &[LoadBalancerConfig]) -> Result<Rendered, DriverError> {
        let stats_socket = self.stats_socket();
        ConfigRenderer {
            stats_socket: &stats_socket,
        }
        .render_device(desired, &self.cert_dir())
        .map_err(|e| DriverError::Rejected(e.to_string()))
    }

    /// Writes the files a config names (each 0600 in the 0700 certificate folder, through a
    /// temporary file, fsync and a rename, so HAProxy never reads half a certificate), leaving
    /// alone those that already hold the same content.
    async fn write_cert_files(&self, files: &CertFiles) -> Result<(), DriverError> {
        let dir = self.cert_dir();
        if files.is_empty() {
            return Ok(());
        }
        let failed = |e: std::io::Error| {
            DriverError::Unavailable(format!(
                "cannot write certificates to {}: {e}",
                dir.display()
            ))
        };
        crate::private_files::private_dir_async(dir.clone())
            .await
            .map_err(failed)?;
        for (name, content) in files {
            let path = dir.join(name);
            if tokio::fs::read(&path).await.ok().as_deref() == Some(content.as_bytes()) {
                continue;
            }
            crate::private_files::write_private_async(path, content.as_bytes().to_vec())
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// Removes what the live config no longer names from the certificate directory.
    async fn remove_stale_cert_files(&self, files: &CertFiles) {
        let Ok(mut entries) = tokio::fs::read_dir(self.cert_dir()).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| files.contains_key(n)) {
                continue;
            }
            if let Err(e) = tokio::fs::remove_file(entry.path()).await {
                tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a certificate file no longer used");
            }
        }
    }

    /// `haproxy -c`: the candidate config must parse and bind-check before it replaces the live one.
    async fn check(&self, path: &Path) -> Result<(), DriverError> {
        let output = tokio::process::Command::new(&self.bin)
            .arg("-c")
            .arg("-q")
            .arg("-f")
            .arg(path)
            .output()
            .await
            .map_err(|e| {
                DriverError::Unavailable(format!("cannot run {}: {e}", self.bin.display()))
            })?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let alerts: Vec<&str> = stderr.lines().filter(|l| l.contains("ALERT")).collect();
            Err(DriverError::Rejected(if alerts.is_empty() {
                stderr.trim().to_owned()
            } else {
                alerts.join("; ")
            }))
        }
    }

    async fn spawn_master(&self) -> Result<(), DriverError> {
        let log = std::fs::File::create(self.dir.join("haproxy.log"))
            .map_err(|e| DriverError::Unavailable(format!("cannot open haproxy.log: {e}")))?;
        let master_socket = self.dir.join("master.sock");
        let _ = std::fs::remove_file(&master_socket);
        let status = tokio::process::Command::new(&self.bin)
            .arg("-W")
            .arg("-D")
            .arg("-S")
            .arg(format!("{},mode,600", master_socket.display()))
            .arg("-p")
            .arg(self.pid_file())
            .arg("-f")
            .arg(self.config_path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .status()
            .await
            .map_err(|e| {
                DriverError::Unavailable(format!("cannot start {}: {e}", self.bin.display()))
            })?;
        if !status.success() {
            let log = std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default();
            return Err(DriverError::Unavailable(format!(
                "haproxy exited with {status}: {}",
                log.trim()
            )));
        }
        self.master()
            .wait_for_worker(None, READY_TIMEOUT)
            .await
            .map_err(|e| DriverError::Unavailable(format!("haproxy did not come up: {e}")))?;
        Ok(())
    }

    /// Writes the candidate config, checks it, and only then makes it live.
    async fn install(&self, text: &str) -> Result<(), DriverError> {
        let candidate = self.dir.join("haproxy.cfg.new");
        tokio::fs::write(&candidate, text)
            .await
            .map_err(|e| DriverError::Unavailable(format!("cannot write config: {e}")))?;
        self.check(&candidate).await?;
        tokio::fs::rename(&candidate, self.config_path())
            .await
            .map_err(|e| DriverError::Unavailable(format!("cannot install config: {e}")))
    }

    /// A runtime API command for the current worker, sent through the master CLI (`@1`): right
    /// after a reload the stats socket may still reach the leaving worker, whose state is about to
    /// go away with it.
    async fn worker_command(&self, command: &str) -> std::io::Result<String> {
        runtime::command(&self.dir.join("master.sock"), &format!("@1 {command}")).await
    }

    /// Every stick table entry of the current worker, with its server's name (`tables.rs`).
    async fn save_tables(&self) -> Vec<tables::Entry> {
        let Ok(list) = self.worker_command("show table").await else {
            return Vec::new();
        };
        let mut saved = Vec::new();
        for table in tables::used_tables(&list) {
            let names = self
                .worker_command(&format!("show servers state {table}"))
                .await
                .map(|a| tables::server_names(&a))
                .unwrap_or_default();
            if let Ok(dump) = self.worker_command(&format!("show table {table}")).await {
                saved.extend(tables::entries(&table, &dump, &names));
            }
        }
        saved
    }

    /// Writes saved entries into the (new) current worker, mapped to its server ids.
    async fn restore_tables(&self, saved: &[tables::Entry]) {
        if saved.is_empty() {
            return;
        }
        let mut ids = std::collections::HashMap::new();
        let names: std::collections::BTreeSet<&str> =
            saved.iter().map(|e| e.table.as_str()).collect();
        for table in names {
            if let Ok(answer) = self
                .worker_command(&format!("show servers state {table}"))
                .await
            {
                let by_name = tables::server_names(&answer)
                    .into_iter()
                    .map(|(id, name)| (name, id))
                    .collect();
                ids.insert(table.to_owned(), by_name);
            }
        }
        let commands = tables::restore_commands(saved, &ids);
        // The master CLI routes one command per `@1`: a batch is `a; @1 b; @1 c`.
        for batch in commands.chunks(50) {
            if let Err(e) = self.worker_command(&batch.join("; @1 ")).await {
                tracing::warn!(device = %self.device, error = %e, "cannot restore stick table entries after the reload");
                return;
            }
        }
        tracing::debug!(device = %self.device, entries = commands.len(), "stick tables carried over the reload");
    }

    fn set_running(&self, state: Option<Live>) {
        if let Ok(mut running) = self.running.lock() {
            *running = state;
        }
    }

    /// Member-only changes go through the runtime API, with no reload; the config file is
    /// rewritten too, so the next reload keeps them. Returns false when a reload is needed.
    async fn apply_at_runtime(&self, desired: &[LoadBalancerConfig], rendered: &Rendered) -> bool {
        let running = self.running.lock().ok().and_then(|r| r.clone());
        let Some(running) = running else {
            return false;
        };
        if running.rendered == *rendered {
            return true;
        }
        // Certificate files change only by a reload (which writes them before the check).
        if running.rendered.cert_files != rendered.cert_files {
            return false;
        }
        let text = rendered.text.as_str();
        let Some(commands) = plan::member_changes(&running.configs, desired) else {
            return false;
        };
        for command in &commands {
            let answer = self.worker_command(&command.line).await;
            match answer {
                Ok(answer) if plan::accepted(&command.line, &answer) => {}
                Ok(answer) if command.tolerate_failure => {
                    tracing::debug!(command = %command.line, answer = %answer.trim(), "runtime command refused; the next reload completes it");
                }
                other => {
                    tracing::warn!(command = %command.line, answer = ?other, "runtime change failed; reloading instead");
                    self.set_running(None);
                    return false;
                }
            }
        }
        let candidate = self.dir.join("haproxy.cfg.new");
        let written = async {
            tokio::fs::write(&candidate, text).await?;
            tokio::fs::rename(&candidate, self.config_path()).await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, "cannot write the config after a runtime change; reloading");
            self.set_running(None);
            return false;
        }
        self.set_running(Some(Live {
            configs: desired.to_vec(),
            rendered: rendered.clone(),
        }));
        true
    }

    /// Writes the certificate files, installs the config (checked with `haproxy -c`) and reloads,
    /// or starts HAProxy if it is gone; then removes the certificate files no longer named.
    async fn reload_with(&self, rendered: &Rendered) -> Result<(), DriverError> {
        let master = self.master();
        let running = master.show_proc().await;
        self.write_cert_files(&rendered.cert_files).await?;
        self.install(&rendered.text).await?;
        match running {
            Ok(before) => {
                let saved = self.save_tables().await;
                master
                    .reload(&before, READY_TIMEOUT)
                    .await
                    .map_err(|e| DriverError::Unavailable(format!("reload failed: {e}")))?;
                self.restore_tables(&saved).await;
                crate::metrics::record_data_plane_change(&self.device, "reload");
            }
            // HAProxy is gone (killed, crashed): start it on the new config.
            Err(_) => {
                self.spawn_master().await?;
                crate::metrics::record_data_plane_change(&self.device, "start");
            }
        }
        self.remove_stale_cert_files(&rendered.cert_files).await;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Driver for HaproxyDriver {
    fn name(&self) -> &'static str {
        "haproxy"
    }

    fn capabilities(&self) -> Vec<String> {
        lbaas::capability::all_except(&["protocol:UDP", "monitor:PING", "monitor:UDP_CONNECT"])
    }

    async fn start(&self) -> Result<(), DriverError> {
        let _guard = self.lock.lock().await;
        crate::private_files::private_dir_async(self.dir.clone())
            .await
            .map_err(|e| {
                DriverError::Unavailable(format!("cannot create {}: {e}", self.dir.display()))
            })?;
        if self.master().show_proc().await.is_ok() {
            tracing::info!(dir = %self.dir.display(), "adopted running haproxy");
            return Ok(());
        }
        if !self.config_path().exists() {
            let rendered = self.render(&[])?;
            self.install(&rendered.text).await?;
        }
        self.spawn_master().await
    }

    async fn apply(&self, desired: &[LoadBalancerConfig]) -> Result<(), DriverError> {
        let rendered = self.render(desired)?;
        let _guard = self.lock.lock().await;
        // A runtime change touches members only, so the certificate files stay as they are.
        if self.apply_at_runtime(desired, &rendered).await {
            crate::metrics::record_data_plane_change(&self.device, "runtime");
            return Ok(());
        }
        // An address another process holds fails the reload, and HAProxy takes seconds to say so
        // (the new master re-executes, fails to bind, re-executes again to wait): find out here,
        // at once, and refuse the change with the address in the reason.
        probe_binds(&rendered.text)?;
        let result = self.reload_with(&rendered).await;
        self.set_running(result.is_ok().then(|| Live {
            configs: desired.to_vec(),
            rendered,
        }));
        result
    }

    async fn health(&self) -> DeviceHealth {
        match self.master().show_proc().await {
            Ok(proc) => DeviceHealth {
                healthy: proc.worker_pid.is_some(),
                detail: format!("master {} reloads {}", proc.master_pid, proc.reloads),
            },
            Err(e) => DeviceHealth {
                healthy: false,
                detail: e.to_string(),
            },
        }
    }

    async fn diagnostics(&self) -> Result<Vec<DiagnosticCheck>, DriverError> {
        let check = |name: &str, result: Result<String, String>| DiagnosticCheck {
            name: name.into(),
            ok: result.is_ok(),
            detail: result.unwrap_or_else(|e| e),
        };
        let mut checks = vec![check("binary", version(&self.bin).await)];
        checks.push(check(
            "master",
            self.master()
                .show_proc()
                .await
                .map_err(|e| e.to_string())
                .and_then(|p| match p.worker_pid {
                    Some(w) => Ok(format!(
                        "master {} worker {w}, {} reloads",
                        p.master_pid, p.reloads
                    )),
                    None => Err(format!("master {} has no worker", p.master_pid)),
                }),
        ));
        let config = self.config_path();
        checks.push(check(
            "config",
            if config.exists() {
                self.check(&config)
                    .await
                    .map(|()| format!("{} is valid", config.display()))
                    .map_err(|e| e.to_string())
            } else {
                Err(format!("{} does not exist", config.display()))
            },
        ));
        checks.push(check(
            "stats socket",
            self.worker_command("show info")
                .await
                .map_err(|e| e.to_string())
                .map(|info| {
                    info.lines()
                        .find(|l| l.starts_with("CurrConns:"))
                        .unwrap_or("answered")
                        .to_owned()
                }),
        ));
        Ok(checks)
    }

    async fn recover(&self) -> Result<bool, DriverError> {
        if self.master().show_proc().await.is_ok() {
            return Ok(false);
        }
        let _guard = self.lock.lock().await;
        // A master that is re-executing for a reload refuses connections for a moment but keeps
        // its pid: only a master whose process is gone is dead.
        if self.master().show_proc().await.is_ok() || self.master_pid().is_some_and(process_alive) {
            return Ok(false);
        }
        // The config file always holds what was last applied (runtime changes included).
        self.set_running(None);
        self.spawn_master().await?;
        Ok(true)
    }

    async fn member_health(
        &self,
    ) -> Result<Vec<lbaas::agent::v1::MemberHealthStatus>, DriverError> {
        let stats = self
            .worker_command("show stat")
            .await
            .map_err(|e| DriverError::Unavailable(format!("stats socket: {e}")))?;
        Ok(runtime::member_health(&stats))
    }

    async fn stats(&self) -> Result<Vec<lbaas::agent::v1::ListenerStats>, DriverError> {
        let stats = self
            .worker_command("show stat")
            .await
            .map_err(|e| DriverError::Unavailable(format!("stats socket: {e}")))?;
        Ok(runtime::listener_stats(&stats))
    }

    async fn stop(&self) -> Result<(), DriverError> {
        let _guard = self.lock.lock().await;
        let Ok(proc) = self.master().show_proc().await else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(proc.master_pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        // Wait for the master to go so the ports are free when this returns.
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while process_alive(proc.master_pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Whether a process is running: a zombie (exited, not yet reaped by its parent) is not.
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Every address a config's frontends bind (`bind ADDRESS:PORT ...`).
fn bind_addresses(text: &str) -> Vec<std::net::SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("bind "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Binds every frontend address of `text` for a moment, as HAProxy does (SO_REUSEADDR and
/// SO_REUSEPORT, so the addresses HAProxy itself serves on are no obstacle): an address another
/// process holds is refused as the device would refuse it, without a reload.
fn probe_binds(text: &str) -> Result<(), DriverError> {
    use socket2::{Domain, Socket, Type};
    for address in bind_addresses(text) {
        let probe = Socket::new(Domain::for_address(address), Type::STREAM, None).and_then(|s| {
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.bind(&address.into())
        });
        if let Err(e) = probe {
            return Err(DriverError::Rejected(format!(
                "cannot listen on {address}: {e} (another process holds it)"
            )));
        }
    }
    Ok(())
}

/// The version `haproxy -v` reports, e.g. "2.6.12-1+deb12u4".
pub async fn version(bin: &Path) -> Result<String, String> {
    let output = tokio::process::Command::new(bin)
        .arg("-v")
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("HAProxy version "))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .ok_or_else(|| format!("{} -v said {:?}", bin.display(), text.trim()))
}

#[cfg(test)]
mod probe_tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn bind_lines_are_read() {
        let text =
            "frontend a\n    bind 127.0.0.5:80\n    bind [fd00::1]:443 ssl crt /x\nbackend b\n";
        assert_eq!(
            super::bind_addresses(text),
            vec![
                "127.0.0.5:80".parse().unwrap(),
                "[fd00::1]:443".parse().unwrap()
            ]
        );
    }

    #[test]
    fn an_address_another_process_holds_is_refused_and_a_shared_one_is_not() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = held.local_addr().unwrap();
        let e = super::probe_binds(&format!("    bind {address}\n")).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("cannot listen on {address}")),
            "{e}"
        );
        // A socket that allows sharing (as HAProxy's listeners do) is no obstacle.
        let shared =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        shared.set_reuse_address(true).unwrap();
        shared.set_reuse_port(true).unwrap();
        shared
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        shared.listen(8).unwrap();
        let address = shared.local_addr().unwrap().as_socket().unwrap();
        super::probe_binds(&format!("    bind {address}\n")).unwrap();
    }
}
