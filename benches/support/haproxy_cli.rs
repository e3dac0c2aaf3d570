//! What the benchmarks need of HAProxy's sockets and of their own samples: one command on a
//! master or stats socket, the current worker in `show proc`, and percentile summaries.
#![allow(dead_code, clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One command on a master CLI or stats socket; empty while the master re-executes for a reload.
pub async fn socket_command(socket: &Path, command: &str) -> String {
    let Ok(mut stream) = tokio::net::UnixStream::connect(socket).await else {
        return String::new();
    };
    let mut answer = String::new();
    if stream
        .write_all(format!("{command}\n").as_bytes())
        .await
        .is_ok()
        && stream.shutdown().await.is_ok()
    {
        let _ = stream.read_to_string(&mut answer).await;
    }
    answer
}

/// The pid of the current worker in a `show proc` answer.
pub fn current_worker(show_proc: &str) -> Option<String> {
    show_proc
        .split("# workers")
        .nth(1)?
        .lines()
        .find(|l| l.contains("worker"))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_owned)
}

/// The bare reload: `haproxy -c` on `cfg`, `reload` on the master CLI, then wait for a new worker.
pub async fn checked_reload(master: &Path, cfg: &Path) {
    let before = current_worker(&socket_command(master, "show proc").await);
    let check = tokio::process::Command::new("haproxy")
        .args(["-c", "-q", "-f"])
        .arg(cfg)
        .status()
        .await
        .unwrap();
    assert!(check.success());
    let _ = socket_command(master, "reload").await;
    loop {
        let worker = current_worker(&socket_command(master, "show proc").await);
        if worker.is_some() && worker != before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Prints p50, p99, min and max of the samples and returns (p50, p99).
pub fn summary(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let pick =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    let (p50, p99) = (pick(0.5), pick(0.99));
    println!(
        "{name:<58} n={:<4} p50={:>8.2} ms  p99={:>8.2} ms  min={:>7.2} ms  max={:>8.2} ms",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
    (p50, p99)
}
