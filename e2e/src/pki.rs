//! Test certificates made with the `openssl` command: a self-signed certificate (an
//! "untrusted" tool) and a test CA with a leaf for 127.0.0.1 (a trusted one).

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate with subject `cn` (written as `{name}.pem` and
/// `{name}.key` in `dir`), plus `extra` arguments such as `-addext`.
pub fn self_signed(dir: &Path, name: &str, cn: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    let subject = format!("/CN={cn}");
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &subject,
        "-keyout", &key, "-out", &cert,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
    (dir.join(cert), dir.join(key))
}

/// A test CA and a leaf for 127.0.0.1 signed by it: (ca.pem, tls.pem, tls.key).
pub fn ca_and_leaf(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, _) = self_signed(dir, "ca", "e2e test CA", &[]);
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext",
            "-out",
            "tls.pem",
        ],
    );
    (ca, dir.join("tls.pem"), dir.join("tls.key"))
}
