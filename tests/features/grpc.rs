//! HTTP/2 and gRPC through a load balancer: a TERMINATED_HTTPS listener speaks h2 to clients by
//! ALPN and an h2c pool reaches gRPC members, so grpc.health.v1 calls are balanced over two real
//! tonic servers; a re-encrypting pool reaches gRPC members that speak h2 over TLS (chosen by
//! ALPN); the listener's TLS options (versions, ALPN) are what clients meet.
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use lbaas::api::v1 as pb;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{Generated, generate, lb, listener, pool, start, tls};
use crate::support::{self, in_project, member_at};

/// A health service that reports `name` SERVING and every other member's name NOT_SERVING, so a
/// Check names who answered.
async fn health_of(
    name: &str,
    others: &[&str],
) -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(name, tonic_health::ServingStatus::Serving)
        .await;
    for other in others {
        reporter
            .set_service_status(*other, tonic_health::ServingStatus::NotServing)
            .await;
    }
    (reporter, health)
}

/// A gRPC server in clear text (h2c, as gRPC servers speak) with `health_of(name, others)`, and
/// the number of connections it accepted (health checks open one each).
async fn grpc_member(
    name: &str,
    others: &[&str],
) -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let (reporter, health) = health_of(name, others).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let incoming = futures::stream::unfold(listener, move |listener| {
        let counter = counter.clone();
        async move {
            let (tcp, _) = listener.accept().await.ok()?;
            counter.fetch_add(1, Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(tcp), listener))
        }
    });
    let task = tokio::spawn(async move {
        let _reporter = reporter;
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming)
            .await;
    });
    (port, accepted, task)
}

/// A member's TLS connection, as tonic's server takes it.
struct TlsIo(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A gRPC server that speaks only h2 over TLS (ALPN h2, a self-signed certificate), with
/// `health_of(name, others)`.
async fn grpc_tls_member(name: &str, others: &[&str]) -> (u16, tokio::task::JoinHandle<()>) {
    let (reporter, health) = health_of(name, others).await;
    let cert = generate(&["member.internal"]);
    let chain = vec![rustls_pki_types::CertificateDer::from(cert.der.clone())];
    let key = rustls_pki_types::pem::PemObject::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = futures::stream::unfold((listener, acceptor), |(listener, acceptor)| async {
        loop {
            let (tcp, _) = listener.accept().await.ok()?;
            if let Ok(stream) = acceptor.accept(tcp).await {
                return Some((Ok::<_, std::io::Error>(TlsIo(stream)), (listener, acceptor)));
            }
        }
    });
    let task = tokio::spawn(async move {
        let _reporter = reporter;
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming)
            .await;
    });
    (port, task)
}

/// Ten Checks of "member-a" through the channel: how many each member answered.
async fn balanced_checks(
    driver: &str,
    health: &mut HealthClient<tonic::transport::Channel>,
) -> std::collections::BTreeMap<&'static str, usize> {
    let mut answered = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let status = health
            .check(HealthCheckRequest {
                service: "member-a".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{driver}: Check through the load balancer: {e}"))
            .into_inner()
            .status();
        let by = match status {
            ServingStatus::Serving => "a",
            ServingStatus::NotServing => "b",
            other => panic!("{driver}: unexpected status {other:?}"),
        };
        *answered.entry(by).or_insert(0usize) += 1;
    }
    answered
}

/// A TLS connection to `addr` offering `alpn`, accepting only `versions`.
async fn tls_connect(
    addr: &str,
    alpn: &[&str],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(tls::AcceptAny))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("grpc.example.com").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// A gRPC channel through the load balancer: TLS with ALPN h2, then HTTP/2.
async fn grpc_channel(addr: String) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_static("http://grpc.example.com")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let addr = addr.clone();
            async move {
                let stream = tls_connect(&addr, &["h2"], rustls::ALL_VERSIONS).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .unwrap()
}

/// A certificate for grpc.example.com in `project`: its id.
async fn upload(stack: &crate::support::Stack, project: &str) -> String {
    let cert: Generated = generate(&["grpc.example.com"]);
    stack
        .certificate_client()
        .await
        .create_certificate(in_project(
            project,
            pb::CreateCertificateRequest {
                certificate: Some(pb::Certificate {
                    name: "grpc".into(),
                    certificate_pem: cert.cert_pem.clone(),
                    private_key_pem: cert.key_pem.clone(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

/// TLS before 1.2 and CBC ciphers: HAProxy serves them; the native data plane (rustls) has
/// neither, so on a native fleet the api refuses them with the capability named, on create and
/// on update, and stores nothing.
pub async fn legacy_tls(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let cert_id = upload(&stack, &project).await;
    let legacy = |port: i32| pb::Listener {
        default_tls_container_ref: cert_id.clone(),
        tls_versions: vec!["TLSv1.1".into(), "TLSv1.2".into()],
        ..listener(
            pb::Protocol::TerminatedHttps,
            port,
            pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, vec![]),
        )
    };
    let create = pb::CreateLoadBalancerRequest {
        load_balancer: Some(lb("legacy", vec![legacy(443)])),
        request_id: String::new(),
    };
    if driver == "haproxy" {
        let created = api
            .create_load_balancer(in_project(&project, create))
            .await
            .unwrap()
            .into_inner();
        let settled = support::wait_settled(&api, &project, &created.id).await;
        assert_eq!(
            settled.provisioning_status(),
            pb::ProvisioningStatus::Active,
            "{}",
            settled.status_reason
        );
        stack.stop().await;
        return;
    }
    let refused = api
        .create_load_balancer(in_project(&project, create))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        support::violations(&refused)
            .contains(&"load_balancer.listeners[0].tls_versions".to_owned()),
        "{refused:?}"
    );
    assert!(refused.message().contains("tls_legacy"), "{refused:?}");
    // On update: a CBC cipher on a listener that serves.
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "modern",
            vec![pb::Listener {
                tls_versions: vec![],
                ..legacy(443)
            }],
        ),
    )
    .await;
    let refused = api
        .update_listener(in_project(
            &project,
            pb::UpdateListenerRequest {
                listener: Some(pb::Listener {
                    id: created.listener_ids[0].clone(),
                    tls_ciphers: "ECDHE-RSA-AES128-SHA".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["tls_ciphers".into()],
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(support::violations(&refused), ["listener.tls_ciphers"]);
    let shown = api
        .get_listener(in_project(
            &project,
            pb::GetListenerRequest {
                id: created.listener_ids[0].clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.tls_ciphers, lbaas::tls_options::DEFAULT_CIPHERS);
    stack.stop().await;
}

pub async fn grpc_through_terminated_https(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (a_port, a_seen, a_task) = grpc_member("member-a", &["member-b"]).await;
    let (b_port, b_seen, b_task) = grpc_member("member-b", &["member-a"]).await;
    // An HTTP/1-only member: checks that speak HTTP/2, as traffic to this pool does, fail it.
    let h1_only = crate::support::Backend::start("h1").await;
    let cert_id = upload(&stack, &project).await;
    let members = pb::Pool {
        alpn_protocols: vec!["h2".into()],
        healthmonitor: Some(pb::HealthMonitor {
            r#type: pb::HealthMonitorType::Http as i32,
            delay_s: 1,
            timeout_s: 1,
            max_retries: 1,
            max_retries_down: 1,
            url_path: "/".into(),
            expected_codes: "200".into(),
            ..Default::default()
        }),
        ..pool(
            pb::Protocol::Http,
            pb::LbAlgorithm::RoundRobin,
            vec![
                member_at(i32::from(a_port)),
                member_at(i32::from(b_port)),
                member_at(i32::from(h1_only.addr.port())),
            ],
        )
    };
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "grpc",
            vec![pb::Listener {
                default_tls_container_ref: cert_id,
                tls_versions: vec!["TLSv1.3".into()],
                ..listener(pb::Protocol::TerminatedHttps, 8443, members)
            }],
        ),
    )
    .await;
    // The listener shows Octavia's defaults for what was not named, and what was.
    let shown = api
        .get_listener(in_project(
            &project,
            pb::GetListenerRequest {
                id: created.listener_ids[0].clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.alpn_protocols, ["h2", "http/1.1", "http/1.0"]);
    assert_eq!(shown.tls_versions, ["TLSv1.3"]);
    assert_eq!(shown.tls_ciphers, lbaas::tls_options::DEFAULT_CIPHERS);
    let pool_shown = api
        .get_pool(in_project(
            &project,
            pb::GetPoolRequest {
                id: created.pool_ids[0].clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pool_shown.alpn_protocols, ["h2"]);

    // Health checks speak h2 to the h2c pool (gRPC answers GET / with 200 and grpc-status
    // UNIMPLEMENTED): after several checks of each gRPC member (one failure would take it down),
    // both are ONLINE and the HTTP/1-only member is ERROR.
    support::poll_until(Duration::from_secs(30), "h2 health checks", || {
        let (api, project, pool_id) = (api.clone(), project.clone(), created.pool_ids[0].clone());
        let seen = (a_seen.load(Ordering::SeqCst), b_seen.load(Ordering::SeqCst));
        let h1_port = i32::from(h1_only.addr.port());
        async move {
            if seen.0 < 3 || seen.1 < 3 {
                return None;
            }
            let members = support::pool_members(&api, &project, &pool_id).await;
            members
                .iter()
                .all(|m| {
                    let want = if m.protocol_port == h1_port {
                        pb::OperatingStatus::Error
                    } else {
                        pb::OperatingStatus::Online
                    };
                    m.operating_status() == want
                })
                .then_some(())
        }
    })
    .await;

    let vip = format!("{}:8443", created.vip_address);
    // ALPN: h2 for clients that offer it, http/1.1 for those that offer only that.
    let h2 = tls_connect(&vip, &["h2", "http/1.1"], rustls::ALL_VERSIONS)
        .await
        .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "{driver}");
    let h1 = tls_connect(&vip, &["http/1.1"], rustls::ALL_VERSIONS)
        .await
        .unwrap();
    assert_eq!(
        h1.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "{driver}"
    );
    // tls_versions: a TLS 1.2-only client is turned away.
    assert!(
        tls_connect(&vip, &["h2"], &[&rustls::version::TLS12])
            .await
            .is_err(),
        "{driver}: TLS 1.2 was accepted on a TLSv1.3-only listener"
    );

    // gRPC over one HTTP/2 connection: each call is balanced over the two members.
    let mut health = HealthClient::new(grpc_channel(vip.clone()).await);
    let even: std::collections::BTreeMap<&str, usize> =
        [("a", 5usize), ("b", 5usize)].into_iter().collect();
    assert_eq!(balanced_checks(driver, &mut health).await, even, "{driver}");
    // A gRPC error status travels back in the trailers.
    let missing = health
        .check(HealthCheckRequest {
            service: "no-such-service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{driver}: {missing}");

    // Re-encryption to gRPC members that speak only h2 over TLS: the pool offers h2 by ALPN.
    let (c_port, c_task) = grpc_tls_member("member-a", &["member-b"]).await;
    let (d_port, d_task) = grpc_tls_member("member-b", &["member-a"]).await;
    let listener_id = api
        .create_listener(in_project(
            &project,
            pb::CreateListenerRequest {
                listener: Some(pb::Listener {
                    loadbalancer_id: created.id.clone(),
                    protocol: pb::Protocol::TerminatedHttps as i32,
                    protocol_port: 8444,
                    default_tls_container_ref: shown.default_tls_container_ref.clone(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    api.create_pool(in_project(
        &project,
        pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                loadbalancer_id: created.id.clone(),
                listener_id,
                tls_enabled: true,
                alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                ..pool(
                    pb::Protocol::Http,
                    pb::LbAlgorithm::RoundRobin,
                    vec![member_at(i32::from(c_port)), member_at(i32::from(d_port))],
                )
            }),
            request_id: String::new(),
        },
    ))
    .await
    .unwrap();
    support::wait_settled(&api, &project, &created.id).await;
    let vip = format!("{}:8444", created.vip_address);
    let mut health = HealthClient::new(grpc_channel(vip).await);
    assert_eq!(balanced_checks(driver, &mut health).await, even, "{driver}");
    a_task.abort();
    b_task.abort();
    c_task.abort();
    d_task.abort();
    stack.stop().await;
}

on_each_driver!(grpc_through_terminated_https);
on_each_driver!(legacy_tls);
