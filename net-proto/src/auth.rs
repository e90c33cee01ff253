//! The join proof: how a node shows it holds the join secret without sending it.
//!
//! `proof = HMAC-SHA256(key = secret, message = "loophole-join-v1" || 0 || role code || name)`
//! (RFC 2104 over SHA-256, from the `hmac` crate). The conductor holds one 32-byte secret per role it admits (the join
//! code carries the secret and the role), computes the same MAC and compares in constant time.
//! The proof binds the node's name and role, so a performer's proof cannot claim another name or
//! the admin role. It carries no nonce: it is only as secret as the channel, which is QUIC's TLS
//! 1.3 with the conductor's certificate pinned by the join code (the driver's job).
//!
//! Thread: Pure functions: any thread.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::v1::Role;

/// A join secret.
pub type Secret = [u8; 32];

const DOMAIN: &[u8] = b"loophole-join-v1";

type HmacSha256 = Hmac<Sha256>;

/// A MAC keyed with `key` (HMAC takes keys of any length).
fn keyed(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length")
}

/// HMAC-SHA256 of `message` under `key` (RFC 2104, the `hmac` crate).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The message a proof covers: the domain, a zero byte, the role's code and the node's name.
fn proof_message(role: Role, node: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DOMAIN.len() + 2 + node.len());
    msg.extend_from_slice(DOMAIN);
    msg.push(0);
    msg.push(role.code());
    msg.extend_from_slice(node.as_bytes());
    msg
}

/// The proof a node named `node` sends in its hello for `role`.
pub fn proof(secret: &Secret, role: Role, node: &str) -> [u8; 32] {
    hmac_sha256(secret, &proof_message(role, node))
}

/// Whether `given` is the proof for `node` and `role` under `secret`, compared in constant time
/// (`Mac::verify_slice`).
pub fn verify(secret: &Secret, role: Role, node: &str, given: &[u8; 32]) -> bool {
    let mut mac = keyed(secret);
    mac.update(&proof_message(role, node));
    mac.verify_slice(given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231_vectors() {
        // Test case 1.
        let mac = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(hex(&mac), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex(&mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn a_proof_binds_secret_role_and_name() {
        let s = [9u8; 32];
        let p = proof(&s, Role::Performer, "keys");
        assert!(verify(&s, Role::Performer, "keys", &p));
        assert!(!verify(&[8u8; 32], Role::Performer, "keys", &p));
        assert!(!verify(&s, Role::Admin, "keys", &p));
        assert!(!verify(&s, Role::Performer, "bass", &p));
    }
}
