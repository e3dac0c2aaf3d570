//! `lbctl lab`: a lab of hosts on one machine, made of Linux network namespaces. Each device
//! host is a namespace running an agent (HAProxy or the native data plane) with the linux network
//! driver; a client namespace sits on the VIP network, a tenant namespace holds member backends on
//! the member network, and the api and scheduler run here, in the root namespace, reaching the
//! agents over a management network of their own. Bridges join each network's segment.
//!
//! Everything the lab makes is named after its id (`lbl<ID>-...`) and numbered in 10.<100+ID>.0.0/16
//! and, for IPv6, fd00:<100+ID>::/32 (hex), so `lab down` removes exactly what a lab made, even
//! after a crash, and never touches anything else. The VIP and member segments carry both address
//! families: each has an IPv4 network and an IPv6 network of the scheduler's.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lbaas::scheduler::v1 as spb;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::watch,
};

/// The lab's networks, as the scheduler knows them.
pub const VIP_NETWORK: &str = "lab-vip";
pub const MEMBER_NETWORK: &str = "lab-members";
/// The IPv6 networks on the same two segments.
pub const VIP_NETWORK6: &str = "lab-vip6";
pub const MEMBER_NETWORK6: &str = "lab-members6";
/// Member backends of the tenant namespace listen on this port.
pub const MEMBER_PORT: u16 = 8080;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Start a lab: host namespaces with agents, a client and a tenant namespace, bridges, and
    /// the api and scheduler here. Runs until Ctrl-C, then removes everything it made.
    Up(UpArgs),
    /// Remove a lab (namespaces, bridges, links, processes), also one a crash left behind.
    Down {
        /// The lab (1-99).
        #[arg(long, default_value_t = 1)]
        id: u8,
    },
    /// Kill a device host: every process in its namespace, and its links down.
    KillHost {
        #[arg(long, default_value_t = 1)]
        id: u8,
        /// The host's number (1 for lbl<ID>-h1).
        host: u32,
    },
    /// HTTP GET (run it in a namespace: `ip netns exec lbl1-client lbctl lab get URL`), retried
    /// until an answer comes or the deadline passes.
    Get {
        /// e.g. http://10.101.1.10/
        url: String,
        /// Give up after this long.
        #[arg(long, default_value_t = 10_000)]
        deadline_ms: u64,
        /// Each attempt's own limit (connect and answer).
        #[arg(long, default_value_t = 200)]
        attempt_ms: u64,
        /// One JSON line: status, body, elapsed_ms, attempts.
        #[arg(long)]
        json: bool,
    },
    /// A member backend: answers every HTTP request with NAME.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        name: String,
    },
    /// Runs an agent here (the lab starts one in each host namespace).
    #[command(hide = true)]
    Agent(Box<lbaas_agent::AgentConfig>),
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// The lab (1-99): its namespaces are lbl<ID>-*, its addresses 10.<100+ID>.0.0/16.
    #[arg(long, default_value_t = 1)]
    pub id: u8,
    /// How many device hosts.
    #[arg(long, default_value_t = 3)]
    pub hosts: u32,
    /// The hosts' device driver: auto (haproxy when installed, else native), haproxy or native.
    #[arg(long, default_value = "auto")]
    pub driver: String,
    /// Where databases, agent state and logs go.
    #[arg(long, default_value = "lab")]
    pub data_dir: PathBuf,
    /// The tenant api (in the root namespace).
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub api_listen: SocketAddr,
    /// The scheduler's port on the management network (0 for any).
    #[arg(long, default_value_t = 9002)]
    pub scheduler_port: u16,
    /// The scheduler declares a host's devices DOWN (and fails them over) after this long without
    /// a heartbeat; agents beat four times as often.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_timeout_ms: i64,
}

/// The names and addresses of lab `id`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: u8,
    pub hosts: u32,
}

impl Plan {
    fn octet(&self) -> u8 {
        100 + self.id
    }
    pub fn prefix(&self) -> String {
        format!("lbl{}", self.id)
    }
    pub fn host_ns(&self, host: u32) -> String {
        format!("lbl{}-h{host}", self.id)
    }
    pub fn client_ns(&self) -> String {
        format!("lbl{}-client", self.id)
    }
    pub fn tenant_ns(&self) -> String {
        format!("lbl{}-t1", self.id)
    }
    fn bridge(&self, segment: &str) -> String {
        format!("lbl{}-{segment}", self.id)
    }
    fn net(&self, third: u8, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet(), third, last)
    }
    /// The root namespace's address on the management network (the scheduler listens here).
    pub fn root_mgmt(&self) -> Ipv4Addr {
        self.net(0, 1)
    }
    pub fn host_mgmt(&self, host: u32) -> Ipv4Addr {
        self.net(0, u8::try_from(10 + host).unwrap_or(255))
    }
    pub fn vip_cidr(&self) -> String {
        format!("{}/24", self.net(1, 0))
    }
    pub fn member_cidr(&self) -> String {
        format!("{}/24", self.net(2, 0))
    }
    pub fn client_address(&self) -> Ipv4Addr {
        self.net(1, 250)
    }
    /// The tenant namespace's member backends.
    pub fn members(&self) -> Vec<Ipv4Addr> {
        vec![self.net(2, 201), self.net(2, 202)]
    }
    /// `fd00:<100+id>:<segment>::<last>` (hex), the IPv6 twin of `net`.
    fn net6(&self, segment: u16, last: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, u16::from(self.octet()), segment, 0, 0, 0, 0, last)
    }
    pub fn vip_cidr6(&self) -> String {
        format!("{}/64", self.net6(1, 0))
    }
    pub fn member_cidr6(&self) -> String {
        format!("{}/64", self.net6(2, 0))
    }
    pub fn client_address6(&self) -> Ipv6Addr {
        self.net6(1, 0x250)
    }
    /// The same member backends on IPv6 (each serves both families, under one name).
    pub fn members6(&self) -> Vec<Ipv6Addr> {
        vec![self.net6(2, 0x201), self.net6(2, 0x202)]
    }
    /// The networks the scheduler gets: VIPs and ports come from .10-.199 (::10-::199).
    fn networks(&self) -> Vec<spb::Network> {
        let v4 = [(VIP_NETWORK, 1), (MEMBER_NETWORK, 2)]
            .into_iter()
            .map(|(name, third)| spb::Network {
                name: name.into(),
                cidr: format!("{}/24", self.net(third, 0)),
                gateway: String::new(),
                allocation_start: self.net(third, 10).to_string(),
                allocation_end: self.net(third, 199).to_string(),
            });
        let v6 = [(VIP_NETWORK6, 1), (MEMBER_NETWORK6, 2)]
            .into_iter()
            .map(|(name, segment)| spb::Network {
                name: name.into(),
                cidr: format!("{}/64", self.net6(segment, 0)),
                gateway: String::new(),
                allocation_start: self.net6(segment, 0x10).to_string(),
                allocation_end: self.net6(segment, 0x199).to_string(),
            });
        v4.chain(v6).collect()
    }
}

/// Runs a command, failing with its stderr.
fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    sh("ip", args)
}

/// A veth pair from the root namespace's `bridge` into `ns`, named `inside` there, with
/// `address` (CIDR) when given.
fn cable(
    ns: &str,
    outside: &str,
    inside: &str,
    bridge: &str,
    address: Option<&str>,
) -> anyhow::Result<()> {
    ip(&[
        "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns,
    ])?;
    ip(&["link", "set", outside, "master", bridge, "up"])?;
    if let Some(a) = address {
        add_address(ns, a, inside)?;
    }
    ip(&["-n", ns, "link", "set", inside, "up"])?;
    Ok(())
}

/// Adds `address` (CIDR) to `dev` in `ns`; IPv6 without duplicate address detection, as the lab
/// hands out every address itself (and DAD would hold it back for a second or two).
fn add_address(ns: &str, address: &str, dev: &str) -> anyhow::Result<()> {
    let mut args = vec!["-n", ns, "addr", "add", address, "dev", dev];
    if address.contains(':') {
        args.push("nodad");
    }
    ip(&args)?;
    Ok(())
}

/// The namespaces and bridges of lab `id` that exist now.
fn leftovers(id: u8) -> (Vec<String>, Vec<String>) {
    let prefix = format!("lbl{id}-");
    let namespaces = ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    let links = ip(&["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .filter(|n| {
            n.starts_with(&prefix)
                || n.strip_prefix(&format!("lbl{id}"))
                    .is_some_and(|rest| rest.starts_with(['h', 'c', 't']))
        })
        .collect();
    (namespaces, links)
}

/// Kills every process in `ns`.
fn kill_namespace(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = sh("kill", &["-KILL", pid]);
        }
    }
}

/// Removes everything lab `id` made. Safe to run any time, any number of times.
pub fn down(id: u8) -> anyhow::Result<usize> {
    let (namespaces, links) = leftovers(id);
    for ns in &namespaces {
        kill_namespace(ns);
    }
    for ns in &namespaces {
        ip(&["netns", "del", ns])?;
    }
    // Root ends of veths went with their namespaces; bridges (and any stray link) go here.
    let (_, links_now) = leftovers(id);
    for link in &links_now {
        let _ = ip(&["link", "del", link]);
    }
    Ok(namespaces.len() + links.len())
}

/// Makes a device host unreachable at once: its processes die and its links go down.
pub fn kill_host(plan: &Plan, host: u32) -> anyhow::Result<()> {
    let ns = plan.host_ns(host);
    // Links first, as a host losing power goes silent: nothing a dying process says on its way
    // out (keepalived's priority-0 advert, a TCP reset) reaches anyone.
    for inside in ["mgmt", "vip", "members"] {
        ip(&["-n", &ns, "link", "set", inside, "down"])?;
    }
    kill_namespace(&ns);
    Ok(())
}

/// Refuses to build on addresses this machine already uses.
fn check_free(plan: &Plan) -> anyhow::Result<()> {
    let ours = format!("10.{}.", plan.octet());
    let ours6 = format!("fd00:{:x}:", plan.octet());
    let used: Vec<String> = ip(&["-o", "addr", "show"])?
        .lines()
        .chain(ip(&["route", "show"])?.lines())
        .chain(ip(&["-6", "route", "show"])?.lines())
        .filter(|l| l.contains(&ours) || l.contains(&ours6))
        .map(str::to_owned)
        .collect();
    if !used.is_empty() {
        bail!(
            "this machine already uses addresses of 10.{}.0.0/16 or fd00:{:x}::/32 (pick another --id):\n  {}",
            plan.octet(),
            plan.octet(),
            used.join("\n  ")
        );
    }
    Ok(())
}

/// Builds the namespaces, bridges and cables of the lab.
fn build(plan: &Plan) -> anyhow::Result<()> {
    for segment in ["mgmt", "vip", "mem"] {
        let bridge = plan.bridge(segment);
        // No multicast snooping: IPv6 neighbour discovery (solicited-node multicast, unsolicited
        // advertisements to all nodes) reaches every port, as on a plain switch.
        ip(&[
            "link",
            "add",
            &bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
    }
    ip(&[
        "addr",
        "add",
        &format!("{}/24", plan.root_mgmt()),
        "dev",
        &plan.bridge("mgmt"),
    ])?;
    let p = plan.prefix();
    for host in 1..=plan.hosts {
        let ns = plan.host_ns(host);
        ip(&["netns", "add", &ns])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let mgmt = format!("{}/24", plan.host_mgmt(host));
        cable(
            &ns,
            &format!("{p}h{host}m"),
            "mgmt",
            &plan.bridge("mgmt"),
            Some(&mgmt),
        )?;
        // The VIP and member segments: the scheduler's AttachNetwork gives them addresses.
        cable(
            &ns,
            &format!("{p}h{host}v"),
            "vip",
            &plan.bridge("vip"),
            None,
        )?;
        cable(
            &ns,
            &format!("{p}h{host}b"),
            "members",
            &plan.bridge("mem"),
            None,
        )?;
    }
    let client = plan.client_ns();
    ip(&["netns", "add", &client])?;
    ip(&["-n", &client, "link", "set", "lo", "up"])?;
    let client_address = format!("{}/24", plan.client_address());
    cable(
        &client,
        &format!("{p}cv"),
        "vip",
        &plan.bridge("vip"),
        Some(&client_address),
    )?;
    add_address(&client, &format!("{}/64", plan.client_address6()), "vip")?;
    let tenant = plan.tenant_ns();
    ip(&["netns", "add", &tenant])?;
    ip(&["-n", &tenant, "link", "set", "lo", "up"])?;
    cable(
        &tenant,
        &format!("{p}tb"),
        "members",
        &plan.bridge("mem"),
        None,
    )?;
    for member in plan.members() {
        add_address(&tenant, &format!("{member}/24"), "members")?;
    }
    for member in plan.members6() {
        add_address(&tenant, &format!("{member}/64"), "members")?;
    }
    Ok(())
}

/// A child process in a namespace, its output in `log`.
fn spawn_in(ns: &str, args: &[String], log: &Path) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("finding lbctl")?;
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    tokio::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting a process in {ns}"))
}

/// `lbctl lab up`.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    if !(1..=99).contains(&args.id) {
        bail!("--id must be 1-99");
    }
    if !(1..=50).contains(&args.hosts) {
        bail!("--hosts must be 1-50");
    }
    let plan = Plan {
        id: args.id,
        hosts: args.hosts,
    };
    let _telemetry = lbaas::server::Telemetry::init(&lbaas::server::TelemetryConfig {
        service_name: "lbaas-lab".into(),
        otlp_endpoint: None,
        json_logs: false,
    })?;
    let driver = crate::stack::resolve_driver(&args.driver);
    if !["haproxy", "native"].contains(&driver.as_str()) {
        bail!("a lab's hosts run haproxy or native, not {driver:?}");
    }
    let removed = down(plan.id)?;
    if removed > 0 {
        println!(
            "removed what an earlier lab {} left ({removed} namespaces and links)",
            plan.id
        );
    }
    check_free(&plan)?;
    let data_dir = std::path::absolute(&args.data_dir)?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let result = run_lab(&plan, &args, &driver, &data_dir).await;
    let cleaned = down(plan.id);
    println!("lab {} removed", plan.id);
    result.and(cleaned.map(|_| ()))
}

async fn run_lab(plan: &Plan, args: &UpArgs, driver: &str, data_dir: &Path) -> anyhow::Result<()> {
    // Listen for SIGTERM before saying ready: a stop sent right after must clean up too.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    build(plan)?;
    let sqlite = |name: &str| format!("sqlite://{}", data_dir.join(name).display());
    // A fresh lab starts from empty databases.
    for file in ["api.db", "scheduler.db"] {
        let _ = std::fs::remove_file(data_dir.join(file));
    }
    let scheduler_listener = TcpListener::bind((plan.root_mgmt(), args.scheduler_port))
        .await
        .context("binding the scheduler on the management network")?;
    let api_listener = TcpListener::bind(args.api_listen)
        .await
        .context("binding the api")?;
    let scheduler_addr = scheduler_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;
    let heartbeat_ms = (args.heartbeat_timeout_ms / 4).max(10);
    let mut scheduler = crate::stack::scheduler_config(
        scheduler_addr,
        sqlite("scheduler.db"),
        heartbeat_ms,
        args.heartbeat_timeout_ms,
    );
    // A lab kills hosts on purpose: fail over unless every device is down.
    scheduler.failover_max_down_share = 0.99;
    let api = crate::stack::api_config(
        api_addr,
        sqlite("api.db"),
        format!("http://{scheduler_addr}"),
        crate::stack::secret_key(data_dir)?,
    );
    scheduler.validate()?;
    api.validate()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut services = tokio::task::JoinSet::new();
    services.spawn(lbaas_scheduler::run(
        scheduler,
        scheduler_listener,
        stopped(stop_rx.clone()),
    ));
    services.spawn(lbaas_api::run(api, api_listener, stopped(stop_rx.clone())));

    let scheduler_url = format!("http://{scheduler_addr}");
    let mut children = Vec::new();
    let v4 = plan.members().into_iter().map(IpAddr::from);
    let v6 = plan.members6().into_iter().map(IpAddr::from);
    for (i, (member, member6)) in v4.zip(v6).enumerate() {
        // Each member answers on both families, under one name.
        for (address, log) in [(member, ""), (member6, "-v6")] {
            children.push(spawn_in(
                &plan.tenant_ns(),
                &[
                    "lab".into(),
                    "serve".into(),
                    "--listen".into(),
                    SocketAddr::new(address, MEMBER_PORT).to_string(),
                    "--name".into(),
                    format!("member-{}", i + 1),
                ],
                &data_dir.join(format!("member-{}{log}.log", i + 1)),
            )?);
        }
    }
    for host in 1..=plan.hosts {
        let state = data_dir.join(format!("h{host}"));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state)?;
        let agent_args: Vec<String> = [
            "lab",
            "agent",
            "--agent-id",
            &plan.host_ns(host),
            "--listen",
            &format!("{}:9003", plan.host_mgmt(host)),
            "--scheduler-url",
            &scheduler_url,
            "--driver",
            driver,
            "--vip-cidr",
            &plan.vip_cidr(),
            "--state-dir",
            &state.display().to_string(),
            "--stop-data-plane-on-exit",
            "--network-driver",
            "linux",
            "--network-interface",
            &format!(
                "{VIP_NETWORK}=vip,{MEMBER_NETWORK}=members,{VIP_NETWORK6}=vip,{MEMBER_NETWORK6}=members"
            ),
            "--plaintext",
            "true",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        children.push(spawn_in(
            &plan.host_ns(host),
            &agent_args,
            &data_dir.join(format!("h{host}.log")),
        )?);
    }

    let provider = crate::client::Provider::connect(&scheduler_url, "admin", None).await?;
    let mut devices = provider.devices.clone();
    for network in plan.networks() {
        devices
            .create_network(spb::CreateNetworkRequest {
                network: Some(network),
            })
            .await
            .context("defining the lab's networks")?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let registered = provider.list_devices("").await.unwrap_or_default().len();
        if registered >= plan.hosts as usize {
            break;
        }
        for child in &mut children {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "a lab process stopped ({status}) before the lab was up; see the logs in {}",
                    data_dir.display()
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "only {registered} of {} hosts registered within 60 s; see {}",
                plan.hosts,
                data_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let p = plan.prefix();
    println!(
        "lab {} is up: {} device hosts running {driver}",
        plan.id, plan.hosts
    );
    println!("  api        http://{api_addr}");
    println!("  scheduler  {scheduler_url}");
    for host in 1..=plan.hosts {
        println!(
            "  host {host}     netns {}  agent http://{}:9003  log {}",
            plan.host_ns(host),
            plan.host_mgmt(host),
            data_dir.join(format!("h{host}.log")).display()
        );
    }
    println!(
        "  client     netns {}  {} on {VIP_NETWORK} ({}), {} on {VIP_NETWORK6} ({})",
        plan.client_ns(),
        plan.client_address(),
        plan.vip_cidr(),
        plan.client_address6(),
        plan.vip_cidr6()
    );
    let members: Vec<String> = plan
        .members()
        .iter()
        .map(|m| format!("{m}:{MEMBER_PORT}"))
        .collect();
    let members6: Vec<String> = plan
        .members6()
        .iter()
        .map(|m| format!("[{m}]:{MEMBER_PORT}"))
        .collect();
    println!(
        "  members    netns {}  {} on {MEMBER_NETWORK} ({}), {} on {MEMBER_NETWORK6} ({})",
        plan.tenant_ns(),
        members.join(" "),
        plan.member_cidr(),
        members6.join(" "),
        plan.member_cidr6()
    );
    println!("try:");
    println!(
        "  lbctl --api http://{api_addr} lb create web --vip-network-id {VIP_NETWORK} --listener HTTP:80 --member {} --member {} --wait",
        members[0], members[1]
    );
    println!(
        "  lbctl --api http://{api_addr} lb create dual --vip-network-id {VIP_NETWORK} --additional-vip {VIP_NETWORK6} --listener HTTP:80 --member {} --member {} --wait",
        members[0], members6[1]
    );
    println!("  ip netns exec {p}-client lbctl lab get http://<VIP>/   (IPv6: http://[<VIP>]/)");
    println!("  lbctl lab kill-host --id {} 1", plan.id);
    println!("ready");

    let early = tokio::select! {
        _ = terminate.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
        Some(exit) = services.join_next() => Some(exit),
    };
    let _ = stop_tx.send(true);
    // Agents stop their data planes on SIGTERM; whatever is left, `down` kills.
    for child in &children {
        if let Some(pid) = child.id() {
            let _ = sh("kill", &["-TERM", &pid.to_string()]);
        }
    }
    for child in &mut children {
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
        }
    }
    while services.join_next().await.is_some() {}
    match early {
        Some(Ok(Err(e))) => Err(e),
        Some(_) => Err(anyhow::anyhow!("a service stopped on its own")),
        None => Ok(()),
    }
}

/// `lbctl lab agent`: an agent of a lab host (in its namespace).
pub async fn agent(mut config: lbaas_agent::AgentConfig) -> anyhow::Result<()> {
    config.dataplane_command = crate::common::dataplane_command();
    let _telemetry = lbaas::server::Telemetry::init(&lbaas::server::TelemetryConfig {
        service_name: "lbaas-agent".into(),
        otlp_endpoint: None,
        json_logs: false,
    })?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    lbaas_agent::run(config, listener, lbaas::server::shutdown_signal()).await
}

/// `lbctl lab serve`: answers every request with its name.
pub async fn serve(listen: SocketAddr, name: String) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}\n",
        name.len() + 1
    );
    loop {
        let (mut socket, _) = listener.accept().await?;
        let answer = answer.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
                if seen.len() > 65536 {
                    return;
                }
            }
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// What one GET got.
#[derive(Debug, serde::Serialize)]
pub struct Got {
    pub status: u16,
    pub body: String,
    pub elapsed_ms: u128,
    pub attempts: u32,
}

/// One HTTP/1.0 GET of `url` (`http://HOST[:PORT]/PATH`).
async fn get_once(url: &str, limit: Duration) -> anyhow::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr: SocketAddr = match authority.parse() {
        Ok(a) => a,
        Err(_) => SocketAddr::new(
            authority
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .with_context(|| format!("{authority:?} is not an address"))?,
            80,
        ),
    };
    tokio::time::timeout(limit, async {
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        socket
            .write_all(format!("GET /{path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
            .await?;
        let mut text = Vec::new();
        socket.read_to_end(&mut text).await?;
        let text = String::from_utf8_lossy(&text).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.trim().to_owned())
            .unwrap_or_default();
        anyhow::Ok((status, body))
    })
    .await
    .context("timed out")?
}

/// `lbctl lab get`: retries until a 2xx answer or the deadline.
pub async fn get(url: &str, deadline: Duration, attempt: Duration) -> anyhow::Result<Got> {
    let started = Instant::now();
    let mut attempts = 0;
    let mut last = String::new();
    while started.elapsed() < deadline {
        attempts += 1;
        let round = Instant::now();
        match get_once(url, attempt).await {
            Ok((status, body)) if (200..300).contains(&status) => {
                return Ok(Got {
                    status,
                    body,
                    elapsed_ms: started.elapsed().as_millis(),
                    attempts,
                });
            }
            Ok((status, body)) => last = format!("HTTP {status}: {body}"),
            Err(e) => last = format!("{e:#}"),
        }
        // Fast refusals (no route, reset) retry every 20 ms, not in a busy loop.
        if let Some(rest) = Duration::from_millis(20).checked_sub(round.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    bail!("no answer from {url} within {deadline:?} ({attempts} attempts; last: {last})")
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up(args).await,
        Command::Down { id } => {
            let removed = down(id)?;
            println!("lab {id}: removed {removed} namespaces and links");
            Ok(())
        }
        Command::KillHost { id, host } => kill_host(&Plan { id, hosts: host }, host),
        Command::Get {
            url,
            deadline_ms,
            attempt_ms,
            json,
        } => {
            let got = get(
                &url,
                Duration::from_millis(deadline_ms),
                Duration::from_millis(attempt_ms),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string(&got)?);
            } else {
                println!("{}", got.body);
                eprintln!(
                    "HTTP {} after {} ms ({} attempts)",
                    got.status, got.elapsed_ms, got.attempts
                );
            }
            Ok(())
        }
        Command::Serve { listen, name } => serve(listen, name).await,
        Command::Agent(config) => agent(*config).await,
    }
}
