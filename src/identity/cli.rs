//! `connectors-operator groups sync|prune` (SPEC-identity section 4): OpenShift's
//! `oc adm groups sync|prune` on OpenShift's `LDAPSyncConfig`, with the controller's
//! planner (`decide::directory::plan_groups`), its LDAP reads (paged, bounded) and its
//! writes.
//!
//! As `oc`: without `--confirm` nothing is written: `sync` prints the Groups it would
//! leave in place as a YAML `List`, `prune` the `group/<name>` it would delete. With
//! `--confirm` the same is written (creates, updates of what differs, deletes). Groups
//! not carrying this server's marks are never touched (reported on stderr, exit 1).
//! `--whitelist` / `--blacklist` files hold one LDAP group UID (or Group name) per line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Deserialize;

use crate::api::Group;
use crate::api::dex::LdapConfig;
use crate::decide::directory::{
    self, DirGroup, Entry, GroupMode, GroupPlan, GroupSource, OcSchema, Skipped,
};
use crate::observe::identity::connector_trust;
use crate::observe::identity::directory::{Query, Session, scope_of};
use crate::observe::identity::ldap::{LdapTarget, Password, presence_filter};
use crate::probe::{DestinationPolicy, TrustBundle};

use super::sync::{groups_served, list_groups, write_groups};

/// `groups` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupsCommand {
    /// Sync LDAP groups into Groups (user.openshift.io/v1), as `oc adm groups sync`.
    Sync(GroupsArgs),
    /// Delete Groups synced from this LDAP server whose LDAP group is gone, as `oc adm
    /// groups prune`.
    Prune(GroupsArgs),
}

#[derive(clap::Args, Debug)]
pub struct GroupsArgs {
    /// OpenShift `LDAPSyncConfig` (YAML or JSON).
    #[arg(long = "sync-config", required = true)]
    pub sync_config: PathBuf,
    /// Write; without it nothing is written (dry run).
    #[arg(long)]
    pub confirm: bool,
    /// File of LDAP group UIDs (or Group names) to include, one per line.
    #[arg(long)]
    pub whitelist: Option<PathBuf>,
    /// File of LDAP group UIDs (or Group names) to leave out, one per line.
    #[arg(long)]
    pub blacklist: Option<PathBuf>,
    /// Bound of each LDAP and apiserver step, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// A string given inline, or `{value}`, `{file}`, `{env}` (OpenShift's StringSource).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum StringSource {
    Inline(String),
    Source {
        #[serde(default)]
        value: Option<String>,
        #[serde(default)]
        file: Option<String>,
        #[serde(default)]
        env: Option<String>,
    },
}

impl StringSource {
    fn resolve(&self) -> Result<String, String> {
        match self {
            StringSource::Inline(v) => Ok(v.clone()),
            StringSource::Source { value: Some(v), .. } => Ok(v.clone()),
            StringSource::Source { file: Some(f), .. } => std::fs::read_to_string(f)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("bindPassword file {f}: {e}")),
            StringSource::Source { env: Some(e), .. } => {
                std::env::var(e).map_err(|_| format!("bindPassword env {e} is not set"))
            }
            _ => Ok(String::new()),
        }
    }
}

/// `groupsQuery` / `usersQuery`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LdapQuery {
    #[serde(default, rename = "baseDN")]
    pub base_dn: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub deref_aliases: Option<String>,
    #[serde(default)]
    pub time_limit: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u32>,
}

/// One of the three schemas (fields of all three; each uses its own).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaConfig {
    #[serde(default)]
    pub groups_query: Option<LdapQuery>,
    #[serde(default, rename = "groupUIDAttribute")]
    pub group_uid_attribute: Option<String>,
    #[serde(default)]
    pub group_name_attributes: Vec<String>,
    #[serde(default)]
    pub group_membership_attributes: Vec<String>,
    #[serde(default)]
    pub users_query: Option<LdapQuery>,
    #[serde(default, rename = "userUIDAttribute")]
    pub user_uid_attribute: Option<String>,
    #[serde(default)]
    pub user_name_attributes: Vec<String>,
    #[serde(default)]
    pub tolerate_member_not_found_errors: bool,
    #[serde(default)]
    pub tolerate_member_out_of_scope_errors: bool,
}

/// OpenShift's `LDAPSyncConfig` (`kind: LDAPSyncConfig`, `apiVersion: v1`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LdapSyncConfig {
    #[serde(default)]
    pub kind: Option<String>,
    pub url: String,
    #[serde(default, rename = "bindDN")]
    pub bind_dn: Option<String>,
    #[serde(default)]
    pub bind_password: Option<StringSource>,
    #[serde(default)]
    pub insecure: bool,
    /// A CA bundle file.
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default, rename = "groupUIDNameMapping")]
    pub group_uid_name_mapping: BTreeMap<String, String>,
    #[serde(default)]
    pub rfc2307: Option<SchemaConfig>,
    #[serde(default)]
    pub active_directory: Option<SchemaConfig>,
    #[serde(default)]
    pub augmented_active_directory: Option<SchemaConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rfc2307,
    ActiveDirectory,
    Augmented,
}

impl LdapSyncConfig {
    fn schema(&self) -> Result<(Kind, &SchemaConfig), String> {
        match (
            &self.rfc2307,
            &self.active_directory,
            &self.augmented_active_directory,
        ) {
            (Some(s), None, None) => Ok((Kind::Rfc2307, s)),
            (None, Some(s), None) => Ok((Kind::ActiveDirectory, s)),
            (None, None, Some(s)) => Ok((Kind::Augmented, s)),
            _ => Err(
                "exactly one of rfc2307, activeDirectory, augmentedActiveDirectory must be set"
                    .into(),
            ),
        }
    }

    /// (host, port, TLS kind) of `url`: `ldaps://` is TLS; `ldap://` is StartTLS unless
    /// `insecure` (plain).
    fn endpoint(&self) -> Result<(String, u16, bool, bool), String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("url {:?}: {e}", self.url))?;
        let ldaps = match url.scheme() {
            "ldaps" => true,
            "ldap" => false,
            other => return Err(format!("url scheme {other:?} is not ldap or ldaps")),
        };
        if ldaps && self.insecure {
            return Err("insecure: true cannot be used with an ldaps:// url".into());
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("url {:?} has no host", self.url))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port().unwrap_or(if ldaps { 636 } else { 389 });
        Ok((host, port, ldaps, !ldaps && !self.insecure))
    }
}

/// Parses an `LDAPSyncConfig` document.
pub fn parse_sync_config(text: &str) -> Result<LdapSyncConfig, String> {
    let config: LdapSyncConfig =
        serde_yaml::from_str(text).map_err(|e| format!("not an LDAPSyncConfig: {e}"))?;
    if let Some(kind) = &config.kind
        && kind != "LDAPSyncConfig"
    {
        return Err(format!("kind {kind:?} is not LDAPSyncConfig"));
    }
    config.schema()?;
    config.endpoint()?;
    Ok(config)
}

fn read_list(path: Option<&Path>) -> Result<Vec<String>, String> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Runs `groups sync` or `groups prune`.
pub fn main(command: GroupsCommand) -> ExitCode {
    let (args, mode) = match command {
        GroupsCommand::Sync(a) => (a, GroupMode::Sync),
        GroupsCommand::Prune(a) => (a, GroupMode::PruneOnly),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    match runtime.block_on(run(&args, mode)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => fail(e),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(1)
}

/// What LDAP holds, as Groups.
pub async fn read_groups(
    config: &LdapSyncConfig,
    timeout: Duration,
) -> Result<(GroupSource, Vec<DirGroup>, Vec<Skipped>), String> {
    let (kind, schema_config) = config.schema()?;
    let (host, port, _ldaps, start_tls) = config.endpoint()?;
    let target = ldap_target(config, &host, port, start_tls, timeout)?;
    let schema = oc_schema(config, schema_config);
    let users_query = schema_config
        .users_query
        .clone()
        .ok_or("usersQuery is required")?;
    let (user_attrs, group_attrs) = search_attributes(kind, &schema);
    let users_query = query_of(&users_query, user_attrs);
    let groups_query = schema_config
        .groups_query
        .as_ref()
        .map(|q| query_of(q, group_attrs));
    let (users, groups) =
        search_directory(&target, kind, &users_query, groups_query, timeout).await?;
    let (dir, skipped) = match kind {
        Kind::Rfc2307 => {
            directory::groups_rfc2307(groups.as_deref().unwrap_or_default(), &users, &schema)
        }
        _ => directory::groups_active_directory(groups.as_deref(), &users, &schema),
    };
    Ok((GroupSource { host, port }, dir, skipped))
}

/// The connection target of an `LDAPSyncConfig` (its bind password resolved, its CA
/// file checked).
fn ldap_target(
    config: &LdapSyncConfig,
    host: &str,
    port: u16,
    start_tls: bool,
    timeout: Duration,
) -> Result<LdapTarget, String> {
    let password = match &config.bind_password {
        Some(p) => Some(Password(p.resolve()?)),
        None => None,
    };
    let host_port = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let ldap = LdapConfig {
        host: Some(host_port),
        insecure_no_ssl: config.insecure,
        start_tls,
        bind_dn: config.bind_dn.clone(),
        ..LdapConfig::default()
    };
    let cas: Vec<String> = config.ca.iter().cloned().collect();
    if let Some(ca) = &config.ca {
        std::fs::metadata(ca).map_err(|e| format!("ca {ca}: {e}"))?;
    }
    Ok(LdapTarget {
        config: ldap,
        password,
        secret_usable: true,
        trust: connector_trust(&TrustBundle::empty(), None, &cas),
        timeout,
        // An administrator's command: any address they name.
        destinations: DestinationPolicy::AllowLoopback,
    })
}

/// The planner's view of the schema (`oc`'s defaults filled in).
fn oc_schema(config: &LdapSyncConfig, schema_config: &SchemaConfig) -> OcSchema {
    OcSchema {
        group_uid_attribute: schema_config
            .group_uid_attribute
            .clone()
            .unwrap_or_else(|| "dn".into()),
        group_name_attributes: schema_config.group_name_attributes.clone(),
        group_membership_attributes: schema_config.group_membership_attributes.clone(),
        user_uid_attribute: schema_config
            .user_uid_attribute
            .clone()
            .unwrap_or_else(|| "dn".into()),
        user_name_attributes: schema_config.user_name_attributes.clone(),
        uid_name_mapping: config.group_uid_name_mapping.clone(),
    }
}

/// The attributes to read of users and of groups: membership sits on the groups in
/// RFC 2307, on the users otherwise.
fn search_attributes(kind: Kind, schema: &OcSchema) -> (Vec<String>, Vec<String>) {
    let mut user_attrs = schema.user_name_attributes.clone();
    user_attrs.push(schema.user_uid_attribute.clone());
    if kind != Kind::Rfc2307 {
        user_attrs.extend(schema.group_membership_attributes.clone());
    }
    let mut group_attrs = schema.group_name_attributes.clone();
    group_attrs.push(schema.group_uid_attribute.clone());
    if kind == Kind::Rfc2307 {
        group_attrs.extend(schema.group_membership_attributes.clone());
    }
    (user_attrs, group_attrs)
}

/// The search of `q` for `attrs` (`dn` is not an attribute: every entry has it).
fn query_of(q: &LdapQuery, attrs: Vec<String>) -> Query {
    Query {
        base: q.base_dn.clone(),
        scope: scope_of(q.scope.as_deref()),
        filter: presence_filter(q.filter.as_deref(), &[]),
        attributes: attrs
            .into_iter()
            .filter(|a| !a.eq_ignore_ascii_case("dn"))
            .collect(),
    }
}

/// The user entries and, where the schema has group entries, the group entries, in
/// one session (closed whatever the outcome).
async fn search_directory(
    target: &LdapTarget,
    kind: Kind,
    users_query: &Query,
    groups_query: Option<Query>,
    timeout: Duration,
) -> Result<(Vec<Entry>, Option<Vec<Entry>>), String> {
    let deadline = timeout * 10;
    let mut session = Session::open(target).await?;
    let read = async {
        let users: Vec<Entry> = session.search(users_query, deadline).await?;
        let groups = match (&groups_query, kind) {
            (Some(q), Kind::Rfc2307 | Kind::Augmented) => Some(session.search(q, deadline).await?),
            (None, Kind::Rfc2307 | Kind::Augmented) => {
                return Err("groupsQuery is required".to_string());
            }
            _ => None,
        };
        Ok((users, groups))
    }
    .await;
    session.close().await;
    read
}

/// Runs `groups sync` or `groups prune`, planned against the Groups of the cluster.
async fn run(args: &GroupsArgs, mode: GroupMode) -> Result<bool, String> {
    let text = std::fs::read_to_string(&args.sync_config)
        .map_err(|e| format!("{}: {e}", args.sync_config.display()))?;
    let config = parse_sync_config(&text)?;
    let whitelist = read_list(args.whitelist.as_deref())?;
    let blacklist = read_list(args.blacklist.as_deref())?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let (source, dir, skipped) = read_groups(&config, timeout).await?;
    let dir = directory::filter_groups(dir, &whitelist, &blacklist);
    let (client, existing) = cluster_groups(args.confirm, timeout).await?;
    // With a whitelist, prune looks only at the listed Groups (as oc).
    let existing = if mode == GroupMode::PruneOnly && !whitelist.is_empty() {
        whitelisted(existing, &whitelist)
    } else {
        existing
    };
    let time = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let plan = directory::plan_groups(&source, &dir, &existing, mode, &time);
    report(&plan, &skipped);
    if plan.empty_result {
        return Err(
            "the LDAP search returned no group where synced Groups exist: nothing done".into(),
        );
    }
    match mode {
        GroupMode::PruneOnly => {
            for name in &plan.prunes {
                println!("group/{name}");
            }
        }
        _ => print!("{}", groups_list_yaml(&plan.desired())?),
    }
    let mut ok = plan.conflicts.is_empty();
    if args.confirm
        && let Some(client) = client
    {
        let errors = write_groups(&client, &plan).await;
        for e in &errors {
            eprintln!("error: {e}");
        }
        ok &= errors.is_empty();
    }
    Ok(ok)
}

/// The cluster's client and Groups. Without `confirm` (a dry run) a missing cluster or
/// Group API plans against no Groups, with a warning; with it, that is an error.
async fn cluster_groups(
    confirm: bool,
    timeout: Duration,
) -> Result<(Option<kube::Client>, Vec<Group>), String> {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) if !confirm => {
            eprintln!("warning: no cluster ({e}): planned against no Groups");
            return Ok((None, Vec::new()));
        }
        Err(e) => return Err(format!("no cluster: {e}")),
    };
    match groups_served(&client).await? {
        true => {
            let groups = tokio::time::timeout(timeout, list_groups(&client))
                .await
                .map_err(|_| "listing Groups took too long".to_string())?
                .map_err(|e| format!("listing Groups: {e}"))?;
            Ok((Some(client), groups))
        }
        false if !confirm => {
            eprintln!(
                "warning: user.openshift.io/v1 groups is not served by this cluster: planned against no Groups"
            );
            Ok((None, Vec::new()))
        }
        false => Err(
            "user.openshift.io/v1 groups is not served by this cluster (install config/identity-groups)".into(),
        ),
    }
}

/// The Groups of `existing` that `whitelist` names, by Group name or LDAP group UID.
fn whitelisted(existing: Vec<Group>, whitelist: &[String]) -> Vec<Group> {
    existing
        .into_iter()
        .filter(|g| {
            let uid = g
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(directory::LDAP_UID_ANNOTATION));
            whitelist.iter().any(|w| {
                Some(w) == g.metadata.name.as_ref()
                    || uid.is_some_and(|u| directory::normalise(u) == directory::normalise(w))
            })
        })
        .collect()
}

fn report(plan: &GroupPlan, skipped: &[Skipped]) {
    for c in &plan.conflicts {
        eprintln!("error: {}", c.reason);
    }
    for s in skipped.iter().chain(&plan.skipped) {
        eprintln!("warning: skipped {}: {}", s.what, s.reason);
    }
}

/// Groups as a YAML `List` (what `oc adm groups sync` prints).
pub fn groups_list_yaml(groups: &[crate::api::Group]) -> Result<String, String> {
    let items: Vec<serde_json::Value> = groups
        .iter()
        .map(|g| {
            let mut meta = serde_json::to_value(&g.metadata).unwrap_or_default();
            if let Some(m) = meta.as_object_mut() {
                for k in [
                    "resourceVersion",
                    "uid",
                    "creationTimestamp",
                    "managedFields",
                    "generation",
                ] {
                    m.remove(k);
                }
            }
            serde_json::json!({
                "apiVersion": g.api_version, "kind": g.kind,
                "metadata": meta, "users": g.users,
            })
        })
        .collect();
    serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "v1", "kind": "List", "items": items, "metadata": {},
    }))
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_configs_parse_with_ocs_fields() {
        let c = parse_sync_config(
            r#"
kind: LDAPSyncConfig
apiVersion: v1
url: ldap://ldap.example.com:1389
bindDN: cn=admin,dc=example,dc=com
bindPassword: {file: /dev/null}
insecure: false
groupUIDNameMapping:
  "cn=a,ou=groups,dc=example,dc=com": alpha
rfc2307:
  groupsQuery: {baseDN: "ou=groups,dc=example,dc=com", scope: sub, derefAliases: never, pageSize: 0}
  groupUIDAttribute: dn
  groupNameAttributes: [cn]
  groupMembershipAttributes: [member]
  usersQuery: {baseDN: "ou=users,dc=example,dc=com", scope: sub, derefAliases: never, pageSize: 0}
  userUIDAttribute: dn
  userNameAttributes: [mail]
  tolerateMemberNotFoundErrors: false
  tolerateMemberOutOfScopeErrors: false
"#,
        )
        .unwrap();
        assert_eq!(
            c.endpoint().unwrap(),
            ("ldap.example.com".into(), 1389, false, true),
            "ldap:// without insecure is StartTLS"
        );
        assert_eq!(c.schema().unwrap().0, Kind::Rfc2307);
        assert_eq!(c.bind_password.unwrap().resolve().unwrap(), "");
        for bad in [
            "url: ldap://x\n",
            "url: http://x\nactiveDirectory: {}\n",
            "url: ldaps://x\ninsecure: true\nactiveDirectory: {}\n",
            "url: ldap://x\nrfc2307: {}\nactiveDirectory: {}\n",
            "kind: Other\nurl: ldap://x\nactiveDirectory: {}\n",
        ] {
            assert!(parse_sync_config(bad).is_err(), "{bad}");
        }
        let ad = parse_sync_config(
            "url: ldaps://h\nactiveDirectory: {usersQuery: {baseDN: x}}\nbindPassword: pw\n",
        )
        .unwrap();
        assert_eq!(ad.endpoint().unwrap(), ("h".into(), 636, true, false));
        assert_eq!(ad.bind_password.unwrap().resolve().unwrap(), "pw");
    }

    #[test]
    fn the_printed_list_holds_the_groups_without_server_fields() {
        let mut g = crate::api::Group::default();
        g.metadata.name = Some("dev".into());
        g.metadata.resource_version = Some("5".into());
        g.users = vec!["a".into()];
        let yaml = groups_list_yaml(&[g]).unwrap();
        assert!(yaml.contains("kind: List"));
        assert!(yaml.contains("kind: Group"));
        assert!(yaml.contains("apiVersion: user.openshift.io/v1"));
        assert!(!yaml.contains("resourceVersion"));
    }
}
