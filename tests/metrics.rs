//! Metrics: the Prometheus text every service serves parses with a real Prometheus parser
//! (`promtool check metrics`, Debian's `prometheus` package), and its counters move with what the
//! services do: RPCs by method and code, placements, deploys, driver applies, HAProxy reloads and
//! runtime changes, device load, member health (a member going DOWN) and each load balancer's
//! traffic as its agent counts it. On both drivers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::time::Duration;

use lbaas::api::v1 as pb;
use support::{Backend, Stack, StackOptions, in_project, member_at, populated};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// GET /metrics from `addr`.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4")
    );
    body.to_owned()
}

/// The value of the sample whose name and labels contain every one of `parts`, summed.
fn sample(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn promtool_check(text: &str) {
    let run = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match run {
        Ok(child) => child,
        Err(e) => {
            assert!(!support::in_ci(), "CI=true but promtool cannot run: {e}");
            eprintln!("promtool is not installed (Debian package prometheus): not checked");
            return;
        }
    };
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_on_native() {
    metrics_parse_and_move_with_traffic("native").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    lbaas_no_haproxy,
    ignore = "haproxy is not installed (apt-get install haproxy)"
)]
async fn metrics_move_on_haproxy() {
    metrics_parse_and_move_with_traffic("haproxy").await;
}

async fn metrics_parse_and_move_with_traffic(driver: &'static str) {
    let stack = Stack::start(StackOptions {
        driver,
        ..Default::default()
    })
    .await;
    let device = format!("device=\"{}-{driver}-0\"", stack.agent_config.agent_id);
    // The services of this process share one registry: serve it as `--metrics-listen` does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = listener.local_addr().unwrap();
    let _server = lbaas::server::AbortOnDrop(tokio::spawn(lbaas::server::metrics::serve(listener)));

    let mut api = stack.api_client().await;
    let project = support::fresh_project();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = support::create_active(
        &mut api,
        &project,
        populated(
            "measured",
            8080,
            vec![member_at(a.port()), member_at(b.port())],
        ),
    )
    .await;
    let refused = api
        .create_load_balancer(in_project(
            &project,
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(pb::LoadBalancer::default()),
                request_id: String::new(),
            },
        ))
        .await;
    assert!(refused.is_err());
    // Calls to paths no service serves count as "unknown", never under their own path.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", stack.api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..3 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = format!("/random{i}.Nope/Call{i}");
        let answer = grpc
            .unary::<(), (), _>(
                tonic::Request::new(()),
                http::uri::PathAndQuery::try_from(path).unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(answer.code(), tonic::Code::Unimplemented);
    }

    let before = scrape(metrics).await;
    assert!(
        sample(
            &before,
            "lbaas_rpc_requests_total",
            &[
                "service=\"api\"",
                "method=\"unknown\"",
                "code=\"UNIMPLEMENTED\""
            ]
        ) >= 3.0,
        "unknown methods are not counted as such"
    );
    assert!(
        !before.contains("random0.Nope"),
        "a random path became a series"
    );
    promtool_check(&before);
    let lb_label = format!("loadbalancer=\"{}\"", lb.id);
    let connections = |text: &str| {
        sample(
            text,
            "lbaas_listener_traffic_total",
            &[&lb_label, "counter=\"connections\""],
        )
    };
    let start = connections(&before);
    for _ in 0..20 {
        support::http_get(&format!("{}:8080", lb.vip_address))
            .await
            .unwrap();
    }
    let after = support::poll_until(
        Duration::from_secs(10),
        "traffic counters to move",
        || async {
            let text = scrape(metrics).await;
            (connections(&text) >= start + 20.0).then_some(text)
        },
    )
    .await;
    promtool_check(&after);
    assert!(
        sample(
            &after,
            "lbaas_listener_traffic_total",
            &[&lb_label, "counter=\"bytes_out\""]
        ) > 0.0
    );

    // RPCs by method and code, on each service.
    for (service, method, code) in [
        (
            "api",
            "/lbaas.api.v1.LoadBalancerService/CreateLoadBalancer",
            "OK",
        ),
        (
            "api",
            "/lbaas.api.v1.LoadBalancerService/CreateLoadBalancer",
            "INVALID_ARGUMENT",
        ),
        (
            "scheduler",
            "/lbaas.scheduler.v1.SchedulerService/Deploy",
            "OK",
        ),
        (
            "scheduler",
            "/lbaas.scheduler.v1.AgentRegistryService/RegisterAgent",
            "OK",
        ),
        ("agent", "/lbaas.agent.v1.AgentService/Apply", "OK"),
    ] {
        let labels = [
            format!("service=\"{service}\""),
            format!("method=\"{method}\""),
            format!("code=\"{code}\""),
        ];
        let parts: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert!(
            sample(&after, "lbaas_rpc_requests_total", &parts) >= 1.0,
            "no {service} {method} {code} counted"
        );
    }
    assert!(
        sample(
            &after,
            "lbaas_rpc_duration_seconds_count",
            &["service=\"api\""]
        ) >= 2.0
    );
    assert!(sample(&after, "lbaas_placements_total", &["result=\"placed\""]) >= 1.0);
    assert!(sample(&after, "lbaas_placement_duration_seconds_count", &[]) >= 1.0);
    assert!(
        sample(
            &after,
            "lbaas_deploy_duration_seconds_count",
            &["result=\"settled\""]
        ) >= 1.0
    );
    assert!(sample(&after, "lbaas_agent_applies_total", &["result=\"ok\""]) >= 1.0);
    assert!(sample(&after, "lbaas_device_load", &[]) >= 1.0);
    assert!(sample(&after, "lbaas_device_capacity", &[]) >= 1.0);
    assert!(
        sample(&after, "lbaas_members", &[&device, "health=\"NO_CHECK\""]) >= 2.0,
        "members by health"
    );

    // Member health: with a TCP monitor both members are UP; one backend stopped goes DOWN.
    let pool_id = lb.pool_ids[0].clone();
    api.create_health_monitor(in_project(
        &project,
        pb::CreateHealthMonitorRequest {
            health_monitor: Some(pb::HealthMonitor {
                pool_id: pool_id.clone(),
                ..support::quick_monitor(pb::HealthMonitorType::Tcp)
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    support::poll_until(Duration::from_secs(20), "two members UP", || async {
        let text = scrape(metrics).await;
        (sample(&text, "lbaas_members", &[&device, "health=\"UP\""]) >= 2.0).then_some(())
    })
    .await;
    drop(b);
    let text = support::poll_until(Duration::from_secs(20), "one member DOWN", || async {
        let text = scrape(metrics).await;
        (sample(&text, "lbaas_members", &[&device, "health=\"DOWN\""]) >= 1.0).then_some(text)
    })
    .await;
    assert_eq!(
        sample(&text, "lbaas_members", &[&device, "health=\"UP\""]),
        1.0
    );

    if driver == "haproxy" {
        // The structural changes so far went through reloads (or the first start); a member's
        // weight goes through the runtime API, with no reload.
        let reloads = |text: &str, kind: &str| {
            sample(
                text,
                "lbaas_agent_reloads_total",
                &[&device, &format!("kind=\"{kind}\"")],
            )
        };
        assert!(reloads(&text, "reload") + reloads(&text, "start") >= 1.0);
        let (reloaded, runtime) = (reloads(&text, "reload"), reloads(&text, "runtime"));
        let member_id = support::pool_members(&api, &project, &pool_id).await[0]
            .id
            .clone();
        api.update_member(in_project(
            &project,
            pb::UpdateMemberRequest {
                member: Some(pb::Member {
                    id: member_id,
                    weight: Some(5),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["weight".into()],
                }),
            },
        ))
        .await
        .unwrap();
        support::wait_settled(&api, &project, &lb.id).await;
        let text = scrape(metrics).await;
        promtool_check(&text);
        assert_eq!(reloads(&text, "runtime"), runtime + 1.0, "{text}");
        assert_eq!(
            reloads(&text, "reload"),
            reloaded,
            "a weight change reloaded"
        );
    }
    stack.stop().await;
}
