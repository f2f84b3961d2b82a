//! Tool Secrets and Connector CA Secrets, read on demand (GET) and kept a short time
//! (SPEC-proxy section 1: never watched cluster-wide). Only the Connector's own
//! namespace is ever asked.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::runtime::{KeyLocks, TtlCache};

use super::metrics::DataPlaneMetrics;

pub struct SecretSource {
    client: Client,
    ttl: Duration,
    cache: TtlCache<(String, String), Option<Arc<Secret>>>,
    fetches: KeyLocks<(String, String)>,
}

impl SecretSource {
    pub fn new(client: Client, ttl: Duration) -> Self {
        SecretSource {
            client,
            ttl,
            cache: TtlCache::new(20_000),
            fetches: KeyLocks::default(),
        }
    }

    /// The Secret, `None` when it does not exist. The error names the Secret, never
    /// its content.
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
        metrics: &DataPlaneMetrics,
    ) -> Result<Option<Arc<Secret>>, String> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(cached) = self.cache.get(&key) {
            metrics.cache_lookup("secret", true);
            return Ok(cached);
        }
        // One GET per Secret at a time; the others read what it found.
        let _fetching = self.fetches.lock(&key).await;
        if let Some(cached) = self.cache.get(&key) {
            metrics.cache_lookup("secret", true);
            return Ok(cached);
        }
        metrics.cache_lookup("secret", false);
        metrics.apiserver_request("secret");
        let api = Api::<Secret>::namespaced(self.client.clone(), namespace);
        let found = tokio::time::timeout(Duration::from_secs(10), api.get_opt(name))
            .await
            .map_err(|_| format!("reading Secret {namespace}/{name} timed out"))?
            .map_err(|e| match e {
                kube::Error::Api(status) => {
                    format!(
                        "reading Secret {namespace}/{name} failed: {} ({})",
                        status.reason, status.code
                    )
                }
                _ => format!("reading Secret {namespace}/{name} failed"),
            })?
            .map(Arc::new);
        self.cache.insert(key, found.clone(), self.ttl);
        Ok(found)
    }
}
