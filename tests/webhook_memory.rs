//! Memory stays bounded while many clients send large bodies slowly (issue 20: 30 slow
//! connections with 8 MiB bodies took the process past its 256Mi limit). Its own test
//! binary, so the resident size measured is this scenario's alone.

mod webhook_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors_operator::admission;
use tokio::io::AsyncWriteExt;
use webhook_support::{class_review, review, start, tls_connect};

/// Resident set size of this process (server and clients), in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_large_bodies_stay_within_the_body_budget_and_reviews_still_pass() {
    let webhook = start("memory").await;
    let connections = 48;
    let body = Arc::new(class_review("big", admission::MAX_REVIEW_BYTES - 64 * 1024));
    let before = rss();
    let mut senders = Vec::new();
    for _ in 0..connections {
        let mut conn = tls_connect(&webhook, b"http/1.1").await;
        let body = body.clone();
        senders.push(tokio::spawn(async move {
            let head = format!(
                "POST /validate/connectorclasses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await.ok()?;
            // All but the last byte, as fast as the server takes it; then hold on.
            conn.write_all(&body[..body.len() - 1]).await.ok()?;
            conn.flush().await.ok()?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            Some(conn)
        }));
    }
    // Give the server time to buffer what it accepts (well inside the body timeout).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = rss();
    // A small review is answered at once despite the flood.
    let start = Instant::now();
    let (status, _) = review(&webhook, class_review("fresh", 0)).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let grown = during.saturating_sub(before) / (1024 * 1024);
    eprintln!("resident size grew by {grown} MiB");
    let offered = connections * body.len() / (1024 * 1024);
    assert!(
        grown < 64,
        "resident size grew by {grown} MiB while {offered} MiB of bodies were offered"
    );
    for sender in senders {
        sender.abort();
    }
}
