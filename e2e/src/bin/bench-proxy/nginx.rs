//! nginx (the Debian package) as the reference reverse proxy: started by the bench as
//! the current user, with a generated configuration, on a loopback port, in front of
//! the same tool, with keep-alive to the tool. Stopped (SIGTERM) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connectors_e2e::process::{free_port, http_get};

pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

/// The nginx binary: on `PATH`, else where Debian puts it.
fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/nginx");
        debian.is_file().then_some(debian)
    })
}

fn user_directive() -> String {
    // Run as root, nginx's workers would switch to `nobody`; keep the current user.
    let uid = Command::new("id").arg("-u").output();
    let is_root = uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if is_root {
        "user root;\n".into()
    } else {
        String::new()
    }
}

/// The configuration: a plain reverse proxy to `127.0.0.1:{tool_port}`, HTTP/1.1 and
/// a keep-alive upstream pool, bodies streamed (no temp files, 64 KiB buffers), no access log,
/// `workers` worker processes.
pub fn config(dir: &Path, port: u16, tool_port: u16, workers: usize) -> String {
    let d = dir.display();
    format!(
        r#"{user}daemon off;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
    upstream tool {{
        server 127.0.0.1:{tool_port};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://tool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Stream both ways like the proxy: no temp files for 1 GiB bodies, and
            # 64 KiB buffers (the tool's chunk size) rather than nginx's 4-8 KiB.
            proxy_request_buffering off;
            client_body_buffer_size 64k;
            proxy_max_temp_file_size 0;
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
            proxy_busy_buffers_size 128k;
        }}
    }}
}}
"#,
        user = user_directive()
    )
}

impl Nginx {
    pub fn start(tool_port: u16, workers: usize) -> Result<Nginx, String> {
        let binary = binary().ok_or("nginx not found: apt-get install -y nginx")?;
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("connectors-bench-nginx-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port, tool_port, workers)).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut nginx = Nginx { child, port, dir };
        let started = Instant::now();
        while http_get(port, "/").is_none() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                return Err(format!(
                    "nginx exited ({status}): {}",
                    std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
                ));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err("nginx did not answer within 10s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }

    /// The master's pid (the workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn version() -> String {
        binary()
            .and_then(|b| Command::new(b).arg("-v").output().ok())
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
            .unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: fast shutdown of the master and its workers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
