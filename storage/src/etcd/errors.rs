//! How etcd-client errors become [`StorageError`]s (and so HTTP statuses in the REST layer).

use etcd_client::Error;
use tonic::Code;

use crate::StorageError;

/// An etcd failure, with the etcd errors that need the caller's context singled out.
pub(super) enum Failure {
    /// `mvcc: required revision has been compacted`.
    Compacted,
    /// `mvcc: required revision is a future revision`.
    FutureRevision,
    /// `etcdserver: request is too large` (over `--max-request-bytes`).
    TooLarge,
    Other(StorageError),
}

pub(super) fn classify(e: Error) -> Failure {
    match e {
        Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("required revision has been compacted") {
                Failure::Compacted
            } else if message.contains("required revision is a future revision") {
                Failure::FutureRevision
            } else if message.contains("request is too large") {
                Failure::TooLarge
            } else if status.code() == Code::Unknown && is_connection_error(&status) {
                // tonic reports a connection that broke under a stream as `Unknown` with the cause attached.
                Failure::Other(StorageError::Unavailable(format!("etcd connection: {message}")))
            } else {
                Failure::Other(from_status(status.code(), message))
            }
        }
        // A connection that cannot be made or broke, a watch stream whose channel closed.
        Error::TransportError(e) => Failure::Other(StorageError::Unavailable(format!("etcd transport: {e}"))),
        Error::IoError(e) => Failure::Other(StorageError::Unavailable(format!("etcd i/o: {e}"))),
        Error::WatchError(e) => Failure::Other(StorageError::Unavailable(format!("etcd watch: {e}"))),
        other => Failure::Other(StorageError::Internal(format!("etcd: {other}"))),
    }
}

/// Any etcd error with no special meaning for the caller.
pub(super) fn map_err(e: Error) -> StorageError {
    map_failure(classify(e))
}

pub(super) fn map_failure(failure: Failure) -> StorageError {
    match failure {
        Failure::Compacted => StorageError::Internal("etcd: unexpected compacted revision".into()),
        Failure::FutureRevision => StorageError::Internal("etcd: unexpected future revision".into()),
        Failure::TooLarge => StorageError::Internal("etcd: request too large".into()),
        Failure::Other(e) => e,
    }
}

/// Whether an error is worth retrying after a pause (the watch's reconnect loop).
pub(super) fn is_transient(e: &StorageError) -> bool {
    matches!(e, StorageError::Unavailable(_))
}

fn is_connection_error(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some() || status.message().contains("h2 protocol error")
}

fn from_status(code: Code, message: &str) -> StorageError {
    match code {
        // No leader, leader changed, request timed out, connection refused or reset, a request deadline, too
        // many requests: all "try again later".
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted | Code::ResourceExhausted => {
            StorageError::Unavailable(format!("etcd: {message}"))
        }
        other => StorageError::Internal(format!("etcd ({other:?}): {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> Error {
        Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn classifies() {
        let compacted = status(Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted");
        assert!(matches!(classify(compacted), Failure::Compacted));
        let future = status(Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision");
        assert!(matches!(classify(future), Failure::FutureRevision));
        let large = status(Code::InvalidArgument, "etcdserver: request is too large");
        assert!(matches!(classify(large), Failure::TooLarge));
        let no_leader = map_err(status(Code::Unavailable, "etcdserver: no leader"));
        assert!(is_transient(&no_leader), "{no_leader:?}");
        let broken = map_err(status(Code::Unknown, "h2 protocol error: error reading a body from connection"));
        assert!(is_transient(&broken), "{broken:?}");
        let unknown = map_err(status(Code::Unknown, "etcdserver: something else"));
        assert!(matches!(unknown, StorageError::Internal(_)), "{unknown:?}");
        let denied = map_err(status(Code::PermissionDenied, "etcdserver: permission denied"));
        assert!(matches!(denied, StorageError::Internal(_)), "{denied:?}");
    }
}
