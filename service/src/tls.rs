//! The coordinator's TLS identity and the clients' pin on it.
//!
//! `kura coordinator init` makes a self-signed P-256 certificate
//! ([`TlsIdentity::generate`]); its [`CertFingerprint`] (`sha256:` and the
//! SHA-256 of the certificate's DER) is what requesters and signers pin:
//! [`client_config`] accepts exactly that certificate, whatever its names
//! and dates, and still checks that the server proves it holds its key (the
//! handshake signature is verified by rustls' own code). TLS 1.3 only, one
//! crypto provider (ring) for TLS and identities alike.
//!
//! The private key is sealed at rest with the operator's passphrase
//! ([`TlsIdentity::seal`], age's scrypt recipient), never written in the
//! clear.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use wallet_core::SecretBytes;

use crate::error::TlsError;

/// The one crypto provider of the service: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `sha256:` and 64 lowercase hex digits: the SHA-256 of a certificate's
/// DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    /// The fingerprint of `der`.
    pub fn of(der: &[u8]) -> Self {
        CertFingerprint(Sha256::digest(der).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

impl FromStr for CertFingerprint {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, TlsError> {
        let bad = || TlsError::BadFingerprint;
        let hex_part = s.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| bad())?;
        Ok(CertFingerprint(bytes))
    }
}

impl serde::Serialize for CertFingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CertFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The coordinator's certificate and private key.
#[derive(Clone)]
pub struct TlsIdentity {
    certificate: Vec<u8>,
    key: SecretBytes,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TlsIdentity {
    /// A new self-signed P-256 certificate for `names` (DNS names or IP
    /// addresses), valid from now for ten years.
    ///
    /// # Errors
    /// [`TlsError::Generate`].
    pub fn generate(names: &[String], common_name: &str) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(TlsError::Generate)?;
        let mut params =
            rcgen::CertificateParams::new(names.to_vec()).map_err(TlsError::Generate)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let now = std::time::SystemTime::now();
        params.not_before = now.into();
        params.not_after = (now + std::time::Duration::from_secs(10 * 365 * 24 * 3600)).into();
        let certificate = params.self_signed(&key).map_err(TlsError::Generate)?;
        Ok(TlsIdentity {
            certificate: certificate.der().to_vec(),
            key: SecretBytes::new(key.serialize_der()),
        })
    }

    /// From a certificate (DER) and its PKCS#8 private key (DER), as a
    /// CA-issued certificate is installed.
    pub fn from_der(certificate: Vec<u8>, pkcs8_key: SecretBytes) -> Self {
        TlsIdentity {
            certificate,
            key: pkcs8_key,
        }
    }

    /// The certificate, DER.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// What clients pin.
    pub fn fingerprint(&self) -> CertFingerprint {
        CertFingerprint::of(&self.certificate)
    }

    /// The private key sealed to `passphrase` (an age file, scrypt).
    ///
    /// # Errors
    /// [`TlsError::Seal`].
    pub fn seal(&self, passphrase: &age::secrecy::SecretString) -> Result<Vec<u8>, TlsError> {
        let recipient = age::scrypt::Recipient::new(passphrase.clone());
        age::encrypt(&recipient, self.key.expose()).map_err(|e| TlsError::Seal(e.to_string()))
    }

    /// Opens a key sealed with [`TlsIdentity::seal`] and pairs it with its
    /// certificate.
    ///
    /// # Errors
    /// [`TlsError::WrongPassphrase`], or [`TlsError::Seal`] for a file that
    /// is not a sealed key.
    pub fn unseal(
        certificate: Vec<u8>,
        sealed_key: &[u8],
        passphrase: &age::secrecy::SecretString,
    ) -> Result<Self, TlsError> {
        let mut identity = age::scrypt::Identity::new(passphrase.clone());
        identity.set_max_work_factor(22);
        let key = age::decrypt(&identity, sealed_key).map_err(|e| match e {
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                TlsError::WrongPassphrase
            }
            other => TlsError::Seal(other.to_string()),
        })?;
        Ok(TlsIdentity {
            certificate,
            key: SecretBytes::new(key),
        })
    }

    /// The server's rustls configuration: TLS 1.3, HTTP/1.1, no client
    /// certificates (clients prove their identity keys by logging in).
    ///
    /// # Errors
    /// [`TlsError::Config`] when rustls refuses the key or certificate.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.certificate.clone())],
                // rustls keeps its own copy of the key for as long as it serves.
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.expose().to_vec())),
            )
            .map_err(TlsError::Config)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// A client's rustls configuration that trusts exactly the certificate
/// with fingerprint `pin` (TLS 1.3, the handshake signature verified).
///
/// # Errors
/// [`TlsError::Config`].
pub fn client_config(pin: CertFingerprint) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = PinnedCertificate {
        pin,
        provider: provider.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts the one certificate whose fingerprint is pinned. Names and
/// validity dates are not checked: the pin is the trust. The handshake
/// signatures are checked by rustls' own verifier, so a server must hold
/// the pinned certificate's key, not just send its bytes.
#[derive(Debug)]
struct PinnedCertificate {
    pin: CertFingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if CertFingerprint::of(end_entity) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
