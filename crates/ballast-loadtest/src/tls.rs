//! TLS for `https://` targets (rustls, ring): the client configuration (the system's root
//! certificates, or `--cacert`'s, or no check at all with `--insecure`; a client certificate
//! for mutual TLS with `--client-cert`; ALPN `h2` with `--http2`, else `http/1.1`), the name
//! the certificate must carry, and the probe that tries one handshake before the run so a
//! refused certificate is one clear error naming the host and the fix instead of a run of
//! connect failures.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use crate::plan::{Protocol, Target, TlsChecks};

/// The client configuration for `checks`, offering `h2` by ALPN when `protocol` is HTTP/2.
pub fn client_config(checks: &TlsChecks, protocol: Protocol) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = if checks.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        builder.with_root_certificates(roots(checks)?)
    };
    let mut config = match client_identity(checks)? {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            format!(
                "--client-cert and --client-key do not make a client identity: {e} \
                 (is the key the certificate's?)"
            )
        })?,
    };
    config.alpn_protocols = match protocol {
        Protocol::Http2 { .. } => vec![b"h2".to_vec()],
        Protocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(Arc::new(config))
}

/// A client certificate's chain and its private key.
type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Mutual TLS: `--client-cert`'s chain and `--client-key`'s key (the certificate's own file
/// when no key file is given, as HAProxy's `crt` PEM holds both).
fn client_identity(checks: &TlsChecks) -> Result<Option<ClientIdentity>, String> {
    let Some(cert) = &checks.client_cert else {
        return match &checks.client_key {
            Some(_) => {
                Err("--client-key needs --client-cert (the certificate it signs for)".into())
            }
            None => Ok(None),
        };
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read --client-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--client-cert {}: bad certificate PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--client-cert {} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
            cert.display()
        ));
    }
    let key_file = checks.client_key.as_ref().unwrap_or(cert);
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        let fix = if checks.client_key.is_none() {
            ": give the key's file with --client-key"
        } else {
            " (expected a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)"
        };
        format!("no private key read from {}: {e}{fix}", key_file.display())
    })?;
    Ok(Some((chain, key)))
}

/// `--cacert`'s certificates, or the system's.
fn roots(checks: &TlsChecks) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &checks.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read --cacert {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("--cacert {}: bad certificate PEM: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "--cacert {} holds no usable certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(
                    "no root certificate found on this system (install ca-certificates), so no \
                     server certificate can be checked: pass --cacert FILE, or --insecure"
                        .into(),
                );
            }
        }
    }
    Ok(roots)
}

/// The name the server's certificate is checked against: the URL's host (a DNS name or an
/// IP address), from its authority, since the target's `host` may already be resolved.
pub fn server_name(target: &Target) -> Result<ServerName<'static>, String> {
    let authority = target.authority.as_str();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => authority,
        }
    };
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is not a name a TLS certificate can be checked against"))
}

/// One TCP connection and TLS handshake to `addr` as the run will make them: Ok when the
/// certificate is accepted (and, with HTTP/2, the server agreed to `h2`), else what failed and
/// how to fix it.
pub async fn probe(
    addr: SocketAddr,
    target: &Target,
    checks: &TlsChecks,
    protocol: Protocol,
) -> Result<(), String> {
    let config = client_config(checks, protocol)?;
    let name = server_name(target)?;
    let host = target.authority.clone();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr} ({host}): {e}"))?;
    let handshake = TlsConnector::from(config).connect(name, tcp);
    let stream = match tokio::time::timeout(std::time::Duration::from_secs(5), handshake).await {
        Err(_) => {
            return Err(format!(
                "the TLS handshake with {host} ({addr}) got no answer in 5 s: is it a TLS listener?"
            ));
        }
        Ok(Err(e)) => return Err(handshake_error(&host, addr, &e)),
        Ok(Ok(s)) => s,
    };
    if let Protocol::Http2 { .. } = protocol
        && stream.get_ref().1.alpn_protocol() != Some(b"h2")
    {
        return Err(format!(
            "{host} does not offer HTTP/2 by ALPN (h2): leave out --http2 to load it over HTTP/1.1"
        ));
    }
    Ok(())
}

fn handshake_error(host: &str, addr: SocketAddr, e: &std::io::Error) -> String {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "the certificate of {host} ({addr}) was refused: {why:?}. For a self-signed or \
             private certificate pass --cacert FILE (the PEM certificate that signed it) to \
             check it against, or --insecure to skip the check"
        ),
        Some(
            rustls::Error::NoApplicationProtocol
            | rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol),
        ) => format!(
            "{host} ({addr}) agreed to no protocol offered by ALPN: with --http2 it must offer \
             h2 (leave out --http2 for HTTP/1.1)"
        ),
        _ => format!("the TLS handshake with {host} ({addr}) failed: {e}; is it a TLS listener?"),
    }
}

/// `--insecure`: every certificate is accepted; the handshake's signatures are still
/// checked, so the connection is TLS, only not authenticated.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_name_is_the_urls_host() {
        let name =
            |url: &str| server_name(&Target::parse(url).unwrap()).map(|n| n.to_str().to_string());
        assert_eq!(
            name("https://example.com:8443/x").as_deref(),
            Ok("example.com")
        );
        assert_eq!(name("https://localhost/").as_deref(), Ok("localhost"));
        assert_eq!(name("https://127.0.0.1:9/").as_deref(), Ok("127.0.0.1"));
        assert_eq!(name("https://[::1]:9/").as_deref(), Ok("::1"));
    }

    #[test]
    fn a_cacert_file_without_certificates_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("ballast-lt-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let checks = TlsChecks {
            insecure: false,
            ca_file: Some(empty.clone()),
            ..TlsChecks::default()
        };
        let e = client_config(&checks, Protocol::Http1).unwrap_err();
        assert!(
            e.contains("empty.pem") && e.contains("no usable certificate"),
            "{e}"
        );
        let missing = TlsChecks {
            insecure: false,
            ca_file: Some(dir.join("missing.pem")),
            ..TlsChecks::default()
        };
        assert!(
            client_config(&missing, Protocol::Http1)
                .unwrap_err()
                .contains("cannot read --cacert")
        );
        let _ = std::fs::remove_dir_all(&dir);
        // The system's roots (ca-certificates) and the insecure verifier both build.
        assert!(client_config(&TlsChecks::default(), Protocol::Http2 { streams: 1 }).is_ok());
        let insecure = TlsChecks {
            insecure: true,
            ca_file: None,
            ..TlsChecks::default()
        };
        let config = client_config(&insecure, Protocol::Http2 { streams: 1 }).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }

    /// A TLS server on loopback with a self-signed certificate for 127.0.0.1, offering `alpn`;
    /// it completes handshakes and nothing more. Its certificate's PEM.
    async fn tls_server(alpn: &[&[u8]]) -> (SocketAddr, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let key =
            rustls_pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        (addr, certified.cert.pem())
    }

    #[tokio::test]
    async fn the_probe_refuses_a_self_signed_certificate_and_names_the_fix() {
        let (addr, pem) = tls_server(&[b"http/1.1"]).await;
        let target = Target::parse(&format!("https://{addr}/")).unwrap();
        let e = probe(addr, &target, &TlsChecks::default(), Protocol::Http1)
            .await
            .unwrap_err();
        assert!(
            e.contains(&addr.to_string()) && e.contains("--insecure") && e.contains("--cacert"),
            "{e}"
        );
        let insecure = TlsChecks {
            insecure: true,
            ca_file: None,
            ..TlsChecks::default()
        };
        probe(addr, &target, &insecure, Protocol::Http1)
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("ballast-lt-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, pem).unwrap();
        let cacert = TlsChecks {
            insecure: false,
            ca_file: Some(ca),
            ..TlsChecks::default()
        };
        probe(addr, &target, &cacert, Protocol::Http1)
            .await
            .unwrap();
        // The same certificate does not name 127.0.0.2.
        let other = Target::parse(&format!("https://127.0.0.2:{}/", addr.port())).unwrap();
        let e = probe(addr, &other, &cacert, Protocol::Http1)
            .await
            .unwrap_err();
        assert!(e.contains("127.0.0.2") && e.contains("refused"), "{e}");
        // HTTP/2 needs the server to offer h2.
        let e = probe(addr, &target, &cacert, Protocol::Http2 { streams: 1 })
            .await
            .unwrap_err();
        assert!(e.contains("h2"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        let (h2_addr, _) = tls_server(&[b"h2", b"http/1.1"]).await;
        let h2_target = Target::parse(&format!("https://{h2_addr}/")).unwrap();
        probe(
            h2_addr,
            &h2_target,
            &insecure,
            Protocol::Http2 { streams: 1 },
        )
        .await
        .unwrap();
    }
}
