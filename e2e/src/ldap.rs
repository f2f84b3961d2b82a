//! A real OpenLDAP server (`slapd` from the Debian packages, installed by
//! `scripts/install-deps.sh`) for the identity tests: a generated `slapd.conf`, LDIF
//! data loaded with `slapadd`, a test CA and a server certificate for 127.0.0.1 and
//! localhost, LDAPS and StartTLS (plain LDAP port), on free loopback ports. Runs as the
//! current user, or as `nobody` when that is root. Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::process::free_port;

/// The directory's suffix, admin and people.
pub const SUFFIX: &str = "dc=example,dc=org";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
pub const GROUPS_DN: &str = "ou=groups,dc=example,dc=org";

/// A running slapd.
pub struct Slapd {
    dir: PathBuf,
    child: Option<Child>,
    /// Plain LDAP (and StartTLS) port on 127.0.0.1.
    pub ldap_port: u16,
    /// LDAPS port on 127.0.0.1.
    pub ldaps_port: u16,
    /// PEM of the test CA that signed the server certificate.
    pub ca_pem: String,
    /// The admin's (rootdn's) password.
    pub admin_password: String,
}

fn slapd_bin() -> PathBuf {
    for candidate in ["/usr/sbin/slapd", "/usr/local/sbin/slapd"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("slapd is not installed: run scripts/install-deps.sh (apt-get install slapd)")
}

fn slapadd_bin() -> PathBuf {
    slapd_bin().with_file_name("slapadd")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A test CA and a server certificate for 127.0.0.1 and localhost: (ca, cert, key).
fn certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "e2e LDAP test CA");
    let ca = ca.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// What a test needs beyond the default server.
#[derive(Clone, Debug, Default)]
pub struct SlapdOptions {
    /// The data instead of [`data_ldif`].
    pub ldif: Option<String>,
    /// Load the `memberof` overlay (AD-style `memberOf` on people, kept by the server
    /// for groups added or changed over LDAP; `slapadd` bypasses it).
    pub memberof: bool,
    /// A size limit for everyone but the rootdn, paged searches unlimited in total
    /// (`sizelimit size.soft=N size.hard=N size.prtotal=unlimited`).
    pub size_limit: Option<u32>,
}

fn config_with(dir: &Path, admin_password: &str, options: &SlapdOptions) -> String {
    let d = dir.display();
    let mut extra = String::new();
    if options.memberof {
        extra.push_str("overlay memberof\n");
    }
    if let Some(n) = options.size_limit {
        extra.push_str(&format!(
            "limits users size.soft={n} size.hard={n} size.prtotal=unlimited\n"
        ));
    }
    let modules = if options.memberof {
        "moduleload memberof\n"
    } else {
        ""
    };
    format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         include /etc/ldap/schema/nis.schema\n\
         pidfile {d}/slapd.pid\n\
         argsfile {d}/slapd.args\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         {modules}\
         TLSCACertificateFile {d}/ca.pem\n\
         TLSCertificateFile {d}/server.pem\n\
         TLSCertificateKeyFile {d}/server.key\n\
         database mdb\n\
         maxsize 33554432\n\
         suffix \"{SUFFIX}\"\n\
         rootdn \"{ADMIN_DN}\"\n\
         rootpw {admin_password}\n\
         directory {d}/db\n\
         {extra}"
    )
}

/// Two people with mail, one group.
pub fn data_ldif() -> String {
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    for (uid, name) in [("alice", "Alice Example"), ("bob", "Bob Example")] {
        out.push_str(&format!(
            "dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {name}\n\
             sn: Example\nmail: {uid}@example.org\nuserPassword: {uid}-password\n\n"
        ));
    }
    out.push_str(&format!(
        "dn: cn=admins,{GROUPS_DN}\nobjectClass: groupOfNames\ncn: admins\nmember: uid=alice,{PEOPLE_DN}\n"
    ));
    out
}

impl Slapd {
    /// Writes the config, certificates and data, and starts slapd.
    pub fn start(admin_password: &str) -> Self {
        Self::start_with(admin_password, SlapdOptions::default())
    }

    /// As [`Slapd::start`], with other data, overlays or limits.
    pub fn start_with(admin_password: &str, options: SlapdOptions) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "connectors-e2e-slapd-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db")).expect("slapd dir");
        let (ca_pem, cert, key) = certificates();
        std::fs::write(dir.join("ca.pem"), &ca_pem).expect("ca.pem");
        std::fs::write(dir.join("server.pem"), cert).expect("server.pem");
        std::fs::write(dir.join("server.key"), key).expect("server.key");
        std::fs::write(
            dir.join("slapd.conf"),
            config_with(&dir, admin_password, &options),
        )
        .expect("conf");
        let ldif = options.ldif.clone().unwrap_or_else(data_ldif);
        std::fs::write(dir.join("data.ldif"), ldif).expect("ldif");
        let out = Command::new(slapadd_bin())
            .arg("-f")
            .arg(dir.join("slapd.conf"))
            .arg("-l")
            .arg(dir.join("data.ldif"))
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of the slapd directory to nobody failed");
        }
        let mut slapd = Slapd {
            dir,
            child: None,
            ldap_port: free_port(),
            ldaps_port: free_port(),
            ca_pem,
            admin_password: admin_password.to_string(),
        };
        slapd.resume();
        slapd
    }

    /// `host:port` of LDAPS.
    pub fn ldaps_host(&self) -> String {
        format!("127.0.0.1:{}", self.ldaps_port)
    }

    /// `host:port` of plain LDAP / StartTLS.
    pub fn ldap_host(&self) -> String {
        format!("127.0.0.1:{}", self.ldap_port)
    }

    /// Runs `ldapmodify` (`-a` with `add`) as the admin over plain LDAP; panics on failure.
    pub fn ldapmodify(&self, ldif: &str, add: bool) {
        use std::io::Write as _;
        let mut command = Command::new("ldapmodify");
        command
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.ldap_port)])
            .args(["-D", ADMIN_DN, "-w", &self.admin_password]);
        if add {
            command.arg("-a");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ldapmodify (apt-get install ldap-utils)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write ldif");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(
            out.status.success(),
            "ldapmodify failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ldapsearch` as `bind_dn` under `base` for `filter` (no paging): its exit code
    /// (4: size limit exceeded) and the number of entries returned.
    pub fn ldapsearch(
        &self,
        bind_dn: &str,
        password: &str,
        base: &str,
        filter: &str,
    ) -> (i32, usize) {
        let out = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &format!("ldap://127.0.0.1:{}", self.ldap_port),
            ])
            .args(["-D", bind_dn, "-w", password, "-b", base, filter, "dn"])
            .output()
            .expect("run ldapsearch (apt-get install ldap-utils)");
        let entries = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("dn: "))
            .count();
        (out.status.code().unwrap_or(-1), entries)
    }

    /// Stops the server (the ports stop answering); `resume` starts it again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_port(self.ldaps_port, false);
    }

    /// Starts (again) on the same ports and data.
    pub fn resume(&mut self) {
        let urls = format!(
            "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
            self.ldap_port, self.ldaps_port
        );
        let log = std::fs::File::create(self.dir.join("slapd.log")).expect("slapd log");
        let mut command = Command::new(slapd_bin());
        command
            .arg("-f")
            .arg(self.dir.join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if is_root() {
            command.args(["-u", "nobody", "-g", "nogroup"]);
        }
        self.child = Some(command.spawn().expect("start slapd"));
        if !wait_port(self.ldaps_port, true) {
            panic!(
                "slapd did not listen on {}: {}",
                self.ldaps_port,
                std::fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default()
            );
        }
    }
}

/// Waits until the port accepts (`up`) or refuses connections; false on timeout.
fn wait_port(port: u16, up: bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        let open = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if open == up {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
