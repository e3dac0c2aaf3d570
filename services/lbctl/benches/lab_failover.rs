//! Host failover on the lab (`lbctl lab up`, 3 hosts, 1 s heartbeat timeout): a load balancer on
//! one host, the host killed (links down, then its agent, data plane and keepalived killed), and
//! the time from the kill to the first successful request of the client namespace through the
//! VIP, now on another host. SINGLE topology (re-placed on another host) on both data planes, and
//! ACTIVE_STANDBY on HAProxy (the MASTER's host killed; the BACKUP takes the VIP, 1 s VRRP adverts).
//! Beside it, in the same rounds: the time from the kill until the scheduler lists the device DOWN
//! (detection, the floor the heartbeat timeout sets). Needs root.
//!
//! Run: `cargo bench -p lbctl --bench lab_failover` (`LBAAS_BENCH_ROUNDS`, 5 by default).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/lab_support/mod.rs"]
mod lab_support;

use std::time::{Duration, Instant};

use lab_support::Lab;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One round: (kill -> DOWN listed, kill -> first successful request), in ms.
fn round(driver: &str, pair: bool) -> (f64, f64) {
    let lab = Lab::up(70, 3, driver);
    let extra: &[&str] = if pair {
        lab.create_pair_flavor();
        &["--flavor", "pair"]
    } else {
        &[]
    };
    let (_, vip) = lab.create_web("web", extra);
    let url = format!("http://{vip}/");
    assert_eq!(lab.get_from_client(&url, 5_000)["status"], 200);
    let host = lab.hosts_holding(&vip)[0];
    let device = format!("lbl70-h{host}");
    let api = lab.api.clone();
    let scheduler = lab.scheduler.clone();
    let killed = Instant::now();
    lab.kill_host(host);
    // Detection, watched from another thread while the client retries.
    let detection = std::thread::spawn(move || {
        loop {
            let out = lab_support::run(
                lab_support::LBCTL,
                &[
                    "--api",
                    &api,
                    "--scheduler",
                    &scheduler,
                    "lb",
                    "device",
                    "list",
                    "-o",
                    "json",
                ],
            );
            let devices: serde_json::Value = serde_json::from_str(&out).unwrap();
            let down = devices
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["agent_id"] == device && d["state"] == "DOWN");
            if down {
                return killed.elapsed();
            }
            assert!(killed.elapsed() < Duration::from_secs(30), "never DOWN");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let got = lab.get_from_client(&url, 30_000);
    let recovered = killed.elapsed();
    assert_eq!(got["status"], 200, "{got}");
    let detected = detection.join().unwrap();
    lab.stop();
    (
        detected.as_secs_f64() * 1000.0,
        recovered.as_secs_f64() * 1000.0,
    )
}

fn main() {
    let rounds: usize = std::env::var("LBAAS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    for (driver, pair) in [("haproxy", false), ("native", false), ("haproxy", true)] {
        let name = if pair {
            format!("{driver} ACTIVE_STANDBY")
        } else {
            format!("{driver} SINGLE")
        };
        let mut detected = Vec::new();
        let mut recovered = Vec::new();
        for i in 0..rounds {
            let (d, r) = round(driver, pair);
            println!(
                "{name} round {}: DOWN after {d:.0} ms, serving again after {r:.0} ms",
                i + 1
            );
            detected.push(d);
            recovered.push(r);
        }
        let (d, r) = (median(detected), median(recovered));
        println!(
            "{name}: median kill -> DOWN {d:.0} ms, kill -> first successful request {r:.0} ms ({:.2}x detection; {rounds} rounds)",
            r / d
        );
    }
}
