//! Store query errors as gRPC statuses: the one place they are converted.

use tonic::{Code, Status};

use crate::store::QueryError;

/// The status a caller gets for `error` from RPC `method`.
///
/// - unknown container: `NOT_FOUND`, naming the id asked for;
/// - an ambiguous or too short id prefix, a bad range or step:
///   `INVALID_ARGUMENT`, saying what is allowed (the candidates of an
///   ambiguous prefix are listed);
/// - a DuckDB failure: `INTERNAL`, with the query that failed (also logged).
pub(super) fn query_status(method: &'static str, error: QueryError) -> Status {
    let code = code(&error);
    if code == Code::Internal {
        tracing::error!(method, %error, "query failed");
        return Status::internal(format!("{method}: {error}"));
    }
    Status::new(code, error.to_string())
}

fn code(error: &QueryError) -> Code {
    match error {
        QueryError::ContainerNotFound { .. } => Code::NotFound,
        QueryError::AmbiguousContainer { .. }
        | QueryError::PrefixTooShort { .. }
        | QueryError::InvalidRange { .. }
        | QueryError::InvalidStep { .. }
        | QueryError::TooManyPoints { .. }
        | QueryError::InvalidArgument { .. } => Code::InvalidArgument,
        QueryError::Sql { .. } => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_keep_their_message_and_get_a_specific_code() {
        let s = query_status(
            "GetContainer",
            QueryError::ContainerNotFound {
                id: "feedbeef".into(),
            },
        );
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("\"feedbeef\""), "{}", s.message());

        let s = query_status(
            "GetContainer",
            QueryError::AmbiguousContainer {
                id: "abcd".into(),
                candidates: vec!["abcd1".into(), "abcd2".into()],
                count: 3,
            },
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message()
                .contains("matches 3 containers (abcd1, abcd2, ...)"),
            "{}",
            s.message()
        );

        let s = query_status(
            "GetContainerSeries",
            QueryError::TooManyPoints {
                step_ns: 1,
                points: 20,
                max: 10,
            },
        );
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("more than 10"), "{}", s.message());
    }
}
