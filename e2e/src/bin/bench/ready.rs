//! Follows the benchmark's Connectors with one watch (never a GET per object) and
//! tallies how many are Ready, and when each became Ready.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connectors_operator::api::{Connector, find_condition};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::BenchError;
use crate::workload::{BENCH_LABEL, TARGET_LABEL};

/// What the watch has seen so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    /// The initial list is done: later changes are the operator's doing.
    pub synced: bool,
    /// Connectors of an answering tool with `Ready True`.
    pub tool_ready: usize,
    /// Connectors of the hanging target with `LivenessReady False`.
    pub hung_failed: usize,
}

#[derive(Default)]
struct Seen {
    /// When each answering Connector was first seen Ready.
    ready_at: HashMap<String, Instant>,
    hung_failed: HashMap<String, Instant>,
}

pub struct ReadyWatch {
    tally: tokio::sync::watch::Receiver<Tally>,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

fn key(connector: &Connector) -> String {
    format!(
        "{}/{}",
        connector.metadata.namespace.as_deref().unwrap_or_default(),
        connector.metadata.name.as_deref().unwrap_or_default()
    )
}

fn condition_is(connector: &Connector, type_: &str, status: &str) -> bool {
    let conditions = connector
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    find_condition(conditions, type_).is_some_and(|c| c.status == status)
}

impl ReadyWatch {
    /// Starts the watch and returns once its initial list is done.
    pub async fn start(client: &Client) -> Result<ReadyWatch, BenchError> {
        let (sender, mut tally) = tokio::sync::watch::channel(Tally::default());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stream = watcher(
            Api::<Connector>::all(client.clone()),
            watcher::Config::default().labels(BENCH_LABEL),
        )
        .default_backoff();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut stream = std::pin::pin!(stream);
                let mut synced = false;
                while let Some(event) = stream.next().await {
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    match event {
                        Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => {
                            let key = key(&c);
                            let hung =
                                c.labels().get(TARGET_LABEL).map(String::as_str) == Some("hung");
                            let (set, reached) = if hung {
                                (
                                    &mut seen.hung_failed,
                                    condition_is(&c, "LivenessReady", "False"),
                                )
                            } else {
                                (&mut seen.ready_at, condition_is(&c, "Ready", "True"))
                            };
                            if reached {
                                set.entry(key).or_insert_with(Instant::now);
                            } else {
                                set.remove(&key);
                            }
                        }
                        Ok(watcher::Event::Delete(c)) => {
                            let key = key(&c);
                            seen.ready_at.remove(&key);
                            seen.hung_failed.remove(&key);
                        }
                        Ok(watcher::Event::InitDone) => synced = true,
                        Ok(watcher::Event::Init) => {}
                        // The watcher retries with backoff; a gap only delays the tally.
                        Err(e) => eprintln!("bench: Connector watch: {e}"),
                    }
                    sender.send_replace(Tally {
                        synced,
                        tool_ready: seen.ready_at.len(),
                        hung_failed: seen.hung_failed.len(),
                    });
                }
            }
        });
        let watch = ReadyWatch {
            tally: tally.clone(),
            seen,
            task,
        };
        let synced = tokio::time::timeout(Duration::from_secs(120), tally.wait_for(|t| t.synced));
        match synced.await {
            Ok(Ok(_)) => Ok(watch),
            _ => Err(BenchError::Timeout {
                what: "the Connector watch's initial list".into(),
                after: Duration::from_secs(120),
            }),
        }
    }

    /// Waits until `reached` holds for the tally; returns the tally then.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        reached: impl FnMut(&Tally) -> bool,
    ) -> Result<Tally, BenchError> {
        let mut tally = self.tally.clone();
        match tokio::time::timeout(timeout, tally.wait_for(reached)).await {
            Ok(Ok(t)) => Ok(*t),
            _ => Err(BenchError::Timeout {
                what: format!("{what} (last tally {:?})", *self.tally.borrow()),
                after: timeout,
            }),
        }
    }

    /// Seconds from `start` until each answering Connector was first seen Ready, sorted.
    pub fn ready_seconds(&self, start: Instant) -> Vec<f64> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut secs: Vec<f64> = seen
            .ready_at
            .values()
            .map(|at| at.saturating_duration_since(start).as_secs_f64())
            .collect();
        secs.sort_by(f64::total_cmp);
        secs
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `q` quantile (0..=1) of sorted values; 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_values() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 51.0);
        assert_eq!(quantile(&v, 1.0), 101.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
