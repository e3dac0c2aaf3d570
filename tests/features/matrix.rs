//! The protocol x algorithm x driver matrix with real traffic, and combinations refused with the
//! field named.
use super::*;

async fn protocol_algorithm_matrix(db: support::Db, driver: &'static str) {
    let stack = Stack::start(StackOptions {
        db,
        driver,
        ..Default::default()
    })
    .await;
    let mut api = stack.api_client().await;
    let project = support::fresh_project();
    let mut certs = stack.certificate_client().await;
    let cert = generate(&["matrix.example.com"]);
    let cert_id = certs
        .create_certificate(in_project(
            &project,
            pb::CreateCertificateRequest {
                certificate: Some(pb::Certificate {
                    certificate_pem: cert.cert_pem,
                    private_key_pem: cert.key_pem,
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    capabilities_known(&stack).await;
    let supported = |p: pb::Protocol| !(driver == "haproxy" && p == pb::Protocol::Udp);
    let mut port = 7000;
    for protocol in [
        pb::Protocol::Tcp,
        pb::Protocol::Http,
        pb::Protocol::Https,
        pb::Protocol::TerminatedHttps,
        pb::Protocol::Udp,
    ] {
        for algorithm in [
            pb::LbAlgorithm::RoundRobin,
            pb::LbAlgorithm::LeastConnections,
            pb::LbAlgorithm::SourceIp,
        ] {
            port += 1;
            let mut l = listener(
                protocol,
                port,
                pool(pool_protocol_for(protocol), algorithm, vec![member_at(9)]),
            );
            if protocol == pb::Protocol::TerminatedHttps {
                l.default_tls_container_ref = cert_id.clone();
            }
            let what = format!("{driver}: {protocol:?} x {algorithm:?}");
            let created = api
                .create_load_balancer(in_project(
                    &project,
                    pb::CreateLoadBalancerRequest {
                        load_balancer: Some(lb(&format!("m{port}"), vec![l])),
                        request_id: String::new(),
                    },
                ))
                .await;
            if supported(protocol) {
                let created = created
                    .unwrap_or_else(|e| panic!("{what}: {e}"))
                    .into_inner();
                let settled = wait_settled(&api, &project, &created.id).await;
                assert_eq!(
                    settled.provisioning_status(),
                    pb::ProvisioningStatus::Active,
                    "{what}: {}",
                    settled.status_reason
                );
                api.delete_load_balancer(in_project(
                    &project,
                    pb::DeleteLoadBalancerRequest {
                        id: created.id,
                        cascade: true,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
            } else {
                let status = created.expect_err(&what);
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}");
                assert!(
                    support::violations(&status)
                        .contains(&"load_balancer.listeners[0].protocol".to_owned()),
                    "{what}: {status:?}"
                );
            }
        }
    }
    stack.stop().await;
}
on_both_databases!(matrix_on_haproxy => protocol_algorithm_matrix("haproxy"), haproxy = true);
on_both_databases!(matrix_on_native => protocol_algorithm_matrix("native"), haproxy = false);

/// Combinations no driver can serve are refused with the field named, and nothing is stored.
async fn invalid_combinations_refused(db: Db) {
    use pb::{Protocol as P, SessionPersistenceType as S};
    let stack = Stack::start(StackOptions {
        db,
        driver: "noop",
        ..Default::default()
    })
    .await;
    let mut api = stack.api_client().await;
    let project = support::fresh_project();
    let with_persistence = |protocol: P, kind: S, cookie: &str| pb::Pool {
        session_persistence: Some(pb::SessionPersistence {
            r#type: kind as i32,
            cookie_name: cookie.into(),
        }),
        ..pool(protocol, pb::LbAlgorithm::RoundRobin, vec![])
    };
    let headers = |l: pb::Listener| pb::Listener {
        insert_headers: [("X-Forwarded-For".to_owned(), "true".to_owned())]
            .into_iter()
            .collect(),
        ..l
    };
    let tcp_pool = || pool(P::Tcp, pb::LbAlgorithm::RoundRobin, vec![]);
    let http_pool = || pool(P::Http, pb::LbAlgorithm::RoundRobin, vec![]);
    let some_id = uuid::Uuid::new_v4().to_string();
    let cases: Vec<(&str, pb::Listener, &str)> = vec![
        (
            "HTTP_COOKIE on a TCP pool",
            listener(P::Tcp, 80, with_persistence(P::Tcp, S::HttpCookie, "")),
            "load_balancer.listeners[0].default_pool.session_persistence.type",
        ),
        (
            "APP_COOKIE without a cookie name",
            http(80, with_persistence(P::Http, S::AppCookie, "")),
            "load_balancer.listeners[0].default_pool.session_persistence.cookie_name",
        ),
        (
            "a cookie name without APP_COOKIE",
            http(80, with_persistence(P::Http, S::SourceIp, "JSESSIONID")),
            "load_balancer.listeners[0].default_pool.session_persistence.cookie_name",
        ),
        (
            "headers on a TCP listener",
            headers(listener(P::Tcp, 80, tcp_pool())),
            "load_balancer.listeners[0].insert_headers",
        ),
        (
            "an unknown header",
            pb::Listener {
                insert_headers: [("X-Evil".to_owned(), "true".to_owned())]
                    .into_iter()
                    .collect(),
                ..http(80, http_pool())
            },
            "load_balancer.listeners[0].insert_headers[X-Evil]",
        ),
        (
            "a TCP pool behind a UDP listener",
            listener(P::Udp, 53, tcp_pool()),
            "load_balancer.listeners[0].default_pool.protocol",
        ),
        (
            "a TCP pool behind an HTTP listener",
            http(80, tcp_pool()),
            "load_balancer.listeners[0].default_pool.protocol",
        ),
        (
            "TERMINATED_HTTPS without a certificate",
            listener(P::TerminatedHttps, 443, http_pool()),
            "load_balancer.listeners[0].default_tls_container_ref",
        ),
        (
            "a certificate on an HTTP listener",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                ..http(80, http_pool())
            },
            "load_balancer.listeners[0].default_tls_container_ref",
        ),
        (
            "a certificate that does not exist",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].default_tls_container_ref",
        ),
        (
            "re-encryption on a TCP pool",
            listener(
                P::Tcp,
                80,
                pb::Pool {
                    tls_enabled: true,
                    ..tcp_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.tls_enabled",
        ),
        (
            "a bad CIDR",
            pb::Listener {
                allowed_cidrs: vec!["10.0.0.0/33".into()],
                ..http(80, http_pool())
            },
            "load_balancer.listeners[0].allowed_cidrs[0]",
        ),
        (
            "an HTTPS monitor on a UDP pool",
            listener(
                P::Udp,
                53,
                pb::Pool {
                    healthmonitor: Some(pb::HealthMonitor {
                        r#type: pb::HealthMonitorType::Https as i32,
                        delay_s: 1,
                        timeout_s: 1,
                        max_retries: 1,
                        ..Default::default()
                    }),
                    ..pool(P::Udp, pb::LbAlgorithm::RoundRobin, vec![])
                },
            ),
            "load_balancer.listeners[0].default_pool.healthmonitor.type",
        ),
        (
            "an unknown ALPN protocol",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                alpn_protocols: vec!["h2".into(), "spdy/3".into()],
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].alpn_protocols[1]",
        ),
        (
            "an unknown TLS version",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                tls_versions: vec!["TLSv1.2".into(), "TLSv2".into()],
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].tls_versions",
        ),
        (
            "TLS versions with a gap",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                tls_versions: vec!["TLSv1.1".into(), "TLSv1.3".into()],
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].tls_versions",
        ),
        (
            "an unknown cipher",
            pb::Listener {
                default_tls_container_ref: some_id.clone(),
                tls_ciphers: "ECDHE-RSA-AES128-GCM-SHA256:RC4-MD5".into(),
                ..listener(P::TerminatedHttps, 443, http_pool())
            },
            "load_balancer.listeners[0].tls_ciphers",
        ),
        (
            "TLS options on an HTTP listener",
            pb::Listener {
                tls_versions: vec!["TLSv1.3".into()],
                ..http(80, http_pool())
            },
            "load_balancer.listeners[0].tls_versions",
        ),
        (
            "an unknown ALPN protocol on a pool",
            http(
                80,
                pb::Pool {
                    tls_enabled: true,
                    alpn_protocols: vec!["h3".into()],
                    ..http_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.alpn_protocols[0]",
        ),
        (
            "h2 among others on a clear-text pool (nothing negotiates)",
            http(
                80,
                pb::Pool {
                    alpn_protocols: vec!["h2".into(), "http/1.1".into()],
                    ..http_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.alpn_protocols",
        ),
        (
            "ALPN on a TCP pool",
            listener(
                P::Tcp,
                80,
                pb::Pool {
                    alpn_protocols: vec!["h2".into()],
                    ..tcp_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.alpn_protocols",
        ),
        (
            "an unknown cipher on a pool",
            http(
                80,
                pb::Pool {
                    tls_enabled: true,
                    tls_ciphers: "NULL-SHA".into(),
                    ..http_pool()
                },
            ),
            "load_balancer.listeners[0].default_pool.tls_ciphers",
        ),
    ];
    for (what, l, field) in cases {
        let status = api
            .create_load_balancer(in_project(
                &project,
                pb::CreateLoadBalancerRequest {
                    load_balancer: Some(lb("bad", vec![l])),
                    request_id: String::new(),
                },
            ))
            .await
            .expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{what}: {status:?}"
        );
        let fields = support::violations(&status);
        assert!(fields.contains(&field.to_owned()), "{what}: {fields:?}");
    }

    // L7 policies need an HTTP listener; a rule's value cannot carry config syntax.
    let tcp_lb = support::create_active(
        &mut api,
        &project,
        lb("tcp", vec![listener(P::Tcp, 80, tcp_pool())]),
    )
    .await;
    let status = api
        .create_l7_policy(in_project(
            &project,
            pb::CreateL7PolicyRequest {
                l7policy: Some(pb::L7Policy {
                    listener_id: tcp_lb.listener_ids[0].clone(),
                    action: pb::L7PolicyAction::Reject as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(support::violations(&status), vec!["l7policy.listener_id"]);
    let http_lb =
        support::create_active(&mut api, &project, lb("http", vec![http(80, http_pool())])).await;
    let status = api
        .create_l7_policy(in_project(
            &project,
            pb::CreateL7PolicyRequest {
                l7policy: Some(pb::L7Policy {
                    listener_id: http_lb.listener_ids[0].clone(),
                    action: pb::L7PolicyAction::Reject as i32,
                    rules: vec![rule(
                        pb::L7RuleType::Path,
                        pb::L7RuleCompareType::EqualTo,
                        "",
                        "/x\n    server evil 10.0.0.1:80",
                        false,
                    )],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        support::violations(&status),
        vec!["l7policy.rules[0].value"]
    );

    // Nothing refused was stored.
    let listed = api
        .list_load_balancers(in_project(
            &project,
            pb::ListLoadBalancersRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.load_balancers.len(), 2);
    let policies = api
        .list_l7_policies(in_project(&project, pb::ListL7PoliciesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(policies.l7policies.is_empty());
    stack.stop().await;
}
on_both_databases!(invalid_combinations_refused, haproxy = false);
