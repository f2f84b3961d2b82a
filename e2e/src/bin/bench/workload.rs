//! The benchmark's objects: namespaces, Secrets and Connectors of one class, the bare
//! client's "floor" writes, resourceVersion snapshots and clean-up. Every call uses
//! the kube client with `concurrency` requests in flight, like the operator.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use connectors_e2e::fixtures::{basic_secret, connector};
use connectors_operator::api::{Connector, ConnectorClass};
use connectors_operator::controller::act::apply_status;
use connectors_operator::decide::address::proxy_service_name;
use connectors_operator::decide::connector::{
    CaFacts, ClassFacts as ConnectorClassFacts, ConnectorFacts, ProxyServiceFacts,
    decide_connector_status,
};
use connectors_operator::decide::proxy_service::{
    CONNECTOR_LABEL, class_proxy_host, desired_proxy_service,
};
use connectors_operator::observe::{secret_facts, secret_lookup, secret_material};
use connectors_operator::probe::ProbeOutcome;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

use crate::BenchError;
use crate::target::PASSWORD;

/// Label on every namespace and Connector the benchmark creates.
pub const BENCH_LABEL: &str = "connectors-bench";
/// Label on Connectors: `tool` (answers) or `hung` (never answers).
pub const TARGET_LABEL: &str = "connectors-bench/target";
/// The auth Secret in every namespace.
const SECRET_NAME: &str = "creds";

/// What to create.
pub struct Plan<'a> {
    pub class: &'a str,
    pub connectors: usize,
    pub namespaces: usize,
    /// Namespace names are `{prefix}-{index}`.
    pub prefix: &'a str,
    pub tool_urls: &'a [String],
    /// Every `hung_every`-th Connector points at `hung_url` (0: none).
    pub hung_every: usize,
    pub hung_url: &'a str,
    pub concurrency: usize,
}

impl Plan<'_> {
    /// Half of the Connectors share the first tool address (one big tool, as in real
    /// clusters), the rest spread over the others; every `hung_every`-th one hangs.
    fn address(&self, index: usize) -> (&str, &'static str) {
        if self.hung_every > 0 && index % self.hung_every == self.hung_every - 1 {
            return (self.hung_url, "hung");
        }
        let tools = self.tool_urls.len();
        let tool = if index.is_multiple_of(2) || tools < 2 {
            0
        } else {
            1 + (index / 2) % (tools - 1)
        };
        (&self.tool_urls[tool], "tool")
    }

    fn namespace(&self, index: usize) -> String {
        format!("{}-{:03}", self.prefix, index % self.namespaces.max(1))
    }

    /// How many Connectors point at an answering tool.
    pub fn answering(&self) -> usize {
        (0..self.connectors)
            .filter(|&i| self.address(i).1 == "tool")
            .count()
    }
}

/// The created Connectors (as the apiserver returned them: uid set).
pub struct Workload {
    pub connectors: Vec<Connector>,
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs `requests` with at most `concurrency` in flight; the first error wins.
async fn all_at_most<T, F>(
    concurrency: usize,
    requests: impl IntoIterator<Item = F>,
) -> Result<Vec<T>, BenchError>
where
    F: std::future::Future<Output = Result<T, BenchError>>,
{
    futures::stream::iter(requests)
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

/// Creates the namespaces and one Secret in each (kept from an earlier phase when they
/// exist) and the Connectors, all before the operator (or the floor client) starts.
pub async fn create(client: &Client, plan: &Plan<'_>) -> Result<Workload, BenchError> {
    let namespaces: Vec<String> = (0..plan.namespaces.max(1).min(plan.connectors.max(1)))
        .map(|i| plan.namespace(i))
        .collect();
    let secret: Secret = serde_yaml::from_str(&basic_secret(SECRET_NAME, PASSWORD))?;
    all_at_most(
        plan.concurrency,
        namespaces.iter().map(|name| {
            let secret = secret.clone();
            async move {
                let namespace = Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(labels(&[(BENCH_LABEL, "1")])),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                ignore_exists(
                    Api::<Namespace>::all(client.clone())
                        .create(&PostParams::default(), &namespace)
                        .await,
                )?;
                ignore_exists(
                    Api::<Secret>::namespaced(client.clone(), name)
                        .create(&PostParams::default(), &secret)
                        .await,
                )
            }
        }),
    )
    .await?;
    let connectors = all_at_most(
        plan.concurrency,
        (0..plan.connectors).map(|i| async move {
            let (address, target) = plan.address(i);
            let namespace = plan.namespace(i);
            let mut object: Connector = serde_yaml::from_str(&connector(
                &format!("c-{i:05}"),
                plan.class,
                address,
                SECRET_NAME,
            ))?;
            object.metadata.namespace = Some(namespace.clone());
            object.metadata.labels = Some(labels(&[(BENCH_LABEL, "1"), (TARGET_LABEL, target)]));
            Ok(Api::<Connector>::namespaced(client.clone(), &namespace)
                .create(&PostParams::default(), &object)
                .await?)
        }),
    )
    .await?;
    Ok(Workload { connectors })
}

/// The apiserver floor: the writes the operator must make for these Connectors (the
/// proxy Service when the class has a proxy, and one status write), made by a bare
/// kube client with `concurrency` Connectors in flight. The objects are computed with
/// the operator's own code before the clock starts; only the writes are timed.
pub async fn floor_writes(
    client: &Client,
    workload: &Workload,
    class: &ConnectorClass,
    concurrency: usize,
) -> Result<TimedWrites, BenchError> {
    let proxy_host = class_proxy_host(class);
    let secret: Secret = serde_yaml::from_str(&basic_secret(SECRET_NAME, PASSWORD))?;
    let material = secret_material(&secret);
    let now = connectors_operator::runtime::now();
    let mut writes = Vec::with_capacity(workload.connectors.len());
    for c in &workload.connectors {
        let service = match &proxy_host {
            Some(host) => Some(desired_proxy_service(c, host.clone())?),
            None => None,
        };
        let status = decide_connector_status(
            &ConnectorFacts {
                connector: c,
                class: ConnectorClassFacts::Usable { class },
                secret: secret_facts(&secret_lookup(c), Some(&material)),
                liveness: Some(ProbeOutcome::Passed),
                auth: Some(ProbeOutcome::Passed),
                proxy_service: match &service {
                    Some(_) => ProxyServiceFacts::Ready {
                        name: proxy_service_name(&c.name_any()),
                    },
                    None => ProxyServiceFacts::Pending,
                },
                ca: CaFacts::NoRef,
                cluster_domain: "cluster.local",
            },
            &now,
        );
        writes.push((
            c.namespace().unwrap_or_default(),
            c.name_any(),
            service,
            status,
        ));
    }
    let started = Instant::now();
    all_at_most(
        concurrency,
        writes
            .iter()
            .map(|(namespace, name, service, status)| async move {
                if let Some(service) = service {
                    Api::<Service>::namespaced(client.clone(), namespace)
                        .create(&PostParams::default(), service)
                        .await?;
                }
                apply_status(
                    &Api::<Connector>::namespaced(client.clone(), namespace),
                    name,
                    status,
                )
                .await?;
                Ok(())
            }),
    )
    .await?;
    Ok(TimedWrites {
        started,
        took: started.elapsed(),
    })
}

/// When the floor's first write went out, and how long until the last response.
pub struct TimedWrites {
    pub started: Instant,
    pub took: Duration,
}

/// resourceVersion of every benchmark Connector and proxy Service, keyed by kind,
/// namespace and name: a write to any of them changes its entry.
pub async fn resource_versions(client: &Client) -> Result<HashMap<String, String>, BenchError> {
    let mut versions = HashMap::new();
    let connectors = Api::<Connector>::all(client.clone())
        .list_metadata(&ListParams::default().labels(BENCH_LABEL))
        .await?;
    let services = Api::<Service>::all(client.clone())
        .list_metadata(&ListParams::default().labels(CONNECTOR_LABEL))
        .await?;
    for (kind, meta) in connectors
        .items
        .iter()
        .map(|o| ("Connector", &o.metadata))
        .chain(services.items.iter().map(|o| ("Service", &o.metadata)))
    {
        versions.insert(
            format!(
                "{kind} {}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            ),
            meta.resource_version.clone().unwrap_or_default(),
        );
    }
    Ok(versions)
}

/// Keys of the objects whose resourceVersion changed (or that appeared or vanished).
pub fn changed(before: &HashMap<String, String>, after: &HashMap<String, String>) -> Vec<String> {
    let mut keys: Vec<String> = before
        .keys()
        .chain(after.keys().filter(|k| !before.contains_key(*k)))
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// For each key of [`resource_versions`], who wrote the object: its managedFields
/// (manager, operation, subresource, time).
pub async fn writers(client: &Client, keys: &[String]) -> Result<Vec<String>, BenchError> {
    let mut lines = Vec::new();
    for key in keys {
        let Some((kind, path)) = key.split_once(' ') else {
            continue;
        };
        let Some((namespace, name)) = path.split_once('/') else {
            continue;
        };
        let fields = if kind == "Service" {
            managed_fields(Api::<Service>::namespaced(client.clone(), namespace), name).await?
        } else {
            managed_fields(
                Api::<Connector>::namespaced(client.clone(), namespace),
                name,
            )
            .await?
        };
        let managers: Vec<String> = fields
            .iter()
            .map(|f| {
                format!(
                    "{} {} {} {}",
                    f.manager.as_deref().unwrap_or("?"),
                    f.operation.as_deref().unwrap_or("?"),
                    f.subresource.as_deref().unwrap_or("-"),
                    f.time.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
                )
            })
            .collect();
        lines.push(format!("{key}: {}", managers.join("; ")));
    }
    Ok(lines)
}

async fn managed_fields<K>(api: Api<K>, name: &str) -> Result<Vec<ManagedFieldsEntry>, BenchError>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let object = api.get_metadata_opt(name).await?;
    Ok(object
        .and_then(|o| o.metadata.managed_fields)
        .unwrap_or_default())
}

/// Deletes every benchmark Connector and proxy Service, with the benchmark's
/// concurrency, and waits until the Connectors are gone; the namespaces and their
/// Secrets stay for the next phase. Leaving objects to the garbage collector and the
/// namespace controller (20 requests a second by default) takes minutes: deleting the
/// 100 namespaces after each phase kept the control plane busy for about 460 s.
pub async fn delete_all(client: &Client, concurrency: usize) -> Result<Duration, BenchError> {
    retried(|started| delete_objects_once(client, concurrency, started)).await
}

/// Deletes the benchmark namespaces (and so everything in them) and waits until they
/// are gone: at the start (what an interrupted run left) and at the end.
pub async fn delete_namespaces(
    client: &Client,
    concurrency: usize,
) -> Result<Duration, BenchError> {
    retried(|started| delete_namespaces_once(client, concurrency, started)).await
}

async fn retried<F>(once: impl Fn(Instant) -> F) -> Result<Duration, BenchError>
where
    F: std::future::Future<Output = Result<Duration, BenchError>>,
{
    let started = Instant::now();
    // Idempotent, so a request lost to an overloaded apiserver (seen at 10,000 on a
    // busy machine: `SendRequest`) is retried by running it all again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match once(started).await {
            Err(BenchError::Kube(e)) if attempts < 3 && !matches!(e, kube::Error::Api(_)) => {
                eprintln!("bench: clean-up request failed ({e}); trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}

async fn bench_namespaces(client: &Client) -> Result<Vec<String>, BenchError> {
    Ok(Api::<Namespace>::all(client.clone())
        .list_metadata(&ListParams::default().labels(BENCH_LABEL))
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect())
}

async fn delete_objects_once(
    client: &Client,
    concurrency: usize,
    started: Instant,
) -> Result<Duration, BenchError> {
    delete_services_and_connectors(client, concurrency).await?;
    wait_until_none_left(started, "benchmark Connectors", || async {
        Ok(Api::<Connector>::all(client.clone())
            .list_metadata(&ListParams::default().labels(BENCH_LABEL).limit(1))
            .await?
            .items
            .len())
    })
    .await
}

async fn delete_namespaces_once(
    client: &Client,
    concurrency: usize,
    started: Instant,
) -> Result<Duration, BenchError> {
    delete_services_and_connectors(client, concurrency).await?;
    in_each_bench_namespace(client, concurrency, |name| async move {
        ignore_not_found(
            Api::<Namespace>::all(client.clone())
                .delete(&name, &DeleteParams::background())
                .await,
        )
    })
    .await?;
    wait_until_none_left(started, "benchmark namespaces", || async {
        Ok(bench_namespaces(client).await?.len())
    })
    .await
}

/// The proxy Services one by one, the Connectors one collection per namespace.
async fn delete_services_and_connectors(
    client: &Client,
    concurrency: usize,
) -> Result<(), BenchError> {
    delete_proxy_services(client, concurrency).await?;
    in_each_bench_namespace(client, concurrency, |name| async move {
        ignore_not_found(
            Api::<Connector>::namespaced(client.clone(), &name)
                .delete_collection(&DeleteParams::background(), &ListParams::default())
                .await,
        )
    })
    .await
}

/// Runs `each` for every benchmark namespace, `concurrency` at once.
async fn in_each_bench_namespace<F>(
    client: &Client,
    concurrency: usize,
    each: impl Fn(String) -> F,
) -> Result<(), BenchError>
where
    F: std::future::Future<Output = Result<(), BenchError>>,
{
    all_at_most(
        concurrency,
        bench_namespaces(client).await?.into_iter().map(each),
    )
    .await?;
    Ok(())
}

async fn delete_proxy_services(client: &Client, concurrency: usize) -> Result<(), BenchError> {
    let services = Api::<Service>::all(client.clone())
        .list_metadata(&ListParams::default().labels(CONNECTOR_LABEL))
        .await?;
    all_at_most(
        concurrency,
        services.items.iter().map(|s| async move {
            let api =
                Api::<Service>::namespaced(client.clone(), &s.namespace().unwrap_or_default());
            ignore_not_found(api.delete(&s.name_any(), &DeleteParams::background()).await)
        }),
    )
    .await?;
    Ok(())
}

/// Polls `left` until it counts nothing (at most ten minutes from `started`).
async fn wait_until_none_left<F>(
    started: Instant,
    what: &str,
    left: impl Fn() -> F,
) -> Result<Duration, BenchError>
where
    F: std::future::Future<Output = Result<usize, BenchError>>,
{
    let deadline = Duration::from_secs(600);
    loop {
        let count = left().await?;
        if count == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > deadline {
            return Err(BenchError::Timeout {
                what: format!("{what} to be deleted"),
                after: deadline,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ignore_exists<T>(result: Result<T, kube::Error>) -> Result<(), BenchError> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn ignore_not_found<T>(result: Result<T, kube::Error>) -> Result<(), BenchError> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan<'a>(tools: &'a [String], hung_every: usize) -> Plan<'a> {
        Plan {
            class: "c",
            connectors: 100,
            namespaces: 4,
            prefix: "p",
            tool_urls: tools,
            hung_every,
            hung_url: "hung",
            concurrency: 1,
        }
    }

    #[test]
    fn half_share_one_address_and_every_tenth_hangs() {
        let tools: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
        let p = plan(&tools, 10);
        let on = |url: &str| (0..100).filter(|&i| p.address(i).0 == url).count();
        assert_eq!(on("hung"), 10);
        assert_eq!(
            on("t0"),
            50,
            "even indices, none of them hung (9, 19, ... are odd)"
        );
        assert_eq!((1..5).map(|t| on(&format!("t{t}"))).sum::<usize>(), 40);
        assert_eq!(p.answering(), 90);
        assert_eq!(plan(&tools, 0).answering(), 100);
        assert_eq!(p.namespace(5), "p-001");
    }

    #[test]
    fn changed_counts_new_gone_and_rewritten_objects() {
        let before = HashMap::from([
            ("Connector a/b".to_string(), "1".to_string()),
            ("Service a/c-b".to_string(), "2".to_string()),
            ("Connector a/gone".to_string(), "3".to_string()),
        ]);
        let mut after = before.clone();
        assert!(changed(&before, &after).is_empty());
        after.insert("Service a/c-b".into(), "9".into());
        after.remove("Connector a/gone");
        after.insert("Connector a/new".into(), "4".into());
        assert_eq!(
            changed(&before, &after),
            ["Connector a/gone", "Connector a/new", "Service a/c-b"]
        );
    }
}
