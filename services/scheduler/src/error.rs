//! The scheduler's errors and their one mapping to gRPC statuses.
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid request")]
    Invalid(Vec<(String, String)>),
    #[error("no device can take the load balancer: {0}")]
    NoCapacity(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// An address (a VIP) another load balancer holds.
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

impl From<SchedulerError> for Status {
    fn from(error: SchedulerError) -> Self {
        let reason = match &error {
            SchedulerError::NotFound(_) => "NOT_FOUND",
            SchedulerError::Invalid(_) => "INVALID_ARGUMENT",
            SchedulerError::NoCapacity(_) => "NO_CAPACITY",
            SchedulerError::FailedPrecondition(_) => "FAILED_PRECONDITION",
            SchedulerError::AlreadyExists(_) => "ALREADY_EXISTS",
            SchedulerError::Unavailable(_) => "UNAVAILABLE",
            SchedulerError::Database(_) => "INTERNAL",
        };
        let mut details = ErrorDetails::new();
        details.set_error_info(
            reason,
            "scheduler.lbaas",
            std::collections::HashMap::<String, String>::new(),
        );
        match error {
            SchedulerError::NotFound(what) => {
                Status::with_error_details(Code::NotFound, format!("{what} not found"), details)
            }
            SchedulerError::Invalid(violations) => {
                for (field, description) in violations {
                    details.add_bad_request_violation(field, description);
                }
                Status::with_error_details(Code::InvalidArgument, "invalid request", details)
            }
            SchedulerError::NoCapacity(why) => Status::with_error_details(
                Code::ResourceExhausted,
                format!("no device can take the load balancer: {why}"),
                details,
            ),
            SchedulerError::FailedPrecondition(why) => {
                Status::with_error_details(Code::FailedPrecondition, why, details)
            }
            SchedulerError::AlreadyExists(why) => {
                Status::with_error_details(Code::AlreadyExists, why, details)
            }
            SchedulerError::Unavailable(why) => {
                Status::with_error_details(Code::Unavailable, why, details)
            }
            SchedulerError::Database(e) => {
                tracing::error!(error = %e, "database error");
                Status::with_error_details(Code::Internal, "internal error", details)
            }
        }
    }
}
