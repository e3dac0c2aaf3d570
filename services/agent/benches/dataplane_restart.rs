//! How fast a dead native data plane serves again: `lbaas-dataplane` is killed with kill -9 and
//! the agent (its health loop, every 100 ms) starts it again with its saved config; timed from the
//! kill to the first request answered through the VIP. The reference, in the same run: the bare
//! restart, the same binary started by hand on the same saved config (no agent, no detection).
//!
//! Run: `cargo bench -p lbaas-agent --bench dataplane_restart` (prints medians over 20 rounds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p90(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 9) / 10 - 1]
}

fn kill(pid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    while kit::alive(pid) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::main]
async fn main() {
    const ROUNDS: usize = 20;
    let backend = kit::member().await;
    let vip = kit::vip();
    let mut agent = kit::Agent::new();
    agent.start().await;
    agent.apply(1, kit::config(vip, backend, 1)).await;
    kit::until_serving(vip, Duration::from_secs(5)).await;

    let mut supervised = Vec::new();
    for _ in 0..ROUNDS {
        let pid = agent.dataplane_pid().unwrap();
        let started = Instant::now();
        kill(pid);
        kit::until_serving(vip, Duration::from_secs(20)).await;
        supervised.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The reference: no agent; the binary started by hand on the saved config.
    agent.kill();
    let mut bare = Vec::new();
    for _ in 0..ROUNDS {
        if let Some(pid) = agent.dataplane_pid().filter(|p| kit::alive(*p)) {
            kill(pid);
        }
        let started = Instant::now();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_lbaas-dataplane"))
            .arg("--state-dir")
            .arg(agent.device_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        kit::until_serving(vip, Duration::from_secs(20)).await;
        bare.push(started.elapsed());
        drop(child);
    }
    println!(
        "data plane killed -> serving again, agent-supervised: median {:.1} ms, p90 {:.1} ms ({ROUNDS} rounds)",
        median(supervised.clone()).as_secs_f64() * 1e3,
        p90(supervised).as_secs_f64() * 1e3
    );
    println!(
        "reference, bare lbaas-dataplane start on the saved config -> serving: median {:.1} ms, p90 {:.1} ms",
        median(bare.clone()).as_secs_f64() * 1e3,
        p90(bare).as_secs_f64() * 1e3
    );
}
