//! TLS: termination with the right certificate per SNI name, keys at rest, passthrough,
//! re-encryption and TLS health monitors.
use super::*;

/// A path and its permission bits.
type Mode = (std::path::PathBuf, u32);

/// The files under `root` holding `key_pem`'s body: each with its mode and the modes of the
/// folders from `root` down to it.
fn private_key_files(
    root: &std::path::Path,
    key_pem: &str,
) -> Vec<(std::path::PathBuf, u32, Vec<Mode>)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let body = key_pem.lines().nth(1).unwrap().as_bytes().to_vec();
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(body.len())
                .any(|w| w == body.as_slice())
            {
                let above = path
                    .ancestors()
                    .skip(1)
                    .take_while(|a| a.starts_with(root))
                    .map(|a| (a.to_path_buf(), mode(a)))
                    .collect();
                found.push((path.clone(), mode(&path), above));
            }
        }
    }
    found
}

/// Connects with TLS (SNI `name`, or none for an IP address) and returns the certificate served
/// and the reply to a GET of `path`.
async fn tls_get(addr: &str, name: &str, path: &str) -> (Vec<u8>, Reply) {
    let tcp = connect_from(addr, None).await.unwrap();
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let stream = tls::connector().connect(server_name, tcp).await.unwrap();
    let served = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap();
    let reply = exchange(stream, path, &[]).await.unwrap();
    (served, reply)
}

async fn tls_termination_with_sni(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let member = Backend::start("plain").await;
    let mut certs = stack.certificate_client().await;
    let upload = |g: &Generated, name: &str| {
        in_project(
            &project,
            pb::CreateCertificateRequest {
                certificate: Some(pb::Certificate {
                    name: name.into(),
                    certificate_pem: g.cert_pem.clone(),
                    private_key_pem: g.key_pem.clone(),
                    ..Default::default()
                }),
            },
        )
    };
    let (default, one, two) = (
        generate(&["default.example.com"]),
        generate(&["one.example.com"]),
        generate(&["*.two.example.com"]),
    );
    let default_id = certs
        .create_certificate(upload(&default, "default"))
        .await
        .unwrap()
        .into_inner();
    assert!(default_id.private_key_pem.is_empty(), "a key came back");
    assert_eq!(default_id.subject_names, vec!["default.example.com"]);
    let one_id = certs
        .create_certificate(upload(&one, "one"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let two_id = certs
        .create_certificate(upload(&two, "two"))
        .await
        .unwrap()
        .into_inner()
        .id;
    let fetched = certs
        .get_certificate(in_project(
            &project,
            pb::GetCertificateRequest { id: one_id.clone() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(fetched.private_key_pem.is_empty());
    // At rest, the key is sealed: the database file holds no PEM key.
    let mut stored = std::fs::read(stack.dir.join("api.db")).unwrap();
    stored.extend(std::fs::read(stack.dir.join("api.db-wal")).unwrap_or_default());
    assert!(
        stored.windows(one_id.len()).any(|w| w == one_id.as_bytes()),
        "the certificate is not in the files read"
    );
    let key_body = one.key_pem.lines().nth(1).unwrap().as_bytes();
    assert!(
        !stored.windows(key_body.len()).any(|w| w == key_body)
            && !stored.windows(11).any(|w| w == b"PRIVATE KEY"),
        "a private key is stored in clear"
    );
    // Another project sees nothing.
    let other = certs
        .get_certificate(in_project(
            &support::fresh_project(),
            pb::GetCertificateRequest { id: one_id.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::NotFound);
    // Lists carry no key either.
    let listed = certs
        .list_certificates(in_project(&project, pb::ListCertificatesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .certificates;
    assert_eq!(listed.len(), 3);
    assert!(
        listed.iter().all(|c| c.private_key_pem.is_empty()),
        "a key was listed"
    );
    // Another project's listener cannot use these certificates.
    let stolen = api
        .create_load_balancer(in_project(
            &support::fresh_project(),
            pb::CreateLoadBalancerRequest {
                load_balancer: Some(lb(
                    "thief",
                    vec![pb::Listener {
                        default_tls_container_ref: default_id.id.clone(),
                        ..listener(
                            pb::Protocol::TerminatedHttps,
                            443,
                            pool(pb::Protocol::Http, pb::LbAlgorithm::RoundRobin, vec![]),
                        )
                    }],
                )),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), tonic::Code::InvalidArgument, "{stolen:?}");
    assert_eq!(
        support::violations(&stolen),
        vec!["load_balancer.listeners[0].default_tls_container_ref".to_owned()]
    );

    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "secure",
            vec![pb::Listener {
                default_tls_container_ref: default_id.id.clone(),
                sni_container_refs: vec![one_id.clone(), two_id.clone()],
                insert_headers: [("X-Forwarded-Proto".to_owned(), "true".to_owned())]
                    .into_iter()
                    .collect(),
                hsts_max_age: Some(31_536_000),
                hsts_include_subdomains: true,
                hsts_preload: true,
                ..listener(
                    pb::Protocol::TerminatedHttps,
                    8443,
                    pool(
                        pb::Protocol::Http,
                        pb::LbAlgorithm::RoundRobin,
                        vec![member_at(member.port())],
                    ),
                )
            }],
        ),
    )
    .await;
    let vip = format!("{}:8443", created.vip_address);
    for (name, want) in [
        ("one.example.com", &one.der),
        ("x.two.example.com", &two.der),
        ("default.example.com", &default.der),
        ("unknown.example.net", &default.der),
        (created.vip_address.as_str(), &default.der),
    ] {
        let (served, reply) = tls_get(&vip, name, "/").await;
        assert!(
            served == *want,
            "{driver}: SNI {name} got the wrong certificate"
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body, "plain");
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains; preload"),
            "{driver}: {reply:?}"
        );
    }
    // HSTS belongs to TERMINATED_HTTPS listeners, and its directives need a max-age.
    for (protocol, hsts, field) in [
        (pb::Protocol::Http, (Some(60), false, false), "hsts_max_age"),
        (pb::Protocol::Http, (None, false, true), "hsts_preload"),
        (
            pb::Protocol::TerminatedHttps,
            (None, true, false),
            "hsts_max_age",
        ),
        (
            pb::Protocol::TerminatedHttps,
            (Some(-1), false, false),
            "hsts_max_age",
        ),
    ] {
        let err = api
            .create_listener(in_project(
                &project,
                pb::CreateListenerRequest {
                    listener: Some(pb::Listener {
                        loadbalancer_id: created.id.clone(),
                        protocol: protocol as i32,
                        protocol_port: 9443,
                        default_tls_container_ref: if protocol == pb::Protocol::TerminatedHttps {
                            default_id.id.clone()
                        } else {
                            String::new()
                        },
                        hsts_max_age: hsts.0,
                        hsts_include_subdomains: hsts.1,
                        hsts_preload: hsts.2,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{hsts:?}");
        assert_eq!(
            support::violations(&err),
            vec![format!("listener.{field}")],
            "{hsts:?}"
        );
    }
    // On the agent's disk, every file holding a key is 0600 and every folder above it 0700.
    let key_files = private_key_files(&stack.agent_config.state_dir, &one.key_pem);
    assert!(
        !key_files.is_empty(),
        "{driver}: no file of the agent holds the key"
    );
    for (file, mode, folders) in &key_files {
        assert_eq!(*mode, 0o600, "{driver}: {} is {mode:o}", file.display());
        for (folder, mode) in folders {
            assert_eq!(*mode, 0o700, "{driver}: {} is {mode:o}", folder.display());
        }
    }
    // HTTP/2 by ALPN: a client offering h2 gets it and is answered over it; one offering only
    // HTTP/1.1 gets that.
    for (offer, want) in [
        (&["h2", "http/1.1"][..], "h2"),
        (&["http/1.1"][..], "http/1.1"),
    ] {
        let tcp = connect_from(&vip, None).await.unwrap();
        let server_name = rustls_pki_types::ServerName::try_from("one.example.com").unwrap();
        let stream = tls::offering(offer)
            .connect(server_name, tcp)
            .await
            .unwrap();
        let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(negotiated.as_deref(), Some(want.as_bytes()), "{driver}");
        if want == "h2" {
            let (mut sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(stream),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            let request = hyper::Request::get("https://one.example.com/")
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200, "{driver}: h2");
            assert_eq!(response.version(), hyper::Version::HTTP_2);
        }
    }
    let (_, seen) = tls_get(&vip, "one.example.com", "/headers").await;
    assert!(
        seen.body
            .to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "{}",
        seen.body
    );

    // A certificate in use cannot go.
    let refused = certs
        .delete_certificate(in_project(
            &project,
            pb::DeleteCertificateRequest { id: one_id },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    stack.stop().await;
}
on_each_driver!(tls_termination_with_sni);

/// A member that speaks HTTPS (a self-signed certificate) and answers with its name.
async fn tls_backend(name: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let (port, task, _) = tls_backend_with_cert(name).await;
    (port, task)
}

/// A member that speaks HTTPS and answers with its name; also returns its certificate (DER).
async fn tls_backend_with_cert(name: &'static str) -> (u16, tokio::task::JoinHandle<()>, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["member.example.com".to_owned()]).unwrap();
    let der = made.cert.der().to_vec();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                    if read == buf.len() {
                        return;
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, task, der)
}

/// HTTPS passthrough: the load balancer forwards TLS untouched, so the client completes its
/// handshake with a member (and sees that member's own certificate), balanced round robin.
async fn https_passthrough(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (x_port, x_task, x_der) = tls_backend_with_cert("x").await;
    let (y_port, y_task, y_der) = tls_backend_with_cert("y").await;
    let created = support::create_active(
        &mut api,
        &project,
        single("passthrough", pb::Protocol::Https, 8443, &[x_port, y_port]),
    )
    .await;
    let vip = format!("{}:8443", created.vip_address);
    let mut seen = BTreeMap::new();
    for _ in 0..10 {
        let (served, reply) = tls_get(&vip, "member.example.com", "/").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let expected = if reply.body == "x" { &x_der } else { &y_der };
        assert!(
            served == *expected,
            "{driver}: the certificate seen is not member {}'s own",
            reply.body
        );
        *seen.entry(reply.body).or_insert(0usize) += 1;
    }
    assert_eq!(seen, split(&[("x", 5), ("y", 5)]), "{driver}");
    x_task.abort();
    y_task.abort();
    stack.stop().await;
}
on_each_driver!(https_passthrough);

async fn re_encryption(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (port, task) = tls_backend("encrypted").await;
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "re-encrypted",
            vec![http(
                8080,
                pb::Pool {
                    tls_enabled: true,
                    ..pool(
                        pb::Protocol::Http,
                        pb::LbAlgorithm::RoundRobin,
                        vec![member_at(i32::from(port))],
                    )
                },
            )],
        ),
    )
    .await;
    let vip = format!("{}:8080", created.vip_address);
    assert_eq!(counts(&vip, 3, &[]).await, split(&[("encrypted", 3)]));
    task.abort();
    stack.stop().await;
}
on_each_driver!(re_encryption);

/// Health monitors that speak TLS, on HTTPS (passthrough) pools: an HTTPS monitor (TLS, then an
/// HTTP request) and a TLS-HELLO monitor see TLS members ONLINE, a plain-HTTP member ERROR (a TCP
/// check would have passed it), and a TLS member that stops ERROR while the other stays ONLINE.
async fn tls_health_monitors(driver: &'static str) {
    let (stack, mut api, project) = start(driver).await;
    let (x_port, x_task) = tls_backend("x").await;
    let (y_port, y_task) = tls_backend("y").await;
    let plain = Backend::start("z").await;
    let members = || {
        vec![
            member_at(i32::from(x_port)),
            member_at(i32::from(y_port)),
            member_at(plain.port()),
        ]
    };
    let monitored = |kind: pb::HealthMonitorType| pb::Pool {
        healthmonitor: Some(pb::HealthMonitor {
            url_path: if kind == pb::HealthMonitorType::Https {
                "/".into()
            } else {
                String::new()
            },
            ..support::quick_monitor(kind)
        }),
        ..pool(pb::Protocol::Https, pb::LbAlgorithm::RoundRobin, members())
    };
    let created = support::create_active(
        &mut api,
        &project,
        lb(
            "tls-checked",
            vec![
                listener(
                    pb::Protocol::Https,
                    8443,
                    monitored(pb::HealthMonitorType::Https),
                ),
                listener(
                    pb::Protocol::Https,
                    8444,
                    monitored(pb::HealthMonitorType::TlsHello),
                ),
            ],
        ),
    )
    .await;
    // Each pool's members: port -> operating status.
    let statuses = |api: &Api| {
        let api = api.clone();
        let (project, pools) = (project.clone(), created.pool_ids.clone());
        async move {
            let mut all = Vec::new();
            for pool_id in pools {
                let members = support::pool_members(&api, &project, &pool_id).await;
                all.push(
                    members
                        .iter()
                        .map(|m| (m.protocol_port, m.operating_status()))
                        .collect::<BTreeMap<_, _>>(),
                );
            }
            all
        }
    };
    let want = |x, y, z| {
        BTreeMap::from([
            (i32::from(x_port), x),
            (i32::from(y_port), y),
            (plain.port(), z),
        ])
    };
    use pb::OperatingStatus::{Error, Online};
    support::poll_until(Duration::from_secs(20), "x, y ONLINE and z ERROR", || {
        let expected = vec![want(Online, Online, Error); 2];
        let api = api.clone();
        async move { (statuses(&api).await == expected).then_some(()) }
    })
    .await;
    y_task.abort();
    support::poll_until(Duration::from_secs(20), "y ERROR too", || {
        let expected = vec![want(Online, Error, Error); 2];
        let api = api.clone();
        async move { (statuses(&api).await == expected).then_some(()) }
    })
    .await;
    // Traffic goes to the one healthy member.
    for _ in 0..4 {
        let (_, reply) = tls_get(
            &format!("{}:8443", created.vip_address),
            "member.example.com",
            "/",
        )
        .await;
        assert_eq!(reply.body, "x", "{driver}: {reply:?}");
    }
    x_task.abort();
    stack.stop().await;
}
on_each_driver!(tls_health_monitors);
