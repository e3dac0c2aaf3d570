//! The native data plane is a process of its own: a real `lbaas-agent` (native driver) killed with
//! kill -9 under wrk load, in both connection modes, fails no request, and the restarted agent
//! adopts the running data plane; an upgrade (`lbaas-dataplane --takeover`: the listening sockets
//! passed over SCM_RIGHTS, the old process drained) under the same load fails no request; a data
//! plane killed with kill -9 is started again by the agent, serving what it served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kit;

use std::time::Duration;

use kit::{Agent, alive, config, member, until_serving, vip, wrk, wrk_report};

fn assert_clean(what: &str, report: &kit::WrkReport) {
    eprintln!("{what}: {} requests", report.requests);
    assert!(
        report.failures.is_empty(),
        "{what}: requests failed: {:?}\n{}",
        report.failures,
        report.text
    );
    assert!(
        report.requests > 50,
        "{what}: wrk barely ran\n{}",
        report.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_death_upgrade_and_data_plane_death() {
    let backend = member().await;
    let vip = vip();
    let mut agent = Agent::new();
    agent.start().await;
    agent.apply(1, config(vip, backend, 1)).await;
    until_serving(vip, Duration::from_secs(5)).await;
    let first = agent.dataplane_pid().expect("the data plane's pid file");

    // 1. The agent dies under load (kill -9) and comes back: no request fails.
    let keep_alive = wrk(vip, 4, false);
    let per_request = wrk(vip, 4, true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    agent.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(alive(first), "the data plane died with the agent");
    agent.start().await;
    assert_eq!(
        agent.dataplane_pid(),
        Some(first),
        "the agent did not adopt the data plane"
    );
    agent.apply(2, config(vip, backend, 2)).await;
    assert_clean("agent killed, keep-alive", &wrk_report(keep_alive));
    assert_clean(
        "agent killed, connection per request",
        &wrk_report(per_request),
    );

    // 2. An upgrade under load: a new process takes the sockets over, the old one drains.
    let keep_alive = wrk(vip, 4, false);
    let per_request = wrk(vip, 4, true);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut successor = kit::takeover(&agent.device_dir());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while alive(first) {
        if let Ok(Some(exit)) = successor.try_wait() {
            panic!(
                "the successor exited ({exit}): {}",
                std::fs::read_to_string(agent.device_dir().join("takeover.log"))
                    .unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old data plane never exited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = agent.dataplane_pid().unwrap();
    assert_eq!(second, i32::try_from(successor.id()).unwrap());
    assert_clean("upgrade, keep-alive", &wrk_report(keep_alive));
    assert_clean("upgrade, connection per request", &wrk_report(per_request));
    // The agent drives the successor.
    agent.apply(3, config(vip, backend, 3)).await;
    until_serving(vip, Duration::from_secs(5)).await;

    // 3. The data plane dies: the agent starts it again with everything it served.
    let _ = std::process::Command::new("kill")
        .args(["-9", &second.to_string()])
        .status();
    let _ = successor.wait();
    let back = until_serving(vip, Duration::from_secs(20)).await;
    let third = agent.dataplane_pid().unwrap();
    assert_ne!(third, second);
    eprintln!(
        "a killed data plane served again after {} ms",
        back.as_millis()
    );
}
