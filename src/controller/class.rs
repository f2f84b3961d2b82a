//! ConnectorClass reconciler: observe (compile, resolve and reach the API and proxy
//! addresses) -> decide (`crate::decide::class`) -> act (status, when it changed).

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;

use crate::api::{ConnectorClass, find_condition};
use crate::decide::class::{ClassFacts, decide_class_status};
use crate::observe::observe_class;
use crate::telemetry::{KindLabels, ReconcileTimer};
use crate::types::conditions::{READY, TRUE};

use super::act::apply_status;
use super::objects::ClusterObjects;
use super::{Context, Error};

pub use super::act::MANAGER;

pub async fn reconcile(class: Arc<ConnectorClass>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ReconcileTimer::start(&ctx.metrics, "ConnectorClass");
    let name = class
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let compiled = ctx.compiled(&class).await?;
    let spec_errors = compiled
        .as_ref()
        .as_ref()
        .err()
        .cloned()
        .unwrap_or_default();
    let objects = ClusterObjects {
        client: &ctx.client,
        secrets: None,
    };
    let (api, proxy) = observe_class(
        &objects,
        &class,
        ctx.runner.prober(),
        &ctx.settings.cluster_domain,
    )
    .await?;
    let status = decide_class_status(
        &ClassFacts {
            class: &class,
            api,
            proxy,
            spec_errors: &spec_errors,
        },
        &crate::runtime::now(),
    );
    let healthy = find_condition(&status.conditions, READY).is_some_and(|c| c.status == TRUE);
    if class.status.as_ref() != Some(&status) {
        let api = Api::<ConnectorClass>::all(ctx.client.clone());
        apply_status(&api, &name, &status).await?;
        ctx.metrics
            .status_writes
            .get_or_create(&KindLabels {
                kind: "ConnectorClass",
            })
            .inc();
    }
    Ok(Action::requeue(
        ctx.next_check(&format!("class/{name}"), healthy),
    ))
}
