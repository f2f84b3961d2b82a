//! The directory sync (SPEC-identity sections 3 and 4) and User validity, in the
//! identity controller's process and under its Lease.
//!
//! - Which Connectors: `type: ldap` with label `cpaas.io/ldap.autoSync: "true"`.
//! - When: the first time, on every run of annotation `cpaas.io/ldap.autoSyncRule`
//!   (5-field cron, UTC, default daily at 00:00), when the Connector's generation
//!   changes, and when annotation `connectors.alauda.io/ldap.sync-request` takes a value
//!   not yet answered (`status.lastSync.request` records the last one answered). A
//!   failed run is retried with backoff.
//! - One run at a time per Connector (the controller never runs two reconciles of one
//!   object at once).
//! - Observe (paged LDAP searches; Users from a watch; Groups listed) -> plan
//!   (`decide::directory`, pure) -> act (only what differs: create, or a JSON merge
//!   patch carrying the stored resourceVersion).
//! - `SyncReady` and `status.lastSync` by server-side apply under the field manager
//!   `connectors-operator-sync`; the health check writes the other conditions and keeps
//!   `SyncReady` as stored (one writer per condition type); both writes carry the
//!   stored resourceVersion (the conditions list is atomic).
//! - A deleted Connector invalidates its Users: on the watch's delete event and, for
//!   deletions while no operator ran, at start (owned Users whose `connector_id` no
//!   Connector has). No finalizer: a Dex Connector is never held back from deletion.
//! - Validity: every User whose `expired.end` has passed is disabled; the task sleeps
//!   until the next expiry (or a User change), never polls.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, Resource};
use serde_json::Value;
use tokio::sync::Notify;

use crate::api::dex::{GroupSearch, LastSync, LdapConfig, UserSearch};
use crate::api::{DexConnector, Group, User};
use crate::decide::conditions::{Desired, merge};
use crate::decide::directory::{
    self, DirGroup, GroupMode, GroupPlan, GroupSource, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    SyncSource, Update, UserPlan,
};
use crate::decide::schedule::{DEFAULT_RULE, Schedule};
use crate::observe::identity::directory::{Query, Session, scope_of};
use crate::observe::identity::ldap::{LdapTarget, presence_filter};
use crate::observe::identity::{connector_trust, resolve_secret};
use crate::runtime::{InitialLists, Shutdown, WatchBackoff, backoff_delay};
use crate::telemetry::{Metrics, SyncObjectLabels, SyncResultLabels, TriggerLabels};
use crate::types::conditions::SYNC_READY;
use crate::validation::identity::{IdpKind, split_host_port, validate_dex};

use super::objects::ClusterSecrets;
use super::{API_REQUEST_DEADLINE, Context as HealthContext, IdentitySettings};

/// Label that enables the sync of an `ldap` Connector.
pub const AUTO_SYNC_LABEL: &str = "cpaas.io/ldap.autoSync";
/// Annotation with the sync schedule (5-field cron, UTC).
pub const AUTO_SYNC_RULE_ANNOTATION: &str = "cpaas.io/ldap.autoSyncRule";
/// Annotation whose new value requests one sync now (this project's).
pub const SYNC_REQUEST_ANNOTATION: &str = "connectors.alauda.io/ldap.sync-request";
/// Annotation `"true"`: the group sync deletes synced Groups whose LDAP group is gone.
pub const PRUNE_ANNOTATION: &str = "connectors.alauda.io/ldap.prune";
/// Field manager of the sync's writes.
pub const SYNC_MANAGER: &str = "connectors-operator-sync";

/// SyncReady reasons.
pub mod reasons {
    pub const SYNCED: &str = "Synced";
    pub const EMPTY_RESULT: &str = "EmptyResult";
    pub const SEARCH_FAILED: &str = "SearchFailed";
    pub const CONNECTION_FAILED: &str = "ConnectionFailed";
    pub const INVALID_CONFIG: &str = "InvalidConfig";
    pub const INVALID_SCHEDULE: &str = "InvalidSchedule";
    pub const SECRET_NOT_READY: &str = "SecretNotReady";
    pub const WRITE_FAILED: &str = "WriteFailed";
    pub const GROUPS_API_NOT_SERVED: &str = "GroupsAPINotServed";
    pub const USERS_API_NOT_SERVED: &str = "UsersAPINotServed";
}
use reasons::*;

/// Bound of all LDAP searches of one sync.
const SEARCH_DEADLINE: Duration = Duration::from_secs(300);
/// Writes in flight at once.
const WRITE_CONCURRENCY: usize = 16;
/// User changes closer than this are judged together by the validity task.
const VALIDITY_COALESCE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} took longer than its deadline")]
    Deadline(&'static str),
}

struct SyncContext {
    client: Client,
    settings: IdentitySettings,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    users: Store<User>,
    connectors: Store<DexConnector>,
    health: Arc<HealthContext>,
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

fn label<'a>(c: &'a DexConnector, key: &str) -> Option<&'a str> {
    c.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn annotation<'a>(c: &'a DexConnector, key: &str) -> Option<&'a str> {
    c.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Whether the sync is enabled on `c`.
pub fn sync_enabled(c: &DexConnector) -> bool {
    c.type_.as_deref() == Some("ldap") && label(c, AUTO_SYNC_LABEL) == Some("true")
}

/// What of a Connector makes the sync look again: generation, the sync label and
/// annotations, deletion.
fn sync_relevant(c: &DexConnector) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.metadata.generation.hash(&mut h);
    label(c, AUTO_SYNC_LABEL).hash(&mut h);
    annotation(c, AUTO_SYNC_RULE_ANNOTATION).hash(&mut h);
    annotation(c, SYNC_REQUEST_ANNOTATION).hash(&mut h);
    annotation(c, PRUNE_ANNOTATION).hash(&mut h);
    c.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// Runs the sync controller and the validity task until `shutdown`.
pub(super) async fn run(
    client: Client,
    settings: IdentitySettings,
    health: Arc<HealthContext>,
    shutdown: Shutdown,
    lists: InitialLists,
) {
    let Some(metrics) = settings.metrics.clone() else {
        return;
    };
    let (users, users_writer) = reflector::store::<User>();
    let changed = Arc::new(Notify::new());
    let user_events = watch_users(&client, users_writer, changed.clone(), lists);
    let (connectors, connectors_writer) = reflector::store::<DexConnector>();
    let ctx = Arc::new(SyncContext {
        client: client.clone(),
        recorder: sync_recorder(&client, &settings),
        settings,
        metrics,
        users,
        connectors: connectors.clone(),
        health,
        failures: Default::default(),
    });
    let connector_events = watch_connectors(&ctx, connectors_writer, lists);
    let controller = Controller::for_stream(connector_events, connectors)
        .with_config(kube::runtime::controller::Config::default().concurrency(8))
        .graceful_shutdown_on(shutdown.clone().wait())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let sweep = sweep_when_ready(&ctx);
    let validity = validity_task(ctx.clone(), changed);
    tokio::select! {
        _ = async { futures::join!(controller, sweep) } => {}
        _ = user_events => {}
        _ = validity => {}
        _ = shutdown.wait() => {}
    }
}

/// Fills the User store; every User change wakes the validity task (`changed`).
fn watch_users(
    client: &Client,
    writer: reflector::store::Writer<User>,
    changed: Arc<Notify>,
    lists: InitialLists,
) -> impl Future<Output = ()> + Send + 'static {
    reflector(
        writer,
        watcher(Api::<User>::all(client.clone()), lists.config()),
    )
    .backoff(WatchBackoff::default())
    .applied_objects()
    .for_each(move |_| {
        changed.notify_one();
        futures::future::ready(())
    })
}

/// The Events recorder of the sync, named as the Lease holder where there is one.
fn sync_recorder(client: &Client, settings: &IdentitySettings) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: SYNC_MANAGER.into(),
            instance: settings
                .leader_election
                .as_ref()
                .map(|l| l.identity.clone()),
        },
    )
}

/// Fills the Connector store and yields the Connectors whose sync-relevant fields
/// changed; a deleted `ldap` Connector invalidates its Users at once.
fn watch_connectors(
    ctx: &Arc<SyncContext>,
    writer: reflector::store::Writer<DexConnector>,
    lists: InitialLists,
) -> impl futures::Stream<Item = Result<DexConnector, watcher::Error>> + Send + 'static {
    let ctx = ctx.clone();
    reflector(
        writer,
        watcher(Api::<DexConnector>::all(ctx.client.clone()), lists.config()),
    )
    .backoff(WatchBackoff::default())
    .inspect(move |event| {
        if let Ok(watcher::Event::Delete(c)) = event
            && c.type_.as_deref() == Some("ldap")
            && let Some(id) = c.id.clone()
        {
            let ctx = ctx.clone();
            tokio::spawn(async move { connector_gone(&ctx, &id).await });
        }
    })
    .touched_objects()
    .predicate_filter(sync_relevant, Default::default())
}

/// Invalidates the Users of Connectors deleted while no operator ran, once both stores
/// are filled (an empty store would make every User look orphaned).
async fn sweep_when_ready(ctx: &SyncContext) {
    if ctx.users.wait_until_ready().await.is_ok() && ctx.connectors.wait_until_ready().await.is_ok()
    {
        sweep_orphans(ctx).await;
    }
}

fn connector_key(c: &DexConnector) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or_default(),
        c.metadata.name.as_deref().unwrap_or_default()
    )
}

async fn reconcile(connector: Arc<DexConnector>, ctx: Arc<SyncContext>) -> Result<Action, Error> {
    if !sync_enabled(&connector) || connector.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Utc::now();
    let rule = annotation(&connector, AUTO_SYNC_RULE_ANNOTATION)
        .filter(|r| !r.trim().is_empty())
        .unwrap_or(DEFAULT_RULE);
    let schedule = match Schedule::parse(rule) {
        Ok(s) => s,
        Err(e) => {
            let condition = Desired::failed(
                SYNC_READY,
                INVALID_SCHEDULE,
                format!("annotation {AUTO_SYNC_RULE_ANNOTATION}: {e}"),
            );
            write_status(&ctx, &connector, condition, None).await?;
            return Ok(Action::await_change());
        }
    };
    let last = connector.status.as_ref().and_then(|s| s.last_sync.clone());
    let request = annotation(&connector, SYNC_REQUEST_ANNOTATION).map(str::to_string);
    let last_time = last
        .as_ref()
        .and_then(|l| l.time.as_deref())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let next_scheduled = last_time.and_then(|t| schedule.next_after(t));
    let due = match &last {
        None => true,
        Some(last) => {
            last.observed_generation != connector.metadata.generation
                || (request.is_some() && request != last.request)
                || last_time.is_none()
                || next_scheduled.is_some_and(|n| n <= now)
        }
    };
    if !due {
        return Ok(requeue_at(next_scheduled, now));
    }
    let started = Instant::now();
    let outcome = sync_once(&ctx, &connector, last.as_ref(), now).await;
    ctx.metrics
        .directory_sync_duration
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics
        .directory_syncs
        .get_or_create(&SyncResultLabels {
            result: outcome.result,
        })
        .inc();
    let mut last_sync = outcome
        .last_sync
        .unwrap_or_else(|| last.clone().unwrap_or_default());
    last_sync.request = request.clone();
    last_sync.observed_generation = connector.metadata.generation;
    write_status(&ctx, &connector, outcome.condition, Some(last_sync)).await?;
    let key = connector_key(&connector);
    if outcome.result != SYNCED {
        let failures = {
            let mut map = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(key).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        return Ok(Action::requeue(backoff_delay(
            failures,
            ctx.settings.min_backoff,
            ctx.settings.interval,
            0.0,
        )));
    }
    ctx.failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    Ok(requeue_at(schedule.next_after(now), now))
}

fn requeue_at(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Action {
    match next {
        Some(t) => Action::requeue(
            (t - now)
                .to_std()
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_secs(1)),
        ),
        None => Action::await_change(),
    }
}

fn error_policy(connector: Arc<DexConnector>, error: &Error, ctx: Arc<SyncContext>) -> Action {
    tracing::warn!(connector = %connector_key(&connector), error = %error, "directory sync failed");
    Action::requeue(ctx.settings.min_backoff)
}

/// What one sync came to.
struct Outcome {
    result: &'static str,
    condition: Desired,
    /// None: nothing was synced (the stored lastSync counts stay).
    last_sync: Option<LastSync>,
}

impl Outcome {
    fn failed(reason: &'static str, message: impl Into<String>) -> Self {
        Outcome {
            result: reason,
            condition: Desired::failed(SYNC_READY, reason, message),
            last_sync: None,
        }
    }
}

/// What LDAP holds for one Connector (also used by the e2e of the command).
pub struct DirectoryRead {
    pub users: Vec<directory::DirUser>,
    pub groups: Option<Vec<DirGroup>>,
    pub skipped: Vec<directory::Skipped>,
}

/// The searches of a Dex LDAP config: users, then groups (when `groupSearch` is set).
pub async fn read_directory(target: &LdapTarget) -> Result<DirectoryRead, (&'static str, String)> {
    let config = &target.config;
    let user_search = config.user_search.clone().unwrap_or_default();
    let group_search = config.group_search.clone();
    let mut session = Session::open(target)
        .await
        .map_err(|e| (CONNECTION_FAILED, e))?;
    let result = async {
        let user_entries = session
            .search(
                &user_query(&user_search, group_search.as_ref()),
                SEARCH_DEADLINE,
            )
            .await?;
        let group_entries = match &group_search {
            Some(gs) => Some(session.search(&group_query(gs), SEARCH_DEADLINE).await?),
            None => None,
        };
        Ok::<_, String>((user_entries, group_entries))
    }
    .await;
    session.close().await;
    let (user_entries, group_entries) = result.map_err(|e| (SEARCH_FAILED, e))?;
    let (users, mut skipped) = directory::users_from_entries(&user_entries, &user_search);
    let groups = match (group_entries, &group_search) {
        (Some(entries), Some(gs)) => {
            let (groups, group_skipped) =
                directory::groups_from_dex(&entries, &user_entries, &users, gs);
            skipped.extend(group_skipped);
            Some(groups)
        }
        _ => None,
    };
    Ok(DirectoryRead {
        users,
        groups,
        skipped,
    })
}

fn user_query(search: &UserSearch, groups: Option<&GroupSearch>) -> Query {
    let mut attributes: Vec<String> = [
        search.username.as_deref().unwrap_or("uid"),
        search.email_attr.as_deref().unwrap_or("mail"),
        search.name_attr.as_deref().unwrap_or_default(),
        search.id_attr.as_deref().unwrap_or_default(),
    ]
    .iter()
    .filter(|a| !a.is_empty())
    .map(|a| a.to_string())
    .collect();
    for m in groups
        .map(|g| g.user_matchers.as_slice())
        .unwrap_or_default()
    {
        if let Some(a) = m
            .user_attr
            .as_deref()
            .filter(|a| !a.eq_ignore_ascii_case("dn"))
        {
            attributes.push(a.to_string());
        }
    }
    Query {
        base: search.base_dn.clone().unwrap_or_default(),
        scope: scope_of(search.scope.as_deref()),
        filter: presence_filter(search.filter.as_deref(), &[]),
        attributes,
    }
}

fn group_query(search: &GroupSearch) -> Query {
    let mut attributes = vec![search.name_attr.clone().unwrap_or_else(|| "cn".into())];
    for m in &search.user_matchers {
        if let Some(a) = &m.group_attr {
            attributes.push(a.clone());
        }
    }
    Query {
        base: search.base_dn.clone().unwrap_or_default(),
        scope: scope_of(search.scope.as_deref()),
        filter: presence_filter(search.filter.as_deref(), &[]),
        attributes,
    }
}

/// The connection target of a Connector's LDAP config (its Secret resolved).
async fn target_of(
    ctx: &SyncContext,
    namespace: &str,
    config: &LdapConfig,
) -> Result<LdapTarget, (&'static str, String)> {
    let anonymous = config.bind_dn.as_deref().is_none_or(str::is_empty);
    let objects = ClusterSecrets {
        client: &ctx.client,
    };
    let (facts, password) = resolve_secret(
        &objects,
        namespace,
        config.bind_pw.as_deref(),
        config.bind_pw_ref.as_ref(),
        anonymous,
    )
    .await
    .map_err(|e| (SECRET_NOT_READY, e.to_string()))?;
    if !facts.usable() {
        return Err((
            SECRET_NOT_READY,
            "the bind password is not available (see SecretReady)".into(),
        ));
    }
    let root_ca: Vec<String> = config.root_ca.iter().cloned().collect();
    Ok(LdapTarget {
        config: config.clone(),
        password,
        secret_usable: true,
        trust: connector_trust(
            &ctx.health.global_trust(),
            config.root_ca_data.as_deref(),
            &root_ca,
        ),
        timeout: ctx.settings.timeout,
        destinations: ctx.settings.destinations,
    })
}

async fn sync_once(
    ctx: &SyncContext,
    connector: &DexConnector,
    last: Option<&LastSync>,
    now: DateTime<Utc>,
) -> Outcome {
    let (config, read) = match read_connector_directory(ctx, connector).await {
        Ok(observed) => observed,
        Err(outcome) => return outcome,
    };
    let source = SyncSource {
        connector_id: connector.id.clone().unwrap_or_default(),
        connector_name: connector.name.clone().unwrap_or_default(),
    };
    let existing: Vec<User> = ctx.users.state().iter().map(|u| (**u).clone()).collect();
    let groups = read.groups.clone().unwrap_or_default();
    let plan = directory::plan_users(
        &source,
        &read.users,
        read.skipped.clone(),
        &groups,
        &existing,
        last.is_some_and(|l| l.users > 0),
        now,
    );
    if plan.empty_result {
        return Outcome::failed(
            EMPTY_RESULT,
            "the user search returned no entry where the last sync found users: nothing was changed",
        );
    }
    let mut errors = write_users(ctx, &plan).await;
    record_objects(&ctx.metrics, "user", &plan);
    let mut last_sync = users_last_sync(&plan, now);
    let mut conflicts: Vec<String> = plan.conflicts.iter().map(|c| c.reason.clone()).collect();
    let mut groups_not_synced = None;
    if let Some(dir_groups) = &read.groups {
        let synced = sync_groups(ctx, connector, &config, dir_groups, now, &mut last_sync).await;
        errors.extend(synced.errors);
        conflicts.extend(synced.conflicts);
        groups_not_synced = synced.not_synced;
    }
    if !conflicts.is_empty() {
        publish_conflicts(ctx, connector, &conflicts);
    }
    let summary = sync_summary(&last_sync);
    tracing::info!(connector = %connector_key(connector), %summary, "directory synced");
    let (result, condition) = sync_condition(summary, &errors, groups_not_synced);
    Outcome {
        result,
        condition,
        last_sync: Some(last_sync),
    }
}

/// The Connector's LDAP config and what its directory holds, or the failed Outcome
/// where the config, the User API, the bind Secret or the directory is not usable.
async fn read_connector_directory(
    ctx: &SyncContext,
    connector: &DexConnector,
) -> Result<(Box<LdapConfig>, DirectoryRead), Outcome> {
    let validation = validate_dex(connector);
    let config = match (&validation.kind, validation.errors.is_empty()) {
        (Some(IdpKind::Ldap(config)), true) => config.clone(),
        _ => {
            return Err(Outcome::failed(
                INVALID_CONFIG,
                "the LDAP config is invalid (see ConfigValid)",
            ));
        }
    };
    if tokio::time::timeout(API_REQUEST_DEADLINE, ctx.users.wait_until_ready())
        .await
        .is_err()
    {
        return Err(Outcome::failed(
            USERS_API_NOT_SERVED,
            "Users (auth.alauda.io/v1) cannot be listed: install config/identity-users",
        ));
    }
    let namespace = connector.metadata.namespace.clone().unwrap_or_default();
    let failed = |(reason, message)| Outcome::failed(reason, message);
    let target = target_of(ctx, &namespace, &config).await.map_err(failed)?;
    let read = read_directory(&target).await.map_err(failed)?;
    Ok((config, read))
}

/// `status.lastSync` of the user part of a run (the group part adds to it).
fn users_last_sync(plan: &UserPlan, now: DateTime<Utc>) -> LastSync {
    LastSync {
        time: Some(now.to_rfc3339_opts(SecondsFormat::Secs, true)),
        users: plan.users as i64,
        groups: 0,
        created: plan.creates.len() as i64,
        updated: plan.updates.len() as i64,
        invalidated: plan.invalidations.len() as i64,
        skipped: plan.skipped.len() as i64,
        conflicts: plan.conflicts.len() as i64,
        ..LastSync::default()
    }
}

/// What the group part of a run leaves to report.
#[derive(Default)]
struct GroupsSynced {
    errors: Vec<String>,
    conflicts: Vec<String>,
    /// Why no Group was written (reason, note), where none was.
    not_synced: Option<(&'static str, String)>,
}

/// Syncs the Groups of `dir_groups` (with prune on the Connector's annotation), adding
/// the counts to `last_sync`.
async fn sync_groups(
    ctx: &SyncContext,
    connector: &DexConnector,
    config: &LdapConfig,
    dir_groups: &[DirGroup],
    now: DateTime<Utc>,
    last_sync: &mut LastSync,
) -> GroupsSynced {
    let mut synced = GroupsSynced::default();
    match groups_served(&ctx.client).await {
        Ok(true) => {}
        Ok(false) => {
            synced.not_synced = Some((
                GROUPS_API_NOT_SERVED,
                "groupSearch is set but user.openshift.io/v1 groups is not served by this cluster: Groups not synced (install config/identity-groups)".into(),
            ));
            return synced;
        }
        Err(e) => {
            synced
                .errors
                .push(format!("discovery of user.openshift.io/v1: {e}"));
            return synced;
        }
    }
    let existing = match list_groups(&ctx.client).await {
        Ok(existing) => existing,
        Err(e) => {
            synced.errors.push(format!("listing Groups: {e}"));
            return synced;
        }
    };
    let (host, port) = split_host_port(
        config.host.as_deref().unwrap_or_default(),
        config.default_port(),
    )
    .unwrap_or_default();
    let mode = if annotation(connector, PRUNE_ANNOTATION) == Some("true") {
        GroupMode::SyncAndPrune
    } else {
        GroupMode::Sync
    };
    let time = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let plan = directory::plan_groups(
        &GroupSource { host, port },
        dir_groups,
        &existing,
        mode,
        &time,
    );
    if plan.empty_result {
        synced.not_synced = Some((
            EMPTY_RESULT,
            "the group search returned no entry where synced Groups exist: Groups unchanged".into(),
        ));
        return synced;
    }
    synced.errors = write_groups(&ctx.client, &plan).await;
    record_groups(&ctx.metrics, &plan);
    add_group_counts(last_sync, &plan, mode);
    synced.conflicts = plan.conflicts.iter().map(|c| c.reason.clone()).collect();
    synced
}

fn add_group_counts(last_sync: &mut LastSync, plan: &GroupPlan, mode: GroupMode) {
    last_sync.groups = plan.groups as i64;
    last_sync.created += plan.creates.len() as i64;
    last_sync.updated += plan.updates.len() as i64;
    last_sync.skipped += plan.skipped.len() as i64;
    last_sync.conflicts += plan.conflicts.len() as i64;
    // Only a pruning run reports a prune count (none is not zero).
    if mode == GroupMode::SyncAndPrune {
        last_sync.pruned = Some(plan.prunes.len() as i64);
    }
}

fn sync_summary(last_sync: &LastSync) -> String {
    format!(
        "{} users, {} groups: {} created, {} updated, {} invalidated, {} skipped, {} conflicts",
        last_sync.users,
        last_sync.groups,
        last_sync.created,
        last_sync.updated,
        last_sync.invalidated,
        last_sync.skipped,
        last_sync.conflicts
    )
}

/// The result and `SyncReady` of a run: failed writes outrank Groups not synced.
fn sync_condition(
    summary: String,
    errors: &[String],
    groups_not_synced: Option<(&'static str, String)>,
) -> (&'static str, Desired) {
    if !errors.is_empty() {
        let shown: Vec<&str> = errors.iter().take(3).map(String::as_str).collect();
        (
            WRITE_FAILED,
            Desired::failed(
                SYNC_READY,
                WRITE_FAILED,
                format!(
                    "{summary}; {} writes failed: {}",
                    errors.len(),
                    shown.join("; ")
                ),
            ),
        )
    } else if let Some((reason, note)) = groups_not_synced {
        (
            reason,
            Desired::failed(SYNC_READY, reason, format!("{summary}; {note}")),
        )
    } else {
        (SYNCED, Desired::ok(SYNC_READY, SYNCED, summary))
    }
}

fn record_objects(metrics: &Metrics, kind: &'static str, plan: &UserPlan) {
    for (action, n) in [
        ("created", plan.creates.len()),
        ("updated", plan.updates.len()),
        ("invalidated", plan.invalidations.len()),
        ("unchanged", plan.unchanged),
        ("skipped", plan.skipped.len()),
        ("conflict", plan.conflicts.len()),
    ] {
        metrics
            .directory_sync_objects
            .get_or_create(&SyncObjectLabels { kind, action })
            .inc_by(n as u64);
    }
}

fn record_groups(metrics: &Metrics, plan: &GroupPlan) {
    for (action, n) in [
        ("created", plan.creates.len()),
        ("updated", plan.updates.len()),
        ("pruned", plan.prunes.len()),
        ("unchanged", plan.unchanged.len()),
        ("skipped", plan.skipped.len()),
        ("conflict", plan.conflicts.len()),
    ] {
        metrics
            .directory_sync_objects
            .get_or_create(&SyncObjectLabels {
                kind: "group",
                action,
            })
            .inc_by(n as u64);
    }
}

/// Whether the apiserver serves `user.openshift.io/v1` `groups` (OpenShift itself, or
/// the stand-in CRD of config/identity-groups).
pub async fn groups_served(client: &Client) -> Result<bool, String> {
    match tokio::time::timeout(
        API_REQUEST_DEADLINE,
        client.list_api_group_resources("user.openshift.io/v1"),
    )
    .await
    {
        Ok(Ok(list)) => Ok(list.resources.iter().any(|r| r.name == "groups")),
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => Ok(false),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("discovery took longer than its deadline".into()),
    }
}

/// Every Group of the cluster.
pub async fn list_groups(client: &Client) -> Result<Vec<Group>, kube::Error> {
    let api = Api::<Group>::all(client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

async fn write_users(ctx: &SyncContext, plan: &UserPlan) -> Vec<String> {
    let api = Api::<User>::all(ctx.client.clone());
    let creates: Vec<_> = plan
        .creates
        .iter()
        .cloned()
        .map(|u| create_user(api.clone(), u))
        .collect();
    let mut errors = run_all(creates).await;
    let patches: Vec<_> = plan
        .updates
        .iter()
        .chain(&plan.invalidations)
        .cloned()
        .map(|u| patch_user(api.clone(), u))
        .collect();
    errors.extend(run_all(patches).await);
    errors
}

/// Runs `writes`, `WRITE_CONCURRENCY` at a time; the messages of the failed ones.
async fn run_all<F>(writes: Vec<F>) -> Vec<String>
where
    F: Future<Output = Result<(), String>>,
{
    futures::stream::iter(writes)
        .buffer_unordered(WRITE_CONCURRENCY)
        .filter_map(|r| futures::future::ready(r.err()))
        .collect()
        .await
}

async fn create_user(api: Api<User>, user: User) -> Result<(), String> {
    let params = PostParams {
        field_manager: Some(SYNC_MANAGER.into()),
        ..PostParams::default()
    };
    let name = user.metadata.name.clone().unwrap_or_default();
    bounded(api.create(&params, &user))
        .await
        .map(|_| ())
        .map_err(|e| format!("creating User {name}: {e}"))
}

async fn patch_user(api: Api<User>, update: Update) -> Result<(), String> {
    let params = PatchParams {
        field_manager: Some(SYNC_MANAGER.into()),
        ..PatchParams::default()
    };
    bounded(api.patch(&update.name, &params, &Patch::Merge(&update.patch)))
        .await
        .map(|_| ())
        .map_err(|e| format!("updating User {}: {e}", update.name))
}

async fn bounded<T>(f: impl Future<Output = Result<T, kube::Error>>) -> Result<T, String> {
    match tokio::time::timeout(API_REQUEST_DEADLINE, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("took longer than its deadline".into()),
    }
}

/// Creates, updates and prunes of a group plan; the messages of failed writes.
pub async fn write_groups(client: &Client, plan: &GroupPlan) -> Vec<String> {
    let api = Api::<Group>::all(client.clone());
    let mut errors = Vec::new();
    let params = PostParams {
        field_manager: Some(SYNC_MANAGER.into()),
        ..PostParams::default()
    };
    for g in &plan.creates {
        let name = g.metadata.name.clone().unwrap_or_default();
        if let Err(e) = bounded(api.create(&params, g)).await {
            errors.push(format!("creating Group {name}: {e}"));
        }
    }
    let patch_params = PatchParams {
        field_manager: Some(SYNC_MANAGER.into()),
        ..PatchParams::default()
    };
    for (_, update) in &plan.updates {
        if let Err(e) =
            bounded(api.patch(&update.name, &patch_params, &Patch::Merge(&update.patch))).await
        {
            errors.push(format!("updating Group {}: {e}", update.name));
        }
    }
    for name in &plan.prunes {
        if let Err(e) = bounded(api.delete(name, &Default::default())).await {
            errors.push(format!("deleting Group {name}: {e}"));
        }
    }
    errors
}

/// Writes `SyncReady` (merged with the stored conditions, the others kept) and
/// `lastSync` when they differ from the stored ones.
async fn write_status(
    ctx: &SyncContext,
    connector: &DexConnector,
    desired: Desired,
    last_sync: Option<LastSync>,
) -> Result<(), Error> {
    let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
    let name = connector.metadata.name.as_deref().unwrap_or_default();
    let api = Api::<DexConnector>::namespaced(ctx.client.clone(), namespace);
    let mut current = connector.clone();
    // The conditions list is shared with the health check: a write from a stale read
    // fails (409) and is made again from the stored object.
    for attempt in 0..3 {
        let stored = current.status.clone().unwrap_or_default();
        let now = crate::runtime::now();
        let mine = merge(&stored.conditions, std::slice::from_ref(&desired), &now);
        let mut conditions: Vec<_> = stored
            .conditions
            .iter()
            .filter(|c| c.type_ != SYNC_READY)
            .cloned()
            .collect();
        conditions.extend(mine);
        let last_sync = last_sync.clone().or(stored.last_sync.clone());
        if conditions == stored.conditions && last_sync == stored.last_sync {
            return Ok(());
        }
        let mut status = serde_json::json!({"conditions": conditions});
        if let Some(l) = &last_sync {
            status["lastSync"] = serde_json::to_value(l).unwrap_or(Value::Null);
        }
        let patch = serde_json::json!({
            "apiVersion": DexConnector::api_version(&()),
            "kind": DexConnector::kind(&()),
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "status": status,
        });
        let params = PatchParams::apply(SYNC_MANAGER).force();
        let written = tokio::time::timeout(
            API_REQUEST_DEADLINE,
            api.patch_status(name, &params, &Patch::Apply(&patch)),
        )
        .await
        .map_err(|_| Error::Deadline("writing a status"))?;
        match written {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 2 => {
                current = tokio::time::timeout(API_REQUEST_DEADLINE, api.get_status(name))
                    .await
                    .map_err(|_| Error::Deadline("reading a Connector"))??;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One Warning event per sync with conflicts: how many, and the first few.
fn publish_conflicts(ctx: &SyncContext, connector: &DexConnector, conflicts: &[String]) {
    let shown: Vec<&str> = conflicts.iter().take(5).map(String::as_str).collect();
    let more = conflicts.len().saturating_sub(shown.len());
    let mut note = format!(
        "{} objects not owned by this sync left unchanged: {}",
        conflicts.len(),
        shown.join("; ")
    );
    if more > 0 {
        note.push_str(&format!("; and {more} more"));
    }
    note.truncate(1000);
    let event = Event {
        type_: EventType::Warning,
        reason: "SyncConflict".into(),
        note: Some(note),
        action: "Sync".into(),
        secondary: None,
    };
    let reference = connector.object_ref(&());
    let recorder = ctx.recorder.clone();
    let metrics = ctx.metrics.clone();
    tokio::spawn(async move {
        match recorder.publish(&event, &reference).await {
            Ok(()) => {
                metrics.events.inc();
            }
            Err(e) => tracing::warn!(error = %e, "could not record event"),
        };
    });
}

/// A Connector was deleted: its Users are invalidated (unless another Connector has
/// the same id).
async fn connector_gone(ctx: &SyncContext, id: &str) {
    if ctx
        .connectors
        .state()
        .iter()
        .any(|c| c.id.as_deref() == Some(id))
    {
        return;
    }
    let users: Vec<User> = ctx.users.state().iter().map(|u| (**u).clone()).collect();
    let updates = directory::invalidate_all(id, &users);
    if updates.is_empty() {
        return;
    }
    let api = Api::<User>::all(ctx.client.clone());
    let n = updates.len();
    let writes: Vec<_> = updates
        .into_iter()
        .map(|u| patch_user(api.clone(), u))
        .collect();
    let errors = run_all(writes).await;
    ctx.metrics
        .directory_sync_objects
        .get_or_create(&SyncObjectLabels {
            kind: "user",
            action: "invalidated",
        })
        .inc_by((n - errors.len()) as u64);
    tracing::info!(
        connector_id = id,
        invalidated = n - errors.len(),
        failed = errors.len(),
        "Connector deleted: its Users invalidated"
    );
}

/// At start: owned Users whose Connector no longer exists are invalidated.
async fn sweep_orphans(ctx: &SyncContext) {
    let ids: BTreeSet<String> = ctx
        .users
        .state()
        .iter()
        .filter(|u| {
            u.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .is_some_and(|v| v == MANAGED_BY_VALUE)
        })
        .filter_map(|u| u.spec.connector_id.clone())
        .collect();
    for id in ids {
        connector_gone(ctx, &id).await;
    }
}

/// Disables expired Users; sleeps until the next expiry or a User change.
async fn validity_task(ctx: Arc<SyncContext>, changed: Arc<Notify>) {
    if ctx.users.wait_until_ready().await.is_err() {
        return;
    }
    let api = Api::<User>::all(ctx.client.clone());
    let mut trigger = "change";
    loop {
        ctx.metrics
            .user_validity_checks
            .get_or_create(&TriggerLabels { trigger })
            .inc();
        let users: Vec<User> = ctx.users.state().iter().map(|u| (**u).clone()).collect();
        let now = Utc::now();
        let plan = directory::validity(&users, now);
        drop(users);
        for update in &plan.disable {
            match patch_user(api.clone(), update.clone()).await {
                Ok(()) => {
                    ctx.metrics.user_disables.inc();
                    tracing::info!(user = %update.name, "User expired: disabled");
                }
                Err(e) => tracing::warn!(error = %e, "could not disable an expired User"),
            }
        }
        // A failed write is tried again on the next change or within a minute.
        let retry = (!plan.disable.is_empty()).then(|| now + chrono::Duration::seconds(60));
        let wake = match (plan.next_expiry, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep((t - Utc::now()).to_std().unwrap_or_default()).await,
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = sleep => trigger = "timer",
            _ = changed.notified() => {
                trigger = "change";
                tokio::time::sleep(VALIDITY_COALESCE).await;
            }
        }
    }
}
