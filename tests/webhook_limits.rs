//! What an unauthenticated client can cost the webhook (SPEC section 6): real TCP and
//! TLS clients against the real server in cert-directory mode (the self-managed mode
//! serves through the same `tls::serve`). Half-sent heads and bodies are cut off
//! within their timeouts, a body over 3 MiB gets 413, and a flood of slow connections
//! beyond the cap neither keeps a fresh review out nor stays open.

mod webhook_support;

use std::time::{Duration, Instant};

use connectors_operator::admission::{self, tls};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webhook_support::{class_review, read_until_closed, review, start, tls_connect};

const HALF_A_HEAD: &[u8] =
    b"POST /validate/connectorclasses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl";

#[tokio::test]
async fn a_half_sent_request_head_is_cut_off_within_the_header_timeout() {
    let webhook = start("head").await;
    let mut conn = tls_connect(&webhook, b"http/1.1").await;
    conn.write_all(HALF_A_HEAD).await.unwrap();
    conn.flush().await.unwrap();
    let limit = tls::HEADER_READ_TIMEOUT + Duration::from_secs(3);
    let (_, closed) = read_until_closed(&mut conn, limit).await;
    let closed = closed.expect("the connection is still open after the header read timeout");
    assert!(
        closed >= tls::HEADER_READ_TIMEOUT - Duration::from_millis(500),
        "{closed:?}"
    );
    // The server still answers.
    let (status, _) = review(&webhook, class_review("after", 0)).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_half_sent_body_gets_408_within_the_body_timeout() {
    let webhook = start("body").await;
    let mut conn = tls_connect(&webhook, b"http/1.1").await;
    let body = class_review("slow", 0);
    let head = format!(
        "POST /validate/connectorclasses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..body.len() / 2]).await.unwrap();
    conn.flush().await.unwrap();
    let limit = admission::BODY_READ_TIMEOUT + Duration::from_secs(3);
    let start = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(limit, conn.read(&mut buf))
        .await
        .expect("no answer to a half-sent body after the body read timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(start.elapsed() >= admission::BODY_READ_TIMEOUT - Duration::from_millis(500));
}

#[tokio::test]
async fn a_body_over_3_mib_gets_413_declared_or_chunked() {
    let webhook = start("large").await;
    assert_eq!(admission::MAX_REVIEW_BYTES, 3 * 1024 * 1024);
    // Just under the limit: judged (a denial of the broken class, 200 with the review).
    let fits = class_review("fits", admission::MAX_REVIEW_BYTES - 2048);
    assert!(fits.len() <= admission::MAX_REVIEW_BYTES);
    let (status, body) = review(&webhook, fits).await.unwrap();
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["uid"], "fits");
    // A well-formed review just over the limit, with Content-Length.
    let over = class_review("over", admission::MAX_REVIEW_BYTES + 1);
    let (status, _) = review(&webhook, over.clone()).await.unwrap();
    assert_eq!(status, 413);

    // The same without Content-Length (chunked), over a raw connection.
    let mut conn = tls_connect(&webhook, b"http/1.1").await;
    conn.write_all(b"POST /validate/connectorclasses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    for chunk in over.chunks(64 * 1024) {
        let framed = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.to_vec(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if conn.write_all(&framed).await.is_err() {
            break; // the server answered and closed
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let (received, _) = read_until_closed(&mut conn, Duration::from_secs(10)).await;
    answer.extend(received);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn slow_connections_beyond_the_cap_are_closed_and_do_not_keep_a_review_out() {
    let webhook = start("flood").await;
    let extra = 16;
    let mut slow = Vec::new();
    // Half never start TLS, half send half a request head; oldest first.
    for i in 0..tls::MAX_CONNECTIONS + extra {
        if i % 2 == 0 {
            let tcp = TcpStream::connect(webhook.addr).await.unwrap();
            slow.push(tokio::spawn(async move {
                let mut tcp = tcp;
                read_until_closed(&mut tcp, Duration::from_secs(4)).await.1
            }));
        } else {
            let mut conn = tls_connect(&webhook, b"http/1.1").await;
            conn.write_all(HALF_A_HEAD).await.unwrap();
            conn.flush().await.unwrap();
            slow.push(tokio::spawn(async move {
                read_until_closed(&mut conn, Duration::from_secs(4)).await.1
            }));
        }
    }
    // A fresh, well-formed review is answered at once.
    let start = Instant::now();
    let (status, body) = review(&webhook, class_review("fresh", 0)).await.unwrap();
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["uid"], "fresh");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The cap holds: at least the excess (and the one the review displaced) were
    // closed long before any read timeout.
    let mut closed_early = 0;
    for task in slow {
        if task.await.unwrap().is_some() {
            closed_early += 1;
        }
    }
    assert!(
        closed_early > extra,
        "only {closed_early} slow connections were closed"
    );
}

#[tokio::test]
async fn an_http2_connection_without_a_request_is_closed_after_the_idle_timeout() {
    let webhook = start("h2-idle").await;
    let mut conn = tls_connect(&webhook, b"h2").await;
    assert_eq!(conn.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    // The client preface, empty SETTINGS, then the first 8 bytes of a 64-byte
    // HEADERS frame on stream 1: a request head that never completes.
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    conn.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    conn.write_all(&[0, 0, 64, 1, 4, 0, 0, 0, 1]).await.unwrap();
    conn.write_all(&[0x82, 0x86, 0x84, 0x41, 0x8a, 0x08, 0x9d, 0x5c])
        .await
        .unwrap();
    conn.flush().await.unwrap();
    let limit = tls::IDLE_TIMEOUT + tls::HEADER_READ_TIMEOUT + Duration::from_secs(3);
    let (_, closed) = read_until_closed(&mut conn, limit).await;
    let closed = closed.expect("the HTTP/2 connection is still open after the idle timeout");
    assert!(
        closed >= tls::IDLE_TIMEOUT - Duration::from_secs(1),
        "{closed:?}"
    );
}
