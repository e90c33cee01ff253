//! Why the client cannot do something ([`ClientError`]): each variant's message is the line a
//! musician reads.
//!
//! Thread: pure data; any thread.

use std::net::SocketAddr;
use std::time::Duration;

use loophole_net_proto::v1::RefuseReason;

/// Why the client cannot do something.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The conductor refused the hello.
    #[error("the conductor refused this node: {0}")]
    Refused(String),
    /// The conductor's certificate is not the one the join code names.
    #[error("{0}")]
    CertificateMismatch(String),
    /// No connection within the timeout.
    #[error("the conductor at {address} is unreachable (gave up after {after:?}: {last})")]
    Unreachable {
        /// The address tried.
        address: SocketAddr,
        /// How long it tried.
        after: Duration,
        /// The last error.
        last: String,
    },
    /// The conductor closed the connection for good (a protocol error or the rate limit).
    #[error("the conductor closed the connection: {0}")]
    Closed(String),
    /// Not connected now (reconnecting).
    #[error("not connected to the conductor (reconnecting)")]
    NotConnected,
    /// Something did not arrive in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The set could not be fetched or laid out.
    #[error("cannot fetch the set: {0}")]
    Set(String),
    /// The client could not start (runtime, socket, TLS setup).
    #[error("cannot start the conductor client: {0}")]
    Setup(String),
}

impl ClientError {
    pub(crate) fn refused(reason: RefuseReason) -> ClientError {
        ClientError::Refused(reason.to_string())
    }
}
