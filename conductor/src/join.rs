//! Join codes: what a band shares to join a conductor. `loophole1-` followed by lowercase
//! base32 (RFC 4648 alphabet, no padding) of the postcard encoding of [`JoinCode`]: the
//! conductor's address, the SHA-256 fingerprint of its certificate (pinned by the node), a join
//! secret and the role that secret admits.
//!
//! Thread: pure data and parsing; any thread.

use std::fmt;
use std::net::SocketAddr;

use loophole_net_proto::auth::Secret;
use loophole_net_proto::v1::Role;
use serde::{Deserialize, Serialize};

/// The prefix of every join code of this format (the `1` is the format's version).
pub const PREFIX: &str = "loophole1-";

/// Everything a node needs to join a conductor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCode {
    /// Where the conductor listens (or the address it advertises).
    pub address: SocketAddr,
    /// SHA-256 of the conductor's certificate (DER): the node accepts no other certificate.
    pub fingerprint: [u8; 32],
    /// The join secret of `role`.
    pub secret: Secret,
    /// The role the secret admits.
    pub role: Role,
}

/// Why a text is not a usable join code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinCodeError {
    /// It does not start with `loophole` at all.
    #[error("not a loophole join code (a join code starts with `{PREFIX}`)")]
    NotAJoinCode,
    /// It is a loophole code of another format version.
    #[error("join code of an unsupported version `{0}` (this build reads `{PREFIX}` codes; update loophole)")]
    WrongVersion(String),
    /// The part after the prefix is not what a conductor writes (mistyped or cut short).
    #[error("corrupt join code ({0}): copy it again, whole")]
    Corrupt(String),
}

impl JoinCode {
    /// Reads a join code (surrounding whitespace and case are ignored).
    pub fn parse(text: &str) -> Result<JoinCode, JoinCodeError> {
        let text = text.trim().to_ascii_lowercase();
        let Some(body) = text.strip_prefix(PREFIX) else {
            return Err(match text.strip_prefix("loophole") {
                Some(rest) => {
                    let version: String = rest.chars().take_while(|c| *c != '-').take(8).collect();
                    if version.is_empty() { JoinCodeError::NotAJoinCode } else { JoinCodeError::WrongVersion(version) }
                }
                None => JoinCodeError::NotAJoinCode,
            });
        };
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|e| JoinCodeError::Corrupt(format!("not base32: {e}")))?;
        let (code, rest): (JoinCode, &[u8]) =
            postcard::take_from_bytes(&bytes).map_err(|e| JoinCodeError::Corrupt(e.to_string()))?;
        if !rest.is_empty() {
            return Err(JoinCodeError::Corrupt(format!("{} bytes too many", rest.len())));
        }
        Ok(code)
    }

    /// The fingerprint in hex (for messages).
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint)
    }
}

impl fmt::Display for JoinCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Serialising plain data into a Vec cannot fail.
        let bytes = postcard::to_allocvec(self).map_err(|_| fmt::Error)?;
        write!(f, "{PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&bytes).to_ascii_lowercase())
    }
}

impl std::str::FromStr for JoinCode {
    type Err = JoinCodeError;
    fn from_str(s: &str) -> Result<JoinCode, JoinCodeError> {
        JoinCode::parse(s)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The name of a role, as the CLI and the state directory write it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Performer => "performer",
        Role::Observer => "observer",
        Role::Admin => "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> JoinCode {
        JoinCode {
            address: "192.168.1.20:4460".parse().unwrap(),
            fingerprint: [0xab; 32],
            secret: [7; 32],
            role: Role::Observer,
        }
    }

    #[test]
    fn round_trips_through_text() {
        let text = code().to_string();
        assert!(text.starts_with("loophole1-"), "{text}");
        assert_eq!(text, text.to_ascii_lowercase());
        assert_eq!(JoinCode::parse(&text), Ok(code()));
        assert_eq!(JoinCode::parse(&format!("  {}\n", text.to_ascii_uppercase())), Ok(code()));
        let v6 = JoinCode { address: "[fe80::1]:9".parse().unwrap(), ..code() };
        assert_eq!(JoinCode::parse(&v6.to_string()), Ok(v6));
    }

    #[test]
    fn bad_codes_say_what_is_wrong() {
        assert_eq!(JoinCode::parse("hello"), Err(JoinCodeError::NotAJoinCode));
        assert_eq!(JoinCode::parse("loophole2-abc"), Err(JoinCodeError::WrongVersion("2".into())));
        let text = code().to_string();
        let cut = &text[..text.len() - 10];
        assert!(matches!(JoinCode::parse(cut), Err(JoinCodeError::Corrupt(_))));
        assert!(matches!(JoinCode::parse("loophole1-!!!"), Err(JoinCodeError::Corrupt(_))));
        let longer = format!("{text}aaaa");
        assert!(matches!(JoinCode::parse(&longer), Err(JoinCodeError::Corrupt(_))));
        let msg = JoinCode::parse(cut).unwrap_err().to_string();
        assert!(msg.contains("corrupt join code"), "{msg}");
    }
}
