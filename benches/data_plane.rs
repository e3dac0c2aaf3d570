//! The native data plane against HAProxy on the same backends, in the same run: requests per
//! second and latency with a new connection per request and with keep-alive connections, 16
//! clients each, next to the backends reached directly; then the same over TLS terminated by each
//! (a TERMINATED_HTTPS listener: a full handshake per request, and keep-alive), with the CPU time
//! the load balancer's processes spent per request (every `haproxy` or `lbaas-dataplane` process
//! on the machine, so run nothing else of the kind meanwhile). Run:
//! `cargo bench --bench data_plane` (`LBAAS_BENCH_SECONDS` sets each phase's length, 5 by
//! default).
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
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The name the TERMINATED_HTTPS listeners' certificate is for.
const TLS_NAME: &str = "bench.example.com";

/// A client connection, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How clients reach a target: plain TCP, or TLS (verifying the listener's certificate).
#[derive(Clone)]
enum Dial {
    Plain(String),
    Tls(String, tokio_rustls::TlsConnector),
}

impl Dial {
    async fn connect(&self) -> Option<Box<dyn Stream>> {
        let addr = match self {
            Dial::Plain(a) | Dial::Tls(a, _) => a,
        };
        let tcp = TcpStream::connect(addr).await.ok()?;
        let _ = tcp.set_nodelay(true);
        match self {
            Dial::Plain(_) => Some(Box::new(tcp)),
            Dial::Tls(_, connector) => {
                let name = rustls_pki_types::ServerName::try_from(TLS_NAME).ok()?;
                Some(Box::new(connector.connect(name, tcp).await.ok()?))
            }
        }
    }
}

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
async fn read_response<S: AsyncRead + Unpin + ?Sized>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
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
    /// CPU time the load balancer's own processes used per request (none for the backend).
    cpu_per_request: Option<Duration>,
}

/// CPU time (user + system) used so far by every process whose name (`/proc/PID/comm`) is `comm`:
/// the load balancer's processes (HAProxy's master and worker, or `lbaas-dataplane`).
fn cpu_of(comm: &str) -> Duration {
    // Linux reports these in clock ticks of USER_HZ, 100 per second on every architecture the
    // project runs on.
    const TICK: Duration = Duration::from_millis(10);
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == comm)
            && let Ok(stat) = std::fs::read_to_string(dir.join("stat"))
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            // After the name: state is field 3; utime and stime are fields 14 and 15.
            let fields: Vec<&str> = rest.split_whitespace().collect();
            for i in [11, 12] {
                ticks += fields
                    .get(i)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    TICK * u32::try_from(ticks).unwrap_or(u32::MAX)
}

/// One request on a new connection that the server closes after answering (as
/// `support::http_get` does, over TLS too): the response, then the close.
async fn one_shot(dial: &Dial) -> bool {
    let Some(mut s) = dial.connect().await else {
        return false;
    };
    let mut buf = Vec::new();
    if s.write_all(b"GET / HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .await
        .is_err()
        || !read_response(&mut s, &mut buf).await
    {
        return false;
    }
    let mut rest = [0u8; 256];
    matches!(s.read(&mut rest).await, Ok(0) | Err(_))
}

async fn run(dial: Dial, keep_alive: bool, length: Duration, comm: Option<&str>) -> Phase {
    let cpu_before = comm.map(cpu_of);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, dial) = (stop.clone(), dial.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut conn: Option<(Box<dyn Stream>, Vec<u8>)> = None;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = if keep_alive {
                        if conn.is_none() {
                            conn = dial.connect().await.map(|s| (s, Vec::new()));
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
                        match &dial {
                            Dial::Plain(addr) => support::http_get(addr).await.is_ok(),
                            Dial::Tls(..) => one_shot(&dial).await,
                        }
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
    let cpu_per_request = comm.zip(cpu_before).map(|(comm, before)| {
        (cpu_of(comm).saturating_sub(before)) / u32::try_from(all.len().max(1)).unwrap_or(1)
    });
    all.sort();
    let pick = |p: f64| all[((p * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1];
    Phase {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
        errors,
        cpu_per_request,
    }
}

/// A load balancer over `ports` with an HTTP listener on 8080 and a TERMINATED_HTTPS one on 8443
/// (certificate `cert`), on a stack of its own with `driver`. Returns the stack and the VIP.
async fn load_balancer(
    driver: &'static str,
    ports: [u16; 2],
    cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> (Stack, String) {
    let stack = Stack::start(StackOptions {
        driver,
        ..Default::default()
    })
    .await;
    let mut api = stack.api_client().await;
    let cert_id = stack
        .certificate_client()
        .await
        .create_certificate(in_project(
            "bench",
            pb::CreateCertificateRequest {
                certificate: Some(pb::Certificate {
                    name: "bench".into(),
                    certificate_pem: cert.cert.pem(),
                    private_key_pem: cert.signing_key.serialize_pem(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let members = || {
        ports
            .iter()
            .map(|p| support::member_at(i32::from(*p)))
            .collect()
    };
    let mut spec = support::populated("bench", 8080, members());
    spec.listeners.push(pb::Listener {
        protocol: pb::Protocol::TerminatedHttps as i32,
        protocol_port: 8443,
        default_tls_container_ref: cert_id,
        default_pool: Some(support::http_pool(members())),
        ..Default::default()
    });
    let lb = api
        .create_load_balancer(in_project(
            "bench",
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(spec),
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
    (stack, lb.vip_address)
}

#[tokio::main]
async fn main() {
    support::require_haproxy();
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
    let cert = rcgen::generate_simple_self_signed(vec![TLS_NAME.to_owned()]).unwrap();
    let (haproxy_stack, haproxy_vip) = load_balancer("haproxy", ports, &cert).await;
    let (native_stack, native_vip) = load_balancer("native", ports, &cert).await;
    // Clients trust the listeners' certificate and verify it, as a browser would.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ));
    let plain = |addr: String| Dial::Plain(addr);
    let direct = plain(format!("127.0.0.1:{}", ports[0]));
    println!("| mode | target | requests/s | p50 | p99 | errors | LB CPU per request |");
    println!("|---|---|---|---|---|---|---|");
    for (tls_mode, keep_alive) in [(false, false), (false, true), (true, false), (true, true)] {
        let mode = match (tls_mode, keep_alive) {
            (false, false) => "new connection per request",
            (false, true) => "keep-alive",
            (true, false) => "TLS, new connection (full handshake) per request",
            (true, true) => "TLS keep-alive",
        };
        let targets: Vec<(&str, Dial, Option<&str>)> = if tls_mode {
            vec![
                (
                    "HAProxy 2.6",
                    Dial::Tls(format!("{haproxy_vip}:8443"), tls.clone()),
                    Some("haproxy"),
                ),
                (
                    "native",
                    Dial::Tls(format!("{native_vip}:8443"), tls.clone()),
                    Some("lbaas-dataplane"),
                ),
            ]
        } else {
            vec![
                ("backend directly", direct.clone(), None),
                (
                    "HAProxy 2.6",
                    plain(format!("{haproxy_vip}:8080")),
                    Some("haproxy"),
                ),
                (
                    "native",
                    plain(format!("{native_vip}:8080")),
                    Some("lbaas-dataplane"),
                ),
            ]
        };
        let mut rates = Vec::new();
        for (name, dial, comm) in targets {
            let phase = run(dial, keep_alive, length, comm).await;
            println!(
                "| {mode} | {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {} |",
                phase.per_second,
                phase.p50.as_secs_f64() * 1e3,
                phase.p99.as_secs_f64() * 1e3,
                phase.errors,
                phase.cpu_per_request.map_or(String::new(), |c| format!(
                    "{:.1} µs",
                    c.as_secs_f64() * 1e6
                )),
            );
            rates.push(phase.per_second);
        }
        let n = rates.len();
        println!(
            "| {mode} | native / HAProxy | {:.2}x | | | | |",
            rates[n - 1] / rates[n - 2]
        );
    }
    haproxy_stack.stop().await;
    native_stack.stop().await;
}
