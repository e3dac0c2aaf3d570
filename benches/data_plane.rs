//! The native data plane against HAProxy on the same backends, in the same run: requests per
//! second and latency with a new connection per request and with keep-alive connections, 16
//! clients each, next to the backends reached directly. Run: `cargo bench --bench data_plane`
//! (`LBAAS_BENCH_SECONDS` sets each phase's length, 5 by default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lbaas::api::v1 as pb;
use support::{Stack, StackOptions, in_project};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const CLIENTS: usize = 16;

/// A backend that keeps connections alive and answers every request with its name.
async fn keep_alive_backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        buf.drain(..end + 4);
                        let close = head.contains("connection: close");
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{}\r\n{name}",
                            name.len(),
                            if close { "connection: close\r\n" } else { "" }
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    port
}

/// Reads one response with a content-length body; false on any error.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let ok = head.starts_with("http/1.1 200");
                buf.drain(..end + 4 + length);
                return ok;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

struct Phase {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

async fn run(addr: String, keep_alive: bool, length: Duration) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, addr) = (stop.clone(), addr.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut conn: Option<(TcpStream, Vec<u8>)> = None;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = if keep_alive {
                        if conn.is_none() {
                            conn = TcpStream::connect(&addr).await.ok().map(|s| {
                                let _ = s.set_nodelay(true);
                                (s, Vec::new())
                            });
                        }
                        match conn.as_mut() {
                            Some((s, buf)) => {
                                s.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
                                    .await
                                    .is_ok()
                                    && read_response(s, buf).await
                            }
                            None => false,
                        }
                    } else {
                        support::http_get(&addr).await.is_ok()
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                        conn = None;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    let pick = |p: f64| all[((p * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1];
    Phase {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
        errors,
    }
}

async fn load_balancer(driver: &'static str, ports: [u16; 2]) -> (Stack, String) {
    let stack = Stack::start(StackOptions {
        driver,
        ..Default::default()
    })
    .await;
    let mut api = stack.api_client().await;
    let lb = api
        .create_load_balancer(in_project(
            "bench",
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(support::populated(
                    "bench",
                    8080,
                    ports
                        .iter()
                        .map(|p| support::member_at(i32::from(*p)))
                        .collect(),
                )),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let lb = support::wait_settled(&api, "bench", &lb.id).await;
    assert_eq!(
        lb.provisioning_status(),
        pb::ProvisioningStatus::Active,
        "{}",
        lb.status_reason
    );
    (stack, format!("{}:8080", lb.vip_address))
}

#[tokio::main]
async fn main() {
    assert!(support::haproxy_available(), "this benchmark needs haproxy");
    let length = Duration::from_secs(
        std::env::var("LBAAS_BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
    );
    let ports = [
        keep_alive_backend("one").await,
        keep_alive_backend("two").await,
    ];
    let (haproxy_stack, haproxy_vip) = load_balancer("haproxy", ports).await;
    let (native_stack, native_vip) = load_balancer("native", ports).await;
    let direct = format!("127.0.0.1:{}", ports[0]);
    println!("| mode | target | requests/s | p50 | p99 | errors |");
    println!("|---|---|---|---|---|---|");
    for keep_alive in [false, true] {
        let mode = if keep_alive {
            "keep-alive"
        } else {
            "new connection per request"
        };
        let mut rates = Vec::new();
        for (name, addr) in [
            ("backend directly", &direct),
            ("HAProxy 2.6", &haproxy_vip),
            ("native", &native_vip),
        ] {
            let phase = run(addr.clone(), keep_alive, length).await;
            println!(
                "| {mode} | {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
                phase.per_second,
                phase.p50.as_secs_f64() * 1e3,
                phase.p99.as_secs_f64() * 1e3,
                phase.errors
            );
            rates.push(phase.per_second);
        }
        println!(
            "| {mode} | native / HAProxy | {:.2}x | | | |",
            rates[2] / rates[1]
        );
    }
    haproxy_stack.stop().await;
    native_stack.stop().await;
}
