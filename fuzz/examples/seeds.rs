//! Writes the seed corpora (`fuzz/seeds/<target>/`, each file named by the SHA-1 of its content,
//! as libFuzzer names corpus files): real, valid requests and device configs like the tests use,
//! each checked to be accepted by the code under test, so fuzzing starts deep inside it.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! The certificates are made anew with rcgen on every run, so a run replaces every seed file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashMap, path::Path};

use lbaas::{
    agent::v1::{
        self as agent, Algorithm, InsertHeader, L7Action, L7CompareType, L7PolicyConfig,
        L7RuleConfig, L7RuleType, ListenerConfig, ListenerProtocol, LoadBalancerConfig,
        MemberConfig, MonitorConfig, MonitorType, PersistenceType, PoolConfig, TlsCertificate,
    },
    api::v1 as pb,
};
use lbaas_agent::driver::haproxy::render::ConfigRenderer;
use lbaas_fuzz::{Device, Request, haproxy};
use prost::Message as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sha1::Digest as _;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let ca = Ca::new();
    let certs = Certs {
        default: ca.certificate(&id(0xc0), &["www.example.com"]),
        a: ca.certificate(&id(0xc1), &["a.example", "www.a.example"]),
        b: ca.certificate(&id(0xc2), &["*.b.example"]),
    };

    let requests = api_requests(&certs);
    let devices = devices(&certs);
    let haproxy: Vec<Vec<u8>> = devices
        .iter()
        .filter(|(native_only, _)| !native_only)
        .map(|(_, d)| d.encode_to_vec())
        .collect();
    let native: Vec<Vec<u8>> = devices.iter().map(|(_, d)| d.encode_to_vec()).collect();

    for (target, seeds, run) in [
        (
            "validate_requests",
            requests,
            lbaas_fuzz::validate_requests as fn(&[u8]),
        ),
        ("render_haproxy", haproxy, lbaas_fuzz::render_haproxy),
        ("render_native", native, lbaas_fuzz::render_native),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for old in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(old.unwrap().path()).unwrap();
        }
        for seed in &seeds {
            run(seed);
            let name: String = sha1::Sha1::digest(seed)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            std::fs::write(dir.join(name), seed).unwrap();
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
}

/// Ids as the api makes them (UUIDs), numbered to read.
fn id(n: u32) -> String {
    format!("3f6c1d2e-8a4b-4c7d-9e0f-{n:012x}")
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "lbaas fuzz seed CA");
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate (then the CA) and its PKCS#8 key, for `names` (the first is also the CN).
    fn certificate(&self, id: &str, names: &[&str]) -> TlsCertificate {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TlsCertificate {
            id: id.into(),
            certificate_pem: format!("{}{}", cert.pem(), self.pem),
            private_key_pem: key.serialize_pem(),
            names,
        }
    }
}

struct Certs {
    default: TlsCertificate,
    a: TlsCertificate,
    b: TlsCertificate,
}

// --- The api's requests -------------------------------------------------------------------------

fn api_requests(certs: &Certs) -> Vec<Vec<u8>> {
    use lbaas_api::{certs as api_certs, convert, l7};

    let member = |address: &str, port: i32| pb::Member {
        address: address.into(),
        protocol_port: port,
        ..Default::default()
    };
    let http_monitor = pb::HealthMonitor {
        r#type: pb::HealthMonitorType::Http as i32,
        delay_s: 5,
        timeout_s: 3,
        max_retries: 3,
        max_retries_down: 2,
        http_method: "GET".into(),
        url_path: "/healthz".into(),
        expected_codes: "200-204".into(),
        ..Default::default()
    };
    let web_pool = pb::Pool {
        name: "web".into(),
        protocol: pb::Protocol::Http as i32,
        lb_algorithm: pb::LbAlgorithm::RoundRobin as i32,
        members: vec![
            member("10.0.1.11", 8080),
            pb::Member {
                weight: Some(3),
                tags: vec!["canary".into()],
                ..member("10.0.1.12", 8080)
            },
        ],
        healthmonitor: Some(http_monitor.clone()),
        session_persistence: Some(pb::SessionPersistence {
            r#type: pb::SessionPersistenceType::HttpCookie as i32,
            cookie_name: String::new(),
        }),
        ..Default::default()
    };
    let tcp_pool = pb::Pool {
        name: "db".into(),
        protocol: pb::Protocol::Tcp as i32,
        lb_algorithm: pb::LbAlgorithm::LeastConnections as i32,
        members: vec![
            member("2001:db8::10", 5432),
            pb::Member {
                backup: true,
                ..member("2001:db8::11", 5432)
            },
        ],
        healthmonitor: Some(pb::HealthMonitor {
            r#type: pb::HealthMonitorType::Tcp as i32,
            delay_s: 10,
            timeout_s: 5,
            max_retries: 2,
            ..Default::default()
        }),
        session_persistence: Some(pb::SessionPersistence {
            r#type: pb::SessionPersistenceType::SourceIp as i32,
            cookie_name: String::new(),
        }),
        ..Default::default()
    };
    let app_pool = pb::Pool {
        name: "app".into(),
        protocol: pb::Protocol::Http as i32,
        lb_algorithm: pb::LbAlgorithm::SourceIp as i32,
        tls_enabled: true,
        members: vec![member("192.0.2.20", 8443)],
        session_persistence: Some(pb::SessionPersistence {
            r#type: pb::SessionPersistenceType::AppCookie as i32,
            cookie_name: "JSESSIONID".into(),
        }),
        healthmonitor: Some(pb::HealthMonitor {
            r#type: pb::HealthMonitorType::TlsHello as i32,
            delay_s: 5,
            timeout_s: 5,
            max_retries: 3,
            ..Default::default()
        }),
        ..Default::default()
    };
    let headers: HashMap<String, String> = [
        ("X-Forwarded-For", "true"),
        ("X-Forwarded-Port", "true"),
        ("X-Forwarded-Proto", "false"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    let http_listener = pb::Listener {
        name: "http".into(),
        protocol: pb::Protocol::Http as i32,
        protocol_port: 80,
        connection_limit: 10_000,
        allowed_cidrs: vec![
            "10.0.0.0/8".into(),
            "2001:db8::/32".into(),
            "192.0.2.7".into(),
        ],
        insert_headers: headers.clone(),
        timeout_client_data_ms: 50_000,
        timeout_member_connect_ms: 5_000,
        timeout_member_data_ms: 50_000,
        tags: vec!["public".into()],
        ..Default::default()
    };
    let https_listener = pb::Listener {
        name: "https".into(),
        protocol: pb::Protocol::TerminatedHttps as i32,
        protocol_port: 443,
        connection_limit: -1,
        insert_headers: headers,
        default_tls_container_ref: id(0xc0),
        sni_container_refs: vec![id(0xc1), id(0xc2)],
        ..Default::default()
    };
    let tcp_listener = pb::Listener {
        name: "postgres".into(),
        protocol: pb::Protocol::Tcp as i32,
        protocol_port: 5432,
        timeout_client_data_ms: 3_600_000,
        ..Default::default()
    };
    let tree = pb::LoadBalancer {
        name: "shop".into(),
        description: "the shop's front door".into(),
        vip_address: "203.0.113.10".into(),
        flavor: "small".into(),
        vip_network_id: "public-net".into(),
        tags: vec!["prod".into(), "team-a".into()],
        listeners: vec![
            pb::Listener {
                default_pool: Some(web_pool.clone()),
                ..http_listener.clone()
            },
            pb::Listener {
                default_pool: Some(app_pool.clone()),
                ..https_listener.clone()
            },
            pb::Listener {
                default_pool: Some(tcp_pool.clone()),
                ..tcp_listener.clone()
            },
        ],
        pools: vec![pb::Pool {
            name: "dns".into(),
            protocol: pb::Protocol::Udp as i32,
            lb_algorithm: pb::LbAlgorithm::SourceIp as i32,
            members: vec![member("10.0.2.53", 53)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let minimal = pb::LoadBalancer {
        name: "lb".into(),
        vip_address: "2001:db8::1".into(),
        ..Default::default()
    };
    let lb_id = id(0x1b);
    let standalone = |l: &pb::Listener| pb::Listener {
        loadbalancer_id: lb_id.clone(),
        default_pool_id: id(0x90),
        ..l.clone()
    };
    let in_lb = |p: &pb::Pool| pb::Pool {
        loadbalancer_id: lb_id.clone(),
        listener_id: id(0x11),
        ..p.clone()
    };
    let rule = |t: pb::L7RuleType, c: pb::L7RuleCompareType, key: &str, value: &str| pb::L7Rule {
        r#type: t as i32,
        compare_type: c as i32,
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    use pb::{L7RuleCompareType as C, L7RuleType as T};
    let policy = |action: pb::L7PolicyAction, rules: Vec<pb::L7Rule>| pb::L7Policy {
        listener_id: id(0x11),
        name: "policy".into(),
        action: action as i32,
        rules,
        ..Default::default()
    };
    let policies = [
        pb::L7Policy {
            position: 1,
            ..policy(
                pb::L7PolicyAction::Reject,
                vec![
                    rule(T::Path, C::StartsWith, "", "/admin"),
                    pb::L7Rule {
                        invert: true,
                        ..rule(T::Header, C::EqualTo, "X-Admin", "yes")
                    },
                ],
            )
        },
        pb::L7Policy {
            redirect_url: "https://www.example.com/moved?from=old".into(),
            redirect_http_code: 301,
            ..policy(
                pb::L7PolicyAction::RedirectToUrl,
                vec![rule(T::HostName, C::EqualTo, "", "old.example.com")],
            )
        },
        pb::L7Policy {
            redirect_prefix: "https://new.example.com".into(),
            ..policy(
                pb::L7PolicyAction::RedirectPrefix,
                vec![rule(T::HostName, C::Regex, "", "^legacy\\.")],
            )
        },
        pb::L7Policy {
            redirect_pool_id: id(0x91),
            tags: vec!["images".into()],
            ..policy(
                pb::L7PolicyAction::RedirectToPool,
                vec![
                    rule(T::FileType, C::Regex, "", "^(jpe?g|png)$"),
                    rule(T::Cookie, C::StartsWith, "session", "vip-"),
                ],
            )
        },
    ];
    let with_policy = |r: pb::L7Rule| pb::L7Rule {
        l7policy_id: id(0x70),
        ..r
    };
    let rules = [
        with_policy(rule(T::Header, C::Contains, "User-Agent", "curl")),
        with_policy(rule(T::Cookie, C::EqualTo, "tier", "gold")),
        with_policy(rule(T::FileType, C::EqualTo, "", "php")),
        with_policy(rule(T::Path, C::Regex, "", "^/api/v[0-9]+/\\w+$")),
        with_policy(rule(T::HostName, C::EndsWith, "", ".example.org")),
    ];
    let monitors = [
        pb::HealthMonitor {
            pool_id: id(0x90),
            ..http_monitor.clone()
        },
        pb::HealthMonitor {
            pool_id: id(0x90),
            r#type: pb::HealthMonitorType::Https as i32,
            http_method: "HEAD".into(),
            expected_codes: "200,202,204".into(),
            ..http_monitor.clone()
        },
        pb::HealthMonitor {
            pool_id: id(0x92),
            r#type: pb::HealthMonitorType::TlsHello as i32,
            delay_s: 30,
            timeout_s: 10,
            max_retries: 5,
            ..Default::default()
        },
    ];
    let members = [
        pb::Member {
            pool_id: id(0x90),
            name: "web-3".into(),
            ..member("10.0.1.13", 8080)
        },
        pb::Member {
            pool_id: id(0x92),
            weight: Some(0),
            admin_state_up: Some(false),
            backup: true,
            ..member("2001:db8::12", 5432)
        },
    ];
    let certificate = pb::Certificate {
        name: "www".into(),
        certificate_pem: certs.a.certificate_pem.clone(),
        private_key_pem: certs.a.private_key_pem.clone(),
        ..Default::default()
    };

    // Each is accepted as it is (a seed that is refused at once would fuzz only the refusal).
    convert::validate_load_balancer(&tree).unwrap();
    convert::validate_load_balancer(&minimal).unwrap();
    for l in [&http_listener, &https_listener, &tcp_listener] {
        let l = pb::Listener {
            default_pool_id: String::new(),
            ..standalone(l)
        };
        convert::validate_listener(&l).unwrap();
    }
    let mut out = vec![
        Request::LoadBalancer.input(&tree),
        Request::LoadBalancer.input(&minimal),
        Request::Listener.input(&standalone(&http_listener)),
        Request::Listener.input(&standalone(&https_listener)),
        Request::Listener.input(&standalone(&tcp_listener)),
        Request::Certificate.input(&certificate),
    ];
    api_certs::validate_certificate(&certificate).unwrap();
    for p in [&web_pool, &tcp_pool, &app_pool] {
        convert::validate_pool(&in_lb(p)).unwrap();
        out.push(Request::Pool.input(&in_lb(p)));
    }
    for m in &members {
        convert::validate_member(m).unwrap();
        out.push(Request::Member.input(m));
    }
    for m in &monitors {
        convert::validate_health_monitor(m).unwrap();
        out.push(Request::HealthMonitor.input(m));
    }
    for p in &policies {
        l7::validate_l7policy(p).unwrap();
        out.push(Request::L7Policy.input(p));
    }
    for r in &rules {
        l7::validate_l7rule(r).unwrap();
        out.push(Request::L7Rule.input(r));
    }
    out
}

// --- Devices (the agent's desired state) --------------------------------------------------------

fn member(n: u32, address: &str, port: u32) -> MemberConfig {
    MemberConfig {
        id: id(0x3000 + n),
        address: address.into(),
        port,
        weight: 1,
        admin_state_up: true,
        backup: false,
        ..Default::default()
    }
}

fn pool(n: u32, protocol: ListenerProtocol, members: Vec<MemberConfig>) -> PoolConfig {
    PoolConfig {
        id: id(0x2000 + n),
        protocol: protocol as i32,
        algorithm: Algorithm::RoundRobin as i32,
        admin_state_up: true,
        members,
        ..Default::default()
    }
}

fn listener(n: u32, protocol: ListenerProtocol, port: u32, pool: &PoolConfig) -> ListenerConfig {
    ListenerConfig {
        id: id(0x1000 + n),
        protocol: protocol as i32,
        port,
        default_pool_id: pool.id.clone(),
        admin_state_up: true,
        ..Default::default()
    }
}

fn rule(n: u32, t: L7RuleType, c: L7CompareType, key: &str, value: &str) -> L7RuleConfig {
    L7RuleConfig {
        id: id(0x5000 + n),
        r#type: t as i32,
        compare_type: c as i32,
        key: key.into(),
        value: value.into(),
        invert: false,
    }
}

fn policy(n: u32, action: L7Action, rules: Vec<L7RuleConfig>) -> L7PolicyConfig {
    L7PolicyConfig {
        id: id(0x4000 + n),
        action: action as i32,
        rules,
        ..Default::default()
    }
}

fn persistence(kind: PersistenceType, name: &str) -> Option<agent::SessionPersistence> {
    Some(agent::SessionPersistence {
        r#type: kind as i32,
        cookie_name: name.into(),
    })
}

fn lb(
    n: u32,
    vip: &str,
    listeners: Vec<ListenerConfig>,
    pools: Vec<PoolConfig>,
) -> LoadBalancerConfig {
    LoadBalancerConfig {
        id: id(n),
        project_id: "9a1b2c3d4e5f".into(),
        vip_address: vip.into(),
        admin_state_up: true,
        listeners,
        pools,
        vrrp: None,
        access_log: None,
        additional_vip_addresses: Vec::new(),
    }
}

/// (native only, device): the native driver also takes UDP, which HAProxy cannot.
fn devices(certs: &Certs) -> Vec<(bool, Device)> {
    use L7CompareType::*;
    use L7RuleType::*;
    use ListenerProtocol as P;
    let all_headers = vec![
        InsertHeader::XForwardedFor as i32,
        InsertHeader::XForwardedPort as i32,
        InsertHeader::XForwardedProto as i32,
    ];

    // Everything at once, as the agent's `fixtures::everything`.
    let mut web = pool(
        1,
        P::Http,
        vec![member(1, "10.0.1.11", 8080), member(2, "10.0.1.12", 8080)],
    );
    web.persistence = persistence(PersistenceType::SourceIp, "");
    web.monitor = Some(MonitorConfig {
        r#type: MonitorType::Http as i32,
        delay_s: 5,
        timeout_s: 3,
        max_retries: 3,
        max_retries_down: 2,
        http_method: "GET".into(),
        url_path: "/healthz".into(),
        expected_codes: "200-204".into(),
        ..Default::default()
    });
    let mut app = pool(
        2,
        P::Http,
        vec![member(3, "10.0.1.21", 8080), member(4, "10.0.1.22", 8080)],
    );
    app.persistence = persistence(PersistenceType::HttpCookie, "");
    app.algorithm = Algorithm::LeastConnections as i32;
    let mut images = pool(3, P::Http, vec![member(5, "10.0.1.31", 8443)]);
    images.persistence = persistence(PersistenceType::AppCookie, "JSESSIONID");
    images.tls_enabled = true;
    images.monitor = Some(MonitorConfig {
        r#type: MonitorType::TlsHello as i32,
        delay_s: 10,
        max_retries: 2,
        max_retries_down: 3,
        ..Default::default()
    });
    let mut tcp = pool(4, P::Tcp, vec![member(6, "10.0.2.5", 5432)]);
    tcp.persistence = persistence(PersistenceType::SourceIp, "");
    tcp.algorithm = Algorithm::SourceIp as i32;
    let mut url = policy(
        2,
        L7Action::RedirectToUrl,
        vec![rule(3, HostName, EqualTo, "", "Old.Example")],
    );
    url.redirect_url = "https://example.com/moved%20here?x=1".into();
    url.redirect_http_code = 301;
    let mut prefix = policy(
        3,
        L7Action::RedirectPrefix,
        vec![rule(4, HostName, Regex, "", "^legacy[.]")],
    );
    prefix.redirect_prefix = "https://new.example".into();
    let mut to_images = policy(
        4,
        L7Action::RedirectToPool,
        vec![rule(5, FileType, Regex, "", "^(jpg|png)$")],
    );
    to_images.redirect_pool_id = images.id.clone();
    let mut vip = policy(
        5,
        L7Action::RedirectToPool,
        vec![rule(6, Cookie, StartsWith, "session", "vip-")],
    );
    vip.redirect_pool_id = app.id.clone();
    let mut php = policy(
        7,
        L7Action::RedirectToPool,
        vec![
            rule(7, Path, EndsWith, "", ".php"),
            rule(8, Header, Contains, "User-Agent", "curl"),
        ],
    );
    php.redirect_pool_id = app.id.clone();
    let mut admin_hdr = rule(2, Header, EqualTo, "X-Admin", "yes");
    admin_hdr.invert = true;
    let policies = vec![
        policy(
            1,
            L7Action::Reject,
            vec![rule(1, Path, StartsWith, "", "/admin"), admin_hdr],
        ),
        url,
        prefix,
        to_images,
        vip,
        policy(6, L7Action::Reject, vec![]),
        php,
    ];
    let cidrs = vec!["10.0.0.0/8".into(), "::1".into(), "2001:db8::/32".into()];
    let everything = lb(
        0xa1,
        "203.0.113.10",
        vec![
            ListenerConfig {
                allowed_cidrs: cidrs.clone(),
                insert_headers: all_headers.clone(),
                default_certificate: Some(certs.default.clone()),
                sni_certificates: vec![certs.a.clone(), certs.b.clone()],
                l7_policies: policies,
                timeout_client_data_ms: 50_000,
                timeout_member_connect_ms: 5_000,
                timeout_member_data_ms: 50_000,
                connection_limit: 10_000,
                ..listener(1, P::TerminatedHttps, 443, &web)
            },
            ListenerConfig {
                allowed_cidrs: vec!["192.0.2.0/24".into()],
                insert_headers: all_headers.clone(),
                ..listener(2, P::Http, 80, &app)
            },
            ListenerConfig {
                allowed_cidrs: cidrs,
                ..listener(3, P::Tcp, 5432, &tcp)
            },
        ],
        vec![web.clone(), app.clone(), images, tcp.clone()],
    );

    // HTTP with L7 policies and no certificates: small, so mutations stay cheap.
    let mut api_pool = pool(11, P::Http, vec![member(11, "10.0.3.1", 8000)]);
    api_pool.admin_state_up = true;
    let mut disabled = pool(12, P::Http, vec![member(12, "10.0.3.2", 8000)]);
    disabled.admin_state_up = false;
    let mut to_api = policy(
        11,
        L7Action::RedirectToPool,
        vec![
            rule(11, Path, Regex, "", "^/api/v[0-9]+/\\w+$"),
            rule(12, HostName, EndsWith, "", ".example.org"),
        ],
    );
    to_api.redirect_pool_id = api_pool.id.clone();
    let mut to_disabled = policy(
        12,
        L7Action::RedirectToPool,
        vec![rule(13, Cookie, EqualTo, "tier", "gold")],
    );
    to_disabled.redirect_pool_id = disabled.id.clone();
    let mut moved = policy(
        13,
        L7Action::RedirectPrefix,
        vec![rule(14, FileType, EqualTo, "", "php")],
    );
    moved.redirect_prefix = "https://php.example.org/".into();
    moved.redirect_http_code = 308;
    let http_l7 = lb(
        0xa2,
        "10.0.0.20",
        vec![ListenerConfig {
            l7_policies: vec![to_api, to_disabled, moved],
            insert_headers: vec![InsertHeader::XForwardedFor as i32],
            ..listener(11, P::Http, 8080, &api_pool)
        }],
        vec![api_pool, disabled],
    );

    // TCP and HTTPS passthrough on an IPv6 VIP: backup, drained and disabled members.
    let mut passthrough = pool(
        21,
        P::Https,
        vec![
            member(21, "2001:db8::21", 443),
            MemberConfig {
                backup: true,
                monitor_address: "2001:db8::122".into(),
                monitor_port: 8443,
                ..member(22, "2001:db8::22", 443)
            },
            MemberConfig {
                weight: 0,
                ..member(23, "2001:db8::23", 443)
            },
            MemberConfig {
                admin_state_up: false,
                ..member(24, "2001:db8::24", 443)
            },
        ],
    );
    passthrough.monitor = Some(MonitorConfig {
        r#type: MonitorType::Https as i32,
        delay_s: 5,
        timeout_s: 5,
        max_retries: 3,
        max_retries_down: 3,
        http_method: "HEAD".into(),
        url_path: "/status?full=1".into(),
        expected_codes: "200,202,204".into(),
        ..Default::default()
    });
    let mut redis = pool(22, P::Tcp, vec![member(25, "2001:db8::31", 6379)]);
    redis.algorithm = Algorithm::LeastConnections as i32;
    redis.monitor = Some(MonitorConfig {
        r#type: MonitorType::Tcp as i32,
        delay_s: 2,
        timeout_s: 1,
        max_retries: 1,
        max_retries_down: 1,
        ..Default::default()
    });
    let tcp_v6 = lb(
        0xa3,
        "2001:db8::100",
        vec![
            ListenerConfig {
                connection_limit: 500,
                timeout_member_connect_ms: 2_000,
                ..listener(21, P::Https, 443, &passthrough)
            },
            ListenerConfig {
                admin_state_up: false,
                ..listener(22, P::Tcp, 6379, &redis)
            },
        ],
        vec![passthrough, redis],
    );

    // TERMINATED_HTTPS with only its default certificate, re-encrypting to an HTTP pool.
    let mut secure = pool(31, P::Http, vec![member(31, "192.0.2.40", 8443)]);
    secure.tls_enabled = true;
    secure.monitor = Some(MonitorConfig {
        r#type: MonitorType::Https as i32,
        delay_s: 5,
        timeout_s: 2,
        max_retries: 2,
        max_retries_down: 2,
        ..Default::default()
    });
    let tls_only = lb(
        0xa4,
        "198.51.100.4",
        vec![ListenerConfig {
            default_certificate: Some(certs.b.clone()),
            insert_headers: vec![InsertHeader::XForwardedProto as i32],
            ..listener(31, P::TerminatedHttps, 8443, &secure)
        }],
        vec![secure],
    );

    // Two small load balancers on one device, out of id order; one of them disabled.
    let plain = |n: u32, vip: &str| {
        let p = pool(40 + n, P::Http, vec![member(40 + n, "10.0.4.1", 80)]);
        lb(
            0xb0 - n,
            vip,
            vec![listener(40 + n, P::Http, 80, &p)],
            vec![p],
        )
    };
    let mut second = plain(2, "10.0.0.42");
    second.admin_state_up = false;

    // UDP (the native driver only).
    let mut dns = pool(
        51,
        P::Udp,
        vec![member(51, "10.0.5.53", 53), member(52, "10.0.5.54", 53)],
    );
    dns.algorithm = Algorithm::SourceIp as i32;
    dns.persistence = persistence(PersistenceType::SourceIp, "");
    let udp = lb(
        0xa5,
        "10.0.0.53",
        vec![listener(51, P::Udp, 53, &dns)],
        vec![dns],
    );

    let device = |lbs: Vec<LoadBalancerConfig>| Device {
        load_balancers: lbs,
    };
    let out = vec![
        (false, device(vec![everything])),
        (false, device(vec![http_l7])),
        (false, device(vec![tcp_v6])),
        (false, device(vec![tls_only])),
        (false, device(vec![plain(1, "10.0.0.41"), second])),
        (true, device(vec![udp])),
    ];
    // Each renders as it is.
    let renderer = ConfigRenderer {
        stats_socket: std::path::Path::new(haproxy::STATS_SOCKET),
    };
    for (native_only, d) in &out {
        let refused = lbaas_fuzz::native::compile(d);
        assert!(refused.is_empty(), "{refused:?}");
        if !native_only {
            renderer
                .render_device(&d.load_balancers, std::path::Path::new(haproxy::CERT_DIR))
                .unwrap();
        }
    }
    out
}
