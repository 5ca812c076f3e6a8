//! TLS termination: a verified handshake, HTTP/2 and HTTP/1.1 chosen by ALPN, and the server
//! told the client came over HTTPS.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use ballast_proxy::{Options, Proxy, StartError};
use common::{ConfigFile, backend, servers};

struct Tls {
    config: ConfigFile,
    cert_der: rustls_pki_types::CertificateDer<'static>,
}

async fn tls_proxy(backend_addr_block: String) -> (Tls, Arc<Proxy>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let config = ConfigFile::new("");
    let (cert, key) = (
        config.dir.path().join("cert.pem"),
        config.dir.path().join("key.pem"),
    );
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    config.rewrite(&format!(
        "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n[pools.app]\n{backend_addr_block}",
        cert.display(),
        key.display()
    ));
    let proxy = Proxy::start(&config.path, Options::default())
        .await
        .expect("TLS proxy starts");
    (
        Tls {
            config,
            cert_der: certified.cert.der().clone(),
        },
        proxy,
    )
}

async fn connect(
    tls: &Tls,
    addr: std::net::SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(tls.cert_der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("verified TLS handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http1_over_tls_by_alpn() {
    let b = backend("b", Duration::ZERO).await;
    let (tls, proxy) = tls_proxy(servers("app", &[&b], "")).await;
    let addr = proxy.listener_addr("web").unwrap();

    let stream = connect(&tls, addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("https://localhost/echo")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = h2.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
    assert!(body.contains("host: localhost"), "{body}");

    let stream = connect(&tls, addr, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = h1.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_11);
    proxy.drain(Duration::from_secs(1)).await;
    drop(tls.config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_refuses_to_start_with_the_path() {
    let config = ConfigFile::new(
        "[listeners.web]\naddress = \"127.0.0.1:0\"\npool = \"app\"\ntls = { cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }\n[pools.app]\n[[pools.app.servers]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n",
    );
    let err = match Proxy::start(&config.path, Options::default()).await {
        Err(e) => e,
        Ok(_) => panic!("started without a certificate"),
    };
    assert!(matches!(err, StartError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}
