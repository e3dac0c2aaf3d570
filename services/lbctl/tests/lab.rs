//! End to end on a lab of hosts (`lbctl lab up`: network namespaces joined by bridges; needs root,
//! as CI runs): a load balancer created through the api serves the client namespace from members
//! in the tenant namespace, on both data planes; placement wires devices to the networks their
//! load balancers use and prefers devices already wired; a killed host fails over to another and
//! the VIP moves with it (gratuitous ARP), and the client's requests resume. ACTIVE_STANDBY pairs
//! hold the VIP by VRRP (keepalived) on two hosts: a lost MASTER hands it to the BACKUP with no
//! re-placement, and a lost standby is replaced. Both segments carry IPv4 and IPv6: a load balancer
//! with an additional VIP of the other family serves both, and an IPv6 VIP moves with an
//! unsolicited neighbour advertisement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod lab_support;

use std::time::Instant;

use lab_support::{Lab, namespaces};

/// The whole story on one data plane; each driver gets its own lab (`id`).
fn serves_across_hosts_and_fails_over(id: u8, driver: &str) {
    let lab = Lab::up(id, 3, driver);

    // No device is wired to any network yet.
    let devices = lab.lbctl_json(&["lb", "device", "list"]);
    assert_eq!(devices.as_array().unwrap().len(), 3);
    for d in devices.as_array().unwrap() {
        assert_eq!(d["networks"], serde_json::json!([]), "{d}");
    }

    let (web, vip) = lab.create_web("web", &[]);
    let url = format!("http://{vip}/");
    // The VIP lives on exactly one host, and round robin reaches both members across the bridges.
    let holders = lab.hosts_holding(&vip);
    assert_eq!(holders.len(), 1, "{vip} is held by {holders:?}");
    let first_host = holders[0];
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let got = lab.get_from_client(&url, 5_000);
        assert_eq!(got["status"], 200, "{got}");
        seen.insert(got["body"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["member-1", "member-2"]
    );

    // Its device was wired to the VIP network and the member network, with ports of its own
    // from their allocation ranges, never the VIP.
    let device_of = |host: u32| {
        lab.lbctl_json(&["lb", "device", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["agent_id"] == format!("lbl{id}-h{host}"))
            .cloned()
            .unwrap()
    };
    let wired = device_of(first_host);
    assert_eq!(
        wired["networks"],
        serde_json::json!(["lab-members", "lab-vip"]),
        "{wired}"
    );
    let vip_port = wired["ports"]["lab-vip"].as_str().unwrap().to_owned();
    let member_port = wired["ports"]["lab-members"].as_str().unwrap().to_owned();
    assert_ne!(vip_port, vip);
    assert!(vip_port.starts_with(&format!("10.{}.1.", 100 + u32::from(id))));
    assert!(member_port.starts_with(&format!("10.{}.2.", 100 + u32::from(id))));

    // Network affinity: a second load balancer whose members live on lab-members goes to the
    // device already wired to it, although the other two are emptier.
    lab.lbctl(&[
        "lb",
        "flavor",
        "create",
        "--name",
        "near",
        "--strategy",
        "network-affinity",
    ]);
    let (near, near_vip) = lab.create_web("near", &["--flavor", "near"]);
    assert_ne!(near_vip, vip);
    assert_ne!(near_vip, vip_port);
    assert_eq!(lab.hosts_holding(&near_vip), vec![first_host]);

    // Kill the host: agent and data plane dead, links down. The scheduler declares its device
    // DOWN after the lab's 1 s heartbeat timeout and moves both load balancers, VIPs and all.
    let killed = Instant::now();
    lab.kill_host(first_host);
    let got = lab.get_from_client(&url, 30_000);
    let recovered = killed.elapsed();
    assert_eq!(got["status"], 200, "{got}");
    eprintln!(
        "lab {id} ({driver}): kill -> first successful request {} ms (the client retried for {} ms, {} attempts)",
        recovered.as_millis(),
        got["elapsed_ms"],
        got["attempts"]
    );
    // The dead host keeps whatever it had configured; among the live ones, one holds the VIP.
    let now: Vec<u32> = lab
        .hosts_holding(&vip)
        .into_iter()
        .filter(|h| *h != first_host)
        .collect();
    assert_eq!(now.len(), 1, "{vip} is held by {now:?}");
    let new_host = now[0];
    // The new device was wired on the way.
    let rewired = device_of(new_host);
    assert!(
        rewired["networks"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("lab-vip")),
        "{rewired}"
    );
    let got = lab.get_from_client(&format!("http://{near_vip}/"), 30_000);
    assert_eq!(got["status"], 200, "{got}");

    // Deleting the load balancers takes their VIPs off the hosts.
    for lb in [&web, &near] {
        lab.lbctl(&["lb", "delete", lb, "--cascade", "--wait"]);
    }
    lab.wait_holders(&vip, &[first_host]);
    lab.wait_holders(&near_vip, &[first_host]);
    lab.stop();
}

#[test]
fn haproxy_hosts_serve_and_fail_over() {
    serves_across_hosts_and_fails_over(61, "haproxy");
}

#[test]
fn native_hosts_serve_and_fail_over() {
    serves_across_hosts_and_fails_over(62, "native");
}

/// Dual stack: a load balancer with an IPv4 VIP and an additional IPv6 VIP (Octavia's
/// `additional_vips`) serves both families from members of both families; an IPv6-only one
/// serves too; bad additional VIPs are refused with their field; and after a host is killed, the
/// IPv6 VIP's new host tells the client its MAC address by itself (an unsolicited neighbour
/// advertisement), before the client sends it anything.
fn serves_both_families(id: u8, driver: &str) {
    let lab = Lab::up(id, 2, driver);
    let octet = 100 + u32::from(id);
    let (v4, v6) = (lab.members(), lab.members6());
    let dual = lab.lbctl_json(&[
        "lb",
        "create",
        "dual",
        "--vip-network-id",
        "lab-vip",
        "--additional-vip",
        "lab-vip6",
        "--listener",
        "HTTP:80",
        "--member",
        &v4[0],
        "--member",
        &v6[1],
        "--wait",
    ]);
    assert_eq!(dual["provisioning_status"], "ACTIVE", "{dual}");
    let vip = dual["vip_address"].as_str().unwrap().to_owned();
    let extra = dual["additional_vips"][0].as_str().unwrap().to_owned();
    let (vip6, network) = extra.split_once(' ').unwrap();
    let vip6 = vip6.to_owned();
    assert_eq!(network, "(lab-vip6)");
    assert!(vip.starts_with(&format!("10.{octet}.1.")), "{vip}");
    assert!(vip6.starts_with(&format!("fd00:{octet:x}:1::")), "{vip6}");
    // Both VIPs on one host; both families reach both members (one IPv4, one IPv6).
    let holders = lab.hosts_holding(&vip);
    assert_eq!(holders.len(), 1, "{vip} is held by {holders:?}");
    assert_eq!(lab.hosts_holding(&vip6), holders);
    for url in [format!("http://{vip}/"), format!("http://[{vip6}]/")] {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let got = lab.get_from_client(&url, 5_000);
            assert_eq!(got["status"], 200, "{url}: {got}");
            seen.insert(got["body"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            ["member-1", "member-2"],
            "{url}"
        );
    }

    // IPv6 only: the VIP from lab-vip6, members on lab-members6.
    let only6 = lab.lbctl_json(&[
        "lb",
        "create",
        "only6",
        "--vip-network-id",
        "lab-vip6",
        "--listener",
        "HTTP:8080",
        "--member",
        &v6[0],
        "--wait",
    ]);
    assert_eq!(only6["provisioning_status"], "ACTIVE", "{only6}");
    let only6_vip = only6["vip_address"].as_str().unwrap().to_owned();
    assert!(only6_vip.starts_with(&format!("fd00:{octet:x}:1::")));
    let got = lab.get_from_client(&format!("http://[{only6_vip}]:8080/"), 5_000);
    assert_eq!(got["body"], "member-1", "{got}");

    // Bad additional VIPs: the VIP's own network, no such network, an address outside it.
    for (extra, field) in [
        ("lab-vip", "additional_vips[0].network_id"),
        ("nowhere", "additional_vips[0].network_id"),
        ("lab-vip6=10.1.2.3", "additional_vips[0].ip_address"),
    ] {
        let refused = lab.lbctl_fails(&[
            "lb",
            "create",
            "bad",
            "--vip-network-id",
            "lab-vip",
            "--additional-vip",
            extra,
        ]);
        assert!(
            refused.contains("INVALID_ARGUMENT") || refused.contains("invalid"),
            "{extra}: {refused}"
        );
        assert!(refused.contains(field), "{extra}: {refused}");
    }
    let names: Vec<String> = lab
        .lbctl_json(&["lb", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|lb| lb["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // The client knows the IPv6 VIP's host by its MAC address now.
    let first = holders[0];
    let first_mac = lab.mac(&lab.host_ns(first), "vip");
    assert_eq!(lab.client_neighbour(&vip6), first_mac);
    // Kill that host: both VIPs move; over IPv4 the client finds the new host (gratuitous ARP).
    lab.kill_host(first);
    let got = lab.get_from_client(&format!("http://{vip}/"), 30_000);
    assert_eq!(got["status"], 200, "{got}");
    let now: Vec<u32> = lab
        .hosts_holding(&vip6)
        .into_iter()
        .filter(|h| *h != first)
        .collect();
    assert_eq!(now.len(), 1, "{vip6} is held by {now:?}");
    // Without sending anything to the IPv6 VIP, the client's neighbour entry points at the new
    // host: only the new host's unsolicited advertisement can have told it.
    let new_mac = lab.mac(&lab.host_ns(now[0]), "vip");
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while lab.client_neighbour(&vip6) != new_mac {
        assert!(
            Instant::now() < deadline,
            "the client still has {} for {vip6}, not the new host's {new_mac}",
            lab.client_neighbour(&vip6)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let got = lab.get_from_client(&format!("http://[{vip6}]/"), 10_000);
    assert_eq!(got["status"], 200, "{got}");

    // An additional VIP is held like a VIP: asking for it again is refused at once; once its
    // load balancer is deleted, it is free for another.
    let extra_again = format!("lab-vip6={vip6}");
    let ask_again = |name: &str| {
        vec![
            "lb".to_owned(),
            "create".into(),
            name.into(),
            "--vip-network-id".into(),
            "lab-vip".into(),
            "--additional-vip".into(),
            extra_again.clone(),
            "--listener".into(),
            "HTTP:80".into(),
            "--member".into(),
            v6[0].clone(),
            "--wait".into(),
        ]
    };
    let args = ask_again("clash");
    let refused = lab.lbctl_fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        refused.contains("ALREADY_EXISTS") || refused.contains("AlreadyExists"),
        "{refused}"
    );
    lab.lbctl(&["lb", "delete", "dual", "--cascade", "--wait"]);
    // No live host holds it any more (the dead one lost its IPv6 addresses with its links).
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while lab.hosts_holding(&vip6).iter().any(|h| *h != first) {
        assert!(Instant::now() < deadline, "{vip6} is still held");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let args = ask_again("again");
    let again = lab.lbctl_json(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(again["provisioning_status"], "ACTIVE", "{again}");
    assert_eq!(again["additional_vips"][0], format!("{vip6} (lab-vip6)"));
    let got = lab.get_from_client(&format!("http://[{vip6}]/"), 10_000);
    assert_eq!(got["body"], "member-1", "{got}");
    lab.stop();
}

#[test]
fn haproxy_serves_both_families() {
    serves_both_families(66, "haproxy");
}

#[test]
fn native_serves_both_families() {
    serves_both_families(67, "native");
}

/// A lab whose own process died leaves its namespaces and processes behind; `lab down` removes
/// them all, and a new lab with the same id starts on a clean slate.
#[test]
fn lab_down_cleans_up_after_a_crash() {
    let mut lab = Lab::up(63, 1, "native");
    lab.crash();
    assert!(!namespaces(63).is_empty());
    lab_support::run(lab_support::LBCTL, &["lab", "down", "--id", "63"]);
    assert!(namespaces(63).is_empty(), "{:?}", namespaces(63));
    let links = lab_support::run("ip", &["-o", "link", "show"]);
    assert!(!links.contains("lbl63"), "{links}");
    // A second `down` has nothing to do and succeeds.
    lab_support::run(lab_support::LBCTL, &["lab", "down", "--id", "63"]);
    let lab = Lab::up(63, 1, "native");
    lab.stop();
}

/// An ACTIVE_STANDBY pair on four hosts: two devices on two hosts, the VIP on the MASTER's only.
/// Losing the standby's host brings a new standby (the VIP never moves); losing the MASTER's host
/// hands the VIP to the BACKUP, which becomes the MASTER without being re-placed, and gets a new
/// standby in turn.
#[test]
fn active_standby_pair_survives_its_hosts() {
    let id = 64;
    let lab = Lab::up(id, 4, "haproxy");
    let host_of = |agent: &str| -> u32 {
        agent
            .rsplit("-h")
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{agent} is not a lab host"))
    };
    lab.create_pair_flavor();
    // A pair needs a VIP network for its VRRP: refused up front, nothing created.
    let refused = lab.lbctl_fails(&["lb", "create", "novip", "--flavor", "pair", "--wait"]);
    assert!(
        refused.contains("FAILED_PRECONDITION") || refused.contains("FailedPrecondition"),
        "{refused}"
    );
    assert!(refused.contains("VIP network"), "{refused}");
    assert_eq!(lab.lbctl_json(&["lb", "list"]), serde_json::json!([]));

    let (lb, vip) = lab.create_web("pair", &["--flavor", "pair"]);
    let url = format!("http://{vip}/");
    assert_eq!(lab.get_from_client(&url, 5_000)["status"], 200);
    let (master, backup) = lab.placement(&lb);
    assert!(
        !backup.is_empty() && backup != master,
        "{master} / {backup}"
    );
    let (master_host, backup_host) = (host_of(&master), host_of(&backup));
    // Both devices (one per host) carry it: the standby takes room as the primary does.
    let loads: std::collections::BTreeMap<String, i64> = lab
        .lbctl_json(&["lb", "device", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["agent_id"].as_str().unwrap().to_owned(),
                d["load"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(loads[&master], 1, "{loads:?}");
    assert_eq!(loads[&backup], 1, "{loads:?}");
    assert_eq!(loads.values().sum::<i64>(), 2, "{loads:?}");
    // The VIP is on the MASTER's host only; both run keepalived.
    assert_eq!(lab.hosts_holding(&vip), vec![master_host]);
    assert!(lab.runs_keepalived(master_host) && lab.runs_keepalived(backup_host));
    // Source-IP persistence: the client sticks to one member, and the pair shares the table.
    let pools = lab.lbctl_json(&["lb", "pool", "list"]);
    let pool = pools[0]["id"].as_str().unwrap().to_owned();
    lab.lbctl(&[
        "lb",
        "pool",
        "set",
        &pool,
        "--session-persistence",
        "type=SOURCE_IP",
        "--wait",
    ]);
    let stuck = lab.get_from_client(&url, 5_000)["body"].clone();
    for _ in 0..3 {
        assert_eq!(lab.get_from_client(&url, 5_000)["body"], stuck);
    }
    let replicated = |host: u32| {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let tables = lab.haproxy_tables(host);
            if tables.contains("used:1") {
                return;
            }
            assert!(Instant::now() < deadline, "host {host}'s table: {tables}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    replicated(backup_host);

    // The standby's host dies: a new standby on another host, the MASTER untouched.
    lab.kill_host(backup_host);
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let new_backup = loop {
        let (m, b) = lab.placement(&lb);
        assert_eq!(m, master, "the MASTER moved when its standby was lost");
        if !b.is_empty() && b != backup {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "the lost standby was never replaced"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let new_backup_host = host_of(&new_backup);
    assert_ne!(new_backup_host, master_host);
    assert_eq!(lab.get_from_client(&url, 5_000)["status"], 200);
    // The placement is recorded before the new standby's apply ends: wait for its keepalived.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while !lab.runs_keepalived(new_backup_host) {
        assert!(
            Instant::now() < deadline,
            "no keepalived on the new standby"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The MASTER reloaded for its new peer and kept its table (the driver carries tables over a
    // reload), and the new standby learns it.
    assert_eq!(lab.get_from_client(&url, 5_000)["body"], stuck);
    replicated(new_backup_host);

    // The MASTER's host dies: keepalived on the BACKUP takes the VIP, the scheduler promotes it
    // (no re-placement: the device was already serving), and the client's requests resume.
    let killed = Instant::now();
    lab.kill_host(master_host);
    let got = lab.get_from_client(&url, 30_000);
    assert_eq!(got["status"], 200, "{got}");
    eprintln!(
        "lab {id} (ACTIVE_STANDBY): kill -> first successful request {} ms",
        killed.elapsed().as_millis()
    );
    // Persistence survived the takeover: the client is still on its member.
    assert_eq!(got["body"], stuck, "{got}");
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (m, _) = lab.placement(&lb);
        if m == new_backup {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the BACKUP was not promoted: {m}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let live: Vec<u32> = lab
        .hosts_holding(&vip)
        .into_iter()
        .filter(|h| *h != master_host)
        .collect();
    assert_eq!(live, vec![new_backup_host]);
    // And after the promoted MASTER's own reload (its new role and new peer), once the failover's
    // deploy is done.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while lab.lbctl_json(&["lb", "show", &lb])["provisioning_status"] != "ACTIVE" {
        assert!(Instant::now() < deadline, "the failover never finished");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for _ in 0..3 {
        assert_eq!(lab.get_from_client(&url, 5_000)["body"], stuck);
    }

    lab.lbctl(&["lb", "delete", &lb, "--cascade", "--wait"]);
    lab.stop();
}

/// ACTIVE_STANDBY with one host is refused with the reason, and nothing is created.
#[test]
fn active_standby_needs_two_hosts() {
    let lab = Lab::up(65, 1, "native");
    lab.create_pair_flavor();
    let members = lab.members();
    let refused = lab.lbctl_fails(&[
        "lb",
        "create",
        "pair",
        "--flavor",
        "pair",
        "--vip-network-id",
        "lab-vip",
        "--listener",
        "HTTP:80",
        "--member",
        &members[0],
        "--wait",
    ]);
    assert!(refused.contains("two different hosts"), "{refused}");
    assert_eq!(lab.lbctl_json(&["lb", "list"]), serde_json::json!([]));
    lab.stop();
}
