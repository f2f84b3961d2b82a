//! The real `git` client for the e2e tests, run with a clean environment: no system
//! or user configuration (`GIT_CONFIG_NOSYSTEM=1`, `HOME` an empty temporary
//! directory), no credential helper (`-c credential.helper=`), no prompt
//! (`GIT_TERMINAL_PROMPT=0`), English messages. Credentials go in the URL
//! ([`with_userinfo`]); everything else in `-c` configs (e.g. `http.proxy=...`).
//!
//! The demo tool (`process::DemoTool`) serves `demo/repo.git` behind Basic
//! [`USER`]:[`PASSWORD`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use rand::RngCore;

/// The demo tool's user.
pub const USER: &str = "demo";
/// The demo tool's password.
pub const PASSWORD: &str = "demo-password";

/// The `HOME` of every git run: an empty directory of this test process.
pub fn home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = std::env::temp_dir()
            .join("connectors-e2e")
            .join(format!("git-home-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create git HOME");
        dir
    })
}

/// `git -c credential.helper= [-c CONFIG]...` with the clean environment (only `PATH`
/// is kept from ours).
pub fn command(configs: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home())
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "e2e")
        .env("GIT_AUTHOR_EMAIL", "e2e@example.com")
        .env("GIT_COMMITTER_NAME", "e2e")
        .env("GIT_COMMITTER_EMAIL", "e2e@example.com")
        .args(["-c", "credential.helper="]);
    for config in configs {
        cmd.args(["-c", config]);
    }
    cmd
}

/// Runs git (in `dir` when given) and returns its output, whatever the exit status.
pub fn run(dir: Option<&Path>, configs: &[&str], args: &[&str]) -> Output {
    let mut cmd = command(configs);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("run git {}: {e}", args.join(" ")))
}

/// Runs git in `dir` and panics (with its stderr) unless it succeeds.
pub fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = run(Some(dir), &[], args);
    assert_success(&out, &format!("git {}", args.join(" ")));
    out
}

/// `git clone URL DIR` with `configs` as `-c` options.
pub fn clone(url: &str, dir: &Path, configs: &[&str]) -> Output {
    let dir = dir.to_str().expect("UTF-8 clone directory");
    run(None, configs, &["clone", url, dir])
}

/// `git push origin HEAD` in `repo_dir` with `configs` as `-c` options.
pub fn push(repo_dir: &Path, configs: &[&str]) -> Output {
    run(Some(repo_dir), configs, &["push", "origin", "HEAD"])
}

/// Writes `file_name` in `repo_dir` with `size_bytes` random bytes (1 MiB at a time,
/// so they do not compress and are never all in memory) and commits it.
pub fn commit_file(repo_dir: &Path, file_name: &str, size_bytes: u64) {
    const CHUNK: usize = 1024 * 1024;
    let path = repo_dir.join(file_name);
    let file = std::fs::File::create(&path).expect("create file to commit");
    let mut writer = std::io::BufWriter::new(file);
    let mut chunk = vec![0u8; CHUNK];
    let mut rng = rand::rng();
    let mut left = size_bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill_bytes(&mut chunk[..n]);
        writer.write_all(&chunk[..n]).expect("write file to commit");
        left -= n as u64;
    }
    writer.flush().expect("flush file to commit");
    run_ok(repo_dir, &["add", "--", file_name]);
    let message = format!("add {file_name} ({size_bytes} bytes)");
    run_ok(repo_dir, &["commit", "--quiet", "-m", &message]);
}

/// `url` with `user:secret@` put after the scheme, both percent-encoded
/// (`http://host:port/path` -> `http://user:secret@host:port/path`). `url` must not
/// hold userinfo already.
pub fn with_userinfo(url: &str, user: &str, secret: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
    format!(
        "{scheme}://{}:{}@{rest}",
        percent_encode(user),
        percent_encode(secret)
    )
}

/// Percent-encodes every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// stderr of a run, lossily decoded.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Panics with git's stdout and stderr unless the run succeeded.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        stderr(out).trim()
    );
}

/// A fresh directory under the temporary directory, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(prefix: &str) -> Self {
        let suffix: u64 = rand::random();
        let dir = std::env::temp_dir()
            .join("connectors-e2e")
            .join(format!("{prefix}-{}-{suffix:x}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory (not created).
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
