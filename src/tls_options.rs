//! TLS options of listeners and pools (Octavia's `alpn_protocols`, `tls_versions`, `tls_ciphers`):
//! the names accepted, the defaults, and what each driver can do with them, shared by the api
//! (validation, defaults) and the agent (HAProxy rendering, the native data plane's rustls).

/// The Strict-Transport-Security header value (RFC 6797) of a listener's HSTS settings, the same
/// on both drivers: `max-age=N[; includeSubDomains][; preload]`.
pub fn hsts_header(h: &crate::agent::v1::Hsts) -> String {
    let mut value = format!("max-age={}", h.max_age_s);
    if h.include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if h.preload {
        value.push_str("; preload");
    }
    value
}

/// ALPN protocol ids a listener may offer or a pool may ask members for.
pub const ALPN_PROTOCOLS: &[&str] = &["h2", "http/1.1", "http/1.0"];

/// TLS versions by Octavia's names, oldest first.
pub const TLS_VERSIONS: &[&str] = &["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

/// Versions a listener or pool uses when it names none (Octavia's default).
pub const DEFAULT_TLS_VERSIONS: &[&str] = &["TLSv1.2", "TLSv1.3"];

/// ALPN a TERMINATED_HTTPS listener offers when it names none (Octavia's default).
pub const DEFAULT_LISTENER_ALPN: &[&str] = &["h2", "http/1.1", "http/1.0"];

/// ALPN a re-encrypting pool offers members when it names none (Octavia's default).
pub const DEFAULT_POOL_ALPN: &[&str] = &["http/1.1", "http/1.0"];

/// The cipher list used when none is named: Octavia's default without its CBC suites (the forward
/// secret AEAD suites Mozilla's "intermediate" profile keeps), then the TLS 1.3 suites. Every
/// driver has all of them.
pub const DEFAULT_CIPHERS: &str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:\
ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:\
TLS_AES_128_GCM_SHA256";

/// The cipher names (OpenSSL's spelling) a `tls_ciphers` list may hold: OpenSSL 3's ciphers with
/// authentication and encryption (`openssl ciphers 'ALL:!aNULL:!eNULL:!PSK:!SRP'`) and its TLS 1.3
/// suites (the `TLS_` names).
pub const CIPHERS: &[&str] = &[
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "DHE-DSS-AES256-GCM-SHA384",
    "DHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES256-CCM8",
    "ECDHE-ECDSA-AES256-CCM",
    "DHE-RSA-AES256-CCM8",
    "DHE-RSA-AES256-CCM",
    "ECDHE-ECDSA-ARIA256-GCM-SHA384",
    "ECDHE-ARIA256-GCM-SHA384",
    "DHE-DSS-ARIA256-GCM-SHA384",
    "DHE-RSA-ARIA256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "DHE-DSS-AES128-GCM-SHA256",
    "DHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES128-CCM8",
    "ECDHE-ECDSA-AES128-CCM",
    "DHE-RSA-AES128-CCM8",
    "DHE-RSA-AES128-CCM",
    "ECDHE-ECDSA-ARIA128-GCM-SHA256",
    "ECDHE-ARIA128-GCM-SHA256",
    "DHE-DSS-ARIA128-GCM-SHA256",
    "DHE-RSA-ARIA128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES256-SHA384",
    "DHE-RSA-AES256-SHA256",
    "DHE-DSS-AES256-SHA256",
    "ECDHE-ECDSA-CAMELLIA256-SHA384",
    "ECDHE-RSA-CAMELLIA256-SHA384",
    "DHE-RSA-CAMELLIA256-SHA256",
    "DHE-DSS-CAMELLIA256-SHA256",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-SHA256",
    "DHE-RSA-AES128-SHA256",
    "DHE-DSS-AES128-SHA256",
    "ECDHE-ECDSA-CAMELLIA128-SHA256",
    "ECDHE-RSA-CAMELLIA128-SHA256",
    "DHE-RSA-CAMELLIA128-SHA256",
    "DHE-DSS-CAMELLIA128-SHA256",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "DHE-RSA-AES256-SHA",
    "DHE-DSS-AES256-SHA",
    "DHE-RSA-CAMELLIA256-SHA",
    "DHE-DSS-CAMELLIA256-SHA",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "DHE-RSA-AES128-SHA",
    "DHE-DSS-AES128-SHA",
    "DHE-RSA-CAMELLIA128-SHA",
    "DHE-DSS-CAMELLIA128-SHA",
    "AES256-GCM-SHA384",
    "AES256-CCM8",
    "AES256-CCM",
    "ARIA256-GCM-SHA384",
    "AES128-GCM-SHA256",
    "AES128-CCM8",
    "AES128-CCM",
    "ARIA128-GCM-SHA256",
    "AES256-SHA256",
    "CAMELLIA256-SHA256",
    "AES128-SHA256",
    "CAMELLIA128-SHA256",
    "AES256-SHA",
    "CAMELLIA256-SHA",
    "AES128-SHA",
    "CAMELLIA128-SHA",
];

/// The ciphers every driver has (rustls, ring: forward-secret AEAD suites only). A list naming
/// others needs the `tls_legacy` capability.
pub const MODERN_CIPHERS: &[&str] = &[
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
];

/// Whether a cipher is a TLS 1.3 suite (HAProxy's `ciphersuites`) rather than a TLS 1.2-and-older
/// cipher (HAProxy's `ciphers`).
pub fn is_tls13_suite(name: &str) -> bool {
    name.starts_with("TLS_")
}

/// The names of a colon-separated cipher list, empty entries skipped.
pub fn cipher_names(list: &str) -> impl Iterator<Item = &str> {
    list.split(':').map(str::trim).filter(|c| !c.is_empty())
}

/// Whether these options use what only some drivers have: SSLv3, TLS 1.0 or 1.1, or a cipher
/// beyond `MODERN_CIPHERS`.
pub fn needs_legacy(versions: &[String], ciphers: &str) -> bool {
    versions
        .iter()
        .any(|v| matches!(v.as_str(), "SSLv3" | "TLSv1" | "TLSv1.1"))
        || cipher_names(ciphers).any(|c| !MODERN_CIPHERS.contains(&c))
}

/// HAProxy's spelling of a version (`TLSv1` is `TLSv1.0` there).
pub fn haproxy_version(version: &str) -> Option<&'static str> {
    Some(match version {
        "SSLv3" => "SSLv3",
        "TLSv1" => "TLSv1.0",
        "TLSv1.1" => "TLSv1.1",
        "TLSv1.2" => "TLSv1.2",
        "TLSv1.3" => "TLSv1.3",
        _ => return None,
    })
}

/// Why a version list cannot be used: unknown names, duplicates, or a gap (HAProxy takes a range,
/// `ssl-min-ver` to `ssl-max-ver`). `Ok((oldest, newest))` otherwise; `None` for an empty list.
pub fn version_range(versions: &[String]) -> Result<Option<(usize, usize)>, String> {
    let mut indexes = Vec::with_capacity(versions.len());
    for v in versions {
        let Some(i) = TLS_VERSIONS.iter().position(|known| known == v) else {
            return Err(format!(
                "unknown TLS version {v:?} (one of {})",
                TLS_VERSIONS.join(", ")
            ));
        };
        if indexes.contains(&i) {
            return Err(format!("{v} is named twice"));
        }
        indexes.push(i);
    }
    indexes.sort_unstable();
    let (Some(&first), Some(&last)) = (indexes.first(), indexes.last()) else {
        return Ok(None);
    };
    if last - first + 1 != indexes.len() {
        return Err(format!(
            "must be a range without gaps, such as TLSv1.2 and TLSv1.3 ({} to {} leaves out some)",
            TLS_VERSIONS[first], TLS_VERSIONS[last]
        ));
    }
    Ok(Some((first, last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn version_ranges() {
        assert_eq!(version_range(&[]), Ok(None));
        assert_eq!(
            version_range(&owned(&["TLSv1.3", "TLSv1.2"])),
            Ok(Some((3, 4)))
        );
        assert!(version_range(&owned(&["TLSv1.1", "TLSv1.3"])).is_err());
        assert!(version_range(&owned(&["TLSv1.2", "TLSv1.2"])).is_err());
        assert!(version_range(&owned(&["TLSv1.4"])).is_err());
    }

    #[test]
    fn defaults_need_nothing_legacy_and_are_known() {
        assert!(!needs_legacy(&owned(DEFAULT_TLS_VERSIONS), DEFAULT_CIPHERS));
        for c in cipher_names(DEFAULT_CIPHERS) {
            assert!(CIPHERS.contains(&c), "{c}");
        }
        for c in MODERN_CIPHERS {
            assert!(CIPHERS.contains(c), "{c}");
        }
        assert!(needs_legacy(&owned(&["TLSv1.1", "TLSv1.2"]), ""));
        assert!(needs_legacy(&[], "AES128-SHA"));
    }
}
