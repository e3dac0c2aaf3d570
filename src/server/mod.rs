//! The server kit: what every lbaas service assembles the same way (health, reflection,
//! telemetry, graceful shutdown), so the three services differ only in their own APIs.

pub mod backoff;
mod database;
pub mod jwt;
pub mod metrics;
mod telemetry;
pub mod tls;
pub mod tokens;

pub use backoff::Backoff;
pub use database::{begin_write, connect_database};

pub use telemetry::{Telemetry, TelemetryConfig, inject_context, rpc_span, traced};

use tonic_health::server::HealthReporter;

/// The most calls one connection may have waiting on a handler; past it a call is refused at
/// once with RESOURCE_EXHAUSTED (load shedding) instead of queueing.
pub const MAX_CALLS_PER_CONNECTION: usize = 256;
/// The longest a handler may take to answer: a unary call whole, a streaming call until its
/// stream starts (a shorter `grpc-timeout` from the caller wins). Past it: DEADLINE_EXCEEDED.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// HTTP/2 keepalive between the services, both ways: a PING every interval, and a peer that does
/// not answer one within the timeout (a frozen process, a half-open connection, a vanished host)
/// has its connection closed, failing its calls and streams so their owners retry.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// TCP keepalive probes on every connection, for peers that vanish without a word.
pub const TCP_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// The server every lbaas service runs, with the one tower stack of the kit, outermost first:
/// load shedding (RESOURCE_EXHAUSTED when full), a concurrency limit of
/// [`MAX_CALLS_PER_CONNECTION`] per connection, and a per-call timeout ([`CALL_TIMEOUT`]); plus
/// HTTP/2 and TCP keepalive. Each service then adds its tracing span and RPC metrics layers.
pub fn server() -> tonic::transport::Server {
    server_with(MAX_CALLS_PER_CONNECTION, CALL_TIMEOUT)
}

/// [`server`] with other limits (for tests).
pub fn server_with(
    calls_per_connection: usize,
    call_timeout: std::time::Duration,
) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .load_shed(true)
        .concurrency_limit_per_connection(calls_per_connection)
        .timeout(call_timeout)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(TCP_KEEPALIVE))
}

/// The deadline a caller gave its call (the `grpc-timeout` header), if any.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let split = value.len().checked_sub(1)?;
    let (amount, unit) = value.split_at(split);
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Server reflection in both protocol versions: grpcurl 1.8 speaks v1alpha, newer tools v1.
/// The descriptor sets cover lbaas's contracts and grpc.health.v1.
pub fn reflection_services() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((v1, v1alpha))
}

/// A health reporter that starts NOT_SERVING for the whole server ("") and for each named
/// service; the service flips it to SERVING once its database and dependencies are ready.
pub async fn health_not_serving(
    services: &[&str],
) -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, server) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    for name in services {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::NotServing)
            .await;
    }
    (reporter, server)
}

/// Serves `health` alone, in plaintext, on `addr` when one is given (`--health-listen`), until
/// the returned guard is dropped. The service's own port may speak TLS; this one lets probes that
/// cannot (Kubernetes' gRPC probe) ask grpc.health.v1 and nothing else.
pub async fn serve_health_port<H>(
    addr: Option<std::net::SocketAddr>,
    health: tonic_health::pb::health_server::HealthServer<H>,
) -> anyhow::Result<Option<AbortOnDrop>>
where
    H: tonic_health::pb::health_server::Health,
{
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for health probes on {addr}: {e}"))?;
    tracing::info!(address = %addr, "health probes listening (plaintext, grpc.health.v1 only)");
    let task = tokio::spawn(async move {
        if let Err(e) = server()
            .add_service(health)
            .serve_with_incoming(incoming(listener))
            .await
        {
            tracing::warn!(error = %e, "the health probe port stopped");
        }
    });
    Ok(Some(AbortOnDrop(task)))
}

/// Marks the whole server and each named service SERVING.
pub async fn mark_serving(reporter: &HealthReporter, services: &[&str]) {
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    for name in services {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
}

/// Resolves on SIGTERM or Ctrl-C, whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received, draining");
}

/// The connections a service accepts on `listener`, with Nagle's algorithm off: small gRPC frames
/// must not wait for the peer's delayed ACK (that wait is 40 ms per round trip on Linux).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Aborts a background task when dropped, so what a service starts ends with it, even when the
/// service's future is dropped (a crash in tests) rather than shut down.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Milliseconds since the Unix epoch: how every service stamps times in its database and messages.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::{
        pin::Pin,
        sync::Arc,
        task::{Context, Poll},
        time::Duration,
    };

    /// A handler that answers only once released, and counts the calls it holds.
    #[derive(Clone)]
    struct Slow {
        release: Arc<tokio::sync::Notify>,
        holding: Arc<tokio::sync::watch::Sender<usize>>,
    }

    impl tonic::server::NamedService for Slow {
        const NAME: &'static str = "test.Slow";
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Slow {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future =
            Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
            let (release, holding) = (self.release.clone(), self.holding.clone());
            Box::pin(async move {
                let released = release.notified();
                holding.send_modify(|n| *n += 1);
                released.await;
                Ok(tonic::Status::unavailable("released").into_http())
            })
        }
    }

    /// A server with the kit's stack and these limits, and a channel to it.
    async fn serve(
        calls_per_connection: usize,
        call_timeout: Duration,
    ) -> (Slow, tonic::transport::Channel, super::AbortOnDrop) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let slow = Slow {
            release: Arc::new(tokio::sync::Notify::new()),
            holding: Arc::new(tokio::sync::watch::channel(0).0),
        };
        let server = super::server_with(calls_per_connection, call_timeout)
            .add_service(slow.clone())
            .serve_with_incoming(super::incoming(listener));
        let task = super::AbortOnDrop(tokio::spawn(async move {
            let _ = server.await;
        }));
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        (slow, channel, task)
    }

    async fn call(channel: tonic::transport::Channel) -> tonic::Status {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        grpc.unary::<(), (), _>(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/test.Slow/Call"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err()
    }

    /// Past the per-connection limit a call is refused at once (RESOURCE_EXHAUSTED), not queued.
    #[tokio::test]
    async fn calls_past_the_limit_are_shed() {
        let (slow, channel, _server) = serve(2, Duration::from_secs(30)).await;
        let held: Vec<_> = (0..2)
            .map(|_| tokio::spawn(call(channel.clone())))
            .collect();
        let mut holding = slow.holding.subscribe();
        holding.wait_for(|n| *n == 2).await.unwrap();
        let shed = call(channel.clone()).await;
        assert_eq!(shed.code(), tonic::Code::ResourceExhausted, "{shed:?}");
        slow.release.notify_waiters();
        for handle in held {
            assert_eq!(handle.await.unwrap().message(), "released");
        }
    }

    /// A handler that never answers is cut at the call timeout.
    #[tokio::test]
    async fn a_call_that_is_never_answered_ends_at_the_call_timeout() {
        let (_slow, channel, _server) = serve(8, Duration::from_millis(200)).await;
        let status = tokio::time::timeout(Duration::from_secs(20), call(channel))
            .await
            .expect("the call outlived the server's call timeout");
        assert_ne!(status.message(), "released");
        assert_ne!(status.code(), tonic::Code::Ok);
    }
}
