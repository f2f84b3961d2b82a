//! A gate that opens once a process's watch caches are filled.

use std::future::Future;

/// The caches behind a gate stopped before they were filled.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the watch caches stopped before they were filled")]
pub struct CachesStopped;

/// Open once the watch caches a process reads hold their first full list.
///
/// `Store::wait_until_ready` wakes only its most recent waiter (kube-runtime keeps one
/// oneshot receiver), so concurrent reconciles waiting on it directly could hang
/// forever. Exactly one task waits on the stores here and publishes the result on a
/// watch channel, which wakes every waiter.
#[derive(Clone)]
pub struct CachesReady(tokio::sync::watch::Receiver<bool>);

impl CachesReady {
    /// `filled` resolves to `true` once every cache holds its first list (for example
    /// `store.wait_until_ready().await.is_ok()` for each store, in turn).
    pub fn spawn(filled: impl Future<Output = bool> + Send + 'static) -> Self {
        let (ready, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if filled.await {
                // A start-up milestone for reading the log (time to first reconcile).
                tracing::info!("watch caches filled");
                let _ = ready.send(true);
            }
            // Otherwise `ready` is dropped and waiters get an error.
        });
        CachesReady(rx)
    }

    /// Whether the caches are filled now.
    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }

    pub async fn wait(&self) -> Result<(), CachesStopped> {
        self.0
            .clone()
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| CachesStopped)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::runtime::{reflector, watcher};

    use super::*;

    /// Many reconciles wait at once before the caches are filled; all must go on.
    #[tokio::test]
    async fn every_waiter_sees_the_caches_become_ready() {
        let (maps, mut map_writer) = reflector::store::<ConfigMap>();
        let (secrets, mut secret_writer) = reflector::store::<Secret>();
        let gate = CachesReady::spawn(async move {
            maps.wait_until_ready().await.is_ok() && secrets.wait_until_ready().await.is_ok()
        });
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.wait().await.is_ok() })
            })
            .collect();
        tokio::task::yield_now().await;
        for event in [watcher::Event::Init, watcher::Event::InitDone] {
            map_writer.apply_watcher_event(&event);
        }
        for event in [watcher::Event::Init, watcher::Event::InitDone] {
            secret_writer.apply_watcher_event(&event);
        }
        for waiter in waiters {
            let done = tokio::time::timeout(Duration::from_secs(5), waiter).await;
            assert!(matches!(done, Ok(Ok(true))), "a waiter was never woken");
        }
    }

    #[tokio::test]
    async fn waiters_get_an_error_when_the_caches_stop() {
        let gate = CachesReady::spawn(async { false });
        assert!(gate.wait().await.is_err());
    }
}
