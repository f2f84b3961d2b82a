//! Connector reconciler, as a pipeline: observe (Secrets, class, probes of the plan,
//! the proxy Service) -> decide the Service -> act on it -> decide the status (pure,
//! `crate::decide`) -> act (status, events; only what changed).

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use rand::Rng;

use crate::api::{Connector, ConnectorClass, ConnectorStatus, find_condition};
use crate::decide::address::proxy_service_name;
use crate::decide::connector::{ClassFacts, ProxyServiceFacts, decide_connector_status};
use crate::decide::events::connector_events;
use crate::decide::plan::probe_plan;
use crate::decide::proxy_service::{
    ObservedService, ServicePlan, service_action, service_facts, service_plan,
};
use crate::observe::{
    ClassView, ConnectorInputs, class_facts, connector_facts, observe_inputs, referenced_secrets,
    run_probes,
};
use crate::probe::Deferred;
use crate::telemetry::{KindLabels, ReconcileTimer};
use crate::types::conditions::{READY, TRUE};

use super::act::{apply_status, ensure_service, publish};
use super::memo::{Outcomes, probe_inputs, status_hash};
use super::objects::{ClusterObjects, SecretReads};
use super::{Context, Error};

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

/// When a namespace is over its share, its Connector is tried again this many ms later.
const SHARE_RETRY_MS: std::ops::Range<u64> = 200..600;

/// A reconcile within the namespace's fair share of the workers and within its
/// deadline. Over its share, a namespace's Connector comes back later instead of
/// holding a worker while it waits.
pub async fn reconcile(connector: Arc<Connector>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
    let Some(_slot) = ctx.namespace_share.try_acquire(namespace) else {
        // Short and jittered: at a cold start a busy namespace's Connectors are only
        // waiting for their own namespace's reconciles, which take a fraction of this.
        let wait = Duration::from_millis(rand::rng().random_range(SHARE_RETRY_MS));
        return Ok(Action::requeue(wait));
    };
    // The store's copy has no conditions, labels or annotations (see `stored_apart`).
    let connector = ctx.stored_apart.restore(&connector);
    tokio::time::timeout(ctx.reconcile_deadline(), reconcile_now(&connector, &ctx))
        .await
        .map_err(|_| Error::Deadline("the reconcile"))?
}

async fn reconcile_now(connector: &Connector, ctx: &Arc<Context>) -> Result<Action, Error> {
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
    // A restarted operator must not judge with half-filled caches (that would flip
    // conditions and move lastTransitionTime).
    ctx.caches_ready.wait().await?;

    ctx.secrets
        .set_references(&key_of(connector), referenced_secrets(connector));
    let objects = ClusterObjects {
        client: &ctx.client,
        secrets: Some(SecretReads {
            cache: &ctx.secrets,
            in_flight: &ctx.secret_reads,
        }),
    };
    let inputs = observe_inputs(&objects, connector, &ctx.global_trust()).await?;
    let class_name = &connector.spec.connector_class_name;
    let class = ctx.classes.get(&ObjectRef::new(class_name));
    let compiled = match &class {
        Some(class) => Some(ctx.compiled(class).await?),
        None => None,
    };
    let view = class
        .as_deref()
        .zip(compiled.as_deref())
        .map(|(class, compiled)| ClassView { class, compiled });
    let facts = class_facts(connector, class_name, view.as_ref());
    let (outcomes, proxy_service) = match (&facts, &view) {
        (ClassFacts::Usable { class }, Some(view)) => {
            let outcomes = match probe(ctx, connector, view, &inputs).await {
                Ok(outcomes) => outcomes,
                Err(deferred) => return Ok(defer(ctx, connector, &deferred)),
            };
            (outcomes, proxy_service(ctx, connector, class).await?)
        }
        _ => ((None, None), ProxyServiceFacts::Pending),
    };
    let facts = connector_facts(
        connector,
        facts,
        &inputs,
        outcomes,
        proxy_service,
        &ctx.settings.cluster_domain,
    );
    let status = decide_connector_status(&facts, &crate::runtime::now());
    let healthy = find_condition(&status.conditions, READY).is_some_and(|c| c.status == TRUE);
    write_status(ctx, connector, &namespace, &name, &status, &inputs).await?;
    Ok(Action::requeue(ctx.next_check(&key_of(connector), healthy)))
}

/// Its tool has not answered another Connector's identical liveness request yet:
/// free the worker and judge when that answer is in (or its request was abandoned),
/// which is within the probe timeout. The requeue, well after it, is only a fallback.
fn defer(ctx: &Context, connector: &Connector, deferred: &Deferred) -> Action {
    ctx.metrics.probes_deferred.inc();
    ctx.answered
        .on_answer(deferred, ObjectRef::from_obj(connector));
    let jitter = Duration::from_millis(rand::rng().random_range(DEFERRED_FALLBACK_MS));
    Action::requeue(ctx.settings.probe.timeout * 2 + jitter)
}

const DEFERRED_FALLBACK_MS: std::ops::Range<u64> = 1000..2000;

/// The probe outcomes: reused from the memo while their inputs are unchanged,
/// otherwise the plan is run.
async fn probe(
    ctx: &Context,
    connector: &Connector,
    view: &ClassView<'_>,
    inputs: &ConnectorInputs,
) -> Result<Outcomes, Deferred> {
    let Ok(compiled) = view.compiled.as_ref() else {
        return Ok((None, None));
    };
    let key = key_of(connector);
    let fingerprint = probe_inputs(
        connector,
        view.class,
        view.api_url(),
        inputs.secret_version.as_deref(),
        &inputs.trust,
    );
    let settings = &ctx.settings;
    if let Some(outcomes) = ctx.probe_memo.get(
        &key,
        fingerprint,
        settings.probe_interval / 2,
        settings.min_backoff / 2,
    ) {
        return Ok(outcomes);
    }
    let plan = probe_plan(connector, view.class, &inputs.secret);
    let (live, auth) = run_probes(
        &plan,
        compiled,
        connector,
        inputs,
        view.api_url(),
        &ctx.runner,
    )
    .await?;
    ctx.metrics.probes_waiting.set(ctx.runner.waiting());
    for report in live.iter().chain(auth.iter()) {
        ctx.metrics
            .record_probe(&connector.spec.connector_class_name, report);
    }
    let outcomes = (live.map(|r| r.outcome), auth.map(|r| r.outcome));
    ctx.probe_memo.put(key, fingerprint, outcomes.clone());
    Ok(outcomes)
}

/// Observe (the owned-Service cache, no apiserver read), decide and act for the proxy
/// Service; never takes over a Service it does not own. A Service missing from the
/// cache (absent, or someone else's, which carries no label) and not just written by
/// this operator is created; a conflict reads it and decides again.
async fn proxy_service(
    ctx: &Context,
    connector: &Connector,
    class: &ConnectorClass,
) -> Result<ProxyServiceFacts, Error> {
    let plan = service_plan(connector, class).map_err(|_| Error::MissingField("metadata.uid"))?;
    let desired = match plan {
        ServicePlan::NoProxy => return Ok(ProxyServiceFacts::Pending),
        ServicePlan::ClassUnresolved(message) => {
            return Ok(ProxyServiceFacts::ClassProxyUnresolved { message });
        }
        ServicePlan::Desired(desired) => desired,
    };
    let owner_uid = connector.meta().uid.clone().unwrap_or_default();
    let service_name = proxy_service_name(connector.meta().name.as_deref().unwrap_or_default());
    let namespace = connector.meta().namespace.as_deref().unwrap_or_default();
    let observed = ctx
        .services
        .get(namespace, &service_name, &owner_uid)
        .or_else(|| ctx.own_service_writes.unseen(namespace, &service_name))
        .unwrap_or(ObservedService::NotRead);
    let action = service_action(&desired, &observed);
    Ok(
        match ensure_service(ctx, &desired, action, &owner_uid).await? {
            Some(taken) => service_facts(service_name, &taken),
            None => ProxyServiceFacts::Pending,
        },
    )
}

/// Writes the status when it differs from the stored one, with its events.
async fn write_status(
    ctx: &Arc<Context>,
    connector: &Connector,
    namespace: &str,
    name: &str,
    status: &ConnectorStatus,
    inputs: &ConnectorInputs,
) -> Result<(), Error> {
    let key = key_of(connector);
    if connector.status.as_ref() == Some(status) {
        // The cache shows it: no reconcile of this Connector (they never run two at
        // once) can see an older version from now on.
        ctx.pending_status.forget(&key);
        return Ok(());
    }
    let version = connector.metadata.resource_version.as_deref();
    let hash = status_hash(status);
    if ctx.pending_status.already_written(&key, version, hash) {
        return Ok(());
    }
    let api = Api::<Connector>::namespaced(ctx.client.clone(), namespace);
    apply_status(&api, name, status).await?;
    ctx.pending_status.record(&key, version, hash);
    ctx.metrics
        .status_writes
        .get_or_create(&KindLabels { kind: "Connector" })
        .inc();
    let stored = connector
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let reference = connector.object_ref(&());
    for event in connector_events(stored, &status.conditions, &inputs.ca) {
        publish(ctx, &reference, event.warning, &event.reason, &event.note);
    }
    Ok(())
}
