//! VRRP for ACTIVE_STANDBY pairs: keepalived (Debian's package), configured and supervised by the
//! agent. One keepalived per host holds one `vrrp_instance` per load balancer the host serves as
//! half of a pair; the agent writes the whole configuration, checks it (`keepalived -t`), and
//! starts keepalived or has it reload (SIGHUP). keepalived itself adds the VIP to the interface
//! when its instance is MASTER, removes it when not, and sends gratuitous ARPs on taking over.
//!
//! A BACKUP takes over by itself once the MASTER has been silent for VRRP's master-down interval
//! (three adverts and a skew: about 3.6 s with 1 s adverts). When the scheduler has already seen
//! the MASTER's host die (its heartbeat timeout, 1 s in the lab) it promotes the BACKUP, and
//! the agent then restarts keepalived instead of reloading it: started with priority 255, the
//! promoted instance is MASTER at once instead of at the end of the interval.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use lbaas::agent::v1::VrrpConfig;

use super::{NetworkError, run};

/// One load balancer's side of its pair.
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpInstance {
    pub loadbalancer_id: String,
    pub vip: IpAddr,
    pub config: VrrpConfig,
}

/// Checks what keepalived.conf is built from: every value is written into it.
fn checked(i: &VrrpInstance) -> Result<(IpAddr, IpAddr), NetworkError> {
    let bad = |why: String| NetworkError::Unusable(format!("VRRP of {}: {why}", i.loadbalancer_id));
    if i.loadbalancer_id.is_empty()
        || !i
            .loadbalancer_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(bad(
            "the load balancer id must be letters, digits and '-'".into()
        ));
    }
    if !(1..=255).contains(&i.config.virtual_router_id) {
        return Err(bad("the virtual router id must be 1-255".into()));
    }
    if !(1..=255).contains(&i.config.priority) {
        return Err(bad("the priority must be 1-255".into()));
    }
    if !(10..=40_950).contains(&i.config.advert_interval_ms) {
        return Err(bad("the advert interval must be 10 ms to 40.95 s".into()));
    }
    let local: IpAddr = i
        .config
        .local_address
        .parse()
        .map_err(|_| bad(format!("{:?} is not an address", i.config.local_address)))?;
    let peer: IpAddr = i
        .config
        .peer_address
        .parse()
        .map_err(|_| bad(format!("{:?} is not an address", i.config.peer_address)))?;
    if local.is_ipv4() != i.vip.is_ipv4() || peer.is_ipv4() != i.vip.is_ipv4() {
        return Err(bad(
            "the VIP and both ports must be of one address family".into()
        ));
    }
    Ok((local, peer))
}

/// keepalived.conf for `instances`; `interface_of` names the interface holding a local address.
pub fn render(
    router_id: &str,
    instances: &[VrrpInstance],
    interface_of: &dyn Fn(IpAddr) -> Option<String>,
) -> Result<String, NetworkError> {
    let mut out = format!(
        "# Written by the lbaas agent; changes are overwritten.\n\
         global_defs {{\n    router_id {router_id}\n    vrrp_version 3\n    \
         vrrp_garp_master_repeat 2\n    vrrp_garp_master_refresh 10\n}}\n"
    );
    for i in instances {
        let (local, peer) = checked(i)?;
        let interface = interface_of(local).ok_or_else(|| {
            NetworkError::Unusable(format!(
                "no interface of this host holds {local}, the pair's port on the VIP network"
            ))
        })?;
        let host = if i.vip.is_ipv4() { 32 } else { 128 };
        // The MASTER has priority 255 (the address owner's), with which VRRP takes the MASTER
        // state at once instead of after a master-down interval, so a new pair serves at once;
        // the BACKUP never preempts.
        let (state, preempt) = if i.config.role == "MASTER" {
            ("MASTER", "")
        } else {
            ("BACKUP", "    nopreempt\n")
        };
        out.push_str(&format!(
            "vrrp_instance lb-{id} {{\n    state {state}\n{preempt}    interface {interface}\n    \
             virtual_router_id {vrid}\n    priority {priority}\n    advert_int {advert}\n    \
             unicast_src_ip {local}\n    unicast_peer {{\n        {peer}\n    }}\n    \
             virtual_ipaddress {{\n        {vip}/{host} dev {interface}\n    }}\n}}\n",
            id = i.loadbalancer_id,
            vrid = i.config.virtual_router_id,
            priority = i.config.priority,
            advert = f64::from(i.config.advert_interval_ms) / 1000.0,
            vip = i.vip,
        ));
    }
    Ok(out)
}

/// The keepalived this host runs for its pairs.
pub struct Keepalived {
    dir: PathBuf,
    router_id: String,
    /// Instances by load balancer, as last configured.
    configured: tokio::sync::Mutex<Option<BTreeMap<String, VrrpInstance>>>,
}

impl Keepalived {
    pub fn new(dir: PathBuf, router_id: String) -> Self {
        Self {
            dir,
            router_id,
            configured: tokio::sync::Mutex::new(None),
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("keepalived.conf")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("keepalived.pid")
    }

    /// keepalived's parent process, if it runs (adopted after an agent restart).
    fn running(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // A zombie (exited, not reaped yet) has no exe link.
        Path::new(&format!("/proc/{pid}/exe"))
            .exists()
            .then_some(pid)
    }

    /// Makes keepalived run exactly `instances`.
    pub async fn set(
        &self,
        instances: Vec<VrrpInstance>,
        interface_of: &(dyn Fn(IpAddr) -> Option<String> + Sync),
    ) -> Result<(), NetworkError> {
        let mut configured = self.configured.lock().await;
        let wanted: BTreeMap<String, VrrpInstance> = instances
            .into_iter()
            .map(|i| (i.loadbalancer_id.clone(), i))
            .collect();
        let mut running = self.running();
        if configured.as_ref() == Some(&wanted) && (running.is_some() || wanted.is_empty()) {
            return Ok(());
        }
        // A BACKUP the scheduler promoted: restart (see the module's notes), without a word to
        // the peers (SIGKILL: no priority-0 advert, the VIPs stay where they are).
        let promoted = wanted.values().any(|i| {
            i.config.role == "MASTER"
                && configured
                    .as_ref()
                    .and_then(|c| c.get(&i.loadbalancer_id))
                    .is_some_and(|before| before.config.role != "MASTER")
        });
        if promoted && let Some(pid) = running {
            self.kill_now(pid).await;
            running = None;
            tracing::info!(pid, "keepalived restarted for a promotion");
        }
        if wanted.is_empty() && running.is_none() {
            *configured = Some(wanted);
            return Ok(());
        }
        let list: Vec<VrrpInstance> = wanted.values().cloned().collect();
        let text = render(&self.router_id, &list, interface_of)?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| NetworkError::Failed(format!("creating {}: {e}", self.dir.display())))?;
        let next = self.dir.join("keepalived.conf.next");
        std::fs::write(&next, &text)
            .map_err(|e| NetworkError::Failed(format!("writing {}: {e}", next.display())))?;
        let next_text = next.display().to_string();
        run("keepalived", &["-t", "-f", &next_text])
            .await
            .map_err(|e| {
                NetworkError::Unusable(format!("keepalived refused the configuration: {e}"))
            })?;
        std::fs::rename(&next, self.conf())
            .map_err(|e| NetworkError::Failed(format!("saving keepalived.conf: {e}")))?;
        match running {
            Some(pid) => {
                run("kill", &["-HUP", &pid.to_string()]).await?;
                tracing::info!(instances = list.len(), pid, "keepalived reloaded");
            }
            None => {
                // A data plane holding VIPs it may not have yet (the BACKUP's) must bind them.
                for setting in ["net.ipv4.ip_nonlocal_bind=1", "net.ipv6.ip_nonlocal_bind=1"] {
                    run("sysctl", &["-q", "-w", setting]).await?;
                }
                let log = std::fs::File::create(self.dir.join("keepalived.log"))
                    .map_err(|e| NetworkError::Failed(format!("keepalived log: {e}")))?;
                let err = log
                    .try_clone()
                    .map_err(|e| NetworkError::Failed(format!("keepalived log: {e}")))?;
                let conf = self.conf().display().to_string();
                let pid = self.pid_file().display().to_string();
                let vrrp_pid = self.dir.join("vrrp.pid").display().to_string();
                // Not tied to the agent: like HAProxy, it keeps serving while the agent restarts.
                let child = std::process::Command::new("keepalived")
                    .args([
                        "--dont-fork",
                        "--log-console",
                        "--vrrp",
                        "-f",
                        &conf,
                        "-p",
                        &pid,
                        "-r",
                        &vrrp_pid,
                    ])
                    .stdin(std::process::Stdio::null())
                    .stdout(log)
                    .stderr(err)
                    .spawn()
                    .map_err(|e| NetworkError::Failed(format!("cannot start keepalived: {e}")))?;
                let child_pid = child.id();
                // Reap it whenever it exits, off the runtime.
                std::thread::spawn(move || {
                    let mut child = child;
                    let _ = child.wait();
                });
                // It writes its pid file once up: wait for it (a few ms), so the next change
                // reloads this keepalived instead of starting a second one.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while self.running().is_none() {
                    if std::time::Instant::now() > deadline {
                        return Err(NetworkError::Failed(format!(
                            "keepalived (pid {child_pid}) did not start; see {}",
                            self.dir.join("keepalived.log").display()
                        )));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                tracing::info!(
                    instances = list.len(),
                    pid = child_pid,
                    "keepalived started"
                );
            }
        }
        *configured = Some(wanted);
        Ok(())
    }

    /// Kills keepalived at once (its VRRP child first, so it cannot say goodbye) and waits until it
    /// is gone.
    async fn kill_now(&self, pid: u32) {
        let child = std::fs::read_to_string(self.dir.join("vrrp.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        for p in child.into_iter().chain([pid]) {
            let _ = run("kill", &["-KILL", &p.to_string()]).await;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while child
            .into_iter()
            .chain([pid])
            .any(|p| Path::new(&format!("/proc/{p}/exe")).exists())
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // keepalived refuses to start while its pid files name a live (or unreaped) process.
        let _ = std::fs::remove_file(self.pid_file());
        let _ = std::fs::remove_file(self.dir.join("vrrp.pid"));
    }

    /// Stops keepalived (it removes the VIPs it holds).
    pub async fn stop(&self) {
        if let Some(pid) = self.running() {
            let _ = run("kill", &["-TERM", &pid.to_string()]).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn instance(role: &str) -> VrrpInstance {
        VrrpInstance {
            loadbalancer_id: "0b7e-lb".into(),
            vip: "10.101.1.11".parse().unwrap(),
            config: VrrpConfig {
                role: role.into(),
                priority: if role == "MASTER" { 255 } else { 90 },
                virtual_router_id: 7,
                local_address: "10.101.1.10".into(),
                peer_address: "10.101.1.12".into(),
                advert_interval_ms: 1000,
                local_device_id: "a".into(),
                peer_device_id: "b".into(),
            },
        }
    }

    #[test]
    fn an_instance_per_load_balancer_unicast_to_the_peer() {
        let vip_iface = |_: IpAddr| Some("vip".to_owned());
        let text = render("h1", &[instance("BACKUP")], &vip_iface).unwrap();
        for line in [
            "vrrp_instance lb-0b7e-lb {",
            "state BACKUP",
            "nopreempt",
            "virtual_router_id 7",
            "priority 90",
            "advert_int 1",
            "unicast_src_ip 10.101.1.10",
            "10.101.1.12",
            "10.101.1.11/32 dev vip",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let master = render("h1", &[instance("MASTER")], &vip_iface).unwrap();
        assert!(master.contains("state MASTER") && !master.contains("nopreempt"));
    }

    #[test]
    fn values_that_could_break_the_file_are_refused() {
        let vip_iface = |_: IpAddr| Some("vip".to_owned());
        let mut bad = instance("MASTER");
        bad.loadbalancer_id = "x }\nvrrp_script".into();
        assert!(render("h1", &[bad], &vip_iface).is_err());
        let mut bad = instance("MASTER");
        bad.config.peer_address = "10.0.0.1\n}".into();
        assert!(render("h1", &[bad], &vip_iface).is_err());
        let mut bad = instance("MASTER");
        bad.config.virtual_router_id = 0;
        assert!(render("h1", &[bad], &vip_iface).is_err());
        assert!(render("h1", &[instance("MASTER")], &|_| None).is_err());
    }
}
