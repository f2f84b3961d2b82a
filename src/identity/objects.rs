//! The cluster as the identity controller's observe step reads it: Secrets.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::observe::{Objects, ServiceLookup};

use super::{API_REQUEST_DEADLINE, Error};

/// Reads Secrets with the operator's client, each read bounded in time.
pub struct ClusterSecrets<'a> {
    pub client: &'a Client,
}

impl Objects for ClusterSecrets<'_> {
    type Error = Error;

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, Error> {
        let api = Api::<Secret>::namespaced(self.client.clone(), namespace);
        let secret = tokio::time::timeout(API_REQUEST_DEADLINE, api.get_opt(name))
            .await
            .map_err(|_| Error::Deadline("reading a Secret"))??;
        Ok(secret.map(Arc::new))
    }

    /// Dex Connectors reference no Service.
    async fn service(&self, _: &str, _: &str) -> Result<ServiceLookup, Error> {
        Ok(ServiceLookup::Unavailable)
    }
}
