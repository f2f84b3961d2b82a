//! Connector reconciler: observe (class, Secrets, proxy Service, probes) -> decide
//! (`crate::status::connector`) -> act (Service, status, events; only what changed).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Secret, Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::api::{Connector, ConnectorClass, find_condition};
use crate::observe::{
    SecretLookup, ca_bundle_from_secret, ca_facts, run_connector_probes, secret_facts,
    secret_lookup, secret_material,
};
use crate::probe::{ProbeOutcome, TrustBundle};
use crate::status::address::proxy_service_name;
use crate::status::conditions::ready_transition;
use crate::status::connector::{
    CaFacts, ClassFacts, ConnectorFacts, ProxyServiceFacts, decide_connector_status,
};
use crate::telemetry::{KindLabels, ReconcileTimer};
use crate::validation::spec_mismatch_errors;

use super::class::{MANAGER, apply_status};
use super::{Context, Error};

/// Label on proxy Services naming their Connector's Service (a valid label value).
pub const CONNECTOR_LABEL: &str = "connectors.alauda.io/connector";

/// Key of a Connector in the operator's in-memory maps.
pub fn key_of(connector: &Connector) -> String {
    format!(
        "connector/{}/{}",
        connector.metadata.namespace.as_deref().unwrap_or_default(),
        connector.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Whether the Connector reads the Secret `name` of its own namespace (auth or CA).
pub fn references_secret(connector: &Connector, name: &str) -> bool {
    connector.secret_ref().and_then(|r| r.name.as_deref()) == Some(name)
        || connector
            .spec
            .ca_cert_secret_ref
            .as_ref()
            .is_some_and(|r| r.name == name)
}

/// Probe results of one Connector with a fingerprint of everything they depend on.
struct Memo {
    inputs: u64,
    at: Instant,
    liveness: Option<ProbeOutcome>,
    auth: Option<ProbeOutcome>,
}

/// Last probe results per Connector. A reconcile caused by something that does not
/// change the probes' inputs (its own proxy Service, an unrelated Secret edit, a
/// relist) reuses them instead of probing again; periodic re-probes come after the
/// reuse window and always probe.
#[derive(Default)]
pub struct ProbeMemo(Mutex<HashMap<String, Memo>>);

type Outcomes = (Option<ProbeOutcome>, Option<ProbeOutcome>);

impl ProbeMemo {
    fn get(
        &self,
        key: &str,
        inputs: u64,
        healthy_for: Duration,
        failed_for: Duration,
    ) -> Option<Outcomes> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let memo = map.get(key).filter(|m| m.inputs == inputs)?;
        let passed = |o: &Option<ProbeOutcome>| o.as_ref().is_none_or(ProbeOutcome::is_passed);
        let window = if passed(&memo.liveness) && passed(&memo.auth) {
            healthy_for
        } else {
            failed_for
        };
        (memo.at.elapsed() < window).then(|| (memo.liveness.clone(), memo.auth.clone()))
    }

    fn put(&self, key: String, inputs: u64, outcomes: Outcomes) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            key,
            Memo {
                inputs,
                at: Instant::now(),
                liveness: outcomes.0,
                auth: outcomes.1,
            },
        );
    }

    pub fn forget(&self, key: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

/// Resource versions of the proxy Services this operator just wrote, so that the watch
/// event of its own write (the echo) does not reconcile the owner again: that round
/// would only read the Secret and the Service again to find nothing to do (a second
/// reconcile per new Connector, a third of the API requests of a fresh start).
#[derive(Default)]
pub struct OwnServiceWrites(Mutex<HashMap<String, String>>);

fn service_key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

impl OwnServiceWrites {
    /// Remembers the state a write of this operator produced.
    pub fn record(&self, written: &ObjectMeta) {
        if let Some(version) = &written.resource_version {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.insert(service_key(written), version.clone());
        }
    }

    /// Whether a watched Service is exactly the state this operator wrote. Any event for
    /// the Service clears the record, so every later change, by anyone, triggers.
    pub fn is_echo(&self, seen: &ObjectMeta) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let written = map.remove(&service_key(seen));
        written.is_some() && written.as_deref() == seen.resource_version.as_deref()
    }
}

/// Fingerprint of a probe's inputs: the Connector's spec, the class's spec and
/// resolved API URL, the Secret's version and the trust bundle.
fn probe_inputs(
    connector: &Connector,
    class: &ConnectorClass,
    secret_version: Option<&str>,
    trust: &TrustBundle,
) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    connector.metadata.uid.hash(&mut h);
    connector.metadata.generation.hash(&mut h);
    class.metadata.uid.hash(&mut h);
    class.metadata.generation.hash(&mut h);
    class_api_url(class).hash(&mut h);
    secret_version.hash(&mut h);
    trust.id().hash(&mut h);
    h.finish()
}

pub async fn reconcile(connector: Arc<Connector>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ReconcileTimer::start(&ctx.metrics, "Connector");
    let name = connector
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let namespace = connector
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let key = key_of(&connector);
    let client = ctx.client.clone();
    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);
    // A restarted operator must not judge with half-filled caches (that would flip
    // conditions and move lastTransitionTime).
    ctx.caches_ready.wait().await?;

    // Observe: the Secret (only in the Connector's own namespace).
    let lookup = secret_lookup(&connector);
    let found_secret = match &lookup {
        SecretLookup::InOwnNamespace(secret_name) => secrets.get_opt(secret_name).await?,
        _ => None,
    };
    let material = found_secret.as_ref().map(secret_material);
    let secret = secret_facts(&lookup, material.as_ref());

    // Observe: trust (global labelled CA Secrets + caCertSecretRef).
    let ca_name = connector
        .spec
        .ca_cert_secret_ref
        .as_ref()
        .map(|r| r.name.as_str());
    let ca_secret = match ca_name {
        Some(n) => secrets.get_opt(n).await?,
        None => None,
    };
    let (ca, ca_bundle) = ca_facts(ca_name, ca_secret.as_ref());
    let trust = global_trust(&ctx).merged(&ca_bundle);

    // Observe: the class, its compiled form and the contract.
    let class_name = connector.spec.connector_class_name.clone();
    let class = ctx.classes.get(&ObjectRef::new(&class_name));
    let mut liveness = None;
    let mut auth = None;
    let mut proxy_service = ProxyServiceFacts::Pending;
    let class_facts = match class.as_deref() {
        None => ClassFacts::NotFound { name: class_name },
        Some(class) => match ctx.compiled(class).as_ref() {
            Err(errors) => ClassFacts::Invalid {
                message: crate::validation::join_errors(errors),
            },
            Ok(compiled) => {
                let errors = spec_mismatch_errors(&connector, class);
                if errors.is_empty() {
                    if class.spec.proxy.is_some() {
                        proxy_service = ensure_proxy_service(&ctx, &connector, class).await?;
                    }
                    let inputs = probe_inputs(
                        &connector,
                        class,
                        found_secret
                            .as_ref()
                            .and_then(|s| s.metadata.resource_version.as_deref()),
                        &trust,
                    );
                    let memo = ctx.probe_memo.get(
                        &key,
                        inputs,
                        ctx.settings.probe_interval / 2,
                        ctx.settings.min_backoff / 2,
                    );
                    (liveness, auth) = match memo {
                        Some(outcomes) => outcomes,
                        None => {
                            let api_url = class_api_url(class);
                            let (live, authn) = run_connector_probes(
                                compiled,
                                class,
                                &connector,
                                material.as_ref(),
                                &secret,
                                api_url.as_deref(),
                                &ctx.runner,
                                &trust,
                            )
                            .await;
                            ctx.metrics.probes_waiting.set(ctx.runner.waiting());
                            for report in live.iter().chain(authn.iter()) {
                                ctx.metrics.record_probe(&class_name, report);
                            }
                            let outcomes = (live.map(|r| r.outcome), authn.map(|r| r.outcome));
                            ctx.probe_memo.put(key.clone(), inputs, outcomes.clone());
                            outcomes
                        }
                    };
                    ClassFacts::Usable { class }
                } else {
                    ClassFacts::Mismatch { errors }
                }
            }
        },
    };

    // Decide.
    let facts = ConnectorFacts {
        connector: &connector,
        class: class_facts,
        secret,
        liveness,
        auth,
        proxy_service,
        ca: ca.clone(),
        cluster_domain: &ctx.settings.cluster_domain,
    };
    let status = decide_connector_status(&facts, &super::now());
    let healthy = find_condition(&status.conditions, "Ready").is_some_and(|c| c.status == "True");

    // Act: write only what changed; events on transitions only.
    let stored = connector.status.clone().unwrap_or_default();
    if connector.status.as_ref() != Some(&status) {
        apply_status(
            &Api::<Connector>::namespaced(client.clone(), &namespace),
            &name,
            &status,
        )
        .await?;
        ctx.metrics
            .status_writes
            .get_or_create(&KindLabels { kind: "Connector" })
            .inc();
        let reference = connector.object_ref(&());
        if let Some(event) = ready_transition(&stored.conditions, &status.conditions) {
            let type_ = if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            publish(&ctx, &reference, type_, &event.reason, &event.message);
        }
        if stored_ca_changed(&stored, &status) {
            match &ca {
                CaFacts::NotFound { name } => {
                    let note = format!("secrets {name:?} not found");
                    publish(
                        &ctx,
                        &reference,
                        EventType::Warning,
                        "CACertSecretNotFound",
                        &note,
                    )
                }
                CaFacts::Invalid { name } => {
                    let note = format!("Secret {name:?} contains invalid PEM data");
                    publish(&ctx, &reference, EventType::Warning, "InvalidCACert", &note)
                }
                _ => {}
            }
        }
    }
    Ok(Action::requeue(ctx.next_check(&key, healthy)))
}

fn stored_ca_changed(
    stored: &crate::api::ConnectorStatus,
    new: &crate::api::ConnectorStatus,
) -> bool {
    let get = |s: &crate::api::ConnectorStatus| {
        find_condition(&s.conditions, "CACertReady").map(|c| (c.status.clone(), c.reason.clone()))
    };
    get(stored) != get(new)
}

/// Records an event without holding the reconcile worker: events are best effort, and
/// at scale their POSTs cost as much as the status writes (docs/benchmarks.md).
fn publish(
    ctx: &Arc<Context>,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.to_string()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    let (ctx, reference, reason) = (ctx.clone(), reference.clone(), reason.to_string());
    tokio::spawn(async move {
        match ctx.recorder.publish(&event, &reference).await {
            Ok(()) => {
                ctx.metrics.events.inc();
            }
            Err(e) => tracing::warn!(error = %e, reason, "could not record event"),
        }
    });
}

/// The class's resolved API URL from its status.
fn class_api_url(class: &ConnectorClass) -> Option<String> {
    class
        .status
        .as_ref()?
        .api
        .as_ref()?
        .address
        .as_ref()?
        .url
        .clone()
}

/// Global CA bundles: Secrets in the operator's namespace labelled as CA certs
/// (from the cache, in name order so the bundle and its id are stable).
fn global_trust(ctx: &Context) -> TrustBundle {
    let mut secrets = ctx.global_cas.state();
    secrets.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    secrets
        .iter()
        .filter_map(|s| ca_bundle_from_secret(s).ok())
        .fold(TrustBundle::empty(), |acc, b| acc.merged(&b))
}

/// The host of the class's resolved proxy address (from its status): the
/// ExternalName of every proxy Service of the class.
pub fn class_proxy_host(class: &ConnectorClass) -> Option<String> {
    let url = class
        .status
        .as_ref()?
        .proxy
        .as_ref()?
        .http_address
        .as_ref()?
        .url
        .as_deref()?;
    url::Url::parse(url).ok()?.host_str().map(str::to_string)
}

/// Creates or updates the per-Connector ExternalName Service; never takes over a
/// Service it does not own.
async fn ensure_proxy_service(
    ctx: &Context,
    connector: &Connector,
    class: &ConnectorClass,
) -> Result<ProxyServiceFacts, Error> {
    let Some(host) = class_proxy_host(class) else {
        let conditions = class
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let message = find_condition(conditions, "ProxyReady")
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| {
                format!(
                    "the proxy address of ConnectorClass {:?} is not resolved",
                    class.name_any()
                )
            });
        return Ok(ProxyServiceFacts::ClassProxyUnresolved { message });
    };
    let namespace = connector.namespace().unwrap_or_default();
    let service_name = proxy_service_name(&connector.name_any());
    let api = Api::<Service>::namespaced(ctx.client.clone(), &namespace);
    let owner = connector
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    // A Connector whose status does not yet report its Service is almost always new:
    // create first and read only on a conflict, which saves a GET per new Connector
    // (docs/benchmarks.md). A foreign Service of that name still ends in Conflict.
    let reported = connector.status.as_ref().is_some_and(|s| {
        find_condition(&s.conditions, "ProxyServiceReady").is_some_and(|c| c.status == "True")
    });
    if !reported
        && create_service(ctx, &api, &desired_proxy_service(connector, host.clone())?).await?
    {
        return Ok(ProxyServiceFacts::Ready { name: service_name });
    }
    let existing = api.get_opt(&service_name).await?;
    if let Some(existing) = &existing {
        if !owned_by(existing, &owner) {
            return Ok(ProxyServiceFacts::Conflict { name: service_name });
        }
        let spec = existing.spec.as_ref();
        let current = (
            spec.and_then(|s| s.type_.as_deref()),
            spec.and_then(|s| s.external_name.as_deref()),
        );
        if current == (Some("ExternalName"), Some(host.as_str())) {
            return Ok(ProxyServiceFacts::Ready { name: service_name });
        }
    }
    let desired = desired_proxy_service(connector, host)?;
    if existing.is_some() {
        let written = api
            .patch(
                &service_name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await?;
        ctx.own_service_writes.record(&written.metadata);
        ctx.metrics.service_writes.inc();
    } else if !create_service(ctx, &api, &desired).await? {
        // Created concurrently by someone else: look again on the next round.
        return Ok(ProxyServiceFacts::Pending);
    }
    Ok(ProxyServiceFacts::Ready { name: service_name })
}

/// Creates `desired`; `false` when a Service of that name already exists.
async fn create_service(
    ctx: &Context,
    api: &Api<Service>,
    desired: &Service,
) -> Result<bool, Error> {
    match api.create(&PostParams::default(), desired).await {
        Ok(written) => {
            ctx.own_service_writes.record(&written.metadata);
            ctx.metrics.service_writes.inc();
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The proxy Service of a Connector: ExternalName `host`, labelled with the Service
/// name and owned (controller) by the Connector. Public so the scale benchmark's
/// apiserver floor writes exactly the Service the operator writes.
pub fn desired_proxy_service(connector: &Connector, host: String) -> Result<Service, Error> {
    let service_name = proxy_service_name(&connector.name_any());
    let owner = connector
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    Ok(Service {
        metadata: ObjectMeta {
            name: Some(service_name.clone()),
            namespace: connector.namespace(),
            labels: Some(BTreeMap::from([(
                CONNECTOR_LABEL.to_string(),
                service_name.trim_start_matches("c-").to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(host),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn owned_by(service: &Service, owner: &OwnerReference) -> bool {
    service
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner.uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::FailureReason;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn only_the_exact_state_written_is_an_echo_and_only_once() {
        let meta = |version: &str| ObjectMeta {
            namespace: Some("dev".into()),
            name: Some("c-git".into()),
            resource_version: Some(version.into()),
            ..Default::default()
        };
        let writes = OwnServiceWrites::default();
        assert!(!writes.is_echo(&meta("1")), "nothing written yet");
        writes.record(&meta("5"));
        assert!(writes.is_echo(&meta("5")));
        assert!(
            !writes.is_echo(&meta("5")),
            "a second event is not the echo"
        );
        writes.record(&meta("7"));
        assert!(!writes.is_echo(&meta("8")), "someone else changed it since");
        assert!(
            !writes.is_echo(&meta("7")),
            "the record is gone after any event"
        );
    }

    #[test]
    fn proxy_service_is_an_owned_labelled_external_name() {
        let mut connector = Connector::new(
            "my.git.tool",
            serde_json::from_value(serde_json::json!({
                "connectorClassName": "git",
                "address": "https://github.com",
            }))
            .expect("spec"),
        );
        connector.metadata.namespace = Some("dev".into());
        assert!(
            desired_proxy_service(&connector, "proxy.example".into()).is_err(),
            "no uid, no owner reference"
        );
        connector.metadata.uid = Some("uid-1".into());
        let service = desired_proxy_service(&connector, "proxy.example".into()).expect("service");
        assert_eq!(service.metadata.name.as_deref(), Some("c-my-git-tool"));
        assert_eq!(service.metadata.namespace.as_deref(), Some("dev"));
        assert_eq!(
            service
                .metadata
                .labels
                .unwrap_or_default()
                .get(CONNECTOR_LABEL),
            Some(&"my-git-tool".to_string())
        );
        let owner = &service.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(true))
        );
        let spec = service.spec.unwrap_or_default();
        assert_eq!(spec.type_.as_deref(), Some("ExternalName"));
        assert_eq!(spec.external_name.as_deref(), Some("proxy.example"));
    }

    #[test]
    fn memo_reuses_results_only_for_the_same_inputs_and_within_the_window() {
        let memo = ProbeMemo::default();
        let passed = (Some(ProbeOutcome::Passed), Some(ProbeOutcome::Passed));
        memo.put("c".into(), 1, passed.clone());
        assert_eq!(memo.get("c", 1, HOUR, Duration::ZERO), Some(passed));
        assert_eq!(memo.get("c", 2, HOUR, HOUR), None, "inputs changed");
        assert_eq!(memo.get("other", 1, HOUR, HOUR), None);

        let failed = (
            Some(ProbeOutcome::Passed),
            Some(ProbeOutcome::failed(
                FailureReason::AuthenticationFailed,
                "401",
            )),
        );
        memo.put("c".into(), 1, failed.clone());
        assert_eq!(
            memo.get("c", 1, HOUR, Duration::ZERO),
            None,
            "failure window"
        );
        assert_eq!(memo.get("c", 1, Duration::ZERO, HOUR), Some(failed));
        memo.forget("c");
        assert_eq!(memo.get("c", 1, HOUR, HOUR), None);
    }
}
