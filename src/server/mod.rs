//! The server kit: what every lbaas service assembles the same way (health, reflection,
//! telemetry, graceful shutdown), so the three services differ only in their own APIs.

mod database;
pub mod jwt;
pub mod metrics;
mod telemetry;
pub mod tls;
pub mod tokens;

pub use database::{begin_write, connect_database};

pub use telemetry::{Telemetry, TelemetryConfig, inject_context, rpc_span, traced};

use tonic_health::server::HealthReporter;

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
        if let Err(e) = tonic::transport::Server::builder()
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
