//! How a process's watchers fill their caches: one streaming list where the apiserver
//! serves it, else kube's list pages then a watch.
//!
//! A streaming list (`sendInitialEvents=true`, KEP 3157) is one watch request: the
//! apiserver sends the current objects from its watch cache as events, then a bookmark
//! marked `k8s.io/initial-events-end`, then the changes: one request where kube's
//! default takes 20 list pages of 500 for 10,000 Connectors, and the objects arrive
//! one by one instead of a page at a time (timings in docs/benchmarks.md). The `WatchList`
//! feature gate that serves it is on by default in 1.32 and in recent releases (1.37,
//! the e2e control plane) but off in 1.33, and may be turned off anywhere; kube's
//! watcher does not fall back when it is refused (it retries the refused watch
//! forever). So each component that watches asks once, when it starts, with a watch
//! that can match nothing, and every one of its watchers uses the answer.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

/// Annotation of the bookmark that ends a streaming list's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// A label selector no object matches (the label both present and absent), so that the
/// question costs the apiserver one bookmark.
const MATCHES_NOTHING: &str =
    "connectors.alauda.io/initial-list-probe,!connectors.alauda.io/initial-list-probe";

/// How long the question may take: an apiserver that ignores `sendInitialEvents` (older
/// than 1.27) starts a plain watch and sends nothing, which the deadline turns into
/// [`InitialLists::Paged`].
const ASK_DEADLINE: Duration = Duration::from_secs(5);

/// How every watcher of a process makes its first list (and a re-list after a gap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialLists {
    /// One watch request that sends the current objects, then the changes.
    Streaming,
    /// List pages of 500 (kube's default), then a watch.
    Paged,
}

impl InitialLists {
    /// Asks the apiserver through `api` (any resource the process may watch) whether
    /// it serves streaming lists. Any failure, refusal or silence means [`Self::Paged`]
    /// until the process restarts: pages work on every apiserver.
    pub async fn ask<K>(api: &Api<K>) -> InitialLists
    where
        K: Clone + DeserializeOwned + std::fmt::Debug + 'static,
    {
        let question = WatchParams::streaming_lists()
            .labels(MATCHES_NOTHING)
            .timeout(ASK_DEADLINE.as_secs() as u32);
        let answer = tokio::time::timeout(ASK_DEADLINE, async {
            match api.watch(&question, "0").await {
                Ok(events) => FirstEvent::from_stream(events).await,
                Err(e) => FirstEvent::Refused(e.to_string()),
            }
        })
        .await
        .unwrap_or(FirstEvent::Silent);
        let lists = answer.lists();
        match &answer {
            FirstEvent::Refused(why) => {
                tracing::info!(reason = %why, "streaming lists refused: watchers list in pages")
            }
            FirstEvent::Silent | FirstEvent::Other => {
                tracing::info!("no streaming list answer: watchers list in pages")
            }
            FirstEvent::InitialEventsEnd => tracing::info!("watchers use streaming lists"),
        }
        lists
    }

    /// kube's watcher configuration for this way of listing.
    pub fn config(self) -> watcher::Config {
        match self {
            InitialLists::Streaming => watcher::Config::default().streaming_lists(),
            InitialLists::Paged => watcher::Config::default(),
        }
    }
}

/// What the question's watch first said.
#[derive(Debug, PartialEq, Eq)]
enum FirstEvent {
    /// The bookmark that ends the (empty) initial events: streaming lists work.
    InitialEventsEnd,
    /// The request or its first event was an error (422 where the gate is off).
    Refused(String),
    /// Anything else first (a plain bookmark: the parameter was ignored).
    Other,
    /// Nothing before the stream ended or the deadline passed.
    Silent,
}

impl FirstEvent {
    async fn from_stream<K>(
        events: impl Stream<Item = Result<WatchEvent<K>, kube::Error>>,
    ) -> FirstEvent {
        let mut events = std::pin::pin!(events);
        FirstEvent::of(events.next().await)
    }

    fn of<K>(first: Option<Result<WatchEvent<K>, kube::Error>>) -> FirstEvent {
        match first {
            None => FirstEvent::Silent,
            Some(Err(e)) => FirstEvent::Refused(e.to_string()),
            Some(Ok(WatchEvent::Error(status))) => {
                FirstEvent::Refused(format!("{} ({})", status.message, status.code))
            }
            Some(Ok(WatchEvent::Bookmark(bookmark)))
                if bookmark
                    .metadata
                    .annotations
                    .get(INITIAL_EVENTS_END)
                    .is_some_and(|v| v == "true") =>
            {
                FirstEvent::InitialEventsEnd
            }
            Some(Ok(_)) => FirstEvent::Other,
        }
    }

    fn lists(&self) -> InitialLists {
        match self {
            FirstEvent::InitialEventsEnd => InitialLists::Streaming,
            _ => InitialLists::Paged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;

    fn first(json: &str) -> FirstEvent {
        let event: WatchEvent<DynamicObject> = serde_json::from_str(json).unwrap();
        FirstEvent::of(Some(Ok(event)))
    }

    #[test]
    fn the_bookmark_ending_the_initial_events_means_streaming() {
        let answer = first(
            r#"{"type":"BOOKMARK","object":{"kind":"Connector","apiVersion":"connectors.alauda.io/v1alpha1",
               "metadata":{"resourceVersion":"42","annotations":{"k8s.io/initial-events-end":"true"}}}}"#,
        );
        assert_eq!(answer, FirstEvent::InitialEventsEnd);
        assert_eq!(answer.lists(), InitialLists::Streaming);
    }

    #[test]
    fn a_refusal_a_plain_bookmark_or_silence_means_pages() {
        let refused = first(
            r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure",
               "message":"sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
               "reason":"Invalid","code":422}}"#,
        );
        assert!(
            matches!(&refused, FirstEvent::Refused(why) if why.contains("422") && why.contains("WatchList")),
            "{refused:?}"
        );
        let plain = first(
            r#"{"type":"BOOKMARK","object":{"kind":"Connector","apiVersion":"connectors.alauda.io/v1alpha1",
               "metadata":{"resourceVersion":"42"}}}"#,
        );
        assert_eq!(plain, FirstEvent::Other);
        let silent = FirstEvent::of::<DynamicObject>(None);
        assert_eq!(silent, FirstEvent::Silent);
        for answer in [refused, plain, silent] {
            assert_eq!(answer.lists(), InitialLists::Paged);
        }
    }

    #[test]
    fn each_way_sets_the_watcher_strategy() {
        assert_eq!(
            InitialLists::Streaming.config().initial_list_strategy,
            watcher::InitialListStrategy::StreamingList
        );
        assert_eq!(
            InitialLists::Paged.config(),
            watcher::Config::default(),
            "pages are kube's defaults"
        );
    }
}
