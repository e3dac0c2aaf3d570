//! Strategies on crafted fleets, composition, explain, and the fast path agreeing with explain.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{collections::BTreeMap, sync::Arc};

use super::*;

const NOW: i64 = 1_000_000;

fn device(id: &str, load: i64, capacity: i64) -> DeviceView {
    DeviceView {
        id: Arc::from(id),
        driver: "haproxy".into(),
        agent_id: "agent-a".into(),
        capacity,
        load,
        state: DeviceState::Active,
        is_virtual: true,
        labels: BTreeMap::new(),
        networks: Default::default(),
        capabilities: Default::default(),
        vip_cidr: None,
    }
}

fn fleet(devices: Vec<DeviceView>) -> Fleet {
    let mut f = Fleet::default();
    for d in devices {
        f.heartbeat(&d.agent_id.clone(), NOW);
        f.upsert(d);
    }
    f
}

fn request(lb: &str, project: &str) -> PlacementRequest {
    PlacementRequest {
        loadbalancer_id: lb.into(),
        project_id: project.into(),
        live_after_ms: NOW - 10,
        capabilities: Vec::new(),
        vip_address: None,
        ..Default::default()
    }
}

fn choose(spec: &str, f: &Fleet, r: &PlacementRequest) -> Option<String> {
    let s = build_strategy(spec, 7).unwrap();
    let fast = s.choose(f, r).map(|id| id.to_string());
    let explained = s.explain(f, r);
    assert_eq!(
        fast.clone().unwrap_or_default(),
        explained.chosen,
        "choose and explain disagree for {spec}: {}",
        explained.why
    );
    fast
}

#[test]
fn least_loaded_prefers_the_lowest_relative_load() {
    let mut f = fleet(vec![
        device("a", 5, 10),
        device("b", 5, 100),
        device("c", 0, 1),
    ]);
    assert_eq!(
        choose("least-loaded", &f, &request("lb", "p")).as_deref(),
        Some("c")
    );
    f.update("c", |d| d.load = 1);
    assert_eq!(
        choose("least-loaded", &f, &request("lb", "p")).as_deref(),
        Some("b")
    );
    let tied = fleet(vec![device("b", 1, 10), device("a", 1, 10)]);
    assert_eq!(
        choose("least-loaded", &tied, &request("lb", "p")).as_deref(),
        Some("a")
    );
}

#[test]
fn tenant_affinity_keeps_a_project_together_and_anti_affinity_spreads_it() {
    let mut f = fleet(vec![
        device("a", 0, 10),
        device("b", 0, 10),
        device("c", 0, 10),
    ]);
    for _ in 0..3 {
        f.bind("c", "alpha");
    }
    f.bind("a", "beta");
    f.bind("b", "gamma");
    f.bind("b", "gamma");
    // Loads: a 1 (beta), b 2 (gamma), c 3 (alpha). c is the most loaded, but it hosts alpha.
    assert_eq!(
        choose("tenant-affinity", &f, &request("lb", "alpha")).as_deref(),
        Some("c")
    );
    assert_eq!(
        choose("tenant-affinity", &f, &request("lb", "gamma")).as_deref(),
        Some("b")
    );
    // Spread: alpha avoids c; beta avoids a although a is the least loaded.
    assert_eq!(
        choose("tenant-anti-affinity", &f, &request("lb", "alpha")).as_deref(),
        Some("a")
    );
    assert_eq!(
        choose("tenant-anti-affinity", &f, &request("lb", "beta")).as_deref(),
        Some("b")
    );
    // A new project has no affinity: least-loaded decides.
    assert_eq!(
        choose("tenant-affinity", &f, &request("lb", "delta")).as_deref(),
        Some("a")
    );
    // A full device is out, affinity or not.
    f.update("c", |d| d.load = d.capacity);
    assert_eq!(
        choose("tenant-affinity", &f, &request("lb", "alpha")).as_deref(),
        Some("a")
    );
}

#[test]
fn network_affinity_prefers_devices_on_the_needed_networks() {
    let mut on_blue = device("busy-blue", 6, 10);
    on_blue.networks.insert("blue".into());
    let mut on_both = device("busier-both", 8, 10);
    on_both.networks.extend(["blue".into(), "red".into()]);
    let f = fleet(vec![device("idle", 0, 10), on_blue, on_both]);
    let mut r = request("lb", "p");
    r.networks = vec!["blue".into()];
    assert_eq!(
        choose("network-affinity", &f, &r).as_deref(),
        Some("busy-blue")
    );
    r.networks = vec!["blue".into(), "red".into()];
    assert_eq!(
        choose("network-affinity", &f, &r).as_deref(),
        Some("busier-both")
    );
    r.networks = vec!["green".into()];
    assert_eq!(choose("network-affinity", &f, &r).as_deref(), Some("idle"));
    // Least-loaded ignores networks.
    r.networks = vec!["blue".into()];
    assert_eq!(choose("least-loaded", &f, &r).as_deref(), Some("idle"));
}

#[test]
fn weighers_compose_into_a_choice_neither_makes_alone() {
    // a: alpha's device, not on the network; b: on the network; c: both, but busier.
    let mut b = device("b", 2, 10);
    b.networks.insert("blue".into());
    let mut c = device("c", 7, 10);
    c.networks.insert("blue".into());
    let mut f = fleet(vec![device("a", 5, 10), b, c, device("d", 0, 10)]);
    f.bind("a", "alpha");
    f.bind("c", "alpha");
    let mut r = request("lb", "alpha");
    r.networks = vec!["blue".into()];
    assert_eq!(choose("least-loaded", &f, &r).as_deref(), Some("d"));
    assert_eq!(choose("affinity*10+load", &f, &r).as_deref(), Some("a"));
    assert_eq!(choose("network*10+load", &f, &r).as_deref(), Some("b"));
    assert_eq!(
        choose("network*10+affinity*10+load", &f, &r).as_deref(),
        Some("c")
    );
    // Multipliers decide between the pulls: a small affinity loses to network.
    assert_eq!(
        choose("network*10+affinity*1+load", &f, &r).as_deref(),
        Some("b")
    );
}

#[test]
fn filters_refuse_with_reasons_and_explain_names_them() {
    let mut physical = device("physical", 0, 10);
    physical.is_virtual = false;
    let mut labelled = device("labelled", 3, 10);
    labelled.labels.insert("tier".into(), "gold".into());
    let mut down = device("down", 0, 10);
    down.state = DeviceState::Down;
    let mut noop = device("noop", 0, 10);
    noop.driver = "noop".into();
    let mut silent = device("silent", 0, 10);
    silent.agent_id = "agent-silent".into();
    silent.labels.insert("tier".into(), "gold".into());
    let mut f = fleet(vec![physical, labelled, down, noop, device("full", 10, 10)]);
    f.heartbeat("agent-silent", NOW - 1000);
    f.upsert(silent);
    let mut r = request("lb", "p");
    r.driver = Some("haproxy".into());
    r.required_labels.insert("tier".into(), "gold".into());
    r.kind = DeviceKind::Virtual;
    assert_eq!(choose("least-loaded", &f, &r).as_deref(), Some("labelled"));
    let explained = build_strategy("least-loaded", 7).unwrap().explain(&f, &r);
    let refused: BTreeMap<String, &str> = explained
        .candidates
        .iter()
        .filter(|c| !c.eligible)
        .map(|c| (c.device_id.clone(), c.rejected_by))
        .collect();
    assert_eq!(refused["physical"], "kind");
    assert_eq!(refused["down"], "state");
    assert_eq!(refused["noop"], "driver");
    assert_eq!(refused["full"], "capacity");
    assert_eq!(refused["silent"], "agent");
    assert_eq!(explained.candidates[0].device_id, "labelled");
    assert!(explained.why.contains("only eligible"), "{}", explained.why);
    // Nothing fits: the reason counts every refusal.
    r.required_labels.insert("tier".into(), "platinum".into());
    let none = build_strategy("least-loaded", 7).unwrap().explain(&f, &r);
    assert!(none.chosen.is_empty());
    assert!(none.why.contains("refused by labels"), "{}", none.why);
    assert_eq!(choose("least-loaded", &f, &r), None);
}

#[test]
fn explain_shows_every_weigher_and_why_the_winner_won() {
    let mut f = fleet(vec![device("a", 1, 10), device("b", 4, 10)]);
    f.bind("b", "alpha");
    let e = build_strategy("tenant-affinity", 7)
        .unwrap()
        .explain(&f, &request("lb", "alpha"));
    assert_eq!(e.strategy, "affinity*10+load");
    assert_eq!(e.chosen, "b");
    let b = &e.candidates[0];
    assert_eq!(
        b.terms,
        vec![("affinity", PPM / 2, 10), ("load", PPM / 2, 1)]
    );
    assert_eq!(b.score, 10 * PPM / 2 + PPM / 2);
    assert!(e.why.contains("ahead on affinity"), "{}", e.why);
}

#[test]
fn random_is_seeded_spreads_and_skips_ineligible_devices() {
    let mut devices: Vec<DeviceView> = (0..10).map(|i| device(&format!("d{i}"), 0, 1000)).collect();
    devices[3].state = DeviceState::Draining;
    let f = fleet(devices);
    let mut counts = BTreeMap::new();
    for lb in 0..2000 {
        let r = request(&format!("lb-{lb}"), "p");
        let a = choose("random", &f, &r).unwrap();
        assert_eq!(
            build_strategy("random", 7)
                .unwrap()
                .choose(&f, &r)
                .unwrap()
                .as_ref(),
            a
        );
        *counts.entry(a).or_insert(0) += 1;
    }
    assert!(!counts.contains_key("d3"));
    assert_eq!(counts.len(), 9);
    // Uniform within reason: 2000/9 = 222 each.
    assert!(
        counts.values().all(|n| (150..300).contains(n)),
        "{counts:?}"
    );
    // Another seed, another sequence.
    let other: Vec<_> = (0..20)
        .map(|lb| {
            build_strategy("random", 8)
                .unwrap()
                .choose(&f, &request(&format!("lb-{lb}"), "p"))
        })
        .collect();
    let same: Vec<_> = (0..20)
        .map(|lb| {
            build_strategy("random", 7)
                .unwrap()
                .choose(&f, &request(&format!("lb-{lb}"), "p"))
        })
        .collect();
    assert_ne!(other, same);
}

#[test]
fn specs_are_checked() {
    assert_eq!(
        build_strategy("affinity*3 + load", 0).unwrap().name(),
        "affinity*3+load"
    );
    assert_eq!(
        build_strategy("anti-affinity*2+load", 0).unwrap().name(),
        "affinity*-2+load"
    );
    assert!(
        build_strategy("load*-1", 0)
            .err()
            .unwrap()
            .contains("against")
    );
    assert!(
        build_strategy("magic", 0)
            .err()
            .unwrap()
            .contains("unknown weigher")
    );
    assert!(
        build_strategy("load*x", 0)
            .err()
            .unwrap()
            .contains("integer")
    );
}

/// A small deterministic generator, so failures reproduce.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn the_fast_path_always_agrees_with_explain() {
    let specs = [
        "least-loaded",
        "tenant-affinity",
        "tenant-anti-affinity",
        "network-affinity",
        "random",
        "network*3+affinity*-2+load*2",
        "jitter*1+load*5",
        "affinity*7+network*4+jitter+load",
    ];
    let mut rng = Lcg(42);
    for round in 0..400 {
        let n = 1 + rng.next(40);
        let mut f = Fleet::default();
        f.heartbeat("live", NOW);
        f.heartbeat("dead", NOW - 100);
        for i in 0..n {
            let capacity = 1 + i64::try_from(rng.next(6)).unwrap();
            let mut d = device(
                &format!("d{i:02}"),
                i64::try_from(rng.next(7)).unwrap().min(capacity),
                capacity,
            );
            d.agent_id = if rng.next(8) == 0 { "dead" } else { "live" }.into();
            d.driver = if rng.next(3) == 0 { "noop" } else { "haproxy" }.into();
            d.state = match rng.next(10) {
                0 => DeviceState::Down,
                1 => DeviceState::Draining,
                _ => DeviceState::Active,
            };
            for net in ["blue", "red", "green"] {
                if rng.next(3) == 0 {
                    d.networks.insert(net.into());
                }
            }
            f.upsert(d);
        }
        for _ in 0..rng.next(12) {
            let d = format!("d{:02}", rng.next(n));
            let p = ["alpha", "beta"][usize::try_from(rng.next(2)).unwrap()];
            f.bind(&d, p);
        }
        let mut r = request(
            &format!("lb-{round}"),
            ["alpha", "beta", "gamma"][usize::try_from(rng.next(3)).unwrap()],
        );
        if rng.next(3) == 0 {
            r.driver = Some("haproxy".into());
        }
        r.networks = ["blue", "red", "green"]
            .iter()
            .filter(|_| rng.next(2) == 0)
            .map(|s| (*s).to_owned())
            .collect();
        if rng.next(4) == 0 {
            r.exclude = Some(format!("d{:02}", rng.next(n)));
        }
        for spec in specs {
            choose(spec, &f, &r);
        }
    }
}
