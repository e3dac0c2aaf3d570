//! Tracing across the services: a test OTLP receiver gets one trace for one create, with spans
//! from the api (the tenant's CreateLoadBalancer and its deploy), the scheduler (Deploy) and the
//! agent (Apply), the W3C trace context carried between them in gRPC metadata; and the log lines
//! each service writes while serving that create carry the same trace id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::{collections::BTreeMap, time::Duration};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::Span,
};
use support::{Stack, StackOptions};
use tokio::sync::mpsc;

/// An OTLP/gRPC trace receiver that hands every span it gets to the test.
struct Receiver(mpsc::UnboundedSender<Span>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let _ = self.0.send(span);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_create_is_one_trace_across_the_services() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    let (tx, mut spans) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(lbaas::server::incoming(listener)),
    );
    // The services' own subscriber (as `Telemetry::init` builds it), logging into a buffer.
    let logs = Logs::default();
    let telemetry = lbaas::server::Telemetry::init_with_writer(
        &lbaas::server::TelemetryConfig {
            service_name: "lbaas-e2e".into(),
            otlp_endpoint: Some(format!("http://{receiver}")),
            json_logs: true,
        },
        logs.clone(),
    )
    .unwrap();

    let stack = Stack::start(StackOptions {
        driver: "noop",
        ..Default::default()
    })
    .await;
    let mut api = stack.api_client().await;
    let project = support::fresh_project();
    let lb = support::create_active(
        &mut api,
        &project,
        support::populated("traced", 80, vec![support::member_at(9)]),
    )
    .await;

    // Spans by trace, until one trace holds the create and its deploy on all three services.
    let mut traces: BTreeMap<Vec<u8>, Vec<Span>> = BTreeMap::new();
    let found = support::poll_until(
        Duration::from_secs(30),
        "one trace across the services",
        || {
            telemetry.flush();
            while let Ok(span) = spans.try_recv() {
                traces.entry(span.trace_id.clone()).or_default().push(span);
            }
            let found = traces.values().find(|spans| {
                let has = |service: &str, method: &str| {
                    spans.iter().any(|s| {
                        attribute(s, "lbaas.service").as_deref() == Some(service)
                            && attribute(s, "method").is_some_and(|m| m.ends_with(method))
                    })
                };
                has("api", "/CreateLoadBalancer")
                    && has("scheduler", "/Deploy")
                    && has("agent", "/Apply")
            });
            let found = found.cloned();
            async move { found }
        },
    )
    .await;
    let deploy = found
        .iter()
        .find(|s| attribute(s, "loadbalancer").as_deref() == Some(lb.id.as_str()));
    assert!(
        deploy.is_some(),
        "the api's deploy of {} is not in the trace: {:?}",
        lb.id,
        found.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // One trace id, and every span but the root has its parent in the trace.
    let ids: Vec<&Vec<u8>> = found.iter().map(|s| &s.span_id).collect();
    let roots = found
        .iter()
        .filter(|s| s.parent_span_id.is_empty() || !ids.contains(&&s.parent_span_id))
        .count();
    assert_eq!(roots, 1, "the trace is not one tree");

    // The log lines written inside the create's requests carry its trace id, on every service.
    let trace_id: String = found[0]
        .trace_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = logs.text();
    let mut services = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(spans) = entry.get("spans").and_then(|s| s.as_array()) else {
            continue;
        };
        for span in spans {
            if span.get("trace_id").and_then(|t| t.as_str()) == Some(trace_id.as_str())
                && let Some(service) = span.get("lbaas.service").and_then(|s| s.as_str())
            {
                services.insert(service.to_owned());
            }
        }
    }
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        vec!["agent", "api", "scheduler"],
        "log lines with trace id {trace_id}:\n{}",
        text.lines()
            .filter(|l| l.contains(&trace_id))
            .collect::<Vec<_>>()
            .join("\n")
    );
    stack.stop().await;
}

/// A log sink the test can read: every line the services write.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
