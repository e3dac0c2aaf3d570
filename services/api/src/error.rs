//! The api service's errors and their one mapping to gRPC statuses with `google.rpc` details.
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input, with one violation per field.
    #[error("invalid request")]
    Invalid(Vec<(String, String)>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A quota would be exceeded.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The etag sent no longer matches.
    #[error("{0}")]
    Aborted(String),
    #[error("database: {0}")]
    Database(sea_orm::DbErr),
    /// Something on the server side is wrong (e.g. a sealed key the configured secret key cannot
    /// open); the cause is logged.
    #[error("{0}")]
    Internal(String),
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        // A unique index caught a race the checks before it could not see: the same words on
        // SQLite and PostgreSQL.
        match error.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                Self::AlreadyExists("an object with the same unique fields already exists".into())
            }
            _ => Self::Database(error),
        }
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![(field.into(), description.into())])
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let (code, reason, message) = match &error {
            ApiError::Invalid(v) => (
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
                format!(
                    "invalid request: {}",
                    v.iter()
                        .map(|(f, d)| format!("{f}: {d}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            ApiError::NotFound(what) => (Code::NotFound, "NOT_FOUND", format!("{what} not found")),
            ApiError::AlreadyExists(why) => (Code::AlreadyExists, "ALREADY_EXISTS", why.clone()),
            ApiError::FailedPrecondition(why) => {
                (Code::FailedPrecondition, "FAILED_PRECONDITION", why.clone())
            }
            ApiError::Unauthenticated(why) => {
                (Code::Unauthenticated, "UNAUTHENTICATED", why.clone())
            }
            ApiError::PermissionDenied(why) => {
                (Code::PermissionDenied, "PERMISSION_DENIED", why.clone())
            }
            ApiError::ResourceExhausted(why) => {
                (Code::ResourceExhausted, "QUOTA_EXCEEDED", why.clone())
            }
            ApiError::Aborted(why) => (Code::Aborted, "ETAG_MISMATCH", why.clone()),
            ApiError::Database(e) => {
                // The cause stays in the log; the caller gets the same words on SQLite and PostgreSQL.
                tracing::error!(error = %e, "database error");
                (Code::Internal, "INTERNAL", "internal error".to_owned())
            }
            ApiError::Internal(why) => {
                tracing::error!(error = %why, "internal error");
                (Code::Internal, "INTERNAL", why.clone())
            }
        };
        let mut details = ErrorDetails::new();
        details.set_error_info(
            reason,
            "api.lbaas",
            std::collections::HashMap::<String, String>::new(),
        );
        if let ApiError::Invalid(violations) = error {
            for (field, description) in violations {
                details.add_bad_request_violation(field, description);
            }
        }
        Status::with_error_details(code, message, details)
    }
}
