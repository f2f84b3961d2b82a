//! The watches of the identity controller and how their events map to reconciles:
//! Dex Connectors (generation changes only, so a status write does not trigger
//! another round), the Secrets they reference (metadata only) and the global CA
//! Secrets.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};

use crate::api::DexConnector;
use crate::observe::GLOBAL_CA_LABEL;
use crate::runtime::{InitialLists, Shutdown, WatchBackoff};

use super::reconcile::{key_of, reconcile};
use super::{Context, Error, IdentitySettings, context};
use crate::observe::identity::referenced_secret;

type Touched<K> = Result<K, watcher::Error>;

/// Runs the controller until `shutdown`.
pub(super) async fn controller(client: Client, settings: IdentitySettings, shutdown: Shutdown) {
    let lists = InitialLists::ask(&Api::<DexConnector>::all(client.clone())).await;
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
    let config = kube::runtime::controller::Config::default().concurrency(settings.workers);
    let ctx = context(client.clone(), settings.clone(), ca_store);
    let sync = super::sync::run(
        client.clone(),
        settings,
        ctx.clone(),
        shutdown.clone(),
        lists,
    );
    let (store, writer) = reflector::store::<DexConnector>();
    let connector_events = reflector(
        writer,
        watcher(Api::<DexConnector>::all(client.clone()), lists.config()),
    )
    .backoff(WatchBackoff::default())
    .inspect({
        let ctx = ctx.clone();
        move |event| {
            if let Ok(watcher::Event::Delete(c)) = event {
                ctx.forget(&key_of(c));
            }
        }
    })
    .touched_objects()
    .predicate_filter(predicates::generation, Default::default());
    let (by_secret, all) = (store.clone(), store.clone());
    let health = Controller::for_stream(connector_events, store)
        .with_config(config)
        .trigger_backoff(WatchBackoff::default())
        .watches_stream(ca_events, move |_| connectors_where(&all, |_| true))
        .watches_stream(secret_events(&client, lists), move |secret| {
            let name = secret.metadata.name.clone().unwrap_or_default();
            let namespace = secret.metadata.namespace.clone().unwrap_or_default();
            connectors_where(&by_secret, |c| {
                c.metadata.namespace.as_deref() == Some(namespace.as_str())
                    && referenced_secret(c).as_deref() == Some(name.as_str())
            })
        })
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    futures::join!(health, sync);
}

fn connectors_where(
    store: &Store<DexConnector>,
    keep: impl Fn(&DexConnector) -> bool,
) -> Vec<ObjectRef<DexConnector>> {
    store
        .state()
        .into_iter()
        .filter(|c| keep(c))
        .map(|c| ObjectRef::from_obj(&*c))
        .collect()
}

/// Metadata only: which Secret changed, never its data.
fn secret_events(
    client: &Client,
    lists: InitialLists,
) -> impl Stream<Item = Touched<PartialObjectMeta<Secret>>> + Send + 'static {
    watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        lists.config(),
    )
    .backoff(WatchBackoff::default())
    .touched_objects()
}

fn error_policy(connector: Arc<DexConnector>, error: &Error, ctx: Arc<Context>) -> Action {
    let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
    let name = connector.metadata.name.as_deref().unwrap_or_default();
    tracing::warn!(namespace, name, error = %error, "identity reconcile failed");
    Action::requeue(ctx.next_check(&key_of(&connector), false))
}
