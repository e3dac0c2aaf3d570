//! Static bearer tokens for local use: a file of `TOKEN PROJECT [ROLE]` lines (`#` starts a
//! comment; the role is reader, member or admin, member by default). The api resolves tenants'
//! tokens with it; the scheduler admits only admin tokens to its provider API.
use std::{collections::HashMap, path::Path};

use tonic::{Status, metadata::MetadataMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader,
    Member,
    Admin,
}

/// Who a token stands for.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub project_id: String,
    pub role: Role,
}

#[derive(Debug, Default, Clone)]
pub struct TokenFile {
    tokens: HashMap<String, TokenOwner>,
}

impl TokenFile {
    /// Reads and checks the whole file; any bad line is an error naming it.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", path.display()))?;
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let role = match fields.get(2).copied() {
                None | Some("member") => Role::Member,
                Some("reader") => Role::Reader,
                Some("admin") => Role::Admin,
                Some(other) => {
                    anyhow::bail!("{}:{}: unknown role {other:?}", path.display(), n + 1)
                }
            };
            let (Some(token), Some(project)) = (fields.first(), fields.get(1)) else {
                anyhow::bail!(
                    "{}:{}: expected TOKEN PROJECT [ROLE]",
                    path.display(),
                    n + 1
                );
            };
            tokens.insert(
                (*token).to_owned(),
                TokenOwner {
                    project_id: (*project).to_owned(),
                    role,
                },
            );
        }
        Ok(Self { tokens })
    }

    pub fn owner(&self, token: &str) -> Option<&TokenOwner> {
        self.tokens.get(token)
    }

    /// Checks that the request carries an admin token: UNAUTHENTICATED without a known token,
    /// PERMISSION_DENIED for any other role.
    pub fn require_admin(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let token = bearer(metadata)
            .ok_or_else(|| Status::unauthenticated("send 'authorization: Bearer TOKEN'"))?
            .map_err(Status::unauthenticated)?;
        match self.owner(token) {
            None => Err(Status::unauthenticated("unknown token")),
            Some(owner) if owner.role == Role::Admin => Ok(()),
            Some(_) => Err(Status::permission_denied(
                "the provider API needs the admin role",
            )),
        }
    }
}

/// The bearer token of a request: `None` without an `authorization` header, an error when the
/// header is not `Bearer TOKEN`.
pub fn bearer(metadata: &MetadataMap) -> Option<Result<&str, &'static str>> {
    let value = metadata.get("authorization")?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or("authorization must be 'Bearer TOKEN'"),
    )
}

/// Every way a caller proves who it is: static tokens from a file (local use) and JWTs verified
/// against configured keys. A token shaped like a JWT is verified as one when keys are configured.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    pub file: TokenFile,
    pub jwt: Option<std::sync::Arc<super::jwt::JwtVerifier>>,
}

impl Credentials {
    pub fn new(file: Option<&Path>, jwt: &super::jwt::JwtConfig) -> anyhow::Result<Self> {
        Ok(Self {
            file: match file {
                Some(path) => TokenFile::read(path)?,
                None => TokenFile::default(),
            },
            jwt: super::jwt::JwtVerifier::from_config(jwt)?.map(std::sync::Arc::new),
        })
    }

    /// Whether any credential is configured (else an API relying on them is open).
    pub fn configured(&self) -> bool {
        self.jwt.is_some() || !self.file.tokens.is_empty()
    }

    /// Who the token stands for, or why it is refused.
    pub fn owner(&self, token: &str) -> Result<TokenOwner, &'static str> {
        if let Some(owner) = self.file.owner(token) {
            return Ok(owner.clone());
        }
        match &self.jwt {
            Some(jwt) if super::jwt::is_jwt(token) => jwt.verify(token),
            _ => Err("unknown token"),
        }
    }

    /// Checks that the request carries an admin credential: UNAUTHENTICATED without a valid one,
    /// PERMISSION_DENIED for any other role.
    pub fn require_admin(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let token = bearer(metadata)
            .ok_or_else(|| Status::unauthenticated("send 'authorization: Bearer TOKEN'"))?
            .map_err(Status::unauthenticated)?;
        match self.owner(token) {
            Err(why) => Err(Status::unauthenticated(why)),
            Ok(owner) if owner.role == Role::Admin => Ok(()),
            Ok(_) => Err(Status::permission_denied("this API needs the admin role")),
        }
    }
}
