//! TLS for the native driver (rustls with the ring provider): TERMINATED_HTTPS listeners choose
//! their certificate by the client's SNI name (exact, then a one-label wildcard, else the
//! listener's default certificate) and offer h2 and http/1.1 by ALPN; pools with `tls_enabled`
//! (and HTTPS / TLS-HELLO monitors) connect to members over TLS **without verifying their
//! certificates**, as the API documents for re-encryption: members commonly serve self-signed
//! certificates, so the connection is encrypted but the member is not authenticated.
use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use hyper::Uri;
use hyper_util::{
    client::legacy::connect::{Connected, Connection, HttpConnector},
    rt::TokioIo,
};
use lbaas::agent::v1::{TlsCertificate, TlsOptions};
use rustls::{
    ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme, SupportedProtocolVersion,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The crypto provider every TLS config here uses (ring, whatever else the process links).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a certificate with its key (PEM), checking that they belong together.
pub fn certified_key(
    cert: &TlsCertificate,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let what = format!("certificate {}", cert.id);
    let chain = CertificateDer::pem_slice_iter(cert.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: certificate_pem: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{what}: certificate_pem holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(cert.private_key_pem.as_bytes())
        .map_err(|e| format!("{what}: private_key_pem: {e}"))?;
    CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| format!("{what}: {e}"))
}

/// Chooses a listener's certificate by the SNI name the client asks for.
#[derive(Debug)]
pub struct SniResolver {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// "*.example.com" is kept under "example.com".
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Parses the listener's certificates; the first certificate naming a name wins it.
    pub fn new(
        default: &TlsCertificate,
        sni: &[TlsCertificate],
        provider: &CryptoProvider,
    ) -> Result<Self, String> {
        let mut resolver = Self {
            default: certified_key(default, provider)?,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for cert in sni {
            let key = certified_key(cert, provider)?;
            for name in &cert.names {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => resolver.wildcard.entry(parent.to_owned()),
                    None => resolver.exact.entry(name),
                }
                .or_insert_with(|| key.clone());
            }
        }
        Ok(resolver)
    }

    /// The certificate for this SNI name (`None`: the client sent none).
    pub fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        // A wildcard stands for exactly one label.
        if let Some((_, parent)) = name.split_once('.')
            && let Some(key) = self.wildcard.get(parent)
        {
            return key.clone();
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()))
    }
}

/// OpenSSL's cipher names and rustls's (ring) suites for them: the ciphers the native data plane
/// has (`lbaas::tls_options::MODERN_CIPHERS`).
const SUITES: &[(&str, rustls::CipherSuite)] = &[
    (
        "TLS_AES_256_GCM_SHA384",
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
];

/// The versions and the provider (its suites in the order named) for a listener's or pool's
/// options. Versions before TLS 1.2 and ciphers beyond `SUITES` are refused (the api does not send
/// them to native devices: they need the `tls_legacy` capability). As HAProxy does, a list without
/// TLS 1.2 ciphers leaves TLS 1.2's defaults, and one without TLS 1.3 suites leaves 1.3's.
fn versions_and_provider(
    options: Option<&TlsOptions>,
) -> Result<(Vec<&'static SupportedProtocolVersion>, Arc<CryptoProvider>), String> {
    let base = rustls::crypto::ring::default_provider();
    let Some(options) = options else {
        return Ok((rustls::DEFAULT_VERSIONS.to_vec(), Arc::new(base)));
    };
    let mut versions = Vec::new();
    for v in &options.tls_versions {
        match v.as_str() {
            "TLSv1.2" => versions.push(&rustls::version::TLS12),
            "TLSv1.3" => versions.push(&rustls::version::TLS13),
            other => {
                return Err(format!(
                    "tls_versions: {other} is not in the native data plane (TLSv1.2 and TLSv1.3 are)"
                ));
            }
        }
    }
    if versions.is_empty() {
        versions = rustls::DEFAULT_VERSIONS.to_vec();
    }
    let mut named = Vec::new();
    for name in lbaas::tls_options::cipher_names(&options.tls_ciphers) {
        let Some((_, suite)) = SUITES.iter().find(|(n, _)| *n == name) else {
            return Err(format!(
                "tls_ciphers: {name} is not in the native data plane"
            ));
        };
        if let Some(found) = base.cipher_suites.iter().find(|s| s.suite() == *suite) {
            named.push(*found);
        }
    }
    let mut provider = base.clone();
    if !named.is_empty() {
        let is13 = |s: &rustls::SupportedCipherSuite| s.version() == &rustls::version::TLS13;
        let has13 = named.iter().any(is13);
        let has12 = named.iter().any(|s| !is13(s));
        provider.cipher_suites = named;
        for default in &base.cipher_suites {
            if (is13(default) && !has13) || (!is13(default) && !has12) {
                provider.cipher_suites.push(*default);
            }
        }
    }
    Ok((versions, Arc::new(provider)))
}

fn alpn(options: Option<&TlsOptions>, default: &[&str]) -> Vec<Vec<u8>> {
    match options {
        Some(o) if !o.alpn_protocols.is_empty() => o
            .alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect(),
        _ => default.iter().map(|p| p.as_bytes().to_vec()).collect(),
    }
}

/// A TERMINATED_HTTPS listener's TLS config: its certificates, and the ALPN, versions and
/// ciphers of its options (without options: h2 and http/1.1, TLS 1.2 and 1.3).
pub fn server_config(
    default: Option<&TlsCertificate>,
    sni: &[TlsCertificate],
    options: Option<&TlsOptions>,
) -> Result<Arc<ServerConfig>, String> {
    let default = default.ok_or("TERMINATED_HTTPS needs a default_certificate")?;
    let (versions, provider) = versions_and_provider(options)?;
    let resolver = SniResolver::new(default, sni, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn(options, &["h2", "http/1.1"]);
    // The listener's cipher order decides, as HAProxy's does by default.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Accepts any certificate a member presents. DANGEROUS by design: re-encryption to members does
/// not authenticate them (the API says member certificates are not verified). The handshake
/// signatures are still checked against the presented certificate, so the member holds its key.
#[derive(Debug)]
pub struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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

/// The client config for members: no certificate verification (see `AcceptAnyCertificate`),
/// HTTP/1.1 by ALPN.
pub fn member_client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    pool_client_config(None).map_err(rustls::Error::General)
}

/// The client config for a re-encrypting pool's members: no certificate verification, and the
/// ALPN, versions and ciphers of the pool's options (without: http/1.1, TLS 1.2 and 1.3).
pub fn pool_client_config(options: Option<&TlsOptions>) -> Result<Arc<ClientConfig>, String> {
    let (versions, provider) = versions_and_provider(options)?;
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn(options, &["http/1.1"]);
    Ok(Arc::new(config))
}

/// The name a member is asked for: its IP address (no SNI is sent for addresses).
pub fn member_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::from(addr.ip())
}

/// A TLS connection to a member, as hyper's client wants it.
pub struct MemberStream(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl Connection for MemberStream {
    /// HTTP/2 when the member chose h2 by ALPN: hyper's client then speaks it on this connection.
    fn connected(&self) -> Connected {
        let (tcp, tls) = self.0.get_ref();
        let connected = tcp.connected();
        if tls.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl AsyncRead for MemberStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemberStream {
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects hyper's client to members over TLS (`https://member-ip:port` URIs).
#[derive(Clone)]
pub struct MemberConnector {
    http: HttpConnector,
    /// `None`: no TLS client config could be built (pools needing it are refused at apply).
    tls: Option<tokio_rustls::TlsConnector>,
}

impl MemberConnector {
    pub fn new(config: Option<Arc<ClientConfig>>, connect_timeout: std::time::Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        Self {
            http,
            tls: config.map(tokio_rustls::TlsConnector::from),
        }
    }
}

impl tower::Service<Uri> for MemberConnector {
    type Response = TokioIo<MemberStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut http = self.http.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let tls = tls.ok_or_else(|| BoxError::from("no TLS client config"))?;
            let host = uri.host().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name: ServerName<'static> = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::from(ip),
                Err(_) => ServerName::try_from(host.to_owned())?,
            };
            let tcp = http.call(uri).await?.into_inner();
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(MemberStream(stream)))
        })
    }
}

#[cfg(test)]
pub mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A self-signed certificate for these names, as the API hands it to the agent.
    pub fn cert(id: &str, names: &[&str]) -> TlsCertificate {
        let generated = rcgen::generate_simple_self_signed(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        TlsCertificate {
            id: id.into(),
            certificate_pem: generated.cert.pem(),
            private_key_pem: generated.signing_key.serialize_pem(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    fn der(cert: &TlsCertificate) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(cert.certificate_pem.as_bytes()).unwrap()
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let default = cert("default", &["lb.example.net"]);
        let api = cert("api", &["api.example.com", "API2.example.com"]);
        let wild = cert("wild", &["*.example.com"]);
        let resolver =
            SniResolver::new(&default, &[api.clone(), wild.clone()], &provider()).unwrap();
        let picked = |name: Option<&str>| resolver.pick(name).cert[0].clone();
        assert_eq!(picked(None), der(&default));
        assert_eq!(picked(Some("api.example.com")), der(&api));
        assert_eq!(picked(Some("API.Example.com")), der(&api));
        assert_eq!(picked(Some("api2.example.com")), der(&api));
        assert_eq!(picked(Some("www.example.com")), der(&wild));
        // A wildcard is one label: neither the bare domain nor two labels deep.
        assert_eq!(picked(Some("example.com")), der(&default));
        assert_eq!(picked(Some("a.b.example.com")), der(&default));
        assert_eq!(picked(Some("other.org")), der(&default));
    }

    #[test]
    fn bad_pems_are_refused() {
        let good = cert("good", &["a.example"]);
        let other = cert("other", &["b.example"]);
        let p = provider();
        let mut bad = good.clone();
        bad.certificate_pem = "not a pem".into();
        assert!(certified_key(&bad, &p).is_err());
        let mut bad = good.clone();
        bad.private_key_pem =
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        assert!(certified_key(&bad, &p).is_err());
        let mut mismatched = good.clone();
        mismatched.private_key_pem = other.private_key_pem.clone();
        assert!(certified_key(&mismatched, &p).is_err());
        assert!(server_config(None, &[], None).is_err());
        assert!(server_config(Some(&good), &[bad], None).is_err());
        assert!(server_config(Some(&good), &[other], None).is_ok());
    }

    /// One DER element: (tag, contents, the rest).
    fn tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (input[0], input[1]);
        let (len, start) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + n)
        };
        (tag, &input[start..start + len], &input[start + len..])
    }

    /// Keys load from PKCS#8 and SEC1 PEM (PKCS#1 is RSA, which rcgen cannot make here; its PEM
    /// label is recognised all the same).
    #[test]
    fn key_formats() {
        let p = provider();
        let generated = rcgen::generate_simple_self_signed(vec!["ec.example".to_owned()]).unwrap();
        let pkcs8 = TlsCertificate {
            id: "ec".into(),
            certificate_pem: generated.cert.pem(),
            private_key_pem: generated.signing_key.serialize_pem(),
            names: vec![],
        };
        assert!(certified_key(&pkcs8, &p).is_ok());
        // PKCS#8 is SEQUENCE { version, algorithm, OCTET STRING { the SEC1 ECPrivateKey } }.
        let der = generated.signing_key.serialize_der();
        let (_, body, _) = tlv(&der);
        let (_, _, rest) = tlv(body);
        let (_, _, rest) = tlv(rest);
        let (tag, sec1, _) = tlv(rest);
        assert_eq!(tag, 0x04);
        let sec1 = PrivateKeyDer::Sec1(sec1.to_vec().into());
        let mut sec1_cert = pkcs8.clone();
        sec1_cert.private_key_pem = pem_of("EC PRIVATE KEY", sec1.secret_der());
        let loaded = PrivateKeyDer::from_pem_slice(sec1_cert.private_key_pem.as_bytes()).unwrap();
        assert!(matches!(loaded, PrivateKeyDer::Sec1(_)));
        assert!(certified_key(&sec1_cert, &p).is_ok());
        let rsa = pem_of("RSA PRIVATE KEY", &[0x30, 0x00]);
        assert!(matches!(
            PrivateKeyDer::from_pem_slice(rsa.as_bytes()).unwrap(),
            PrivateKeyDer::Pkcs1(_)
        ));
    }

    fn pem_of(label: &str, der: &[u8]) -> String {
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in der.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        let lines: Vec<&str> = out
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// A real handshake: the client asks for a name and gets that name's certificate, and the
    /// member client config accepts a self-signed one.
    #[tokio::test]
    async fn handshake_serves_the_sni_certificate() {
        let default = cert("default", &["lb.example.net"]);
        let wild = cert("wild", &["*.example.com"]);
        let config = server_config(Some(&default), std::slice::from_ref(&wild), None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let _ = acceptor.accept(tcp).await;
            }
        });
        let connector = tokio_rustls::TlsConnector::from(member_client_config().unwrap());
        for (name, want) in [
            ("shop.example.com", der(&wild)),
            ("lb.example.net", der(&default)),
        ] {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let tls = connector
                .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
                .await
                .unwrap();
            let (_, conn) = tls.get_ref();
            assert_eq!(conn.peer_certificates().unwrap()[0], want, "{name}");
            assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        }
        server.await.unwrap();
    }

    fn options(alpn: &[&str], versions: &[&str], ciphers: &str) -> TlsOptions {
        TlsOptions {
            alpn_protocols: alpn.iter().map(|s| (*s).to_owned()).collect(),
            tls_versions: versions.iter().map(|s| (*s).to_owned()).collect(),
            tls_ciphers: ciphers.into(),
        }
    }

    #[test]
    fn options_map_to_rustls_or_are_refused() {
        let (versions, provider) =
            versions_and_provider(Some(&options(&[], &["TLSv1.3"], ""))).unwrap();
        assert_eq!(versions, [&rustls::version::TLS13]);
        assert_eq!(
            provider.cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
        // One TLS 1.2 cipher named: TLS 1.2 has only it, TLS 1.3 keeps its suites (as HAProxy).
        let (_, provider) =
            versions_and_provider(Some(&options(&[], &[], "ECDHE-RSA-AES128-GCM-SHA256"))).unwrap();
        let suites: Vec<_> = provider.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            suites[0],
            rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        assert_eq!(
            suites
                .iter()
                .filter(|s| format!("{s:?}").starts_with("TLS_ECDHE"))
                .count(),
            1
        );
        assert_eq!(
            suites
                .iter()
                .filter(|s| format!("{s:?}").starts_with("TLS13"))
                .count(),
            3
        );
        for refused in [
            options(&[], &["TLSv1.1", "TLSv1.2"], ""),
            options(&[], &[], "AES128-SHA"),
        ] {
            assert!(versions_and_provider(Some(&refused)).is_err());
            assert!(pool_client_config(Some(&refused)).is_err());
        }
    }

    /// A listener's options in a real handshake: its versions turn other clients away, its ALPN
    /// list is what clients can choose from.
    #[tokio::test]
    async fn listener_options_shape_the_handshake() {
        let default = cert("default", &["lb.example.net"]);
        let config = server_config(
            Some(&default),
            &[],
            Some(&options(&["http/1.1", "http/1.0"], &["TLSv1.3"], "")),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let _ = acceptor.accept(tcp).await;
            }
        });
        let client = |versions: &[&str]| {
            let mut config =
                (*pool_client_config(Some(&options(&["h2", "http/1.1"], versions, ""))).unwrap())
                    .clone();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };
        let name = || ServerName::try_from("lb.example.net".to_owned()).unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls13 = client(&["TLSv1.3"]).connect(name(), tcp).await.unwrap();
        assert_eq!(tls13.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(client(&["TLSv1.2"]).connect(name(), tcp).await.is_err());
        server.await.unwrap();
    }
}
