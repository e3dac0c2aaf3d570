//! Health checks for the native driver: every `delay` each enabled member of the pool is checked
//! (TCP: a connection opens; HTTP: the request gets one of the expected codes, through hyper's
//! client); `max_retries` successes in a row bring a member up, `max_retries_down` failures take it
//! down, as HAProxy's rise and fall do. HTTPS and TLS-HELLO monitors check that the TCP port
//! accepts (this driver has no TLS yet); PING checks TCP too.
use std::{
    collections::HashMap, net::SocketAddr, sync::Arc, sync::atomic::Ordering, time::Duration,
};

use http_body_util::Empty;
use hyper::body::Bytes;
use lbaas::agent::v1::{MonitorConfig, MonitorType};

use super::Pool;
use crate::driver::haproxy::render::expected_codes;

/// Refuses monitors this driver cannot run as asked.
pub fn validate(monitor: &MonitorConfig) -> Result<(), String> {
    if monitor.r#type() == MonitorType::Http {
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
    }
    Ok(())
}

/// Checks the pool's members until aborted.
pub async fn run(pool: Arc<Pool>, monitor: MonitorConfig) {
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
                let (monitor, codes) = (&monitor, &codes);
                async move { (m, check(m.addr, monitor, codes, timeout).await) }
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
    timeout: Duration,
) -> bool {
    let probe = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        if monitor.r#type() != MonitorType::Http {
            return Some(true);
        }
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
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
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        Some(codes.contains(&response.status().as_u16()))
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
}
