//! Prometheus metrics: every service counts and times its RPCs by method and code (a tower layer
//! on the gRPC server) and serves the process's metrics in the Prometheus text format on
//! `--metrics-listen` (GET /metrics). Service-specific metrics (placements, deploys, applies,
//! device load, member health, per-load-balancer traffic) live beside the code that moves them
//! and register in the same process-wide registry.
use std::{
    convert::Infallible,
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll},
    time::Instant,
};

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, TextEncoder};

/// Latency buckets (seconds) from 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Registers a metric in the process's registry; a name registered twice (two services in one
/// process, as in tests) keeps the first.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(metric: C) -> C {
    let _ = prometheus::default_registry().register(Box::new(metric.clone()));
    metric
}

/// A counter family; `None` only for a malformed name or label (never for the constants used).
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
        .ok()
        .map(register)
}

/// A latency histogram family (`LATENCY_BUCKETS`).
pub fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> Option<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    HistogramVec::new(opts, labels).ok().map(register)
}

/// A gauge family.
pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Option<prometheus::IntGaugeVec> {
    prometheus::IntGaugeVec::new(Opts::new(name, help), labels)
        .ok()
        .map(register)
}

static RPC_REQUESTS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "lbaas_rpc_requests_total",
        "gRPC requests served, by service, method and status code",
        &["service", "method", "code"],
    )
});

static RPC_DURATION: LazyLock<Option<HistogramVec>> = LazyLock::new(|| {
    histogram_vec(
        "lbaas_rpc_duration_seconds",
        "Time to the response headers of gRPC requests, by service and method",
        &["service", "method"],
    )
});

/// The metrics text of this process.
pub fn render() -> String {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Serves GET /metrics on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    let response = if request.uri().path() == "/metrics" {
                        hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(render())))
                    } else {
                        hyper::Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"metrics are at /metrics\n")))
                    };
                    Ok::<_, Infallible>(response.unwrap_or_default())
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Starts the metrics endpoint on `addr` when one is configured.
pub async fn start(
    addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<Option<super::AbortOnDrop>> {
    match addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("binding the metrics endpoint {addr}: {e}"))?;
            tracing::info!(address = %listener.local_addr()?, "metrics at /metrics");
            Ok(Some(super::AbortOnDrop(tokio::spawn(serve(listener)))))
        }
        None => Ok(None),
    }
}

/// A tower layer counting and timing every RPC of `service`.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    service: &'static str,
}

impl RpcMetricsLayer {
    pub fn new(service: &'static str) -> Self {
        LazyLock::force(&RPC_REQUESTS);
        LazyLock::force(&RPC_DURATION);
        Self { service }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    service: &'static str,
}

/// The gRPC status of a response as far as its headers tell: a failed call answers with the
/// status in its headers (trailers-only); one that succeeds, or fails after streaming, carries it
/// in trailers, counted here as OK.
/// Every gRPC method the services serve (`/package.Service/Method`): lbaas's contracts,
/// grpc.health.v1 and server reflection, read from their file descriptors.
static KNOWN_METHODS: LazyLock<std::collections::HashSet<String>> = LazyLock::new(|| {
    use prost::Message as _;
    let mut known = std::collections::HashSet::new();
    for bytes in [
        crate::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    known.insert(format!(
                        "/{package}.{service_name}/{}",
                        method.name.unwrap_or_default()
                    ));
                }
            }
        }
    }
    known
});

/// The method label of a request path: the path itself for a method the services serve,
/// "unknown" for anything else, so that random paths cannot grow the series without bound.
pub fn known_method(path: &str) -> &'static str {
    KNOWN_METHODS
        .get(path)
        .map(String::as_str)
        .unwrap_or("unknown")
}

fn status_code<B>(response: &http::Response<B>) -> &'static str {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    code_name(tonic::Code::from_i32(code))
}

/// The canonical name of a gRPC code (`INVALID_ARGUMENT`), as metrics label it and lbctl prints it.
pub fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone takes the place of the service that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let service = self.service;
        let method = known_method(request.uri().path());
        let started = Instant::now();
        Box::pin(async move {
            let result = inner.call(request).await;
            let code = match &result {
                Ok(response) => status_code(response),
                Err(_) => "UNAVAILABLE",
            };
            if let Some(requests) = &*RPC_REQUESTS {
                requests.with_label_values(&[service, method, code]).inc();
            }
            if let Some(duration) = &*RPC_DURATION {
                duration
                    .with_label_values(&[service, method])
                    .observe(started.elapsed().as_secs_f64());
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn methods_are_labelled_from_the_known_set_only() {
        assert_eq!(
            known_method("/lbaas.api.v1.LoadBalancerService/CreateLoadBalancer"),
            "/lbaas.api.v1.LoadBalancerService/CreateLoadBalancer"
        );
        assert_eq!(
            known_method("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(
            known_method("/lbaas.api.v1.LoadBalancerService/Nope"),
            "unknown"
        );
        assert_eq!(known_method("/random/a8f3"), "unknown");
    }

    #[test]
    fn renders_registered_metrics() {
        let c = counter_vec("lbaas_test_things_total", "Things", &["kind"]).unwrap();
        c.with_label_values(&["a"]).inc_by(3);
        let text = render();
        assert!(
            text.contains("# TYPE lbaas_test_things_total counter"),
            "{text}"
        );
        assert!(
            text.contains("lbaas_test_things_total{kind=\"a\"} 3"),
            "{text}"
        );
    }
}
