//! The request log: every request the tool receives (but those to `/_requests`), its
//! method, path with query and headers, the last [`CAPACITY`] kept in memory.
//! `GET /_requests` lists them as JSON, `DELETE /_requests` clears them.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;

/// Entries kept; older ones are dropped first.
const CAPACITY: usize = 10_000;

/// The path of the log's own route, never recorded.
pub const PATH: &str = "/_requests";

#[derive(Default)]
pub struct RequestLog(Mutex<VecDeque<Value>>);

impl RequestLog {
    fn entries(&self) -> std::sync::MutexGuard<'_, VecDeque<Value>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, entry: Value) {
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }
}

/// Middleware: records the request, then runs it.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() != PATH {
        state.log.push(entry(&request));
    }
    next.run(request).await
}

fn entry(request: &Request) -> Value {
    let uri = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    let headers: Vec<[String; 2]> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            [
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect();
    json!({"method": request.method().as_str(), "uri": uri, "headers": headers})
}

/// `GET /_requests`: the log as a JSON array, oldest first.
pub async fn list(State(state): State<AppState>) -> Response {
    let body = Value::Array(state.log.entries().iter().cloned().collect()).to_string();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `DELETE /_requests`: empties the log.
pub async fn clear(State(state): State<AppState>) -> StatusCode {
    state.log.entries().clear();
    StatusCode::NO_CONTENT
}
