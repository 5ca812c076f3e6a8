//! TLS termination with rustls (ring provider): certificates and keys from PEM files, HTTP/2
//! and HTTP/1.1 offered by ALPN.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use ballast_core::config::ListenerTls;

/// What identifies a TLS setup: the paths and the bytes behind them, so a reload notices a
/// renewed certificate at the same path.
pub fn fingerprint(tls: &ListenerTls) -> String {
    let read = |p: &str| {
        std::fs::read(p)
            .map(|b| xxhash_fingerprint(&b))
            .unwrap_or_default()
    };
    format!(
        "{}:{}:{}:{}",
        tls.cert,
        read(&tls.cert),
        tls.key,
        read(&tls.key)
    )
}

fn xxhash_fingerprint(bytes: &[u8]) -> String {
    format!("{:016x}", ballast_core::balance::hash_key(bytes))
}

/// Builds the acceptor, or says which file is wrong and why.
pub fn acceptor(tls: &ListenerTls) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| format!("cannot read certificates from {}: {e}", tls.cert))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM in {}: {e}", tls.cert))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", tls.cert));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", tls.key))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "certificate {} and key {} do not make a usable pair: {e}",
                    tls.cert, tls.key
                )
            })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
