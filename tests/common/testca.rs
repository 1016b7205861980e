//! A throw-away certificate authority for TLS tests, made with the `openssl` command in a temp
//! dir: a CA, and leaf certificates for DNS names (and 127.0.0.1) signed by it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
}

/// A leaf certificate and its key, as PEM files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command (apt install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new CA named `name` in a temp dir of its own.
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::tempdir().expect("tempdir");
        let subj = format!("/CN={name}");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &subj,
            ],
        );
        TestCa {
            cert: dir.path().join("ca.pem"),
            dir,
        }
    }

    /// A leaf certificate named `file` for `names` (DNS names; `127.0.0.1` is always added as
    /// an IP name), signed by this CA.
    pub fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        self.signed(file, names, "serverAuth")
    }

    /// A client certificate named `file` for `name`, signed by this CA (mutual TLS).
    #[allow(dead_code)]
    pub fn client(&self, file: &str, name: &str) -> Leaf {
        self.signed(file, &[name], "clientAuth")
    }

    fn signed(&self, file: &str, names: &[&str], usage: &str) -> Leaf {
        let d = self.dir.path();
        let mut san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        san.push("IP:127.0.0.1".into());
        let ext = d.join(format!("{file}.ext"));
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={}\nextendedKeyUsage={usage}\n",
                san.join(",")
            ),
        )
        .expect("ext file");
        let subj = format!("/CN={}", names.first().copied().unwrap_or("localhost"));
        let (key, csr, cert) = (
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.pem"),
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subj,
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                ext.to_str().expect("utf-8 path"),
            ],
        );
        Leaf {
            cert: d.join(cert),
            key: d.join(key),
        }
    }
}
