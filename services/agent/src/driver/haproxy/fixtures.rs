//! Test fixtures: certificates made with rcgen, a load balancer using every feature the renderer
//! knows, and the HAProxy binary to check the result with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use lbaas::agent::v1::{
    Algorithm, InsertHeader, L7Action, L7CompareType, L7PolicyConfig, L7RuleConfig, L7RuleType,
    ListenerConfig, ListenerProtocol, LoadBalancerConfig, MemberConfig, MonitorConfig, MonitorType,
    PersistenceType, PoolConfig, SessionPersistence, TlsCertificate, TlsOptions,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A certificate authority that signs the test certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "lbaas test CA");
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `names` (the first is also the subject CN).
    pub fn certificate(&self, id: &str, names: &[&str]) -> TestCert {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCert {
            tls: TlsCertificate {
                id: id.into(),
                certificate_pem: format!("{}{}", cert.pem(), self.pem),
                private_key_pem: key.serialize_pem(),
                names,
            },
            der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

/// A test certificate.
pub struct TestCert {
    /// As the agent gets it: the PEM chain (the leaf, then the CA) and the key's PEM (PKCS#8).
    pub tls: TlsCertificate,
    /// The leaf's DER.
    pub der: Vec<u8>,
    /// The key's DER (PKCS#8).
    pub key_der: Vec<u8>,
}

/// The HAProxy binary. The tests that call this are marked ignored where the build found no
/// HAProxy (`lbaas_no_haproxy`); run anyway (`--include-ignored`, as CI does), they fail here.
pub fn haproxy_bin() -> PathBuf {
    let candidates = [PathBuf::from("/usr/sbin/haproxy"), PathBuf::from("haproxy")];
    for bin in candidates {
        if std::process::Command::new(&bin)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return bin;
        }
    }
    panic!("haproxy is not installed (apt-get install haproxy): this test drives the real HAProxy");
}

pub fn member(id: &str, port: u32) -> MemberConfig {
    MemberConfig {
        id: id.into(),
        address: "127.0.0.1".into(),
        port,
        weight: 1,
        admin_state_up: true,
        backup: false,
        ..Default::default()
    }
}

pub fn rule(
    id: &str,
    r#type: L7RuleType,
    compare: L7CompareType,
    key: &str,
    value: &str,
    invert: bool,
) -> L7RuleConfig {
    L7RuleConfig {
        id: id.into(),
        r#type: r#type as i32,
        compare_type: compare as i32,
        key: key.into(),
        value: value.into(),
        invert,
    }
}

fn policy(id: &str, action: L7Action, rules: Vec<L7RuleConfig>) -> L7PolicyConfig {
    L7PolicyConfig {
        id: id.into(),
        action: action as i32,
        rules,
        ..Default::default()
    }
}

/// The ports of [`everything`]'s listeners and members.
pub struct Ports {
    pub https: u32,
    pub http: u32,
    pub tcp: u32,
    /// Members of p-web, p-app, p-images (TLS), p-tcp.
    pub web: [u32; 2],
    pub app: [u32; 2],
    pub images: u32,
    pub tcp_member: u32,
}

/// Certificates of [`everything`], in this order: the default one (default.example), a.example
/// and *.b.example.
pub fn certificates(ca: &TestCa) -> [TestCert; 3] {
    [
        ca.certificate("c-default", &["default.example"]),
        ca.certificate("c-a", &["a.example", "www.a.example"]),
        ca.certificate("c-b", &["*.b.example"]),
    ]
}

/// One load balancer using every feature: a TERMINATED_HTTPS listener with a default and two SNI
/// certificates and L7 policies of every action and rule type, an HTTP listener, a TCP listener;
/// every persistence type; allowed CIDRs; inserted headers; a re-encrypting pool.
pub fn everything(ca: &TestCa, ports: &Ports) -> LoadBalancerConfig {
    use L7CompareType::*;
    use L7RuleType::*;
    let [default, a, b] = certificates(ca).map(|cert| cert.tls);
    let all_headers = vec![
        InsertHeader::XForwardedFor as i32,
        InsertHeader::XForwardedPort as i32,
        InsertHeader::XForwardedProto as i32,
    ];
    let loopback = vec!["127.0.0.0/8".into(), "::1".into(), "10.0.0.0/8".into()];
    let mut url = policy(
        "pol-url",
        L7Action::RedirectToUrl,
        vec![rule("r-old", HostName, EqualTo, "", "Old.Example", false)],
    );
    url.redirect_url = "https://example.com/moved%20here?x=1".into();
    url.redirect_http_code = 301;
    let mut prefix = policy(
        "pol-prefix",
        L7Action::RedirectPrefix,
        vec![rule("r-legacy", HostName, Regex, "", "^legacy[.]", false)],
    );
    prefix.redirect_prefix = "https://new.example".into();
    let mut images = policy(
        "pol-images",
        L7Action::RedirectToPool,
        vec![rule("r-ext", FileType, Regex, "", "^(jpg|png)$", false)],
    );
    images.redirect_pool_id = "p-images".into();
    let mut vip = policy(
        "pol-vip",
        L7Action::RedirectToPool,
        vec![rule("r-vip", Cookie, StartsWith, "session", "vip-", false)],
    );
    vip.redirect_pool_id = "p-app".into();
    let mut php = policy(
        "pol-php",
        L7Action::RedirectToPool,
        vec![
            rule("r-php", Path, EndsWith, "", ".php", false),
            rule("r-curl", Header, Contains, "User-Agent", "curl", false),
        ],
    );
    php.redirect_pool_id = "p-app".into();
    let policies = vec![
        // /admin needs X-Admin: yes, before anything else matches.
        policy(
            "pol-deny",
            L7Action::Reject,
            vec![
                rule("r-admin", Path, StartsWith, "", "/admin", false),
                rule("r-admin-hdr", Header, EqualTo, "X-Admin", "yes", true),
            ],
        ),
        url,
        prefix,
        images,
        vip,
        // No rules: never matches.
        policy("pol-never", L7Action::Reject, vec![]),
        php,
    ];
    let pool = |id: &str, protocol: ListenerProtocol| PoolConfig {
        id: id.into(),
        protocol: protocol as i32,
        algorithm: Algorithm::RoundRobin as i32,
        admin_state_up: true,
        ..Default::default()
    };
    let persistence = |kind: PersistenceType, name: &str| {
        Some(SessionPersistence {
            r#type: kind as i32,
            cookie_name: name.into(),
        })
    };
    let mut web = pool("p-web", ListenerProtocol::Http);
    web.members = vec![
        member("m-web-1", ports.web[0]),
        member("m-web-2", ports.web[1]),
    ];
    web.persistence = persistence(PersistenceType::SourceIp, "");
    web.monitor = Some(MonitorConfig {
        r#type: MonitorType::Http as i32,
        delay_s: 1,
        timeout_s: 1,
        max_retries: 1,
        max_retries_down: 1,
        url_path: "/healthz".into(),
        ..Default::default()
    });
    let mut app = pool("p-app", ListenerProtocol::Http);
    app.members = vec![
        member("m-app-1", ports.app[0]),
        member("m-app-2", ports.app[1]),
    ];
    app.persistence = persistence(PersistenceType::HttpCookie, "");
    // HTTP/2 in clear text to members (gRPC servers).
    app.tls = Some(TlsOptions {
        alpn_protocols: vec!["h2".into()],
        ..Default::default()
    });
    let mut images_pool = pool("p-images", ListenerProtocol::Http);
    images_pool.members = vec![member("m-img-1", ports.images)];
    images_pool.persistence = persistence(PersistenceType::AppCookie, "JSESSIONID");
    images_pool.tls_enabled = true;
    images_pool.tls = Some(TlsOptions {
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
        tls_versions: vec!["TLSv1.1".into(), "TLSv1.2".into(), "TLSv1.3".into()],
        tls_ciphers: "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256"
            .into(),
    });
    images_pool.monitor = Some(MonitorConfig {
        r#type: MonitorType::TlsHello as i32,
        delay_s: 1,
        max_retries: 1,
        max_retries_down: 1,
        ..Default::default()
    });
    let mut tcp = pool("p-tcp", ListenerProtocol::Tcp);
    tcp.members = vec![member("m-tcp-1", ports.tcp_member)];
    tcp.persistence = persistence(PersistenceType::SourceIp, "");
    tcp.algorithm = Algorithm::LeastConnections as i32;
    LoadBalancerConfig {
        id: "lb-all".into(),
        project_id: "p".into(),
        vip_address: "127.0.0.1".into(),
        admin_state_up: true,
        vrrp: None,
        // Octavia's tenant format, with a quote and a dollar sign to keep quoted.
        access_log: Some(lbaas::agent::v1::AccessLog {
            transport: "tcp".into(),
            address: "127.0.0.1".into(),
            port: 5140,
            format: "p lb-all %f %ci %cp %t %{+Q}r %ST %B %U %[ssl_c_verify] %{+Q}[ssl_c_s_dn] %b %s %Tt %tsc it's $HOME".into(),
        }),
        additional_vip_addresses: Vec::new(),
        listeners: vec![
            ListenerConfig {
                id: "l-https".into(),
                protocol: ListenerProtocol::TerminatedHttps as i32,
                port: ports.https,
                default_pool_id: "p-web".into(),
                admin_state_up: true,
                allowed_cidrs: loopback.clone(),
                insert_headers: all_headers.clone(),
                default_certificate: Some(default),
                sni_certificates: vec![a, b],
                l7_policies: policies,
                hsts: Some(lbaas::agent::v1::Hsts {
                    max_age_s: 31_536_000,
                    include_subdomains: true,
                    preload: true,
                }),
                tls: Some(TlsOptions {
                    alpn_protocols: lbaas::tls_options::DEFAULT_LISTENER_ALPN
                        .iter()
                        .map(|p| (*p).to_owned())
                        .collect(),
                    tls_versions: vec!["TLSv1.2".into(), "TLSv1.3".into()],
                    tls_ciphers: lbaas::tls_options::DEFAULT_CIPHERS.into(),
                }),
                ..Default::default()
            },
            ListenerConfig {
                id: "l-http".into(),
                protocol: ListenerProtocol::Http as i32,
                port: ports.http,
                default_pool_id: "p-app".into(),
                admin_state_up: true,
                allowed_cidrs: vec!["192.0.2.0/24".into()],
                insert_headers: all_headers,
                ..Default::default()
            },
            ListenerConfig {
                id: "l-tcp".into(),
                protocol: ListenerProtocol::Tcp as i32,
                port: ports.tcp,
                default_pool_id: "p-tcp".into(),
                admin_state_up: true,
                allowed_cidrs: loopback,
                ..Default::default()
            },
        ],
        pools: vec![web, app, images_pool, tcp],
    }
}
