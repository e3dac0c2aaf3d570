//! Listeners' and pools' TLS options (`alpn_protocols`, `tls_versions`, `tls_ciphers`): checked
//! against `lbaas::tls_options`, stored as given (empty means the default), and shown and deployed
//! with Octavia's defaults filled in where the object speaks TLS.
use lbaas::{agent::v1 as agent, tls_options as opts};

use crate::convert::{Protocol, Violations, join_tags, split_tags};

/// The three options as the api keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFields {
    pub alpn_protocols: Vec<String>,
    pub tls_versions: Vec<String>,
    pub tls_ciphers: String,
}

const MAX_CIPHERS_LEN: usize = 2048;

impl TlsFields {
    pub fn is_empty(&self) -> bool {
        self.alpn_protocols.is_empty()
            && self.tls_versions.is_empty()
            && self.tls_ciphers.is_empty()
    }

    /// From the stored columns (newline-separated lists).
    pub fn from_columns(alpn: &str, versions: &str, ciphers: &str) -> Self {
        Self {
            alpn_protocols: split_tags(alpn),
            tls_versions: split_tags(versions),
            tls_ciphers: ciphers.to_owned(),
        }
    }

    /// The columns to store: (alpn, versions, ciphers).
    pub fn columns(&self) -> (String, String, String) {
        (
            join_tags(&self.alpn_protocols),
            join_tags(&self.tls_versions),
            self.tls_ciphers.clone(),
        )
    }

    /// With the defaults in place of what is empty.
    fn with_defaults(&self, alpn: &[&str]) -> Self {
        let or = |given: &[String], default: &[&str]| {
            if given.is_empty() {
                default.iter().map(|s| (*s).to_owned()).collect()
            } else {
                given.to_vec()
            }
        };
        Self {
            alpn_protocols: or(&self.alpn_protocols, alpn),
            tls_versions: or(&self.tls_versions, opts::DEFAULT_TLS_VERSIONS),
            tls_ciphers: if self.tls_ciphers.is_empty() {
                opts::DEFAULT_CIPHERS.to_owned()
            } else {
                self.tls_ciphers.clone()
            },
        }
    }

    /// What a listener shows and deploys: the defaults on TERMINATED_HTTPS, nothing elsewhere.
    pub fn listener_effective(&self, protocol: Protocol) -> Self {
        if protocol == Protocol::TerminatedHttps {
            self.with_defaults(opts::DEFAULT_LISTENER_ALPN)
        } else {
            Self::default()
        }
    }

    /// What a pool shows and deploys: the defaults when it re-encrypts; as stored otherwise (its
    /// ALPN may ask for h2c).
    pub fn pool_effective(&self, tls_enabled: bool) -> Self {
        if tls_enabled {
            self.with_defaults(opts::DEFAULT_POOL_ALPN)
        } else {
            self.clone()
        }
    }

    pub fn to_agent(&self) -> agent::TlsOptions {
        agent::TlsOptions {
            alpn_protocols: self.alpn_protocols.clone(),
            tls_versions: self.tls_versions.clone(),
            tls_ciphers: self.tls_ciphers.clone(),
        }
    }

    /// Whether a pool without TLS speaks HTTP/2 in clear text to its members.
    pub fn is_h2c(&self) -> bool {
        self.alpn_protocols == ["h2"]
    }
}

/// Checks the three fields of object `f` (violations under `f.alpn_protocols`, ...) and returns
/// them as the api keeps them.
fn check(
    v: &mut Violations,
    f: &str,
    alpn: &[String],
    versions: &[String],
    ciphers: &str,
) -> TlsFields {
    check_names(v, f, alpn, versions, ciphers);
    TlsFields {
        alpn_protocols: alpn.to_vec(),
        tls_versions: versions.to_vec(),
        tls_ciphers: ciphers.trim().to_owned(),
    }
}

fn check_names(v: &mut Violations, f: &str, alpn: &[String], versions: &[String], ciphers: &str) {
    for (i, id) in alpn.iter().enumerate() {
        if !opts::ALPN_PROTOCOLS.contains(&id.as_str()) {
            v.add(
                format!("{f}.alpn_protocols[{i}]"),
                format!(
                    "unknown ALPN protocol {id:?} (one of {})",
                    opts::ALPN_PROTOCOLS.join(", ")
                ),
            );
        } else if alpn[..i].contains(id) {
            v.add(
                format!("{f}.alpn_protocols[{i}]"),
                format!("{id} is named twice"),
            );
        }
    }
    if let Err(why) = opts::version_range(versions) {
        v.add(format!("{f}.tls_versions"), why);
    }
    if ciphers.len() > MAX_CIPHERS_LEN {
        v.add(
            format!("{f}.tls_ciphers"),
            format!("must be at most {MAX_CIPHERS_LEN} characters"),
        );
        return;
    }
    if !ciphers.is_empty() && opts::cipher_names(ciphers).next().is_none() {
        v.add(format!("{f}.tls_ciphers"), "names no cipher");
    }
    for name in opts::cipher_names(ciphers) {
        if !opts::CIPHERS.contains(&name) {
            v.add(
                format!("{f}.tls_ciphers"),
                format!(
                    "unknown cipher {name:?} (OpenSSL names such as ECDHE-RSA-AES128-GCM-SHA256 or TLS_AES_128_GCM_SHA256)"
                ),
            );
        }
    }
}

/// A listener's options: TERMINATED_HTTPS listeners only.
pub fn listener(
    v: &mut Violations,
    f: &str,
    protocol: Protocol,
    alpn: &[String],
    versions: &[String],
    ciphers: &str,
) -> TlsFields {
    let fields = check(v, f, alpn, versions, ciphers);
    if protocol != Protocol::TerminatedHttps && !fields.is_empty() {
        let field = if !alpn.is_empty() {
            "alpn_protocols"
        } else if !versions.is_empty() {
            "tls_versions"
        } else {
            "tls_ciphers"
        };
        v.add(
            format!("{f}.{field}"),
            format!(
                "TLS options need a TERMINATED_HTTPS listener, not {}",
                protocol.as_str()
            ),
        );
    }
    fields
}

/// A pool's options: HTTP pools only; clear text takes an ALPN of exactly ["h2"] (h2c) or one
/// without h2 (HTTP/1.1).
pub fn pool(
    v: &mut Violations,
    f: &str,
    protocol: Protocol,
    tls_enabled: bool,
    alpn: &[String],
    versions: &[String],
    ciphers: &str,
) -> TlsFields {
    let fields = check(v, f, alpn, versions, ciphers);
    if protocol != Protocol::Http && !fields.is_empty() {
        v.add(
            format!("{f}.alpn_protocols"),
            format!(
                "ALPN and TLS options are for HTTP pools, not {}",
                protocol.as_str()
            ),
        );
    } else if !tls_enabled && alpn.len() > 1 && alpn.iter().any(|p| p == "h2") {
        v.add(
            format!("{f}.alpn_protocols"),
            "without tls_enabled nothing is negotiated: name only h2 (HTTP/2 in clear text) or leave h2 out (HTTP/1.1)",
        );
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn violations(f: impl FnOnce(&mut Violations)) -> Vec<(String, String)> {
        let mut v = Violations::default();
        f(&mut v);
        match v.finish(()) {
            Ok(()) => vec![],
            Err(crate::error::ApiError::Invalid(list)) => list,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn listener_options_are_checked_by_name() {
        let bad = violations(|v| {
            listener(
                v,
                "listener",
                Protocol::TerminatedHttps,
                &s(&["h3", "h2"]),
                &s(&["TLSv1.2", "TLSv9"]),
                "ECDHE-RSA-AES128-GCM-SHA256:NOPE",
            );
        });
        let fields: Vec<&str> = bad.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "listener.alpn_protocols[0]",
                "listener.tls_versions",
                "listener.tls_ciphers"
            ]
        );
        assert!(
            violations(|v| {
                listener(v, "l", Protocol::Http, &s(&["h2"]), &[], "");
            })[0]
                .0
                == "l.alpn_protocols"
        );
        assert!(
            violations(|v| {
                listener(
                    v,
                    "l",
                    Protocol::TerminatedHttps,
                    &s(&["h2", "http/1.1"]),
                    &s(&["TLSv1.3"]),
                    "TLS_AES_128_GCM_SHA256",
                );
            })
            .is_empty()
        );
    }

    #[test]
    fn clear_text_pools_take_h2_alone() {
        let ok = |alpn: &[&str], tls: bool| {
            violations(|v| {
                pool(v, "p", Protocol::Http, tls, &s(alpn), &[], "");
            })
            .is_empty()
        };
        assert!(ok(&["h2"], false));
        assert!(ok(&["http/1.1", "http/1.0"], false));
        assert!(!ok(&["h2", "http/1.1"], false));
        assert!(ok(&["h2", "http/1.1"], true));
        assert!(
            !violations(|v| {
                pool(v, "p", Protocol::Tcp, false, &s(&["h2"]), &[], "");
            })
            .is_empty()
        );
    }

    #[test]
    fn defaults_fill_where_tls_is_spoken() {
        let empty = TlsFields::default();
        let l = empty.listener_effective(Protocol::TerminatedHttps);
        assert_eq!(l.alpn_protocols, s(&["h2", "http/1.1", "http/1.0"]));
        assert_eq!(l.tls_versions, s(&["TLSv1.2", "TLSv1.3"]));
        assert_eq!(l.tls_ciphers, opts::DEFAULT_CIPHERS);
        assert!(empty.listener_effective(Protocol::Http).is_empty());
        let p = empty.pool_effective(true);
        assert_eq!(p.alpn_protocols, s(&["http/1.1", "http/1.0"]));
        assert!(empty.pool_effective(false).is_empty());
        let h2c = TlsFields {
            alpn_protocols: s(&["h2"]),
            ..TlsFields::default()
        };
        assert!(h2c.pool_effective(false).is_h2c());
    }
}
