//! Health checks for the native driver: every `delay` each enabled member of the pool is checked
//! (TCP: a connection opens; HTTP: the request gets one of the expected codes, through hyper's
//! client); `max_retries` successes in a row bring a member up, `max_retries_down` failures take it
//! down, as HAProxy's rise and fall do. TLS-HELLO: a TLS handshake completes; HTTPS: the HTTP
//! check over TLS (member certificates are not verified, as for re-encryption). HTTP checks speak
//! HTTP/2 where traffic does (h2c pools, and members that choose h2 by ALPN), as HAProxy's checks
//! follow the server's protocol. PING (ICMP) is not offered: the driver refuses it at apply.
use std::{
    collections::HashMap, net::SocketAddr, sync::Arc, sync::atomic::Ordering, time::Duration,
};

use http_body_util::Empty;
use hyper::body::Bytes;
use lbaas::agent::v1::{MonitorConfig, MonitorType};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Pool, tls};
use crate::driver::haproxy::render::expected_codes;

/// Refuses monitors this driver cannot run as asked.
pub fn validate(monitor: &MonitorConfig) -> Result<(), String> {
    if matches!(monitor.r#type(), MonitorType::Http | MonitorType::Https) {
        expected_codes(&monitor.expected_codes, "monitor.expected_codes")
            .map_err(|e| e.to_string())?;
        let method = if monitor.http_method.is_empty() {
            "GET"
        } else {
            &monitor.http_method
        };
        hyper::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("monitor.http_method: {method:?} is not an HTTP method"))?;
        let path = if monitor.url_path.is_empty() {
            "/"
        } else {
            &monitor.url_path
        };
        path.parse::<hyper::Uri>()
            .map_err(|_| format!("monitor.url_path: {path:?} is not a path"))?;
        if !matches!(monitor.http_version.as_str(), "" | "1.0" | "1.1") {
            return Err(format!(
                "monitor.http_version: {:?} is not 1.0 or 1.1",
                monitor.http_version
            ));
        }
        if !monitor.domain_name.is_empty()
            && hyper::header::HeaderValue::from_str(&monitor.domain_name).is_err()
        {
            return Err(format!(
                "monitor.domain_name: {:?} is not a host name",
                monitor.domain_name
            ));
        }
    }
    Ok(())
}

/// Checks the pool's members until aborted; `tls` connects TLS-HELLO and HTTPS checks.
pub async fn run(pool: Arc<Pool>, monitor: MonitorConfig, tls: Option<tokio_rustls::TlsConnector>) {
    let delay = Duration::from_secs(u64::from(monitor.delay_s.max(1)));
    let timeout = Duration::from_secs(u64::from(monitor.timeout_s.max(1))).min(delay);
    let rise = monitor.max_retries.max(1);
    let fall = monitor.max_retries_down.max(1);
    let codes: Vec<u16> = expected_codes(&monitor.expected_codes, "expected_codes")
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    // (successes, failures) in a row per member.
    let mut streaks: HashMap<String, (u32, u32)> = HashMap::new();
    let mut tick = tokio::time::interval(delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let results =
            futures::future::join_all(pool.members.iter().filter(|m| m.admin_up).map(|m| {
                let (monitor, codes, tls) = (&monitor, &codes, &tls);
                let (proxy, h2c) = (pool.proxy, pool.h2c);
                async move {
                    let ok = check(m.check_addr, monitor, codes, tls, (proxy, h2c), timeout).await;
                    (m, ok)
                }
            }))
            .await;
        for (member, ok) in results {
            let streak = streaks.entry(member.id.clone()).or_default();
            *streak = if ok {
                (streak.0 + 1, 0)
            } else {
                (0, streak.1 + 1)
            };
            let up = member.state.up.load(Ordering::Relaxed);
            if up && streak.1 >= fall {
                member.state.up.store(false, Ordering::Relaxed);
                tracing::info!(pool = %pool.id, member = %member.id, "member DOWN");
            } else if !up && streak.0 >= rise {
                member.state.up.store(true, Ordering::Relaxed);
                tracing::info!(pool = %pool.id, member = %member.id, "member UP");
            }
        }
    }
}

async fn check(
    addr: SocketAddr,
    monitor: &MonitorConfig,
    codes: &[u16],
    tls: &Option<tokio_rustls::TlsConnector>,
    (proxy, h2c): (lbaas::agent::v1::ProxyProtocol, bool),
    timeout: Duration,
) -> bool {
    if monitor.r#type() == MonitorType::UdpConnect {
        return udp_connect(addr, timeout).await;
    }
    let probe = async {
        let tls = tls.as_ref();
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        // A PROXY pool's members expect the header on every connection, checks too (as HAProxy
        // sends it): a check is the load balancer's own connection (v1 UNKNOWN, v2 LOCAL).
        if proxy != lbaas::agent::v1::ProxyProtocol::None {
            use tokio::io::AsyncWriteExt as _;
            stream
                .write_all(&super::proxy_header::local(proxy))
                .await
                .ok()?;
        }
        match monitor.r#type() {
            MonitorType::Http => http(stream, addr, monitor, codes, h2c).await,
            MonitorType::Https => {
                let stream = tls?.connect(tls::member_name(addr), stream).await.ok()?;
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                http(stream, addr, monitor, codes, h2).await
            }
            MonitorType::TlsHello => {
                tls?.connect(tls::member_name(addr), stream).await.ok()?;
                Some(true)
            }
            MonitorType::Tcp | MonitorType::Unspecified => Some(true),
            // Refused at apply (UDP-CONNECT is answered above).
            MonitorType::Ping | MonitorType::UdpConnect => Some(false),
        }
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
}

/// UDP-CONNECT (Octavia's, and LVS's UDP check): a datagram to the member on a connected socket.
/// An ICMP port unreachable (ECONNREFUSED on the next receive) means down; an answer, or silence
/// for half the timeout, means up: a UDP service need not answer an empty datagram.
async fn udp_connect(addr: SocketAddr, timeout: Duration) -> bool {
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(socket) = tokio::net::UdpSocket::bind(local).await else {
        return false;
    };
    if socket.connect(addr).await.is_err() || socket.send(b"").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(timeout / 2, socket.recv(&mut buf)).await {
        Err(_) | Ok(Ok(_)) => true,
        Ok(Err(_)) => false,
    }
}

/// Whether the member answers the monitor's request with one of the expected codes (over
/// HTTP/2 when `h2`).
async fn http<I>(
    io: I,
    addr: SocketAddr,
    monitor: &MonitorConfig,
    codes: &[u16],
    h2: bool,
) -> Option<bool>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let method = if monitor.http_method.is_empty() {
        "GET"
    } else {
        &monitor.http_method
    };
    let path = if monitor.url_path.is_empty() {
        "/"
    } else {
        &monitor.url_path
    };
    let host = if monitor.domain_name.is_empty() {
        addr.to_string()
    } else {
        monitor.domain_name.clone()
    };
    // HTTP/1.0 unless the monitor asks for 1.1 (Octavia's default, and HAProxy's).
    let version = if monitor.http_version == "1.1" {
        hyper::Version::HTTP_11
    } else {
        hyper::Version::HTTP_10
    };
    if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .ok()?;
        tokio::spawn(conn);
        // HTTP/2 names the host in the request's authority.
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{host}{path}"))
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        return Some(codes.contains(&response.status().as_u16()));
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .version(version)
        .header(hyper::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    Some(codes.contains(&response.status().as_u16()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::driver::native::tests::http_member;
    use lbaas::agent::v1::ProxyProtocol;

    fn monitor(r#type: MonitorType) -> MonitorConfig {
        MonitorConfig {
            r#type: r#type as i32,
            expected_codes: "200".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn udp_connect_is_down_only_on_port_unreachable() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up = silent.local_addr().unwrap();
        assert!(udp_connect(up, Duration::from_millis(400)).await);
        // A port nobody holds: the kernel answers ICMP port unreachable.
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        assert!(!udp_connect(closed, Duration::from_millis(400)).await);
    }

    #[tokio::test]
    async fn tls_monitors_speak_tls() {
        let cert = tls::tests::cert("member", &["member.internal"]);
        let config = tls::server_config(Some(&cert), &[], None).unwrap();
        let (secure, _, _s) = http_member("secure", Some(config)).await;
        let (plain, _, _p) = http_member("plain", None).await;
        let connector = Some(tokio_rustls::TlsConnector::from(
            tls::member_client_config().unwrap(),
        ));
        let codes = [200];
        let t = Duration::from_secs(5);
        let probe = async |addr, kind| {
            check(
                addr,
                &monitor(kind),
                &codes,
                &connector,
                (ProxyProtocol::None, false),
                t,
            )
            .await
        };
        assert!(probe(secure, MonitorType::Https).await);
        assert!(probe(secure, MonitorType::TlsHello).await);
        assert!(probe(secure, MonitorType::Tcp).await);
        assert!(!probe(secure, MonitorType::Http).await);
        assert!(probe(plain, MonitorType::Http).await);
        assert!(!probe(plain, MonitorType::TlsHello).await);
        assert!(!probe(plain, MonitorType::Https).await);
        let mut wrong_code = monitor(MonitorType::Https);
        wrong_code.expected_codes = "404".into();
        assert!(
            !check(
                secure,
                &wrong_code,
                &[404],
                &connector,
                (ProxyProtocol::None, false),
                t
            )
            .await
        );
        assert!(validate(&wrong_code).is_ok());
        wrong_code.http_method = "NOT A METHOD".into();
        assert!(validate(&wrong_code).is_err());
    }

    /// An HTTP check of an h2c pool speaks HTTP/2 with prior knowledge, as traffic does; a member
    /// that speaks only h2c fails an HTTP/1 check.
    #[tokio::test]
    async fn h2c_pools_are_checked_over_http2() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|r: hyper::Request<_>| async move {
                        let _: &hyper::body::Incoming = r.body();
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            Empty::<Bytes>::new(),
                        ))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
                });
            }
        });
        let t = Duration::from_secs(5);
        let http = monitor(MonitorType::Http);
        assert!(check(addr, &http, &[200], &None, (ProxyProtocol::None, true), t).await);
        assert!(!check(addr, &http, &[200], &None, (ProxyProtocol::None, false), t).await);
        server.abort();
    }
}
