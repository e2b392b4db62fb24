//! Certificates made at test time: a CA of the test's own and server certificates it signs.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A certificate authority that exists only for one test.
#[derive(Debug)]
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, written as PEM files.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 600).
    pub key: PathBuf,
    /// The CA certificate that signed it.
    pub ca: PathBuf,
}

impl TestCa {
    /// A fresh self-signed CA with common name `name` and a new key pair.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        TestCa { issuer: CertifiedIssuer::self_signed(params, key).unwrap() }
    }

    /// The CA certificate in PEM, for a client's trust store.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate and a server certificate valid for `names` (host names or IP
    /// addresses) into `dir` as `<prefix>-ca.crt`, `<prefix>.crt` and `<prefix>.key` (mode 600).
    ///
    /// ```rust
    /// use testkit::servers::Scratch;
    /// use testkit::tls::TestCa;
    ///
    /// let ca = TestCa::new("doc test CA");
    /// let dir = Scratch::new("tls"); // removed on drop
    /// let files = ca.server_files(&dir.path, "server", &["localhost", "127.0.0.1"]);
    /// assert!(files.cert.ends_with("server.crt") && files.ca.ends_with("server-ca.crt"));
    /// assert_eq!(std::fs::read_to_string(&files.ca)?, ca.pem());
    /// assert!(std::fs::read_to_string(&files.key)?.contains("PRIVATE KEY"));
    ///
    /// // A client trusts the server by the CA's certificate.
    /// use rustls::pki_types::{CertificateDer, pem::PemObject};
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(CertificateDer::from_pem_slice(ca.pem().as_bytes())?)?;
    /// assert_eq!(roots.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn server_files(&self, dir: &Path, prefix: &str, names: &[&str]) -> ServerFiles {
        let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = ServerFiles {
            cert: dir.join(format!("{prefix}.crt")),
            key: dir.join(format!("{prefix}.key")),
            ca: dir.join(format!("{prefix}-ca.crt")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.ca, self.pem()).unwrap();
        write_private(&files.key, &key.serialize_pem());
        files
    }
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}
