//! The cluster as the observe step reads it: Secrets (through the controller's
//! [`SecretCache`]) and Services from the apiserver.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Client;
use kube::api::Api;

use crate::decide::address::ServicePort;
use crate::observe::{Objects, ServiceLookup};
use crate::runtime::KeyLocks;

use super::secret_cache::{SecretCache, SecretKey, trim};
use super::{Error, api_call};

/// Reads objects with the operator's client.
pub struct ClusterObjects<'a> {
    pub client: &'a Client,
    /// Secrets kept while unchanged; `None` reads every time (the class controller
    /// reads no Secret).
    pub secrets: Option<SecretReads<'a>>,
}

/// The kept Secrets and one read per Secret at a time (a namespace's Connectors
/// usually share one).
#[derive(Clone, Copy)]
pub struct SecretReads<'a> {
    pub cache: &'a SecretCache,
    pub in_flight: &'a KeyLocks<SecretKey>,
}

impl ClusterObjects<'_> {
    async fn read_secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, Error> {
        let api = Api::<Secret>::namespaced(self.client.clone(), namespace);
        Ok(api_call("reading a Secret", api.get_opt(name))
            .await?
            .map(|mut secret| {
                trim(&mut secret);
                Arc::new(secret)
            }))
    }
}

impl Objects for ClusterObjects<'_> {
    type Error = Error;

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, Error> {
        let Some(reads) = self.secrets else {
            return self.read_secret(namespace, name).await;
        };
        let key = (namespace.to_string(), name.to_string());
        if let Some(kept) = reads.cache.get(&key) {
            return Ok(kept);
        }
        let _only_reader = reads.in_flight.lock(&key).await;
        // The reader before us may have just kept it.
        if let Some(kept) = reads.cache.get(&key) {
            return Ok(kept);
        }
        let ticket = reads.cache.begin(&key);
        let found = self.read_secret(namespace, name).await?;
        reads.cache.finish(&key, ticket, found.clone());
        Ok(found)
    }

    async fn service(&self, namespace: &str, name: &str) -> Result<ServiceLookup, Error> {
        let api = Api::<Service>::namespaced(self.client.clone(), namespace);
        Ok(
            match api_call("reading a Service", api.get_opt(name)).await? {
                Some(service) => ServiceLookup::Found(first_port(&service)),
                None => ServiceLookup::Absent,
            },
        )
    }
}

fn first_port(service: &Service) -> ServicePort {
    let port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first());
    ServicePort {
        port: port.map(|p| p.port),
        name: port.and_then(|p| p.name.clone()),
    }
}
