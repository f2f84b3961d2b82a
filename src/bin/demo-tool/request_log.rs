//! The request log: every request the tool receives (but those to `/_requests`), its
//! method, path with query and headers, and the status of the answer once known
//! (`null` before); the last [`CAPACITY`] kept in memory. `GET /_requests` lists them
//! as JSON, `DELETE /_requests` clears them.

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

/// The entries (sequence number, JSON) and the next sequence number.
#[derive(Default)]
pub struct RequestLog(Mutex<(VecDeque<(u64, Value)>, u64)>);

type Entries<'a> = std::sync::MutexGuard<'a, (VecDeque<(u64, Value)>, u64)>;

impl RequestLog {
    fn entries(&self) -> Entries<'_> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends an entry; returns its sequence number.
    fn push(&self, entry: Value) -> u64 {
        let mut guard = self.entries();
        let (entries, next) = &mut *guard;
        if entries.len() >= CAPACITY {
            entries.pop_front();
        }
        let id = *next;
        *next += 1;
        entries.push_back((id, entry));
        id
    }

    /// Sets the status of entry `id` (unless it was dropped or cleared since).
    fn set_status(&self, id: u64, status: StatusCode) {
        let mut guard = self.entries();
        let entries = &mut guard.0;
        if let Ok(at) = entries.binary_search_by_key(&id, |(i, _)| *i) {
            entries[at].1["status"] = status.as_u16().into();
        }
    }
}

/// Middleware: records the request, runs it, then records the answer's status.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == PATH {
        return next.run(request).await;
    }
    let id = state.log.push(entry(&request));
    let response = next.run(request).await;
    state.log.set_status(id, response.status());
    response
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
    json!({
        "method": request.method().as_str(),
        "uri": uri,
        "headers": headers,
        "status": null,
    })
}

/// `GET /_requests`: the log as a JSON array, oldest first.
pub async fn list(State(state): State<AppState>) -> Response {
    let entries = state
        .log
        .entries()
        .0
        .iter()
        .map(|(_, e)| e.clone())
        .collect();
    let body = Value::Array(entries).to_string();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// `DELETE /_requests`: empties the log.
pub async fn clear(State(state): State<AppState>) -> StatusCode {
    state.log.entries().0.clear();
    StatusCode::NO_CONTENT
}
