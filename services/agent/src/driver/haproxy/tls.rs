//! TLS termination: the certificate files a TERMINATED_HTTPS listener needs and the `bind` options
//! that load them.
//!
//! Each certificate becomes `<cert dir>/<certificate id>.pem` (its chain, then its key) and each
//! listener a crt-list `<cert dir>/l_<listener id>.crtlist` naming its default certificate first
//! (HAProxy serves the first one when the client's SNI names no other certificate) and then its SNI
//! certificates. HAProxy picks SNI certificates by the names in them (subject CN and alternative
//! names), as Octavia's amphora does, so no name from the request reaches the config.
//!
//! The PEM text is checked line by line (only `-----BEGIN ...-----`, base64 and `-----END ...-----`
//! lines), so a certificate can hold nothing but certificates and a key.
use lbaas::{
    agent::v1::{ListenerConfig, TlsCertificate, TlsOptions},
    tls_options,
};

use super::render::{CertFiles, RenderError, check_id, reject};

/// The longest PEM text (a certificate chain, or a key) accepted.
const MAX_PEM_LEN: usize = 256 * 1024;

/// What a PEM text must hold.
#[derive(Clone, Copy)]
enum PemKind {
    /// One or more certificates: the certificate first, then its intermediates.
    Chain,
    /// Exactly one private key (PKCS#8, PKCS#1 or SEC1).
    Key,
}

/// Checks a PEM text and returns it normalised (LF line ends, no blank lines, a final newline).
fn check_pem(text: &str, kind: PemKind, field: &str) -> Result<String, RenderError> {
    if text.len() > MAX_PEM_LEN {
        return Err(reject(field, "is too long"));
    }
    let bad = |why: &str| reject(field, format!("is not PEM: {why}"));
    let mut out = String::with_capacity(text.len());
    let mut open: Option<&str> = None;
    let mut labels = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if let Some(label) = armor(line, "-----BEGIN ") {
            if open.is_some() {
                return Err(bad("a BEGIN line inside a block"));
            }
            open = Some(label);
            labels.push(label);
        } else if let Some(label) = armor(line, "-----END ") {
            if open != Some(label) {
                return Err(bad("an END line that closes no block"));
            }
            open = None;
        } else if open.is_none() {
            return Err(bad("text outside a BEGIN/END block"));
        } else if !line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            return Err(bad(
                "a line that is not base64 (encrypted keys are not supported)",
            ));
        }
        out.push_str(line);
        out.push('\n');
    }
    if open.is_some() {
        return Err(bad("a block without its END line"));
    }
    match kind {
        PemKind::Chain => {
            if labels.is_empty() || labels.iter().any(|l| *l != "CERTIFICATE") {
                return Err(reject(field, "must hold certificates only, at least one"));
            }
        }
        PemKind::Key => {
            if labels.len() != 1
                || !matches!(
                    labels.first().copied(),
                    Some("PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY")
                )
            {
                return Err(reject(
                    field,
                    "must hold one unencrypted private key (PKCS#8, PKCS#1 or SEC1)",
                ));
            }
        }
    }
    Ok(out)
}

/// The label of a `-----BEGIN LABEL-----` (or END) line: upper-case letters, digits and spaces.
fn armor<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let label = line.strip_prefix(prefix)?.strip_suffix("-----")?;
    (!label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' '))
    .then_some(label)
}

/// The name of a certificate's file in the certificate directory.
fn cert_file_name(cert: &TlsCertificate, field: &str) -> Result<String, RenderError> {
    check_id(&cert.id, &format!("{field}.id"))?;
    Ok(format!("{}.pem", cert.id))
}

/// Adds a certificate's file (chain, then key) to `files`; the same id must always carry the same
/// certificate.
fn add_cert_file(
    files: &mut CertFiles,
    cert: &TlsCertificate,
    field: &str,
) -> Result<String, RenderError> {
    let name = cert_file_name(cert, field)?;
    let chain = check_pem(
        &cert.certificate_pem,
        PemKind::Chain,
        &format!("{field}.certificate_pem"),
    )?;
    let key = check_pem(
        &cert.private_key_pem,
        PemKind::Key,
        &format!("{field}.private_key_pem"),
    )?;
    let content = chain + &key;
    match files.get(&name) {
        Some(existing) if *existing != content => {
            return Err(reject(
                format!("{field}.id"),
                "names another certificate with the same id",
            ));
        }
        Some(_) => {}
        None => {
            files.insert(name.clone(), content);
        }
    }
    Ok(name)
}

/// For a TERMINATED_HTTPS listener: writes its certificates and crt-list into `files` and returns
/// what follows the address on its `bind` line.
pub fn bind_options(
    listener: &ListenerConfig,
    cert_dir: &str,
    files: &mut CertFiles,
    field: &str,
) -> Result<String, RenderError> {
    let default = listener.default_certificate.as_ref().ok_or_else(|| {
        reject(
            format!("{field}.default_certificate"),
            "is required for TERMINATED_HTTPS",
        )
    })?;
    let mut names = vec![add_cert_file(
        files,
        default,
        &format!("{field}.default_certificate"),
    )?];
    for (i, cert) in listener.sni_certificates.iter().enumerate() {
        let name = add_cert_file(files, cert, &format!("{field}.sni_certificates[{i}]"))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut list = String::new();
    for name in &names {
        list.push_str(cert_dir);
        list.push('/');
        list.push_str(name);
        list.push('\n');
    }
    let list_name = format!("l_{}.crtlist", listener.id);
    files.insert(list_name.clone(), list);
    // Without options (an api before them): HTTP/2 for clients that offer it, HTTP/1.1 for the
    // others, as the native data plane.
    let options = match &listener.tls {
        Some(tls) => options(tls, &format!("{field}.tls"))?,
        None => " alpn h2,http/1.1".to_owned(),
    };
    Ok(format!("ssl crt-list {cert_dir}/{list_name}{options}"))
}

/// A bind's or server's TLS options: ` alpn ...`, ` ssl-min-ver ... ssl-max-ver ...`,
/// ` ciphers ...` (TLS 1.2 and older) and ` ciphersuites ...` (TLS 1.3), each only when set. Every
/// name is checked against the known ones, so nothing else reaches the config.
pub fn options(tls: &TlsOptions, field: &str) -> Result<String, RenderError> {
    let mut out = String::new();
    for (i, id) in tls.alpn_protocols.iter().enumerate() {
        if !tls_options::ALPN_PROTOCOLS.contains(&id.as_str()) {
            return Err(reject(
                format!("{field}.alpn_protocols[{i}]"),
                "not a known ALPN protocol",
            ));
        }
    }
    if !tls.alpn_protocols.is_empty() {
        out.push_str(" alpn ");
        out.push_str(&tls.alpn_protocols.join(","));
    }
    let range = tls_options::version_range(&tls.tls_versions)
        .map_err(|why| reject(format!("{field}.tls_versions"), why))?;
    if let Some((oldest, newest)) = range {
        let name = |i: usize| {
            tls_options::haproxy_version(tls_options::TLS_VERSIONS[i]).unwrap_or("TLSv1.2")
        };
        out.push_str(" ssl-min-ver ");
        out.push_str(name(oldest));
        out.push_str(" ssl-max-ver ");
        out.push_str(name(newest));
    }
    let (mut ciphers, mut suites) = (Vec::new(), Vec::new());
    for name in tls_options::cipher_names(&tls.tls_ciphers) {
        if !tls_options::CIPHERS.contains(&name) {
            return Err(reject(format!("{field}.tls_ciphers"), "not a known cipher"));
        }
        if tls_options::is_tls13_suite(name) {
            suites.push(name);
        } else {
            ciphers.push(name);
        }
    }
    if !ciphers.is_empty() {
        out.push_str(" ciphers ");
        out.push_str(&ciphers.join(":"));
    }
    if !suites.is_empty() {
        out.push_str(" ciphersuites ");
        out.push_str(&suites.join(":"));
    }
    Ok(out)
}

/// Refuses certificates on a listener that does not terminate TLS.
pub fn refuse_certificates(listener: &ListenerConfig, field: &str) -> Result<(), RenderError> {
    if listener.default_certificate.is_some() || !listener.sni_certificates.is_empty() {
        return Err(reject(
            format!("{field}.default_certificate"),
            "only TERMINATED_HTTPS listeners take certificates",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CERT: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAbC+/=\n-----END CERTIFICATE-----\n";
    const KEY: &str =
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n";

    #[test]
    fn accepts_chains_and_keys() {
        let chain = format!("{CERT}\r\n{CERT}");
        assert_eq!(
            check_pem(&chain, PemKind::Chain, "f").unwrap(),
            format!("{CERT}{CERT}")
        );
        assert_eq!(check_pem(KEY, PemKind::Key, "f").unwrap(), KEY);
        let rsa = KEY.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        assert!(check_pem(&rsa, PemKind::Key, "f").is_ok());
    }

    #[test]
    fn refuses_anything_but_pem_lines() {
        for bad in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\nMIIB\n",
            "-----BEGIN CERTIFICATE-----\nMII B\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END PRIVATE KEY-----\n",
            "bind :80\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n#x\n",
            "-----BEGIN CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n",
            "-----BEGIN cert-----\nMIIB\n-----END cert-----\n",
        ] {
            assert!(check_pem(bad, PemKind::Chain, "f").is_err(), "{bad:?}");
        }
        // A key is not a chain, a chain not a key, and encrypted keys carry header lines.
        assert!(check_pem(KEY, PemKind::Chain, "f").is_err());
        assert!(check_pem(CERT, PemKind::Key, "f").is_err());
        assert!(check_pem(&format!("{KEY}{KEY}"), PemKind::Key, "f").is_err());
        let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIB\n-----END RSA PRIVATE KEY-----\n";
        assert!(check_pem(encrypted, PemKind::Key, "f").is_err());
    }

    #[test]
    fn crt_list_names_the_default_certificate_first() {
        let cert = |id: &str| TlsCertificate {
            id: id.into(),
            certificate_pem: CERT.into(),
            private_key_pem: KEY.into(),
            names: vec![],
        };
        let listener = ListenerConfig {
            id: "l-1".into(),
            default_certificate: Some(cert("c-default")),
            sni_certificates: vec![cert("c-b"), cert("c-default"), cert("c-a")],
            ..Default::default()
        };
        let mut files = CertFiles::new();
        let bind = bind_options(&listener, "/s/certs", &mut files, "l").unwrap();
        assert_eq!(bind, "ssl crt-list /s/certs/l_l-1.crtlist alpn h2,http/1.1");
        assert_eq!(
            files["l_l-1.crtlist"],
            "/s/certs/c-default.pem\n/s/certs/c-b.pem\n/s/certs/c-a.pem\n"
        );
        assert_eq!(files["c-a.pem"], format!("{CERT}{KEY}"));
        // One id, two certificates: refused.
        let mut other = cert("c-a");
        other.certificate_pem = format!("{CERT}{CERT}");
        let mut clash = listener.clone();
        clash.sni_certificates.push(other);
        assert!(bind_options(&clash, "/s/certs", &mut CertFiles::new(), "l").is_err());
        let mut no_default = listener;
        no_default.default_certificate = None;
        assert!(bind_options(&no_default, "/s/certs", &mut CertFiles::new(), "l").is_err());
    }
}
