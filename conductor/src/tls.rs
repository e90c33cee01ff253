//! TLS 1.3 and QUIC settings for both ends: the conductor's server config (its rcgen
//! certificate, ALPN `loophole/1`), the node's client config that pins the certificate's
//! SHA-256 fingerprint from the join code ([`PinnedServer`]: any other certificate is refused,
//! signatures are still checked with the ring provider's algorithms), and the transport
//! settings (2 s idle timeout, 500 ms keep-alive, datagrams on).
//!
//! Thread: setup code (any thread); the verifier runs inside quinn's tasks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::identity::Identity;
use crate::join::hex;

/// The application protocol both ends speak.
pub const ALPN: &[u8] = b"loophole/1";

/// The name in the conductor's certificate (the node pins the fingerprint, not the name).
pub const SERVER_NAME: &str = "loophole-conductor";

/// A silent peer is dropped after this long (quinn's default is 30 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Each end sends a keep-alive this often when it has nothing else to send.
pub const KEEP_ALIVE: Duration = Duration::from_millis(500);

/// The ring provider (the brief of this crate: ring, not aws-lc, whose build needs cmake and a
/// C toolchain on every laptop). rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange; the join code's pinning does not depend on it.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The transport settings both ends use.
pub fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // 2 s fits in a VarInt of milliseconds.
    t.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.datagram_receive_buffer_size(Some(256 * 1024));
    t.datagram_send_buffer_size(256 * 1024);
    Arc::new(t)
}

/// The conductor's QUIC server config.
pub fn server_config(identity: &Identity) -> anyhow::Result<quinn::ServerConfig> {
    let cert = CertificateDer::from(identity.cert_der.clone());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(transport());
    Ok(config)
}

/// A node's QUIC client config pinning `fingerprint`. A refused certificate is recorded in
/// `mismatch` (its fingerprint), so the client can say why the handshake failed.
pub fn client_config(
    fingerprint: [u8; 32],
    mismatch: Arc<Mutex<Option<String>>>,
) -> anyhow::Result<quinn::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(PinnedServer { fingerprint, provider: provider.clone(), mismatch });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport());
    Ok(config)
}

/// The message a node gives when the conductor's certificate is not the one its join code
/// names.
pub fn mismatch_message(expected: &[u8; 32], got: &str) -> String {
    format!(
        "the conductor's certificate does not match the join code (fingerprint {got}, the join code expects {}): \
         it is another conductor, or someone in between; ask for a fresh join code",
        hex(expected)
    )
}

/// Accepts exactly the certificate whose SHA-256 the join code carries.
#[derive(Debug)]
pub struct PinnedServer {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
    mismatch: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.fingerprint {
            return Ok(ServerCertVerified::assertion());
        }
        let message = mismatch_message(&self.fingerprint, &hex(&got));
        if let Ok(mut m) = self.mismatch.lock() {
            *m = Some(message.clone());
        }
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
