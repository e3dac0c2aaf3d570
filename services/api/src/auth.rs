//! Who is calling: the project and role from request metadata. A bearer token is a JWT verified
//! against the configured keys (issuer, audience and expiry checked) or a token of the configured
//! token file; without one, `x-project-id` is accepted when the operator allows it (local use).
use std::path::Path;

use tonic::metadata::MetadataMap;

use crate::error::ApiError;

use lbaas::server::tokens::Credentials;
pub use lbaas::server::tokens::Role;

#[derive(Debug, Clone)]
pub struct Caller {
    pub project_id: String,
    pub role: Role,
}

impl Caller {
    /// Readers may look but not change.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role == Role::Reader {
            return Err(ApiError::PermissionDenied(
                "the reader role cannot change objects".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone)]
pub struct Authenticator {
    credentials: Credentials,
    allow_project_header: bool,
}

impl Authenticator {
    /// Reads a token file (one `TOKEN PROJECT [ROLE]` per line, `#` starts a comment).
    pub fn from_file(path: Option<&Path>, allow_project_header: bool) -> anyhow::Result<Self> {
        Self::new(
            path,
            &lbaas::server::jwt::JwtConfig::default(),
            allow_project_header,
        )
    }

    /// A token file and JWT keys, either optional.
    pub fn new(
        path: Option<&Path>,
        jwt: &lbaas::server::jwt::JwtConfig,
        allow_project_header: bool,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            credentials: Credentials::new(path, jwt)?,
            allow_project_header,
        })
    }

    pub fn caller(&self, metadata: &MetadataMap) -> Result<Caller, ApiError> {
        if let Some(token) = lbaas::server::tokens::bearer(metadata) {
            let token = token.map_err(|why| ApiError::Unauthenticated(why.into()))?;
            return self
                .credentials
                .owner(token)
                .map(|o| Caller {
                    project_id: o.project_id,
                    role: o.role,
                })
                .map_err(|why| ApiError::Unauthenticated(why.into()));
        }
        if let Some(project) = metadata
            .get("x-project-id")
            .and_then(|v| v.to_str().ok())
            .filter(|_| self.allow_project_header)
        {
            {
                if !project.is_empty()
                    && project.len() <= 64
                    && project
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Ok(Caller {
                        project_id: project.to_owned(),
                        role: Role::Member,
                    });
                }
                return Err(ApiError::Unauthenticated(
                    "x-project-id must be 1-64 letters, digits, '-' or '_'".into(),
                ));
            }
        }
        Err(ApiError::Unauthenticated(if self.allow_project_header {
            "send 'authorization: Bearer TOKEN' or 'x-project-id: PROJECT'".into()
        } else {
            "send 'authorization: Bearer TOKEN'".into()
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_and_project_header() {
        let dir = std::env::temp_dir().join(format!("lbaas-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, "# comment\nsecret-a alpha\nsecret-r alpha reader\n").unwrap();
        let auth = Authenticator::from_file(Some(&file), false).unwrap();
        let mut md = MetadataMap::new();
        md.insert("authorization", "Bearer secret-r".parse().unwrap());
        let caller = auth.caller(&md).unwrap();
        assert_eq!(
            (caller.project_id.as_str(), caller.role),
            ("alpha", Role::Reader)
        );
        let mut md = MetadataMap::new();
        md.insert("x-project-id", "beta".parse().unwrap());
        assert!(auth.caller(&md).is_err());
        let open = Authenticator::from_file(None, true).unwrap();
        assert_eq!(open.caller(&md).unwrap().project_id, "beta");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
