//! The demo tool as a real Git server and as a target for proxy tests, with the real
//! `git` client and a plain TCP client: no operator, no cluster.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use connectors_e2e::git::{self, PASSWORD, ScratchDir, USER};
use connectors_e2e::process::DemoTool;
use serde_json::Value;

/// A parsed HTTP/1.1 answer.
struct Reply {
    status: u16,
    /// Header lines, names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body expected ({e}): {}", self.text()))
    }
}

fn connect(tool: &DemoTool) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", tool.port)).expect("connect to demo-tool");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    stream
}

/// Reads the status line and headers.
fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    (status, headers)
}

/// Sends `head` (request line and headers, without the blank line; `Connection: close`
/// is added) and `body`, then reads the answer to the end of the connection.
fn send(tool: &DemoTool, head: &str, body: &[u8]) -> Reply {
    let mut stream = connect(tool);
    write!(
        stream,
        "{head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send head");
    stream.write_all(body).expect("send body");
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let mut body = Vec::new();
    reader.read_to_end(&mut body).expect("read body");
    Reply {
        status,
        headers,
        body,
    }
}

fn get(tool: &DemoTool, path: &str, headers: &str) -> Reply {
    let head = format!("GET {path} HTTP/1.1{headers}");
    send(tool, head.trim_end(), b"")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("\r\nAuthorization: Basic {token}")
}

/// The request log of the tool.
fn requests(tool: &DemoTool) -> Vec<Value> {
    let log = get(tool, "/_requests", "").json();
    log.as_array().expect("a JSON array").clone()
}

#[test]
fn clone_with_the_right_credentials_gets_the_demo_repository() {
    let tool = DemoTool::start();
    let scratch = ScratchDir::new("git-clone");
    let url = git::with_userinfo(&tool.repo_url(), USER, PASSWORD);
    let out = git::clone(&url, &scratch.join("repo"), &[]);
    git::assert_success(&out, "clone");
    let readme = std::fs::read_to_string(scratch.join("repo/README.md")).expect("README");
    assert!(readme.contains("demo/repo"), "{readme}");
    let log = requests(&tool);
    // git asks without credentials first, gets the challenge, then sends them.
    let statuses: Vec<(String, i64)> = log
        .iter()
        .map(|e| {
            (
                e["uri"].as_str().unwrap_or_default().to_string(),
                e["status"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&(
            "/demo/repo.git/info/refs?service=git-upload-pack".into(),
            401
        )) && statuses.contains(&(
            "/demo/repo.git/info/refs?service=git-upload-pack".into(),
            200
        )),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .any(|(uri, status)| uri == "/demo/repo.git/git-upload-pack" && *status == 200)
    );
}

#[test]
fn a_wrong_password_fails_with_the_auth_error_and_a_logged_401() {
    let tool = DemoTool::start();
    let scratch = ScratchDir::new("git-wrong");
    let url = git::with_userinfo(&tool.repo_url(), USER, "wrong password/?#");
    let out = git::clone(&url, &scratch.join("repo"), &[]);
    assert!(
        !out.status.success(),
        "clone with a wrong password succeeded"
    );
    let stderr = git::stderr(&out);
    assert!(stderr.contains("Authentication failed"), "{stderr}");
    let log = requests(&tool);
    let wrong = basic(USER, "wrong password/?#");
    let wrong = wrong.trim_start().trim_start_matches("Authorization: ");
    assert!(
        log.iter().any(|e| e["status"] == 401
            && e["headers"]
                .as_array()
                .is_some_and(|h| h.iter().any(|p| p[0] == "authorization" && p[1] == wrong))),
        "no 401 for the wrong credentials in {log:?}"
    );
}

#[test]
fn a_commit_with_a_100_mb_file_pushes_and_clones_back_with_little_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let tool = DemoTool::start();
    let scratch = ScratchDir::new("git-push");
    let url = git::with_userinfo(&tool.repo_url(), USER, PASSWORD);
    let work = scratch.join("work");
    git::assert_success(&git::clone(&url, &work, &[]), "clone");
    git::commit_file(&work, "big.bin", SIZE);
    let before = tool.peak_rss_kib();
    git::assert_success(&git::push(&work, &[]), "push of 100 MB");
    let after_push = tool.peak_rss_kib();
    let fresh = scratch.join("fresh");
    git::assert_success(&git::clone(&url, &fresh, &[]), "fresh clone");
    let size = std::fs::metadata(fresh.join("big.bin"))
        .expect("big.bin cloned")
        .len();
    assert_eq!(size, SIZE);
    let after_clone = tool.peak_rss_kib();
    eprintln!(
        "demo-tool peak RSS (VmHWM): before push {before:?} KiB, after push {after_push:?} KiB, after clone {after_clone:?} KiB"
    );
    if let Some(peak) = after_clone {
        assert!(
            peak < 64 * 1024,
            "demo-tool peak RSS {peak} KiB: the push or clone was buffered"
        );
    }
    // git probes with a 4-byte body first, then sends the pack chunked.
    let chunked_push = requests(&tool).into_iter().any(|e| {
        e["uri"] == "/demo/repo.git/git-receive-pack"
            && e["status"] == 200
            && e["headers"].as_array().is_some_and(|h| {
                h.iter()
                    .any(|p| p[0] == "transfer-encoding" && p[1] == "chunked")
            })
    });
    assert!(chunked_push, "no chunked receive-pack request answered 200");
}

#[test]
fn the_stand_in_answers_for_missing_repositories_are_unchanged() {
    let tool = DemoTool::start();
    let ok = get(&tool, "/org/repo/info/refs", &basic(USER, PASSWORD));
    assert_eq!(
        (ok.status, ok.text().as_str()),
        (200, "001e# service=git-upload-pack\n")
    );
    let refused = get(&tool, "/org/repo/info/refs", &basic(USER, "nope"));
    assert_eq!(
        (refused.status, refused.text().as_str()),
        (401, "authentication required\n")
    );
    assert_eq!(refused.header("www-authenticate"), None);
    assert_eq!(get(&tool, "/org/repo/info/refs", "").status, 401);
    // The real repository challenges.
    let real = get(
        &tool,
        "/demo/repo.git/info/refs?service=git-upload-pack",
        "",
    );
    assert_eq!(real.status, 401);
    assert_eq!(
        real.header("www-authenticate"),
        Some(r#"Basic realm="demo-tool""#)
    );
    assert_eq!(get(&tool, "/", "").text(), r#"{"status":"healthy"}"#);
}

#[test]
fn echo_answers_the_request_and_refuses_big_bodies() {
    let tool = DemoTool::start();
    let head = "POST /echo/a/b?x=1&y=2 HTTP/1.1\r\nX-Test: one\r\nContent-Length: 5";
    let echo = send(&tool, head, b"hello").json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo/a/b");
    assert_eq!(echo["query"], "x=1&y=2");
    assert_eq!(echo["body"], "hello");
    assert_eq!(echo["body_len"], 5);
    let headers = echo["headers"].as_array().expect("headers");
    assert!(
        headers.iter().any(|p| p[0] == "x-test" && p[1] == "one"),
        "{headers:?}"
    );
    let binary = send(
        &tool,
        "PUT /echo HTTP/1.1\r\nContent-Length: 2",
        b"\xff\xfe",
    )
    .json();
    assert_eq!(
        (binary["body"].clone(), binary["body_len"].clone()),
        (Value::Null, 2.into())
    );
    // Refused on the declared length, before any body byte (a body the server does
    // not read would race its answer with a connection reset).
    let head = format!(
        "POST /echo HTTP/1.1\r\nContent-Length: {}",
        2 * 1024 * 1024 + 1
    );
    assert_eq!(send(&tool, &head, b"").status, 413);
    // The log holds these requests (but not its own route); DELETE empties it.
    let log = requests(&tool);
    assert!(
        log.iter()
            .any(|e| e["uri"] == "/echo/a/b?x=1&y=2" && e["method"] == "POST")
    );
    assert!(!log.iter().any(|e| e["uri"] == "/_requests"));
    assert_eq!(send(&tool, "DELETE /_requests HTTP/1.1", b"").status, 204);
    assert_eq!(requests(&tool), Vec::<Value>::new());
}

#[test]
fn bytes_and_sink_stream() {
    const SIZE: u64 = 64 * 1024 * 1024 + 7;
    let tool = DemoTool::start();
    let mut stream = connect(&tool);
    write!(
        stream,
        "GET /bytes/{SIZE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    assert_eq!(status, 200);
    assert!(
        headers.contains(&("content-length".into(), SIZE.to_string())),
        "{headers:?}"
    );
    let read = std::io::copy(&mut reader, &mut std::io::sink()).expect("read bytes");
    assert_eq!(read, SIZE);
    // A sized and a chunked upload, written 1 MiB at a time.
    let chunk = vec![7u8; 1024 * 1024];
    let mut stream = connect(&tool);
    write!(
        stream,
        "POST /sink HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        64 * chunk.len()
    )
    .expect("send");
    for _ in 0..64 {
        stream.write_all(&chunk).expect("send body");
    }
    let mut reader = BufReader::new(stream);
    let (status, _) = read_head(&mut reader);
    let mut body = String::new();
    reader.read_to_string(&mut body).expect("answer");
    assert_eq!((status, body.as_str()), (200, r#"{"received":67108864}"#));
    let mut stream = connect(&tool);
    write!(
        stream,
        "PUT /sink HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .expect("send");
    for _ in 0..16 {
        write!(stream, "{:x}\r\n", chunk.len()).expect("chunk size");
        stream.write_all(&chunk).expect("chunk");
        stream.write_all(b"\r\n").expect("chunk end");
    }
    stream.write_all(b"0\r\n\r\n").expect("last chunk");
    let mut reader = BufReader::new(stream);
    let (status, _) = read_head(&mut reader);
    let mut body = String::new();
    reader.read_to_string(&mut body).expect("answer");
    assert_eq!((status, body.as_str()), (200, r#"{"received":16777216}"#));
}

#[test]
fn redirect_and_upgrade() {
    let tool = DemoTool::start();
    let redirect = get(&tool, "/redirect?to=http://example.com/x", "");
    assert_eq!(redirect.status, 302);
    assert_eq!(redirect.header("location"), Some("http://example.com/x"));
    // Upgraded: every byte comes back.
    let mut stream = connect(&tool);
    write!(
        stream,
        "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo-test\r\n\r\n"
    )
    .expect("send");
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let (status, headers) = read_head(&mut reader);
    assert_eq!(status, 101);
    assert!(
        headers.contains(&("upgrade".into(), "echo-test".into())),
        "{headers:?}"
    );
    for message in [&b"ping"[..], b"\x00\xffbinary", b"last"] {
        stream
            .write_all(message)
            .expect("send on the upgraded connection");
        let mut back = vec![0u8; message.len()];
        reader.read_exact(&mut back).expect("echo");
        assert_eq!(back, message);
    }
    let plain = get(&tool, "/upgrade", "");
    assert_eq!(plain.status, 426);
    let refused = get(
        &tool,
        "/upgrade-refused",
        "\r\nConnection: Upgrade\r\nUpgrade: echo-test",
    );
    assert_eq!((refused.status, refused.text().as_str()), (200, "ok"));
}

#[test]
fn the_repository_answers_without_the_git_suffix_over_protocol_v0_too() {
    let tool = DemoTool::start();
    let scratch = ScratchDir::new("git-plain");
    let url = git::with_userinfo(&format!("{}/demo/repo", tool.url()), USER, PASSWORD);
    let out = git::clone(&url, &scratch.join("repo"), &["protocol.version=0"]);
    git::assert_success(&out, "clone of /demo/repo with protocol v0");
    assert!(scratch.join("repo/README.md").is_file());
    let v2 = git::clone(&url, &scratch.join("v2"), &["protocol.version=2"]);
    git::assert_success(&v2, "clone of /demo/repo with protocol v2");
    let log = requests(&tool);
    let sent_v2 = log.iter().any(|e| {
        e["headers"].as_array().is_some_and(|h| {
            h.iter()
                .any(|p| p[0] == "git-protocol" && p[1] == "version=2")
        })
    });
    assert!(sent_v2, "no Git-Protocol header in {log:?}");
}

#[test]
fn a_gzip_request_body_reaches_the_backend_decoded() {
    let tool = DemoTool::start();
    let head = git::run_ok(
        tool.git_root(),
        &["--git-dir=demo/repo.git", "rev-parse", "main"],
    );
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let request = format!("0032want {head}\n00000009done\n");
    let mut gzip = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = gzip.stdin.take().expect("gzip stdin");
    stdin.write_all(request.as_bytes()).expect("write to gzip");
    drop(stdin);
    let body = gzip.wait_with_output().expect("gzip output").stdout;
    let head = format!(
        "POST /demo/repo.git/git-upload-pack HTTP/1.1{}\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Encoding: gzip\r\nContent-Length: {}",
        basic(USER, PASSWORD),
        body.len()
    );
    let reply = send(&tool, &head, &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    // Chunked on the wire: the NAK line, then the pack.
    let holds = |part: &[u8]| reply.body.windows(part.len()).any(|w| w == part);
    assert!(holds(b"0008NAK\n") && holds(b"PACK"), "{:?}", reply.text());
}
