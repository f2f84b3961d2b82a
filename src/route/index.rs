//! The per-Connector Service names of the cached Connectors, so a `Host` is resolved
//! through the controller's own name mapping (`decide::address::proxy_service_name`),
//! never by string surgery (dots, truncation and hashes make it one-way).

use std::collections::HashMap;

use crate::decide::address::proxy_service_name;

/// `(namespace, service name) -> Connector name`, fed by the Connector watch.
#[derive(Clone, Debug, Default)]
pub struct ConnectorIndex {
    by_service: HashMap<(String, String), String>,
}

impl ConnectorIndex {
    /// Records a Connector (idempotent).
    pub fn insert(&mut self, namespace: &str, name: &str) {
        self.by_service.insert(
            (namespace.to_string(), proxy_service_name(name)),
            name.to_string(),
        );
    }

    /// Forgets a Connector; a different Connector sharing the Service name (a hash
    /// collision the controller would refuse) is left.
    pub fn remove(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), proxy_service_name(name));
        if self.by_service.get(&key).is_some_and(|n| n == name) {
            self.by_service.remove(&key);
        }
    }

    /// The Connector behind a Service name.
    pub fn resolve_service(&self, namespace: &str, service: &str) -> Option<&str> {
        self.by_service
            .get(&(namespace.to_string(), service.to_string()))
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_service.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }
}
