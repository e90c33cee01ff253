//! The conductor's identity, kept in its state directory so a restart gives the same join
//! codes: a self-signed certificate and its key (made with rcgen on first start) and one
//! 32-byte random join secret per role.
//!
//! Files: `cert.der`, `key.der` (PKCS#8) and `secrets.json` (`{"performer": "<hex>", ...}`).
//! A file that is missing while the others exist, or unreadable, is a clear error naming it:
//! the conductor never makes a new identity over a damaged one (the band's codes would change).
//!
//! Thread: the conductor's startup (main thread); file I/O.

use std::fs;
use std::path::{Path, PathBuf};

use loophole_net_proto::auth::Secret;
use loophole_net_proto::v1::Role;
use sha2::{Digest, Sha256};

use crate::join::{hex, role_name};

/// What cannot be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file's contents are not what the conductor writes.
    #[error(
        "{file}: {why} (restore it from a backup, or remove the state directory to start a new band with new join codes)"
    )]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// rcgen could not make a certificate.
    #[error("cannot make the conductor's certificate: {0}")]
    Certificate(String),
}

/// The certificate, its key and the join secrets.
#[derive(Clone)]
pub struct Identity {
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
    /// Its private key (PKCS#8 DER).
    pub key_der: Vec<u8>,
    /// One secret per role.
    pub secrets: Vec<(Role, Secret)>,
}

const ROLES: [Role; 3] = [Role::Performer, Role::Observer, Role::Admin];

impl Identity {
    /// Loads the identity from `dir`, or makes and saves one if `dir` holds none.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        fs::create_dir_all(dir).map_err(|source| IdentityError::Io { file: dir.to_path_buf(), source })?;
        let (cert, key, secrets) = (dir.join("cert.der"), dir.join("key.der"), dir.join("secrets.json"));
        let present = [&cert, &key, &secrets].iter().filter(|p| p.exists()).count();
        if present == 0 {
            let id = Identity::generate()?;
            write_private(&key, &id.key_der)?;
            let json: serde_json::Map<String, serde_json::Value> =
                id.secrets.iter().map(|(r, s)| (role_name(*r).to_string(), hex(s).into())).collect();
            let text = serde_json::to_string_pretty(&json).map_err(|e| IdentityError::Certificate(e.to_string()))?;
            write_private(&secrets, text.as_bytes())?;
            fs::write(&cert, &id.cert_der).map_err(|source| IdentityError::Io { file: cert.clone(), source })?;
            return Ok(id);
        }
        for f in [&cert, &key, &secrets] {
            if !f.exists() {
                return Err(IdentityError::Corrupt {
                    file: f.clone(),
                    why: "missing while the rest of the conductor's identity is there".into(),
                });
            }
        }
        let read = |f: &PathBuf| fs::read(f).map_err(|source| IdentityError::Io { file: f.clone(), source });
        let cert_der = read(&cert)?;
        let key_der = read(&key)?;
        if rcgen::KeyPair::try_from(key_der.as_slice()).is_err() {
            return Err(IdentityError::Corrupt { file: key, why: "not a PKCS#8 private key".into() });
        }
        if cert_der.len() < 16 || cert_der[0] != 0x30 {
            return Err(IdentityError::Corrupt { file: cert, why: "not a DER certificate".into() });
        }
        let text = read(&secrets)?;
        let corrupt = |why: String| IdentityError::Corrupt { file: secrets.clone(), why };
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&text).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        let mut out = Vec::new();
        for role in ROLES {
            let Some(value) = json.get(role_name(role)).and_then(|v| v.as_str()) else {
                return Err(corrupt(format!("no secret for the {} role", role_name(role))));
            };
            out.push((
                role,
                unhex32(value)
                    .ok_or_else(|| corrupt(format!("the {} secret is not 64 hex digits", role_name(role))))?,
            ));
        }
        Ok(Identity { cert_der, key_der, secrets: out })
    }

    /// A new certificate (for the name `loophole-conductor`) and new random secrets.
    pub fn generate() -> Result<Identity, IdentityError> {
        let certified = rcgen::generate_simple_self_signed(vec!["loophole-conductor".to_string()])
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        let mut secrets = Vec::new();
        for role in ROLES {
            let mut s = [0u8; 32];
            getrandom::fill(&mut s).map_err(|e| IdentityError::Certificate(format!("no random numbers: {e}")))?;
            secrets.push((role, s));
        }
        Ok(Identity { cert_der: certified.cert.der().to_vec(), key_der: certified.key_pair.serialize_der(), secrets })
    }

    /// SHA-256 of the certificate: what join codes carry.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(&self.cert_der).into()
    }

    /// The secret of `role`.
    pub fn secret(&self, role: Role) -> Secret {
        self.secrets.iter().find(|(r, _)| *r == role).map(|(_, s)| *s).unwrap_or([0; 32])
    }
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Writes a file only its owner may read (on Unix), synced to disk.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io { file: path.to_path_buf(), source };
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)
    }
    #[cfg(not(unix))]
    {
        fs::write(path, bytes).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_directory_gives_the_same_identity_and_damage_is_named() {
        let dir = std::env::temp_dir().join(format!("loophole-identity-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = Identity::load_or_create(&dir).unwrap();
        let b = Identity::load_or_create(&dir).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.secrets, b.secrets);
        assert_ne!(a.secret(Role::Performer), a.secret(Role::Observer));
        fs::write(dir.join("secrets.json"), "{\"performer\": \"zz\"}").unwrap();
        let e = Identity::load_or_create(&dir).err().unwrap().to_string();
        assert!(e.contains("secrets.json") && e.contains("performer"), "{e}");
        fs::remove_file(dir.join("key.der")).unwrap();
        let e = Identity::load_or_create(&dir).err().unwrap().to_string();
        assert!(e.contains("key.der") && e.contains("missing"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
