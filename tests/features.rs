//! Load-balancing features proven by real traffic on each driver, the way Octavia's scenario tests
//! prove theirs: balance counts per algorithm, weights, backups, stickiness per persistence type,
//! allowed CIDRs (a second loopback address as the outsider), inserted headers, every L7 rule type
//! and action, TLS termination with the right certificate per SNI name, re-encryption to members,
//! UDP, client source IP, health checks, access logs, HTTP/2 and gRPC. Each test runs on HAProxy and on the
//! native data plane (UDP: native only; HAProxy refuses it with the missing capability named).
//! This file holds the shared helpers; each concern is a module of its own in `features/`, in
//! the one test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use lbaas::api::v1::{self as pb, load_balancer_service_client::LoadBalancerServiceClient};
use support::{Backend, Db, Stack, StackOptions, in_project, member_at, wait_settled};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tonic::transport::Channel;

type Api = LoadBalancerServiceClient<Channel>;

/// Runs a scenario on HAProxy and on the native data plane (SQLite; the data plane does not care
/// which database the api uses).
macro_rules! on_each_driver {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                lbaas_no_haproxy,
                ignore = "haproxy is not installed (apt-get install haproxy)"
            )]
            async fn haproxy() {
                super::$name("haproxy").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn native() {
                super::$name("native").await;
            }
        }
    };
}

async fn start(driver: &'static str) -> (Stack, Api, String) {
    let stack = Stack::start(StackOptions {
        driver,
        ..Default::default()
    })
    .await;
    let api = stack.api_client().await;
    (stack, api, support::fresh_project())
}

fn pool(protocol: pb::Protocol, algorithm: pb::LbAlgorithm, members: Vec<pb::Member>) -> pb::Pool {
    pb::Pool {
        protocol: protocol as i32,
        lb_algorithm: algorithm as i32,
        members,
        ..Default::default()
    }
}

fn listener(protocol: pb::Protocol, port: i32, default_pool: pb::Pool) -> pb::Listener {
    pb::Listener {
        protocol: protocol as i32,
        protocol_port: port,
        default_pool: Some(default_pool),
        ..Default::default()
    }
}

fn http(port: i32, default_pool: pb::Pool) -> pb::Listener {
    listener(pb::Protocol::Http, port, default_pool)
}

fn weighted(port: i32, weight: i32) -> pb::Member {
    pb::Member {
        weight: Some(weight),
        ..member_at(port)
    }
}

fn lb(name: &str, listeners: Vec<pb::Listener>) -> pb::LoadBalancer {
    pb::LoadBalancer {
        name: name.into(),
        listeners,
        ..Default::default()
    }
}

/// A load balancer with one `protocol` listener on `port` and a round-robin pool (of the
/// protocol the listener takes) over members on `ports`.
fn single(name: &str, protocol: pb::Protocol, port: i32, ports: &[u16]) -> pb::LoadBalancer {
    let pool_protocol = pool_protocol_for(protocol);
    let members = ports.iter().map(|p| member_at(i32::from(*p))).collect();
    lb(
        name,
        vec![listener(
            protocol,
            port,
            pool(pool_protocol, pb::LbAlgorithm::RoundRobin, members),
        )],
    )
}

/// One HTTP/1.1 response: status, headers (names lower-cased) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    let mut head = format!("GET {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str("host: lbaas-test\r\n");
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no HTTP response: {text:?}"),
        )
    })?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

async fn connect_from(
    addr: &str,
    source: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// One GET on a new connection, from `source` when given.
async fn get_from(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    source: Option<IpAddr>,
) -> std::io::Result<Reply> {
    exchange(connect_from(addr, source).await?, path, headers).await
}

async fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    get_from(addr, path, headers, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr} failed: {e}"))
}

/// Bodies of `n` requests, counted.
async fn counts(addr: &str, n: usize, headers: &[(&str, &str)]) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for _ in 0..n {
        let reply = get(addr, "/", headers).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        *c.entry(reply.body).or_default() += 1;
    }
    c
}

/// Waits until each named member of `pool_id` has its wanted operating status.
async fn members_become(
    api: &Api,
    project: &str,
    pool_id: &str,
    want: &[(&str, pb::OperatingStatus)],
    what: &str,
) {
    support::poll_until(Duration::from_secs(30), what, || {
        let (api, project, pool_id) = (api.clone(), project.to_owned(), pool_id.to_owned());
        let want: Vec<(String, pb::OperatingStatus)> =
            want.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect();
        async move {
            let members = support::pool_members(&api, &project, &pool_id).await;
            want.iter()
                .all(|(name, status)| {
                    members
                        .iter()
                        .any(|m| m.name == *name && m.operating_status() == *status)
                })
                .then_some(())
        }
    })
    .await;
}

fn split(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn rule(
    kind: pb::L7RuleType,
    compare: pb::L7RuleCompareType,
    key: &str,
    value: &str,
    invert: bool,
) -> pb::L7Rule {
    pb::L7Rule {
        r#type: kind as i32,
        compare_type: compare as i32,
        key: key.into(),
        value: value.into(),
        invert,
        ..Default::default()
    }
}

mod tls {
    use std::sync::Arc;

    use rustls::{
        DigitallySignedStruct, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    };
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    /// Accepts any server certificate: the tests check which one was served themselves.
    #[derive(Debug)]
    pub struct AcceptAny;

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    pub fn connector() -> tokio_rustls::TlsConnector {
        offering(&[])
    }

    /// A connector that offers these ALPN protocols.
    pub fn offering(alpn: &[&str]) -> tokio_rustls::TlsConnector {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

struct Generated {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn generate(names: &[&str]) -> Generated {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    Generated {
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        der: made.cert.der().to_vec(),
    }
}

/// Waits until the scheduler knows what the stack's device can do (its agent has registered it).
async fn capabilities_known(stack: &Stack) {
    let devices = stack.devices().await;
    support::poll_until(Duration::from_secs(10), "the device's capabilities", || {
        let mut devices = devices.clone();
        async move {
            let listed = devices
                .list_devices(lbaas::scheduler::v1::ListDevicesRequest::default())
                .await
                .ok()?
                .into_inner();
            listed
                .devices
                .iter()
                .any(|d| !d.capabilities.is_empty())
                .then_some(())
        }
    })
    .await;
}

/// The pool protocol a listener protocol takes.
fn pool_protocol_for(listener: pb::Protocol) -> pb::Protocol {
    match listener {
        pb::Protocol::TerminatedHttps => pb::Protocol::Http,
        other => other,
    }
}

// One module per concern; each runs its scenarios on each driver.
#[path = "features/access.rs"]
mod access;
#[path = "features/balancing.rs"]
mod balancing;
#[path = "features/grpc.rs"]
mod grpc;
#[path = "features/l7.rs"]
mod l7;
#[path = "features/logs.rs"]
mod logs;
#[path = "features/matrix.rs"]
mod matrix;
#[path = "features/monitors.rs"]
mod monitors;
#[path = "features/persistence.rs"]
mod persistence;
#[path = "features/proxy.rs"]
mod proxy;
#[path = "features/termination.rs"]
mod termination;
#[path = "features/timeouts.rs"]
mod timeouts;
#[path = "features/udp.rs"]
mod udp;
