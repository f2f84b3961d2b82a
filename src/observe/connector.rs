//! Observing one Connector: its Secrets, its class, and the probes of its plan.

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;

use crate::api::{Connector, ConnectorClass};
use crate::decide::connector::{
    CaFacts, ClassFacts, ConnectorFacts, ProxyServiceFacts, SecretFacts,
};
use crate::decide::plan::ProbePlan;
use crate::probe::{
    CompiledClass, Deferred, ProbeKind, ProbeOutcome, ProbeReport, ProbeRunner, ProbeTarget,
    SecretMaterial, TrustBundle,
};
use crate::types::{FieldError, join_errors};
use crate::validation::spec_mismatch_errors;

use super::class::ServiceLookup;
use super::secrets::{
    SecretLookup, ca_facts, ca_lookup, secret_facts, secret_lookup, secret_material,
};

/// Where observe reads objects: the cluster (controllers) or files (`check`).
pub trait Objects: Sync {
    type Error;

    /// The Secret `name` of `namespace`, if it exists.
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Arc<Secret>>, Self::Error>> + Send;

    /// The Service `name` of `namespace`, for class address resolution.
    fn service(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<ServiceLookup, Self::Error>> + Send;
}

/// A Connector's Secrets, as facts and as what the probes need.
pub struct ConnectorInputs {
    pub secret: SecretFacts,
    /// Decoded auth Secret (values redacted in Debug).
    pub material: Option<SecretMaterial>,
    /// resourceVersion of the auth Secret, to tell when probe results are stale.
    pub secret_version: Option<String>,
    pub ca: CaFacts,
    /// Global CA bundles plus the Connector's `caCertSecretRef`.
    pub trust: TrustBundle,
}

/// Reads the auth Secret (own namespace only) and the CA Secret of a Connector.
pub async fn observe_inputs<O: Objects>(
    objects: &O,
    connector: &Connector,
    global_trust: &TrustBundle,
) -> Result<ConnectorInputs, O::Error> {
    let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
    let lookup = secret_lookup(connector);
    let found = match &lookup {
        SecretLookup::InOwnNamespace(name) => objects.secret(namespace, name).await?,
        _ => None,
    };
    let material = found.as_deref().map(secret_material);
    let ca = ca_lookup(connector);
    let ca_secret = match &ca {
        SecretLookup::InOwnNamespace(name) => objects.secret(namespace, name).await?,
        _ => None,
    };
    let (ca, ca_bundle) = ca_facts(&ca, ca_secret.as_deref());
    Ok(ConnectorInputs {
        secret: secret_facts(&lookup, material.as_ref()),
        secret_version: found.and_then(|s| s.metadata.resource_version.clone()),
        material,
        ca,
        trust: global_trust.merged(&ca_bundle),
    })
}

/// A class as a Connector sees it: the object (with the status its controller
/// wrote), its compiled form and its resolved API URL.
pub struct ClassView<'a> {
    pub class: &'a ConnectorClass,
    pub compiled: &'a Result<Arc<CompiledClass>, Vec<FieldError>>,
}

impl ClassView<'_> {
    /// The class's resolved API URL (`status.api.address.url`).
    pub fn api_url(&self) -> Option<&str> {
        self.class
            .status
            .as_ref()?
            .api
            .as_ref()?
            .address
            .as_ref()?
            .url
            .as_deref()
    }
}

/// The class facts of a Connector: not found, invalid, contract not met, or usable.
pub fn class_facts<'a>(
    connector: &Connector,
    name: &str,
    view: Option<&ClassView<'a>>,
) -> ClassFacts<'a> {
    let Some(view) = view else {
        return ClassFacts::NotFound {
            name: name.to_string(),
        };
    };
    if let Err(errors) = view.compiled {
        return ClassFacts::Invalid {
            message: join_errors(errors),
        };
    }
    let errors = spec_mismatch_errors(connector, view.class);
    if errors.is_empty() {
        ClassFacts::Usable { class: view.class }
    } else {
        ClassFacts::Mismatch { errors }
    }
}

/// Runs the plan's probes in order: liveness, then auth when the plan allows it
/// after the liveness outcome. `None`: not run. [`Deferred`]: the shared liveness
/// request is still pending (only with a runner that defers).
pub async fn run_probes(
    plan: &ProbePlan<'_>,
    compiled: &CompiledClass,
    connector: &Connector,
    inputs: &ConnectorInputs,
    class_api_url: Option<&str>,
    runner: &ProbeRunner,
) -> Result<(Option<ProbeReport>, Option<ProbeReport>), Deferred> {
    let target = ProbeTarget {
        connector,
        secret: inputs.material.as_ref(),
        class_api_url,
    };
    let liveness = if plan.runs(ProbeKind::Liveness, None) {
        runner
            .run(compiled, ProbeKind::Liveness, &target, &inputs.trust)
            .await?
    } else {
        None
    };
    let live = liveness.as_ref().map(|r| &r.outcome);
    let auth = if plan.runs(ProbeKind::Auth, live) {
        runner
            .run(compiled, ProbeKind::Auth, &target, &inputs.trust)
            .await?
    } else {
        None
    };
    Ok((liveness, auth))
}

/// Everything the decide step needs about a Connector.
pub fn connector_facts<'a>(
    connector: &'a Connector,
    class: ClassFacts<'a>,
    inputs: &ConnectorInputs,
    outcomes: (Option<ProbeOutcome>, Option<ProbeOutcome>),
    proxy_service: ProxyServiceFacts,
    cluster_domain: &'a str,
) -> ConnectorFacts<'a> {
    ConnectorFacts {
        connector,
        class,
        secret: inputs.secret.clone(),
        liveness: outcomes.0,
        auth: outcomes.1,
        proxy_service,
        ca: inputs.ca.clone(),
        cluster_domain,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::testing::connector;

    /// Records every name it is asked for; finds nothing.
    #[derive(Default)]
    struct Recording(Mutex<Vec<String>>);

    impl Objects for Recording {
        type Error = std::convert::Infallible;

        async fn secret(&self, _: &str, name: &str) -> Result<Option<Arc<Secret>>, Self::Error> {
            self.0.lock().unwrap().push(name.to_string());
            Ok(None)
        }

        async fn service(&self, _: &str, _: &str) -> Result<ServiceLookup, Self::Error> {
            Ok(ServiceLookup::Unavailable)
        }
    }

    /// Hostile names (a query string, a path, spaces, escapes, unicode, too long) are
    /// reported and never looked up: in a request path they would turn the GET into a
    /// watch or a list.
    #[tokio::test]
    async fn invalid_secret_names_are_never_looked_up() {
        let long = "a".repeat(254);
        let hostile = [
            "?watch=true",
            "?",
            "my secret",
            "../other",
            "a/b",
            "creds%2Fx",
            "Creds",
            "crédits",
            "-leading",
            "trailing.",
            "a..b",
            long.as_str(),
        ];
        for name in hostile {
            let quoted = serde_json::to_string(name).unwrap();
            let c = connector(&format!(
                "connectorClassName: test\naddress: https://g.io\nauth: {{secretRef: {{name: {quoted}}}}}\ncaCertSecretRef: {{name: {quoted}}}"
            ));
            let objects = Recording::default();
            let Ok(inputs) = observe_inputs(&objects, &c, &TrustBundle::empty()).await;
            assert!(
                objects.0.lock().unwrap().is_empty(),
                "{name:?} was looked up"
            );
            assert_eq!(
                inputs.secret,
                SecretFacts::InvalidName {
                    name: name.to_string()
                }
            );
            assert_eq!(
                inputs.ca,
                CaFacts::InvalidName {
                    name: name.to_string()
                }
            );
        }
        let c = connector(
            "connectorClassName: test\naddress: https://g.io\nauth: {secretRef: {name: my.creds-1}}",
        );
        let objects = Recording::default();
        let Ok(_) = observe_inputs(&objects, &c, &TrustBundle::empty()).await;
        assert_eq!(*objects.0.lock().unwrap(), ["my.creds-1"]);
    }
}
