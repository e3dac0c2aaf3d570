//! The driver against the real HAProxy: certificate files, SNI, re-encryption, and which member
//! changes the runtime API makes without a reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use lbaas::agent::v1::{
    Algorithm, ListenerConfig, ListenerProtocol, LoadBalancerConfig, MonitorConfig, MonitorType,
    PersistenceType, PoolConfig, SessionPersistence,
};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{
    HaproxyDriver,
    fixtures::{self, TestCa, TestCert, haproxy_bin, member},
};
use crate::driver::{Driver, DriverOptions};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A port free now on 127.0.0.1.
fn free_port() -> u32 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    u32::from(listener.local_addr().unwrap().port())
}

/// An HTTP member that answers every request with its name, over TLS with `cert` if given.
async fn member_server(name: &'static str, cert: Option<&TestCert>) -> u32 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = u32::from(listener.local_addr().unwrap().port());
    let acceptor = cert.map(|cert| {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone())),
            )
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            answer(tls, name).await;
                        }
                    }
                    None => answer(stream, name).await,
                }
            });
        }
    });
    port
}

async fn answer(mut stream: impl AsyncRead + AsyncWrite + Unpin, name: &str) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
        name.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// GET / over `stream`; the whole response.
async fn get(mut stream: impl AsyncRead + AsyncWrite + Unpin, host: &str) -> String {
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

/// The body of GET / on the plain HTTP port, retried while HAProxy finds no member up yet.
async fn get_http(port: u32) -> String {
    let address = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap()));
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(address).await {
            last = get(stream, "lb.example").await;
            if last.starts_with("HTTP/1.1 200") {
                return last
                    .rsplit("\r\n\r\n")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no member answered on {port}: {last:?}");
}

/// Accepts any server certificate: the test compares the certificate it got with the one it
/// expects instead.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connects over TLS asking for `sni` (none for an IP address); the certificate served and the
/// response to GET /.
async fn get_https(port: u32, sni: &str) -> (Vec<u8>, String) {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).unwrap()));
    let stream = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let tls = connector.connect(name, stream).await.unwrap();
    let served = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap();
    (served, get(tls, sni).await)
}

fn pool(id: &str, persistence: PersistenceType) -> PoolConfig {
    PoolConfig {
        id: id.into(),
        protocol: ListenerProtocol::Http as i32,
        algorithm: Algorithm::RoundRobin as i32,
        admin_state_up: true,
        persistence: Some(SessionPersistence {
            r#type: persistence as i32,
            cookie_name: String::new(),
        }),
        ..Default::default()
    }
}

fn listener(id: &str, protocol: ListenerProtocol, port: u32, pool: &str) -> ListenerConfig {
    ListenerConfig {
        id: id.into(),
        protocol: protocol as i32,
        port,
        default_pool_id: pool.into(),
        admin_state_up: true,
        ..Default::default()
    }
}

#[tokio::test]
#[cfg_attr(
    lbaas_no_haproxy,
    ignore = "haproxy is not installed (apt-get install haproxy)"
)]
async fn certificates_sni_re_encryption_and_runtime_members() {
    let bin = haproxy_bin();
    let dir = std::env::temp_dir().join(format!("lbaas-haproxy-{}", uuid::Uuid::new_v4()));
    let driver = HaproxyDriver::new(&DriverOptions {
        device_id: "d".into(),
        state_dir: dir.clone(),
        haproxy_bin: bin,
        noop_apply_delay: Duration::ZERO,
        dataplane: Vec::new(),
    });
    let ca = TestCa::new();
    let [default, a, b] = fixtures::certificates(&ca);
    let member_cert = ca.certificate("member", &["member.internal"]);
    let tls_one = member_server("tls-one", Some(&member_cert)).await;
    let tls_two = member_server("tls-two", Some(&member_cert)).await;
    let plain = member_server("plain", None).await;
    let (https, http_tls, http_cookie) = (free_port(), free_port(), free_port());

    // A TERMINATED_HTTPS listener on a re-encrypting pool (with TLS checks), an HTTP listener on
    // the same pool, and one on an HTTP_COOKIE pool.
    let mut tls_pool = pool("p-tls", PersistenceType::SourceIp);
    tls_pool.tls_enabled = true;
    tls_pool.monitor = Some(MonitorConfig {
        r#type: MonitorType::TlsHello as i32,
        delay_s: 1,
        max_retries: 1,
        max_retries_down: 1,
        ..Default::default()
    });
    tls_pool.members = vec![member("m-1", tls_one)];
    let mut cookie_pool = pool("p-cookie", PersistenceType::HttpCookie);
    cookie_pool.members = vec![member("m-c1", plain)];
    let mut terminated = listener("l-https", ListenerProtocol::TerminatedHttps, https, "p-tls");
    terminated.default_certificate = Some(default.tls.clone());
    terminated.sni_certificates = vec![a.tls.clone(), b.tls.clone()];
    let mut lb = LoadBalancerConfig {
        id: "lb".into(),
        vip_address: "127.0.0.1".into(),
        admin_state_up: true,
        listeners: vec![
            terminated,
            listener("l-tls", ListenerProtocol::Http, http_tls, "p-tls"),
            listener("l-cookie", ListenerProtocol::Http, http_cookie, "p-cookie"),
        ],
        pools: vec![tls_pool, cookie_pool],
        ..Default::default()
    };
    driver.start().await.unwrap();
    let result = async {
        driver.apply(std::slice::from_ref(&lb)).await.unwrap();

        // Certificate files: private to the agent.
        use std::os::unix::fs::PermissionsExt;
        let certs = dir.join("certs");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&certs), 0o700);
        for name in ["c-default.pem", "c-a.pem", "c-b.pem", "l_l-https.crtlist"] {
            assert_eq!(mode(&certs.join(name)), 0o600, "{name}");
        }

        // SNI picks by the names in the certificates; anything else gets the default one.
        for (sni, expected) in [
            ("a.example", &a.der),
            ("www.a.example", &a.der),
            ("x.b.example", &b.der),
            ("default.example", &default.der),
            ("other.example", &default.der),
            ("127.0.0.1", &default.der),
        ] {
            let (served, response) = get_https(https, sni).await;
            assert!(&served == expected, "{sni} got another certificate");
            assert!(response.ends_with("tls-one"), "{sni}: {response}");
        }

        let reloads = || async { driver.master().show_proc().await.unwrap().reloads };
        let before = reloads().await;
        // A new member of the re-encrypting pool joins at runtime, speaking TLS; the old one goes.
        lb.pools[0].members = vec![member("m-2", tls_two)];
        driver.apply(std::slice::from_ref(&lb)).await.unwrap();
        assert_eq!(
            reloads().await,
            before,
            "a TLS member was added by a reload"
        );
        assert_eq!(get_http(http_tls).await, "tls-two");

        // `add server` takes no `cookie`: a new member of an HTTP_COOKIE pool comes by a reload.
        lb.pools[1].members.push(member("m-c2", plain));
        driver.apply(std::slice::from_ref(&lb)).await.unwrap();
        assert_eq!(reloads().await, before + 1);
        assert_eq!(get_http(http_cookie).await, "plain");

        // Without the TERMINATED_HTTPS listener, its files go.
        lb.listeners.remove(0);
        driver.apply(std::slice::from_ref(&lb)).await.unwrap();
        assert_eq!(std::fs::read_dir(&certs).unwrap().count(), 0);
    };
    // Stop HAProxy whatever happened.
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    driver.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
