//! Bearer tokens as JWTs: signatures checked against the configured public keys (ECDSA, RSA or
//! Ed25519, in one PEM file), issuer, audience and expiry checked; the claims carry the caller's
//! project (`project_id`) and role (`role`: reader, member or admin; member when absent).
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

use super::tokens::{Role, TokenOwner};

/// How JWTs are verified: the flags every service that checks tokens takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JwtConfig {
    /// PEM file of the public keys JWTs may be signed with (one or more `PUBLIC KEY` blocks).
    #[arg(long = "jwt-keys", env = "LBAAS_JWT_KEYS")]
    pub keys: Option<std::path::PathBuf>,
    /// The `iss` every JWT must carry.
    #[arg(long = "jwt-issuer", env = "LBAAS_JWT_ISSUER", default_value = "lbaas")]
    pub issuer: String,
    /// The `aud` every JWT must carry.
    #[arg(
        long = "jwt-audience",
        env = "LBAAS_JWT_AUDIENCE",
        default_value = "lbaas"
    )]
    pub audience: String,
}

#[derive(serde::Deserialize)]
struct Claims {
    project_id: Option<String>,
    role: Option<String>,
}

/// Verifies JWTs against a set of keys.
pub struct JwtVerifier {
    keys: Vec<(DecodingKey, Vec<Algorithm>)>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Looks like a JWT: three base64url parts.
pub fn is_jwt(token: &str) -> bool {
    token.split('.').count() == 3
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl JwtVerifier {
    pub fn from_config(config: &JwtConfig) -> anyhow::Result<Option<Self>> {
        match &config.keys {
            Some(path) => Ok(Some(Self::read(path, &config.issuer, &config.audience)?)),
            None => Ok(None),
        }
    }

    /// Reads every PEM block of `path` as a public key.
    pub fn read(path: &Path, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read JWT keys {}: {e}", path.display()))?;
        Self::from_pem(&text, issuer, audience)
            .map_err(|e| anyhow::anyhow!("JWT keys {}: {e}", path.display()))
    }

    pub fn from_pem(text: &str, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        let mut block = String::new();
        for line in text.lines() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END") {
                let pem = std::mem::take(&mut block);
                let key = if let Ok(k) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                    (k, vec![Algorithm::ES256, Algorithm::ES384])
                } else if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                    (
                        k,
                        vec![
                            Algorithm::RS256,
                            Algorithm::RS384,
                            Algorithm::RS512,
                            Algorithm::PS256,
                            Algorithm::PS384,
                            Algorithm::PS512,
                        ],
                    )
                } else if let Ok(k) = DecodingKey::from_ed_pem(pem.as_bytes()) {
                    (k, vec![Algorithm::EdDSA])
                } else {
                    anyhow::bail!(
                        "key {} is not an EC, RSA or Ed25519 public key",
                        keys.len() + 1
                    );
                };
                keys.push(key);
            }
        }
        if keys.is_empty() {
            anyhow::bail!("no PEM public key found");
        }
        if issuer.is_empty() || audience.is_empty() {
            anyhow::bail!("the JWT issuer and audience must be set");
        }
        Ok(Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    /// The caller a valid token stands for, or why it is not valid.
    pub fn verify(&self, token: &str) -> Result<TokenOwner, &'static str> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is not a JWT")?;
        let mut last = "the token's signature does not verify with any configured key";
        for (key, algorithms) in &self.keys {
            if !algorithms.contains(&header.alg) {
                continue;
            }
            let mut validation = Validation::new(header.alg);
            validation.algorithms = algorithms.clone();
            validation.leeway = 5;
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return owner(data.claims),
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {}
                    ErrorKind::ExpiredSignature => return Err("the token has expired"),
                    ErrorKind::ImmatureSignature => return Err("the token is not valid yet"),
                    ErrorKind::InvalidIssuer => return Err("the token's issuer is not accepted"),
                    ErrorKind::InvalidAudience => {
                        return Err("the token's audience is not accepted");
                    }
                    ErrorKind::MissingRequiredClaim(_) => {
                        return Err("the token lacks exp, iss or aud");
                    }
                    _ => last = "the token cannot be decoded",
                },
            }
        }
        Err(last)
    }
}

fn owner(claims: Claims) -> Result<TokenOwner, &'static str> {
    let project_id = claims
        .project_id
        .filter(|p| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .ok_or("the token's project_id claim is missing or not 1-64 letters, digits, '-' or '_'")?;
    let role = match claims.role.as_deref() {
        None | Some("member") => Role::Member,
        Some("reader") => Role::Reader,
        Some("admin") => Role::Admin,
        Some(_) => return Err("the token's role is not reader, member or admin"),
    };
    Ok(TokenOwner { project_id, role })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    fn key() -> (String, EncodingKey) {
        let pair = rcgen::KeyPair::generate().unwrap();
        let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        (pair.public_key_pem(), signing)
    }

    fn token(key: &EncodingKey, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, key).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn checks_signature_issuer_audience_and_expiry() {
        let (public, signing) = key();
        let (_, other) = key();
        let verifier = JwtVerifier::from_pem(&public, "lbaas", "lbaas").unwrap();
        let good = serde_json::json!({"iss": "lbaas", "aud": "lbaas", "exp": now() + 60,
            "project_id": "alpha", "role": "reader"});
        let owner = verifier.verify(&token(&signing, good.clone())).unwrap();
        assert_eq!(
            (owner.project_id.as_str(), owner.role),
            ("alpha", Role::Reader)
        );
        assert!(verifier.verify(&token(&other, good.clone())).is_err());
        let mut expired = good.clone();
        expired["exp"] = serde_json::json!(now() - 600);
        match verifier.verify(&token(&signing, expired)) {
            Err(why) => assert_eq!(why, "the token has expired"),
            Ok(_) => panic!("an expired token passed"),
        }
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = serde_json::json!("elsewhere");
        assert!(verifier.verify(&token(&signing, wrong_aud)).is_err());
        let mut no_project = good;
        no_project["project_id"] = serde_json::json!("");
        assert!(verifier.verify(&token(&signing, no_project)).is_err());
        assert!(is_jwt(&token(&signing, serde_json::json!({}))));
        assert!(!is_jwt("admin-secret"));
    }
}
