//! A real OpenID Connect provider for the identity tests: panva's `oidc-provider` from
//! npm (OpenID-certified), run by `e2e/oidc/server.mjs` with node on a free loopback
//! port, one confidential client. `scripts/install-deps.sh` installs it under
//! `~/.cache/connectors-e2e/oidc-provider-<version>` (override: `OIDC_PROVIDER_DIR`).
//! Stopped on drop.
//!
//! Why this one: it authenticates clients at the token endpoint for real (a wrong
//! secret gets `invalid_client`, a bogus code `invalid_grant`), its issuer, client and
//! port are set per test, and it starts in well under a second. Dex itself cannot be
//! installed through the Go module proxy (its v2 tags lack a `/v2` module path).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

/// The pinned version (also in scripts/install-deps.sh).
pub const OIDC_PROVIDER_VERSION: &str = "8.8.1";

/// A running provider.
pub struct OidcProvider {
    child: Option<Child>,
    pub port: u16,
    /// The issuer it announces: `http://127.0.0.1:<port>`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    log: PathBuf,
}

fn provider_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OIDC_PROVIDER_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache
        .join("connectors-e2e")
        .join(format!("oidc-provider-{OIDC_PROVIDER_VERSION}"))
}

impl OidcProvider {
    /// Starts the provider with one client (`client_id`, `client_secret`).
    pub fn start(client_id: &str, client_secret: &str) -> Self {
        let dir = provider_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed in {}: run scripts/install-deps.sh",
            dir.display()
        );
        let port = free_port();
        let mut provider = OidcProvider {
            child: None,
            port,
            issuer: format!("http://127.0.0.1:{port}"),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: "https://dex.example.org/callback".into(),
            log: std::env::temp_dir().join(format!("connectors-e2e-oidc-{port}.log")),
        };
        provider.resume();
        provider
    }

    /// Stops it (the port refuses connections); `resume` starts it again.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port, issuer and client.
    pub fn resume(&mut self) {
        let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/oidc/server.mjs"));
        let log = std::fs::File::create(&self.log).expect("oidc log");
        let child = Command::new("node")
            .arg(script)
            .env("OIDC_PROVIDER_DIR", provider_dir())
            .env("PORT", self.port.to_string())
            .env("ISSUER", &self.issuer)
            .env("CLIENT_ID", &self.client_id)
            .env("CLIENT_SECRET", &self.client_secret)
            .env("REDIRECT_URI", &self.redirect_uri)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start node (install nodejs: scripts/install-deps.sh)");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "oidc-provider did not listen on {}: {}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}
