//! Certificates: checking a PEM chain and its key (the key must match the first certificate),
//! reading the names and expiry a listener needs, and sealing keys at rest with AES-256-GCM under
//! the api's configured secret key.
use std::{path::Path, sync::Arc};

use aes_gcm::{
    Aes256Gcm, KeyInit as _, Nonce,
    aead::{Aead as _, AeadCore as _, OsRng},
};
use base64::Engine as _;
use lbaas::api::v1 as pb;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

use crate::{convert::Violations, entity::certificate, error::ApiError};

const MAX_PEM: usize = 64 * 1024;
const NONCE_LEN: usize = 12;

/// The key certificates' private keys are sealed with.
#[derive(Clone)]
pub struct SecretKey(Arc<Aes256Gcm>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Reads 32 bytes written as 64 hex digits (surrounding whitespace ignored).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading secret key {}: {e}", path.display()))?;
        Self::from_hex(text.trim())
            .map_err(|e| anyhow::anyhow!("secret key {}: {e}", path.display()))
    }

    pub fn from_hex(hex: &str) -> anyhow::Result<Self> {
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            anyhow::bail!("must be 64 hex digits (32 bytes)");
        }
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()?;
        let cipher =
            Aes256Gcm::new_from_slice(&bytes).map_err(|_| anyhow::anyhow!("must be 32 bytes"))?;
        Ok(Self(Arc::new(cipher)))
    }

    /// A fresh random key, as hex (for `lbctl stack` and tests).
    pub fn generate_hex() -> String {
        let key = Aes256Gcm::generate_key(OsRng);
        key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// base64(nonce || ciphertext).
    pub fn seal(&self, plain: &str) -> Result<String, ApiError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(&nonce, plain.as_bytes())
            .map_err(|_| ApiError::Internal("sealing a key failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<String, ApiError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| ApiError::Internal("a sealed key is not base64".into()))?;
        if bytes.len() <= NONCE_LEN {
            return Err(ApiError::Internal("a sealed key is too short".into()));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| ApiError::Internal("a sealed key is too short".into()))?;
        let plain = self
            .0
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| {
                ApiError::Internal(
                    "a certificate key cannot be opened with the configured secret key".into(),
                )
            })?;
        String::from_utf8(plain).map_err(|_| ApiError::Internal("a sealed key is not text".into()))
    }
}

/// A checked certificate, ready to store.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    pub name: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub subject_names: Vec<String>,
    pub expire_ms: i64,
}

pub fn validate_certificate(input: &pb::Certificate) -> Result<NewCertificate, ApiError> {
    let mut v = Violations::default();
    let f = "certificate";
    if input.name.chars().count() > 255 || input.name.chars().any(char::is_control) {
        v.add(format!("{f}.name"), "must be at most 255 characters");
    }
    let mut names = Vec::new();
    let mut expire_ms = 0;
    let chain: Vec<CertificateDer<'static>> = if input.certificate_pem.len() > MAX_PEM {
        v.add(format!("{f}.certificate_pem"), "must be at most 64 KiB");
        Vec::new()
    } else {
        CertificateDer::pem_slice_iter(input.certificate_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap_or_default()
    };
    match chain.first() {
        None => v.add(
            format!("{f}.certificate_pem"),
            "is required: PEM certificates, the server's first",
        ),
        Some(first) => match x509_parser::parse_x509_certificate(first) {
            Ok((_, cert)) => {
                expire_ms = cert.validity().not_after.timestamp().saturating_mul(1000);
                // As TLS clients do: the DNS subject alternative names, or the common name when
                // there are none (and it is a host name).
                if let Ok(Some(san)) = cert.subject_alternative_name() {
                    for name in &san.value.general_names {
                        if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                            names.push(dns.to_ascii_lowercase());
                        }
                    }
                }
                if names.is_empty() {
                    for cn in cert.subject().iter_common_name() {
                        if let Ok(cn) = cn.as_str()
                            && !cn.is_empty()
                            && cn
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*'))
                        {
                            names.push(cn.to_ascii_lowercase());
                        }
                    }
                }
                names.sort();
                names.dedup();
            }
            Err(_) => v.add(
                format!("{f}.certificate_pem"),
                "the first certificate cannot be parsed",
            ),
        },
    }
    let key = if input.private_key_pem.len() > MAX_PEM {
        v.add(format!("{f}.private_key_pem"), "must be at most 64 KiB");
        None
    } else {
        match PrivateKeyDer::from_pem_slice(input.private_key_pem.as_bytes()) {
            Ok(key) => Some(key),
            Err(_) => {
                v.add(
                    format!("{f}.private_key_pem"),
                    "is required: a PEM private key (PKCS#8, PKCS#1 or SEC1)",
                );
                None
            }
        }
    };
    if let (Some(key), false) = (key, chain.is_empty()) {
        match rustls::crypto::ring::sign::any_supported_type(&key) {
            Ok(signing) => {
                let certified = rustls::sign::CertifiedKey::new(chain, signing);
                if certified.keys_match().is_err() {
                    v.add(
                        format!("{f}.private_key_pem"),
                        "does not match the first certificate",
                    );
                }
            }
            Err(_) => v.add(
                format!("{f}.private_key_pem"),
                "is not a key type TLS can use (RSA, ECDSA P-256/P-384 or Ed25519)",
            ),
        }
    }
    v.finish(NewCertificate {
        name: input.name.clone(),
        certificate_pem: input.certificate_pem.clone(),
        private_key_pem: input.private_key_pem.clone(),
        subject_names: names,
        expire_ms,
    })
}

/// The stored certificate, without its key.
pub fn certificate_to_proto(m: certificate::Model) -> pb::Certificate {
    pb::Certificate {
        subject_names: crate::convert::split_tags(&m.subject_names),
        id: m.id,
        project_id: m.project_id,
        name: m.name,
        certificate_pem: m.certificate_pem,
        private_key_pem: String::new(),
        expire_time_ms: m.expire_ms,
        create_time_ms: m.created_ms,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn generated(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    #[test]
    fn reads_names_and_refuses_a_foreign_key() {
        let (cert, key) = generated(&["www.example.com", "*.example.org"]);
        let ok = validate_certificate(&pb::Certificate {
            name: "web".into(),
            certificate_pem: cert.clone(),
            private_key_pem: key,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.subject_names, vec!["*.example.org", "www.example.com"]);
        assert!(ok.expire_ms > 0);
        let (_, other_key) = generated(&["other"]);
        let err = validate_certificate(&pb::Certificate {
            certificate_pem: cert,
            private_key_pem: other_key,
            ..Default::default()
        })
        .unwrap_err();
        match err {
            ApiError::Invalid(v) => assert_eq!(v[0].0, "certificate.private_key_pem"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seal_and_open() {
        let key = SecretKey::from_hex(&SecretKey::generate_hex()).unwrap();
        let sealed = key.seal("secret").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(key.open(&sealed).unwrap(), "secret");
        let other = SecretKey::from_hex(&SecretKey::generate_hex()).unwrap();
        assert!(other.open(&sealed).is_err());
    }
}
