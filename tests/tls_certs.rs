//! src/tls through real handshakes on loopback: certificates chosen by SNI, ALPN, TLS 1.2 and
//! 1.3, reload for new connections only, bad files named and refused with the old ones kept,
//! and env certificates verified against a CA file.

#[path = "common/testca.rs"]
mod testca;

use std::path::Path;
use std::sync::Arc;

use cutover::tls::{client_config, CertFiles, ServerTls, TlsError, ALPN_H2_H1};
use rustls::pki_types::ServerName;
use testca::{Leaf, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn files(leaf: &Leaf) -> CertFiles {
    CertFiles {
        cert: leaf.cert.clone(),
        key: leaf.key.clone(),
    }
}

/// A loopback server that completes handshakes with `tls`'s current configuration and answers
/// each connection with one byte, then keeps it open until the client closes.
async fn serve(tls: Arc<ServerTls>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = TlsAcceptor::from(tls.config());
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let _ = s.write_all(b"!").await;
                    let mut buf = [0u8; 1];
                    let _ = s.read(&mut buf).await;
                }
            });
        }
    });
    addr
}

/// What a client trusting `ca` sees: the server certificate's DER and the ALPN chosen.
async fn connect(
    addr: std::net::SocketAddr,
    ca: &Path,
    sni: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<
    (
        Vec<u8>,
        Option<Vec<u8>>,
        tokio_rustls::client::TlsStream<TcpStream>,
    ),
    std::io::Error,
> {
    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(ca).expect("ca");
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca_pem) {
        roots.add(c.expect("ca pem")).expect("root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(cutover::tls::provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("name");
    let mut s = TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await?;
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await?;
    let (_, conn) = s.get_ref();
    let cert = conn.peer_certificates().expect("a certificate")[0].to_vec();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    Ok((cert, alpn, s))
}

fn der(leaf: &Leaf) -> Vec<u8> {
    let pem = std::fs::read(&leaf.cert).expect("cert");
    let first: rustls::pki_types::CertificateDer =
        rustls::pki_types::pem::PemObject::from_pem_slice(&pem).expect("pem");
    first.to_vec()
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test]
async fn the_certificate_is_chosen_by_sni_and_alpn_offers_h2_then_http11() {
    let ca = TestCa::new("cutover test CA");
    let a = ca.leaf("a", &["a.test"]);
    let b = ca.leaf("b", &["b.test", "*.b.test"]);
    let tls = Arc::new(ServerTls::new(&[files(&a), files(&b)], &ALPN_H2_H1).expect("tls"));
    let addr = serve(tls).await;

    let (cert, alpn, _s) = connect(addr, &ca.cert, "a.test", &[b"h2", b"http/1.1"], BOTH)
        .await
        .expect("a.test");
    assert_eq!(cert, der(&a));
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (cert, alpn, _s) = connect(addr, &ca.cert, "x.b.test", &[b"http/1.1"], BOTH)
        .await
        .expect("x.b.test");
    assert_eq!(cert, der(&b));
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    // A name no certificate has gets the first, which the client then refuses.
    let refused = connect(addr, &ca.cert, "c.test", &[], BOTH).await;
    let err = refused.map(|_| ()).expect_err("c.test refused");
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_both_spoken() {
    let ca = TestCa::new("cutover test CA");
    let a = ca.leaf("a", &["a.test"]);
    let tls = Arc::new(ServerTls::new(&[files(&a)], &ALPN_H2_H1).expect("tls"));
    let addr = serve(tls).await;
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let (_, _, s) = connect(addr, &ca.cert, "a.test", &[], &[v])
            .await
            .expect("handshake");
        assert_eq!(s.get_ref().1.protocol_version(), Some(v.version));
    }
}

#[tokio::test]
async fn a_reload_serves_new_connections_and_keeps_open_ones_and_a_bad_file_changes_nothing() {
    let ca = TestCa::new("cutover test CA");
    let old = ca.leaf("old", &["a.test"]);
    let new = ca.leaf("new", &["a.test"]);
    let tls = Arc::new(ServerTls::new(&[files(&old)], &ALPN_H2_H1).expect("tls"));
    let addr = serve(tls.clone()).await;
    let (cert, _, mut open) = connect(addr, &ca.cert, "a.test", &[], BOTH)
        .await
        .expect("before");
    assert_eq!(cert, der(&old));

    // A key that is not the certificate's: refused naming both files, the old one stays.
    let wrong = CertFiles {
        cert: new.cert.clone(),
        key: old.key.clone(),
    };
    let err = tls.reload(&[wrong]).expect_err("mismatch");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("new.pem") && msg.contains("old.key"), "{msg}");
    let (cert, _, _s) = connect(addr, &ca.cert, "a.test", &[], BOTH)
        .await
        .expect("still old");
    assert_eq!(cert, der(&old));

    tls.reload(&[files(&new)]).expect("reload");
    let (cert, _, _s) = connect(addr, &ca.cert, "a.test", &[], BOTH)
        .await
        .expect("after");
    assert_eq!(cert, der(&new));
    // The connection opened before the reload still works.
    open.write_all(b"x")
        .await
        .expect("old connection still open");
}

#[tokio::test]
async fn bad_files_are_named_with_what_to_do() {
    let ca = TestCa::new("cutover test CA");
    let a = ca.leaf("a", &["a.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let cases = [
        (
            CertFiles {
                cert: missing.clone(),
                key: a.key.clone(),
            },
            "cannot read certificate file",
            "missing.pem",
        ),
        (
            CertFiles {
                cert: garbage.clone(),
                key: a.key.clone(),
            },
            "holds no PEM certificate",
            "garbage.pem",
        ),
        (
            CertFiles {
                cert: a.cert.clone(),
                key: garbage.clone(),
            },
            "holds no private key",
            "garbage.pem",
        ),
        (
            CertFiles {
                cert: a.cert.clone(),
                key: a.cert.clone(),
            },
            "holds no private key",
            "a.pem",
        ),
    ];
    for (f, what, file) in cases {
        let err = ServerTls::new(&[f], &ALPN_H2_H1)
            .expect_err(what)
            .to_string();
        assert!(err.contains(what) && err.contains(file), "{what}: {err}");
    }
    assert!(matches!(
        ServerTls::new(&[], &ALPN_H2_H1),
        Err(TlsError::NoCertificates)
    ));
}

#[tokio::test]
async fn an_env_certificate_is_verified_against_the_ca_file_and_its_name() {
    let ca = TestCa::new("cutover test CA");
    let env = ca.leaf("env", &["new.internal"]);
    let tls = Arc::new(ServerTls::new(&[files(&env)], &[b"http/1.1"]).expect("tls"));
    let addr = serve(tls).await;
    let handshake = |ca_file: Option<std::path::PathBuf>, name: &'static str| async move {
        let client =
            client_config(ca_file.as_deref(), &[b"http/1.1"]).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from(name).expect("name");
        TlsConnector::from(client.config)
            .connect(name, tcp)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    handshake(Some(ca.cert.clone()), "new.internal")
        .await
        .expect("trusted through the CA file");
    let unknown = handshake(None, "new.internal").await.err();
    assert!(
        unknown
            .as_deref()
            .is_some_and(|e| e.contains("UnknownIssuer")
                || e.contains("unknown issuer")
                || e.contains("no trusted root")),
        "{unknown:?}"
    );
    let wrong_name = handshake(Some(ca.cert.clone()), "other.internal")
        .await
        .err();
    assert!(
        wrong_name
            .as_deref()
            .is_some_and(|e| e.contains("not valid for name")),
        "{wrong_name:?}"
    );
}
