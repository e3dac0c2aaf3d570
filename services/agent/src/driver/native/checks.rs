//! Health checks for the native driver: every `delay` each enabled member of the pool is checked
//! (TCP: a connection opens; HTTP: the request gets one of the expected codes, through hyper's
//! client); `max_retries` successes in a row bring a member up, `max_retries_down` failures take it
//! down, as HAProxy's rise and fall do. TLS-HELLO: a TLS handshake completes; HTTPS: the HTTP
//! check over TLS (member certificates are not verified, as for re-encryption). PING (ICMP) is not
//! offered: the driver refuses it at apply.
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
                let proxy = pool.proxy;
                async move { (m, check(m.addr, monitor, codes, tls, proxy, timeout).await) }
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
    proxy: lbaas::agent::v1::ProxyProtocol,
    timeout: Duration,
) -> bool {
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
            MonitorType::Http => http(stream, addr, monitor, codes).await,
            MonitorType::Https => {
                let stream = tls?.connect(tls::member_name(addr), stream).await.ok()?;
                http(stream, addr, monitor, codes).await
            }
            MonitorType::TlsHello => {
                tls?.connect(tls::member_name(addr), stream).await.ok()?;
                Some(true)
            }
            MonitorType::Tcp | MonitorType::Unspecified => Some(true),
            // Refused at apply.
            MonitorType::Ping => Some(false),
        }
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
}

/// Whether the member answers the monitor's request with one of the expected codes.
async fn http<I>(io: I, addr: SocketAddr, monitor: &MonitorConfig, codes: &[u16]) -> Option<bool>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .ok()?;
    tokio::spawn(conn);
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
    async fn tls_monitors_speak_tls() {
        let cert = tls::tests::cert("member", &["member.internal"]);
        let config = tls::server_config(Some(&cert), &[], tls::provider()).unwrap();
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
                ProxyProtocol::None,
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
                ProxyProtocol::None,
                t
            )
            .await
        );
        assert!(validate(&wrong_code).is_ok());
        wrong_code.http_method = "NOT A METHOD".into();
        assert!(validate(&wrong_code).is_err());
    }
}
