//! A real Git server: smart HTTP through `git http-backend` (CGI), behind HTTP Basic
//! `demo:demo-password`, for the repositories under the git root.
//!
//! Both directions stream: the request body is piped into the backend's stdin chunk
//! by chunk by a task of its own while the response reads the backend's stdout, so a
//! push of a large pack is never held in memory (and neither side can block the other).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{USER, authorized};

/// The repository created at start-up, relative to the git root.
pub const DEMO_REPO: &str = "demo/repo.git";

/// Largest CGI header block accepted from the backend.
const MAX_CGI_HEAD: usize = 64 * 1024;

/// Read size of the backend's stdout.
const READ_CHUNK: usize = 64 * 1024;

/// Creates `root/demo/repo.git` unless it exists: a bare repository with one commit
/// (a README) on `main` that accepts pushes over HTTP.
pub fn init_demo_repo(root: &Path) -> io::Result<()> {
    let repo = root.join(DEMO_REPO);
    if repo.join("HEAD").is_file() {
        return Ok(());
    }
    std::fs::create_dir_all(&repo)?;
    let repo_arg = repo.to_string_lossy().into_owned();
    git(
        None,
        &["init", "--quiet", "--bare", "-b", "main", &repo_arg],
        None,
    )?;
    git(Some(&repo), &["config", "http.receivepack", "true"], None)?;
    let readme = "# demo/repo\n\nServed by demo-tool through git http-backend.\n";
    let blob = git(Some(&repo), &["hash-object", "-w", "--stdin"], Some(readme))?;
    let tree = git(
        Some(&repo),
        &["mktree"],
        Some(&format!("100644 blob {blob}\tREADME.md\n")),
    )?;
    let commit = git(
        Some(&repo),
        &["commit-tree", &tree, "-m", "Initial commit"],
        None,
    )?;
    git(
        Some(&repo),
        &["update-ref", "refs/heads/main", &commit],
        None,
    )?;
    Ok(())
}

/// Runs `git` (in `dir` when given, with `input` on stdin) and returns its trimmed
/// stdout; a failure carries git's stderr.
fn git(dir: Option<&Path>, args: &[&str], input: Option<&str>) -> io::Result<String> {
    let mut cmd = std::process::Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Demo")
        .env("GIT_AUTHOR_EMAIL", "demo@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_NAME", "Demo")
        .env("GIT_COMMITTER_EMAIL", "demo@example.com")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(input.unwrap_or_default().as_bytes())?;
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "git {}: {status}: {}",
            args.join(" "),
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&stdout).trim().to_string())
}

/// The backend's `PATH_INFO` for a request path `/{org}/{repo}[.git]/{rest}` when
/// that repository exists under `root` (as `repo.git` or `repo`); `None` otherwise.
pub fn locate(root: &Path, path: &str) -> Option<String> {
    let mut parts = path.strip_prefix('/')?.splitn(3, '/');
    let (org, repo, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if !plain_segment(org) || !plain_segment(repo) || rest.is_empty() {
        return None;
    }
    let base = repo.strip_suffix(".git").unwrap_or(repo);
    let dir = [format!("{base}.git"), base.to_string()]
        .into_iter()
        .find(|name| root.join(org).join(name).join("HEAD").is_file())?;
    Some(format!("/{org}/{dir}/{rest}"))
}

/// A path segment that names a directory below the root and nothing else.
fn plain_segment(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.starts_with('.')
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Serves one Git request for the repository at `path_info`: 401 with a Basic
/// challenge without the demo credentials, else the backend's answer.
pub async fn serve(root: PathBuf, path_info: String, request: Request) -> Response {
    if !authorized(request.headers()) {
        return challenge();
    }
    match run_backend(&root, &path_info, request).await {
        Ok(response) => response,
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("git http-backend: {e}\n"),
        )
            .into_response(),
    }
}

/// 401 with `WWW-Authenticate`, so git asks for (or sends) credentials.
fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, r#"Basic realm="demo-tool""#)],
        "authentication required\n",
    )
        .into_response()
}

async fn run_backend(root: &Path, path_info: &str, request: Request) -> io::Result<Response> {
    let (parts, body) = request.into_parts();
    let mut child = backend_command(root, path_info, &parts).spawn()?;
    let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
    tokio::spawn(pump(body, stdin));
    let (head, rest) = read_cgi_head(&mut stdout).await?;
    let (status, headers) = parse_cgi_head(&head)?;
    let mut response = Response::new(Body::from_stream(body_stream(rest, stdout, child)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn missing(what: &str) -> io::Error {
    io::Error::other(format!("the backend's {what} is not piped"))
}

/// `git http-backend` with the CGI environment of the request (and nothing else of
/// the tool's environment but `PATH`).
fn backend_command(root: &Path, path_info: &str, parts: &Parts) -> Command {
    let text = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_default();
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("CONTENT_TYPE", text("content-type"))
        .env("REMOTE_USER", USER)
        .env("REMOTE_ADDR", remote);
    for (variable, name) in [
        ("CONTENT_LENGTH", "content-length"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
        ("GIT_PROTOCOL", "git-protocol"),
    ] {
        let value = text(name);
        if !value.is_empty() {
            cmd.env(variable, value);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// Copies the request body into the backend's stdin as it arrives, then closes it.
/// Stops early when the body fails or the backend stops reading.
async fn pump(body: Body, mut stdin: ChildStdin) {
    let mut chunks = body.into_data_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        if stdin.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = stdin.shutdown().await;
}

/// Reads the CGI header block (up to the first empty line); returns it and the body
/// bytes read past it.
async fn read_cgi_head(stdout: &mut ChildStdout) -> io::Result<(String, Bytes)> {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        if let Some((end, skip)) = head_end(&buffer) {
            let rest = Bytes::copy_from_slice(&buffer[end + skip..]);
            buffer.truncate(end);
            return Ok((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        if buffer.len() > MAX_CGI_HEAD {
            return Err(io::Error::other("CGI header block too long"));
        }
        let n = stdout.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "the backend ended before its headers: {:?}",
                String::from_utf8_lossy(&buffer)
            )));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Where the header block ends and the length of the blank line there.
fn head_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buffer.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(c), Some(l)) if l < c => Some((l, 2)),
        (Some(c), _) => Some((c, 4)),
        (None, Some(l)) => Some((l, 2)),
        (None, None) => None,
    }
}

/// The status (`Status: 404 Not Found`, default 200) and headers of a CGI header block.
fn parse_cgi_head(head: &str) -> io::Result<(StatusCode, HeaderMap)> {
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in head.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| io::Error::other(format!("bad CGI header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| io::Error::other(format!("bad CGI status {value:?}")))?;
            continue;
        }
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(io::Error::other)?;
        let value = HeaderValue::from_str(value).map_err(io::Error::other)?;
        headers.append(name, value);
    }
    Ok((status, headers))
}

/// The backend's stdout after the headers, chunk by chunk; the child is reaped at the
/// end (and killed if the client goes away first: `kill_on_drop`).
fn body_stream(
    first: Bytes,
    stdout: ChildStdout,
    child: Child,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send {
    let start = (Some(first), stdout, Some(child));
    futures::stream::unfold(start, |(first, mut stdout, mut child)| async move {
        if let Some(first) = first.filter(|b| !b.is_empty()) {
            return Some((Ok(first), (None, stdout, child)));
        }
        let mut chunk = vec![0u8; READ_CHUNK];
        match stdout.read(&mut chunk).await {
            Ok(0) => {
                if let Some(mut child) = child.take() {
                    let _ = child.wait().await;
                }
                None
            }
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(Bytes::from(chunk)), (None, stdout, child)))
            }
            Err(e) => Some((Err(e), (None, stdout, None))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_head_gives_status_and_headers() {
        let (status, headers) =
            parse_cgi_head("Status: 404 Not Found\r\nContent-Type: text/plain\r\n").unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["content-type"], "text/plain");
        let (status, _) = parse_cgi_head("Expires: Fri, 01 Jan 1980 00:00:00 GMT").unwrap();
        assert_eq!(status, StatusCode::OK);
    }

    #[test]
    fn head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"A: b\r\n\r\nbody\n\n"), Some((4, 4)));
        assert_eq!(head_end(b"A: b\n\nbody\r\n\r\n"), Some((4, 2)));
        assert_eq!(head_end(b"A: b\r\n"), None);
    }

    #[test]
    fn only_plain_segments_locate_a_repository() {
        let root = Path::new("/nonexistent-root");
        assert_eq!(locate(root, "/demo/repo.git/info/refs"), None);
        assert!(!plain_segment(".."));
        assert!(!plain_segment(".git"));
        assert!(plain_segment("repo.git"));
    }
}
