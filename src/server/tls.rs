//! TLS between the services: every service presents a certificate from the configured CA, and the
//! scheduler and agents accept only peers presenting one too (mutual TLS). Plaintext is allowed
//! only when chosen explicitly (`--plaintext`, for local use).
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The TLS flags every service takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsConfig {
    /// CA certificates (PEM) that peers' certificates must chain to.
    #[arg(long = "tls-ca", env = "LBAAS_TLS_CA")]
    pub ca: Option<PathBuf>,
    /// This service's certificate chain (PEM), presented to peers and clients.
    #[arg(long = "tls-cert", env = "LBAAS_TLS_CERT")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long = "tls-key", env = "LBAAS_TLS_KEY")]
    pub key: Option<PathBuf>,
    /// Talk plaintext to the other services (local use only). Required when no TLS material is
    /// given, so that plaintext is never an accident.
    #[arg(long, env = "LBAAS_PLAINTEXT", default_value_t = false, action = clap::ArgAction::Set)]
    pub plaintext: bool,
    /// Also serve grpc.health.v1, alone and in plaintext, on this address: Kubernetes' gRPC
    /// probes cannot speak TLS, so with TLS on they probe here. Nothing else is served on it.
    #[arg(long = "health-listen", env = "LBAAS_HEALTH_LISTEN")]
    pub health_listen: Option<std::net::SocketAddr>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))
}

impl TlsConfig {
    /// Plaintext, as chosen for local use (the one-process stack and tests).
    pub fn plaintext() -> Self {
        Self {
            plaintext: true,
            ..Self::default()
        }
    }

    /// The problems with these flags, if any.
    pub fn problems(&self) -> Vec<String> {
        let given = [&self.ca, &self.cert, &self.key]
            .iter()
            .filter(|p| p.is_some())
            .count();
        let mut problems = Vec::new();
        match (given, self.plaintext) {
            (0, false) => problems.push(
                "no TLS material: give --tls-ca, --tls-cert and --tls-key, or choose --plaintext true for local use"
                    .to_owned(),
            ),
            (1 | 2, _) => problems.push("--tls-ca, --tls-cert and --tls-key go together".to_owned()),
            (3, true) => problems.push("--plaintext cannot be combined with TLS material".to_owned()),
            _ => {}
        }
        for (path, what) in [
            (&self.ca, "tls-ca"),
            (&self.cert, "tls-cert"),
            (&self.key, "tls-key"),
        ] {
            if let Some(p) = path.as_ref().filter(|p| !p.is_file()) {
                problems.push(format!("{what} {} does not exist", p.display()));
            }
        }
        problems
    }

    pub fn enabled(&self) -> bool {
        !self.plaintext && self.ca.is_some() && self.cert.is_some() && self.key.is_some()
    }

    fn material(&self) -> anyhow::Result<Option<(Certificate, Identity)>> {
        let (Some(ca), Some(cert), Some(key)) = (&self.ca, &self.cert, &self.key) else {
            return Ok(None);
        };
        if self.plaintext {
            return Ok(None);
        }
        Ok(Some((
            Certificate::from_pem(read(ca, "tls-ca")?),
            Identity::from_pem(read(cert, "tls-cert")?, read(key, "tls-key")?),
        )))
    }

    /// The server side: this service's certificate; with `require_client_certificate`, only
    /// clients presenting a certificate from the CA get through the handshake.
    pub fn server(
        &self,
        require_client_certificate: bool,
    ) -> anyhow::Result<Option<ServerTlsConfig>> {
        Ok(self.material()?.map(|(ca, identity)| {
            let config = ServerTlsConfig::new().identity(identity);
            if require_client_certificate {
                config.client_ca_root(ca)
            } else {
                config
            }
        }))
    }

    /// The client side: the server must present a certificate from the CA for the name dialled,
    /// and this service presents its own.
    pub fn client(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        Ok(self
            .material()?
            .map(|(ca, identity)| ClientTlsConfig::new().ca_certificate(ca).identity(identity)))
    }

    /// `url` with the scheme TLS or plaintext needs (`https://` or `http://`).
    pub fn url(&self, url: &str) -> String {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(url);
        if self.enabled() {
            format!("https://{rest}")
        } else {
            format!("http://{rest}")
        }
    }
}

/// An endpoint to `url` with the client side of `tls` (if enabled), as every service calls
/// another: connecting gives up after 3 s, every call must be answered (a unary call whole, a
/// stream its start) within the kit's `CALL_TIMEOUT`, and HTTP/2 and TCP keepalive (also while
/// idle) close a connection whose peer stopped answering, so that streams on it fail and their
/// followers reconnect.
pub fn endpoint(url: &str, tls: &TlsConfig) -> anyhow::Result<tonic::transport::Endpoint> {
    let endpoint = tonic::transport::Endpoint::from_shared(tls.url(url))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(super::CALL_TIMEOUT)
        .http2_keep_alive_interval(super::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(super::KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(super::TCP_KEEPALIVE));
    Ok(match tls.client()? {
        Some(client) => endpoint.tls_config(client)?,
        None => endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_must_be_chosen() {
        assert_eq!(TlsConfig::default().problems().len(), 1);
        assert!(TlsConfig::plaintext().problems().is_empty());
        let half = TlsConfig {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        assert!(half.problems().iter().any(|p| p.contains("go together")));
        assert_eq!(TlsConfig::plaintext().url("https://x:1"), "http://x:1");
    }
}
