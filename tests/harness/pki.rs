//! Certificates for TLS tests, made with the `openssl` command: a CA, a
//! server certificate for 127.0.0.1 and localhost, a client certificate the
//! CA signed, and one signed by another CA (which a collector requiring
//! client certificates must refuse).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its key, PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Certificate.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Everything a TLS test needs, in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA that signed the server and the good client.
    pub ca: CertFiles,
    /// The collector's certificate (SAN 127.0.0.1, localhost).
    pub server: CertFiles,
    /// A client certificate signed by `ca`.
    pub client: CertFiles,
    /// Another CA, unknown to the collector.
    pub rogue_ca: CertFiles,
    /// A client certificate signed by `rogue_ca`.
    pub rogue_client: CertFiles,
}

fn openssl(dir: &Path, args: &[&str]) {
    crate::run(Command::new("openssl").current_dir(dir).args(args));
}

fn files(dir: &Path, name: &str) -> CertFiles {
    CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    }
}

/// A self-signed CA named `name`.
fn make_ca(dir: &Path, name: &str) -> CertFiles {
    let f = files(dir, name);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=upid test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    f
}

/// A leaf certificate `name` signed by `ca`, with the given extensions.
fn make_leaf(dir: &Path, name: &str, ca: &CertFiles, extensions: &str) -> CertFiles {
    let f = files(dir, name);
    let ext_file = dir.join(format!("{name}.ext"));
    std::fs::write(&ext_file, extensions).expect("write extensions file");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN=upid test {name}"),
            "-keyout",
            &format!("{name}-key.pem"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &ca.cert.display().to_string(),
            "-CAkey",
            &ca.key.display().to_string(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file.display().to_string(),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    f
}

impl Pki {
    /// Generates every certificate into `dir`.
    pub fn generate(dir: &Path) -> Pki {
        let ca = make_ca(dir, "ca");
        let rogue_ca = make_ca(dir, "rogue-ca");
        let server = make_leaf(
            dir,
            "server",
            &ca,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        );
        let client_ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n";
        let client = make_leaf(dir, "client", &ca, client_ext);
        let rogue_client = make_leaf(dir, "rogue-client", &rogue_ca, client_ext);
        Pki {
            ca,
            server,
            client,
            rogue_ca,
            rogue_client,
        }
    }
}
