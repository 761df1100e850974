//! TLS with rustls on the `ring` provider: the hub's self-signed certificate (rcgen), its
//! server config, and the client side a daemon uses to reach a self-signed hub: a verifier that
//! accepts exactly the certificate whose SHA-256 the invite carried
//! ([`pinned_client_config`], Syncthing's device-ID model).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The crypto provider: ring (the project's choice: no C toolchain for aws-lc). rustls 0.23.48
/// deprecates it for lacking post-quantum key exchange, which aws-lc-rs alone offers.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `names` (DNS names or IP addresses): `(cert PEM, key PEM)`.
pub fn self_signed(names: &[String]) -> Result<(String, String), String> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    Ok((ck.cert.pem(), ck.signing_key.serialize_pem()))
}

/// The SHA-256 (lowercase hex) of the first certificate in `pem`: what invites carry.
pub fn fingerprint_pem(pem: &str) -> Result<String, String> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or("no certificate in the PEM file")?
        .map_err(|e| format!("certificate: {e}"))?;
    Ok(fingerprint(&der))
}

pub fn fingerprint(der: &[u8]) -> String {
    crate::ids::sha256_hex(der)
}

/// The hub's server config from PEM text (certificate chain and private key).
pub fn server_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the certificate file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("private key: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client config that trusts exactly the server certificate whose SHA-256 (hex) is
/// `fingerprint`, whatever its names and dates (the invite is the trust anchor). The handshake
/// signature is still verified against that certificate's key.
pub fn pinned_client_config(fingerprint: &str) -> Result<rustls::ClientConfig, String> {
    let fp = fingerprint.to_ascii_lowercase();
    if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a certificate fingerprint is 64 hex digits".into());
    }
    let provider = provider();
    let verifier = Arc::new(PinnedVerifier {
        fingerprint: fp,
        provider: provider.clone(),
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts the one certificate whose SHA-256 is pinned.
#[derive(Debug)]
pub struct PinnedVerifier {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity);
        if got == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the hub's certificate is not the one the invite names (SHA-256 {got}, expected {})",
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_makes_a_server_config_and_a_pin() {
        let (cert, key) = self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        server_config(&cert, &key).unwrap();
        let fp = fingerprint_pem(&cert).unwrap();
        assert_eq!(fp.len(), 64);
        pinned_client_config(&fp).unwrap();
        assert!(pinned_client_config("xyz").is_err());
    }
}
