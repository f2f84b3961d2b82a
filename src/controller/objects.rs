//! The cluster as the observe step reads it: Secrets and Services from the apiserver.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Client;
use kube::api::Api;

use crate::decide::address::ServicePort;
use crate::observe::{Objects, ServiceLookup};

use super::{Error, api_call};

/// Reads objects with the operator's client.
pub struct ClusterObjects<'a> {
    pub client: &'a Client,
}

impl Objects for ClusterObjects<'_> {
    type Error = Error;

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>, Error> {
        let api = Api::<Secret>::namespaced(self.client.clone(), namespace);
        Ok(api_call("reading a Secret", api.get_opt(name))
            .await?
            .map(Arc::new))
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
