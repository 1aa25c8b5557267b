//! HTTPS for the receiver (`--tls-cert`, `--tls-key`): a rustls server configuration from PEM
//! files (certificate chain, then a PKCS#8, PKCS#1 or SEC1 private key), TLS 1.2 and 1.3, HTTP/1.1.
//! Errors name the file and what is wrong with it, never key material.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

/// The certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {path}: cannot read a PEM certificate chain: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("--tls-cert {0}: no certificate in the file")]
    NoCertificate(PathBuf),
    #[error("--tls-key {path}: cannot read a PEM private key: {message}")]
    Key { path: PathBuf, message: String },
    #[error("--tls-cert / --tls-key: {0}")]
    Mismatch(String),
}

/// The rustls configuration for `settings`.
pub(crate) fn server_config(settings: &TlsSettings) -> Result<rustls::ServerConfig, TlsError> {
    let chain = certificates(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| TlsError::Key { path: settings.key.clone(), message: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Mismatch(format!("the key does not fit the certificate: {e}")))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |e: rustls_pki_types::pem::Error| TlsError::Certificate { path: path.into(), message: e.to_string() };
    let chain: Vec<_> = CertificateDer::pem_file_iter(path).map_err(error)?.collect::<Result<_, _>>().map_err(error)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.into()));
    }
    Ok(chain)
}
