//! The watches of both controllers and how their events map to reconciles.

use std::sync::Arc;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Client;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};

use crate::api::{Connector, ConnectorClass};
use crate::decide::proxy_service::CONNECTOR_LABEL;
use crate::observe::GLOBAL_CA_LABEL;
use crate::runtime::{InitialLists, Shutdown, WatchBackoff};
use crate::telemetry::{ErrorLabels, Metrics};

use super::{
    AnsweredConnectors, Caches, Context, Error, ProxyServiceIndex, Settings, class, connector,
};

/// Runs both controllers until `shutdown`.
pub(super) async fn controllers(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let lists = InitialLists::ask(&Api::<Connector>::all(client.clone())).await;
    let (class_store, class_writer) = reflector::store::<ConnectorClass>();
    let class_events = reflector(
        class_writer,
        watcher(Api::<ConnectorClass>::all(client.clone()), lists.config()),
    )
    .backoff(WatchBackoff::default())
    .touched_objects();
    let (ca_store, ca_writer) = reflector::store::<Secret>();
    let ca_events = reflector(
        ca_writer,
        watcher(
            Api::<Secret>::namespaced(client.clone(), &settings.namespace),
            lists.config().labels(GLOBAL_CA_LABEL),
        ),
    )
    .backoff(WatchBackoff::default())
    .touched_objects();
    let service_index = Arc::new(ProxyServiceIndex::default());
    let service_events = {
        let index = service_index.clone();
        watcher(
            Api::<Service>::all(client.clone()),
            lists.config().labels(CONNECTOR_LABEL),
        )
        .backoff(WatchBackoff::default())
        .inspect(move |event| {
            if let Ok(event) = event {
                index.apply(event);
            }
        })
        .touched_objects()
    };
    let config = kube::runtime::controller::Config::default().concurrency(settings.workers);
    let caches = Caches {
        classes: class_store,
        global_cas: ca_store,
        services: service_index,
    };
    let (answered, answered_connectors) = AnsweredConnectors::channel();
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        metrics,
        caches,
        answered,
    ));
    let classes = Controller::new(Api::<ConnectorClass>::all(client.clone()), lists.config())
        .with_config(config.clone())
        .trigger_backoff(WatchBackoff::default())
        .graceful_shutdown_on(shutdown.clone().wait())
        .run(class::reconcile, error_policy_class, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let events = WatchedEvents {
        classes: class_events,
        global_cas: ca_events,
        services: service_events,
        answered: answered_connectors,
    };
    let connectors = connector_controller(client, ctx, config, lists, events, shutdown)
        .for_each(|_| futures::future::ready(()));
    futures::join!(classes, connectors);
}

type Touched<K> = Result<K, watcher::Error>;

/// Objects touched on the watches the Connector controller shares with its caches,
/// and the Connectors whose deferred probe has its answer now.
struct WatchedEvents<C, G, S, A> {
    classes: C,
    global_cas: G,
    services: S,
    answered: A,
}

/// The Connector controller: its own watch (generation changes only, so a status
/// write does not trigger another round of probes), owned proxy Services, classes,
/// global CA Secrets and the Secrets Connectors reference.
fn connector_controller(
    client: Client,
    ctx: Arc<Context>,
    config: kube::runtime::controller::Config,
    lists: InitialLists,
    events: WatchedEvents<
        impl Stream<Item = Touched<ConnectorClass>> + Send + 'static,
        impl Stream<Item = Touched<Secret>> + Send + 'static,
        impl Stream<Item = Touched<Service>> + Send + 'static,
        impl Stream<Item = ObjectRef<Connector>> + Send + 'static,
    >,
    shutdown: Shutdown,
) -> impl Stream<Item = ()> {
    let (store, writer) = reflector::store::<Connector>();
    let to_cache = {
        let ctx = ctx.clone();
        move |event: watcher::Event<Connector>| {
            let mut event = event.modify(trim_cached_connector);
            ctx.stored_apart.take(&mut event);
            event
        }
    };
    let connector_events = reflector(
        writer,
        watcher(Api::<Connector>::all(client.clone()), lists.config()).map_ok(to_cache),
    )
    .backoff(WatchBackoff::default())
    .inspect({
        let ctx = ctx.clone();
        move |event| {
            if let Ok(watcher::Event::Delete(c)) = event {
                ctx.forget(&connector::key_of(c));
            }
        }
    })
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default());
    let (by_class, by_secret, all) = (store.clone(), store.clone(), store.clone());
    Controller::for_stream(connector_events, store)
        .with_config(config)
        .trigger_backoff(WatchBackoff::default())
        .owns_stream(without_own_writes(events.services, &ctx))
        .reconcile_on(events.answered)
        .watches_stream(events.classes, move |class| {
            let name = class.metadata.name.clone().unwrap_or_default();
            connectors_where(&by_class, |c| c.spec.connector_class_name == name)
        })
        .watches_stream(events.global_cas, move |_| connectors_where(&all, |_| true))
        .watches_stream(secret_events(&client, &ctx, lists), move |secret| {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let namespace = secret.metadata.namespace.clone().unwrap_or_default();
            connectors_where(&by_secret, |c| {
                c.metadata.namespace.as_deref() == Some(namespace.as_str())
                    && connector::references_secret(c, &name)
            })
        })
        .graceful_shutdown_on(shutdown.wait())
        .run(connector::reconcile, error_policy_connector, ctx)
        .map(|_| ())
}

fn connectors_where(
    store: &Store<Connector>,
    keep: impl Fn(&Connector) -> bool,
) -> Vec<ObjectRef<Connector>> {
    store
        .state()
        .into_iter()
        .filter(|c| keep(c))
        .map(|c| ObjectRef::from_obj(&*c))
        .collect()
}

/// Metadata only: which Secret changed, never its data. Every event also tells the
/// Secret cache what is no longer current.
fn secret_events(
    client: &Client,
    ctx: &Arc<Context>,
    lists: InitialLists,
) -> impl Stream<Item = Touched<PartialObjectMeta<Secret>>> + Send + 'static {
    let ctx = ctx.clone();
    watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        lists.config(),
    )
    .backoff(WatchBackoff::default())
    .inspect(move |event| {
        if let Ok(event) = event {
            ctx.secrets.observe(event);
        }
    })
    .touched_objects()
}

/// Owned proxy Services minus the echo of the operator's own writes.
fn without_own_writes(
    services: impl Stream<Item = Touched<Service>> + Send + 'static,
    ctx: &Arc<Context>,
) -> impl Stream<Item = Touched<Service>> + Send + 'static {
    let ctx = ctx.clone();
    services.try_filter(move |service| {
        futures::future::ready(!ctx.own_service_writes.is_echo(&service.metadata))
    })
}

fn count_error(ctx: &Context, kind: &'static str, error: &Error) {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            kind,
            error: error.metric_label(),
        })
        .inc();
}

fn error_policy_class(class: Arc<ConnectorClass>, error: &Error, ctx: Arc<Context>) -> Action {
    let name = class.metadata.name.as_deref().unwrap_or_default();
    tracing::warn!(class = name, error = %error, kind = error.metric_label(), "reconcile failed");
    count_error(&ctx, "ConnectorClass", error);
    Action::requeue(ctx.next_check(&format!("class/{name}"), false))
}

fn error_policy_connector(connector: Arc<Connector>, error: &Error, ctx: Arc<Context>) -> Action {
    let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
    let name = connector.metadata.name.as_deref().unwrap_or_default();
    tracing::warn!(namespace, name, error = %error, kind = error.metric_label(), "reconcile failed");
    count_error(&ctx, "Connector", error);
    Action::requeue(ctx.next_check(&connector::key_of(&connector), false))
}

/// Drops what the operator never reads from a cached Connector: managedFields and
/// kubectl's last-applied copy of the object. With 10,000 Connectors this is a large
/// part of the store's memory.
fn trim_cached_connector(connector: &mut Connector) {
    use kube::ResourceExt;
    connector.managed_fields_mut().clear();
    connector
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_connectors_keep_everything_the_operator_reads() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let mut connector = Connector::new(
            "git",
            serde_json::from_value(serde_json::json!({
                "connectorClassName": "git",
                "address": "https://github.com",
            }))
            .expect("spec"),
        );
        connector.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        connector.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
                ("team", "a"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        );
        let before = connector.clone();
        trim_cached_connector(&mut connector);
        assert_eq!(connector.metadata.managed_fields, Some(vec![]));
        assert_eq!(
            connector.metadata.annotations,
            Some([("team".to_string(), "a".to_string())].into())
        );
        assert_eq!(
            (connector.spec, connector.status),
            (before.spec, before.status)
        );
    }
}
