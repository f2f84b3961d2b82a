//! Observing a ConnectorClass: its API and proxy addresses, resolved and checked for
//! reachability. One path for the controller and `check`.

use crate::api::{ConnectorClass, KReference};
use crate::decide::address::{Resolution, ServicePort, resolve, service_key};
use crate::decide::class::AddressFacts;
use crate::probe::{HttpProber, TrustBundle};

use super::connector::Objects;

/// A Service named by a class address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceLookup {
    Found(ServicePort),
    Absent,
    /// Services cannot be looked up here (`check` runs without a cluster).
    Unavailable,
}

/// The facts of a class's `spec.api` and `spec.proxy` addresses.
pub async fn observe_class<O: Objects>(
    objects: &O,
    class: &ConnectorClass,
    prober: &HttpProber,
    cluster_domain: &str,
) -> Result<(AddressFacts, AddressFacts), O::Error> {
    let api = match &class.spec.api {
        None => AddressFacts::Absent,
        // Only `openapi` and/or `permissions`: the tool's own API, through the proxy.
        Some(api)
            if api.endpoint.ref_.is_none()
                && api.endpoint.uri.as_deref().unwrap_or_default().is_empty() =>
        {
            AddressFacts::ViaProxy
        }
        Some(api) => {
            let (reference, uri) = (api.endpoint.ref_.as_ref(), api.endpoint.uri.as_deref());
            address_facts(objects, "spec.api", reference, uri, prober, cluster_domain).await?
        }
    };
    let proxy = match &class.spec.proxy {
        None => AddressFacts::Absent,
        Some(p) => {
            let (reference, uri) = (p.endpoint.ref_.as_ref(), p.endpoint.uri.as_deref());
            address_facts(
                objects,
                "spec.proxy",
                reference,
                uri,
                prober,
                cluster_domain,
            )
            .await?
        }
    };
    Ok((api, proxy))
}

/// Resolves one address (looking its Service up) and checks that it answers: any
/// HTTP response counts (this is reachability, not health).
async fn address_facts<O: Objects>(
    objects: &O,
    field: &str,
    reference: Option<&KReference>,
    uri: Option<&str>,
    prober: &HttpProber,
    cluster_domain: &str,
) -> Result<AddressFacts, O::Error> {
    let lookup = match reference.and_then(|r| service_key(r).ok()) {
        Some((namespace, name)) => Some(objects.service(&namespace, &name).await?),
        None => None,
    };
    let service = match &lookup {
        Some(ServiceLookup::Found(port)) => Some(Some(port.clone())),
        Some(ServiceLookup::Absent) => Some(None),
        Some(ServiceLookup::Unavailable) | None => None,
    };
    Ok(
        match resolve(
            field,
            reference,
            uri,
            service.as_ref().map(Option::as_ref),
            cluster_domain,
        ) {
            Resolution::Resolved(url) => {
                let reachable = Some(prober.reach(&url, &TrustBundle::empty()).await.map(|_| ()));
                AddressFacts::Resolved { url, reachable }
            }
            Resolution::Unresolved(_) if lookup == Some(ServiceLookup::Unavailable) => {
                AddressFacts::NotChecked(format!(
                    "{field}.ref is a Service: check runs without a cluster and does not resolve it"
                ))
            }
            Resolution::Unresolved(why) => AddressFacts::Unresolved(why),
        },
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Secret;

    use super::*;
    use crate::probe::ProbeSettings;
    use crate::testing::class;

    struct NoCluster;

    impl Objects for NoCluster {
        type Error = std::convert::Infallible;

        async fn secret(&self, _: &str, _: &str) -> Result<Option<Arc<Secret>>, Self::Error> {
            Ok(None)
        }

        async fn service(&self, _: &str, _: &str) -> Result<ServiceLookup, Self::Error> {
            Ok(ServiceLookup::Unavailable)
        }
    }

    /// Published classes describe a tool's own API with only `openapi` and
    /// `permissions` (SPEC section 2): served through the proxy, not unresolved.
    #[tokio::test]
    async fn api_with_only_openapi_is_via_proxy() {
        let prober = HttpProber::new(ProbeSettings::default());
        let only_openapi = class(
            "api:\n  openapi: {openapi: 3.0.0, paths: {}}\n  permissions: {rego: 'package permissions'}",
        );
        let Ok((api, proxy)) =
            observe_class(&NoCluster, &only_openapi, &prober, "cluster.local").await;
        assert_eq!((api, proxy), (AddressFacts::ViaProxy, AddressFacts::Absent));
        let proxy_without_address = class("proxy: {}");
        let Ok((_, proxy)) =
            observe_class(&NoCluster, &proxy_without_address, &prober, "cluster.local").await;
        assert_eq!(
            proxy,
            AddressFacts::Unresolved("neither spec.proxy.ref nor spec.proxy.uri is set".into())
        );
    }
}
