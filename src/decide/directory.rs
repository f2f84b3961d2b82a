//! Directory sync (SPEC-identity sections 3 and 4), pure: LDAP entries and the existing
//! `User`s / `Group`s in, what to write out. Shared by the identity controller and
//! `connectors-operator groups sync|prune`.
//!
//! - [`plan_users`]: one `User` per LDAP person (name = hex MD5 of the lowercased
//!   email), ownership by the managed-by label and `connector_id`, invalidation (never
//!   deletion) of users gone from LDAP, `EmptyResult` protection, no write for an
//!   unchanged user.
//! - [`plan_groups`]: one `Group` per LDAP group with the marks of `oc adm groups sync`
//!   (`openshift.io/ldap.uid`, `.url`, `.sync-time`, label `openshift.io/ldap.host`);
//!   a Group with other marks (or none) is left alone and reported; prune deletes only
//!   Groups carrying this server's marks whose LDAP group is gone, and only when asked.
//!   "Unchanged" is judged on `users` and the uid/url/host marks only: the sync-time
//!   annotation changes every run, so a re-sync with no LDAP change writes nothing
//!   (the sync-time then tells when the Group last *changed*).
//! - [`validity`]: for every User, whether `expired.end` has passed (state `disabled`,
//!   `is_disabled: true`) and the next expiry instant to wake at.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};

use crate::api::dex::{GroupSearch, UserSearch};
use crate::api::users::{Group, User, UserSpec};

/// The label every User and Group this project writes carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "connectors-operator";

pub const LABEL_CONNECTOR_ID: &str = "auth.cpaas.io/user.connector_id";
pub const LABEL_CONNECTOR_TYPE: &str = "auth.cpaas.io/user.connector_type";
pub const LABEL_EMAIL: &str = "auth.cpaas.io/user.email";
pub const LABEL_STATE: &str = "auth.cpaas.io/user.state";
pub const LABEL_VALID: &str = "auth.cpaas.io/user.valid";

pub const LDAP_UID_ANNOTATION: &str = "openshift.io/ldap.uid";
pub const LDAP_URL_ANNOTATION: &str = "openshift.io/ldap.url";
pub const LDAP_SYNC_TIME_ANNOTATION: &str = "openshift.io/ldap.sync-time";
pub const LDAP_HOST_LABEL: &str = "openshift.io/ldap.host";

pub const STATE_ACTIVE: &str = "active";
pub const STATE_INVALID: &str = "invalid";
pub const STATE_DISABLED: &str = "disabled";

/// One LDAP entry: its DN and attributes (names lowercased; values as read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<String>>,
}

impl Entry {
    pub fn new(
        dn: impl Into<String>,
        attrs: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> Self {
        Entry {
            dn: dn.into(),
            attrs: attrs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        }
    }

    /// The values of `attr` (case-insensitive); `dn` (any case) is the entry's DN.
    pub fn values(&self, attr: &str) -> Vec<&str> {
        if attr.eq_ignore_ascii_case("dn") {
            return vec![self.dn.as_str()];
        }
        self.attrs
            .get(&attr.to_ascii_lowercase())
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The first non-empty value of `attr`.
    pub fn first(&self, attr: &str) -> Option<&str> {
        self.values(attr).into_iter().find(|v| !v.is_empty())
    }
}

/// A person of the directory, as the sync reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirUser {
    pub dn: String,
    pub email: String,
    /// The `username` attribute (the login name): `spec.account`, and the name used in
    /// `Group.users`.
    pub account: String,
    /// The `nameAttr` value (display name); the account when absent.
    pub display_name: String,
}

/// A group of the directory: its unique id (the DN, as `oc` writes in
/// `openshift.io/ldap.uid`), its name, and the accounts of its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGroup {
    pub uid: String,
    pub name: String,
    pub members: Vec<String>,
}

/// Why an entry was not synced (counted in `status.lastSync.skipped`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The DN, or the Group name.
    pub what: String,
    pub reason: String,
}

/// Users of `userSearch` entries. Entries without the email attribute (or without the
/// username attribute) are skipped; a second entry with the same email (same User
/// name) is skipped too.
pub fn users_from_entries(entries: &[Entry], search: &UserSearch) -> (Vec<DirUser>, Vec<Skipped>) {
    let email_attr = search.email_attr.as_deref().unwrap_or("mail");
    let account_attr = search.username.as_deref().unwrap_or("uid");
    let name_attr = search.name_attr.as_deref().unwrap_or("");
    let mut seen = BTreeSet::new();
    let (mut users, mut skipped) = (Vec::new(), Vec::new());
    for entry in entries {
        let skip = |reason: String| Skipped {
            what: entry.dn.clone(),
            reason,
        };
        let Some(email) = entry
            .first(email_attr)
            .map(str::trim)
            .filter(|e| !e.is_empty())
        else {
            skipped.push(skip(format!("no {email_attr} attribute")));
            continue;
        };
        let Some(account) = entry.first(account_attr) else {
            skipped.push(skip(format!("no {account_attr} attribute")));
            continue;
        };
        if !seen.insert(user_name(email)) {
            skipped.push(skip(format!("another entry has the email {email:?}")));
            continue;
        }
        let display_name = Some(name_attr)
            .filter(|a| !a.is_empty())
            .and_then(|a| entry.first(a))
            .unwrap_or(account);
        users.push(DirUser {
            dn: entry.dn.clone(),
            email: email.to_string(),
            account: account.to_string(),
            display_name: display_name.to_string(),
        });
    }
    (users, skipped)
}

/// Groups of `groupSearch` entries with Dex's `userMatchers`: a user belongs to a group
/// when one of the group's `groupAttr` values equals the user's `userAttr` value
/// (`DN` for the user's DN; DNs compared without case). Groups without `nameAttr` are
/// skipped.
pub fn groups_from_dex(
    group_entries: &[Entry],
    user_entries: &[Entry],
    users: &[DirUser],
    search: &GroupSearch,
) -> (Vec<DirGroup>, Vec<Skipped>) {
    let name_attr = search.name_attr.as_deref().unwrap_or("cn");
    let by_dn: HashMap<&str, &DirUser> = users.iter().map(|u| (u.dn.as_str(), u)).collect();
    // matcher index -> user attribute value (normalised) -> accounts
    let mut index: Vec<HashMap<String, Vec<&str>>> = Vec::new();
    for matcher in &search.user_matchers {
        let user_attr = matcher.user_attr.as_deref().unwrap_or("DN");
        let mut map: HashMap<String, Vec<&str>> = HashMap::new();
        for entry in user_entries {
            let Some(user) = by_dn.get(entry.dn.as_str()) else {
                continue;
            };
            for v in entry.values(user_attr) {
                map.entry(normalise(v)).or_default().push(&user.account);
            }
        }
        index.push(map);
    }
    let (mut groups, mut skipped) = (Vec::new(), Vec::new());
    for entry in group_entries {
        let Some(name) = entry.first(name_attr) else {
            skipped.push(Skipped {
                what: entry.dn.clone(),
                reason: format!("no {name_attr} attribute"),
            });
            continue;
        };
        let mut members = BTreeSet::new();
        for (matcher, map) in search.user_matchers.iter().zip(&index) {
            let group_attr = matcher.group_attr.as_deref().unwrap_or("member");
            for v in entry.values(group_attr) {
                if let Some(accounts) = map.get(&normalise(v)) {
                    members.extend(accounts.iter().map(|a| a.to_string()));
                }
            }
        }
        groups.push(DirGroup {
            uid: entry.dn.clone(),
            name: name.to_string(),
            members: members.into_iter().collect(),
        });
    }
    (groups, skipped)
}

/// The attribute names of an `oc adm groups sync` schema (`LDAPSyncConfig`'s
/// `rfc2307`, `activeDirectory` or `augmentedActiveDirectory`), as the resolvers below
/// use them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OcSchema {
    /// `groupUIDAttribute` (`dn` for the DN).
    pub group_uid_attribute: String,
    pub group_name_attributes: Vec<String>,
    /// rfc2307: on groups (`member`); AD: on users (`memberOf`).
    pub group_membership_attributes: Vec<String>,
    /// `userUIDAttribute` (rfc2307 only; `dn` for the DN).
    pub user_uid_attribute: String,
    pub user_name_attributes: Vec<String>,
    /// `groupUIDNameMapping`: LDAP group UID -> Group name.
    pub uid_name_mapping: BTreeMap<String, String>,
}

impl OcSchema {
    fn user_name<'a>(&self, user: &'a Entry) -> Option<&'a str> {
        self.user_name_attributes.iter().find_map(|a| user.first(a))
    }

    fn group_name(&self, uid: &str, group: Option<&Entry>) -> Option<String> {
        if let Some(mapped) = self.uid_name_mapping.get(uid) {
            return Some(mapped.clone());
        }
        match group {
            Some(g) => self
                .group_name_attributes
                .iter()
                .find_map(|a| g.first(a))
                .map(str::to_string),
            // activeDirectory: without a mapping the Group is named by its UID.
            None => Some(uid.to_string()),
        }
    }
}

/// `rfc2307`: groups list their members (`groupMembershipAttributes` holding user
/// UIDs); a member is named by the first of `userNameAttributes` of the user entry with
/// that UID. Members not found among `user_entries` are left out (counted as skipped).
pub fn groups_rfc2307(
    group_entries: &[Entry],
    user_entries: &[Entry],
    schema: &OcSchema,
) -> (Vec<DirGroup>, Vec<Skipped>) {
    let users: HashMap<String, &str> = user_entries
        .iter()
        .filter_map(|u| {
            let uid = u.first(&schema.user_uid_attribute)?;
            Some((normalise(uid), schema.user_name(u)?))
        })
        .collect();
    let (mut groups, mut skipped) = (Vec::new(), Vec::new());
    for g in group_entries {
        let Some(uid) = g.first(&schema.group_uid_attribute) else {
            skipped.push(Skipped {
                what: g.dn.clone(),
                reason: format!("no {} attribute", schema.group_uid_attribute),
            });
            continue;
        };
        let Some(name) = schema.group_name(uid, Some(g)) else {
            skipped.push(Skipped {
                what: g.dn.clone(),
                reason: "no group name attribute".into(),
            });
            continue;
        };
        let mut members = BTreeSet::new();
        for attr in &schema.group_membership_attributes {
            for m in g.values(attr) {
                match users.get(&normalise(m)) {
                    Some(user) => {
                        members.insert(user.to_string());
                    }
                    None if normalise(m) == normalise(&g.dn) => {}
                    None => skipped.push(Skipped {
                        what: m.to_string(),
                        reason: format!("member of {uid} not found by the users query"),
                    }),
                }
            }
        }
        groups.push(DirGroup {
            uid: uid.to_string(),
            name,
            members: members.into_iter().collect(),
        });
    }
    (groups, skipped)
}

/// `activeDirectory` (`group_entries` None) and `augmentedActiveDirectory`: users list
/// their groups (`groupMembershipAttributes`, e.g. `memberOf`, holding group UIDs). AD:
/// every UID found on a user is a group, named by `groupUIDNameMapping` or its UID;
/// augmented: the groups are the entries of the groups query, named by
/// `groupNameAttributes`.
pub fn groups_active_directory(
    group_entries: Option<&[Entry]>,
    user_entries: &[Entry],
    schema: &OcSchema,
) -> (Vec<DirGroup>, Vec<Skipped>) {
    let mut by_uid: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for u in user_entries {
        let Some(name) = schema.user_name(u) else {
            continue;
        };
        for attr in &schema.group_membership_attributes {
            for uid in u.values(attr) {
                by_uid
                    .entry(normalise(uid))
                    .or_insert_with(|| (uid.to_string(), BTreeSet::new()))
                    .1
                    .insert(name.to_string());
            }
        }
    }
    let (mut groups, mut skipped) = (Vec::new(), Vec::new());
    match group_entries {
        None => {
            for (uid, members) in by_uid.into_values() {
                if let Some(name) = schema.group_name(&uid, None) {
                    groups.push(DirGroup {
                        uid,
                        name,
                        members: members.into_iter().collect(),
                    });
                }
            }
        }
        Some(entries) => {
            for g in entries {
                let Some(uid) = g.first(&schema.group_uid_attribute) else {
                    skipped.push(Skipped {
                        what: g.dn.clone(),
                        reason: format!("no {} attribute", schema.group_uid_attribute),
                    });
                    continue;
                };
                let Some(name) = schema.group_name(uid, Some(g)) else {
                    skipped.push(Skipped {
                        what: g.dn.clone(),
                        reason: "no group name attribute".into(),
                    });
                    continue;
                };
                let members = by_uid
                    .get(&normalise(uid))
                    .map(|(_, m)| m.iter().cloned().collect())
                    .unwrap_or_default();
                groups.push(DirGroup {
                    uid: uid.to_string(),
                    name,
                    members,
                });
            }
        }
    }
    (groups, skipped)
}

/// Keeps the groups named (by UID or Group name) in `whitelist` (all when empty), minus
/// those in `blacklist` (`oc adm groups sync --whitelist/--blacklist`).
pub fn filter_groups(
    groups: Vec<DirGroup>,
    whitelist: &[String],
    blacklist: &[String],
) -> Vec<DirGroup> {
    let listed = |list: &[String], g: &DirGroup| {
        list.iter()
            .any(|l| normalise(l) == normalise(&g.uid) || *l == g.name)
    };
    groups
        .into_iter()
        .filter(|g| whitelist.is_empty() || listed(whitelist, g))
        .filter(|g| !listed(blacklist, g))
        .collect()
}

/// Values compared without case and surrounding spaces (DNs, uids).
pub fn normalise(v: &str) -> String {
    v.trim().to_lowercase()
}

/// The User name of an email: hex MD5 of the lowercased email.
pub fn user_name(email: &str) -> String {
    format!("{:x}", md5::compute(email.trim().to_lowercase().as_bytes()))
}

/// A valid object name (DNS-1123 subdomain, as custom resources require).
pub fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// The Connector whose users are synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncSource {
    /// Dex's `id`.
    pub connector_id: String,
    /// Dex's display `name`.
    pub connector_name: String,
}

/// A User left alone because it is not this sync's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub name: String,
    pub reason: String,
}

/// One write: the object name, a JSON merge patch of exactly what differs (with the
/// stored `resourceVersion`, so a concurrent change fails the write instead of being
/// overwritten).
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub name: String,
    pub patch: Value,
}

/// What the user sync does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserPlan {
    /// False: the search came back empty where Users of this Connector exist: nothing
    /// is written (`SyncReady` False, `EmptyResult`).
    pub empty_result: bool,
    pub creates: Vec<User>,
    pub updates: Vec<Update>,
    pub invalidations: Vec<Update>,
    pub conflicts: Vec<Conflict>,
    pub skipped: Vec<Skipped>,
    /// Users found in LDAP.
    pub users: usize,
    pub unchanged: usize,
}

impl UserPlan {
    pub fn writes(&self) -> usize {
        self.creates.len() + self.updates.len() + self.invalidations.len()
    }
}

/// Whether `user` is this sync's: the managed-by label and this `connector_id`.
pub fn owned_by(user: &User, connector_id: &str) -> bool {
    let labels = user.metadata.labels.as_ref();
    labels
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
        && user.spec.connector_id.as_deref() == Some(connector_id)
}

fn bool_label(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

/// The labels of a synced User.
fn user_labels(
    source: &SyncSource,
    name: &str,
    state: &str,
    valid: bool,
) -> BTreeMap<String, String> {
    [
        (MANAGED_BY_LABEL, MANAGED_BY_VALUE.to_string()),
        (LABEL_CONNECTOR_ID, source.connector_id.clone()),
        (LABEL_CONNECTOR_TYPE, "ldap".to_string()),
        (LABEL_EMAIL, name.to_string()),
        (LABEL_STATE, state.to_string()),
        (LABEL_VALID, bool_label(valid)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Whether `user` is expired at `now` (`expired.end` is an RFC 3339 time not after now).
pub fn expired_at(spec: &UserSpec, now: DateTime<Utc>) -> bool {
    expiry(spec).is_some_and(|end| end <= now)
}

fn expiry(spec: &UserSpec) -> Option<DateTime<Utc>> {
    let end = spec.expiry_end()?;
    DateTime::parse_from_rfc3339(end)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Plans the user sync.
///
/// - `search_users`: the people found (after [`users_from_entries`]), with `groups`:
///   the LDAP groups (names) each account belongs to.
/// - `had_users_before`: `status.lastSync.users > 0`. An empty search result where the
///   last sync had users, or where active Users of this Connector exist, changes nothing.
pub fn plan_users(
    source: &SyncSource,
    search_users: &[DirUser],
    mut skipped: Vec<Skipped>,
    groups: &[DirGroup],
    existing: &[User],
    had_users_before: bool,
    now: DateTime<Utc>,
) -> UserPlan {
    let by_name: HashMap<&str, &User> = existing
        .iter()
        .filter_map(|u| Some((u.metadata.name.as_deref()?, u)))
        .collect();
    let ours_active = existing.iter().any(|u| {
        owned_by(u, &source.connector_id) && u.spec.state.as_deref() != Some(STATE_INVALID)
    });
    if search_users.is_empty() && (had_users_before || ours_active) {
        return UserPlan {
            empty_result: true,
            skipped,
            ..UserPlan::default()
        };
    }
    let mut membership: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for g in groups {
        for m in &g.members {
            membership
                .entry(m.as_str())
                .or_default()
                .insert(g.name.as_str());
        }
    }
    let mut plan = UserPlan {
        users: search_users.len(),
        ..UserPlan::default()
    };
    let mut found = BTreeSet::new();
    for person in search_users {
        let name = user_name(&person.email);
        found.insert(name.clone());
        let user_groups: Vec<String> = membership
            .get(person.account.as_str())
            .map(|g| g.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        match by_name.get(name.as_str()) {
            None => plan
                .creates
                .push(new_user(source, &name, person, user_groups)),
            Some(user) if !owned_by(user, &source.connector_id) => plan.conflicts.push(Conflict {
                name: name.clone(),
                reason: conflict_reason(user, &person.email),
            }),
            Some(user) => match user_update(source, &name, person, user_groups, user, now) {
                Some(patch) => plan.updates.push(Update { name, patch }),
                None => plan.unchanged += 1,
            },
        }
    }
    plan.invalidations = invalidations(&source.connector_id, existing, &found);
    skipped.sort_by(|a, b| a.what.cmp(&b.what));
    plan.skipped = skipped;
    plan
}

fn conflict_reason(user: &User, email: &str) -> String {
    let managed = user
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE);
    match (&user.spec.connector_id, managed) {
        (Some(other), _) if !other.is_empty() => {
            format!("User for {email:?} exists and belongs to connector {other:?}: left unchanged")
        }
        (_, false) => {
            format!("User for {email:?} exists and was not made by this sync: left unchanged")
        }
        _ => format!("User for {email:?} exists without a connector_id: left unchanged"),
    }
}

fn new_user(source: &SyncSource, name: &str, person: &DirUser, groups: Vec<String>) -> User {
    let mut user = User::new(
        name,
        UserSpec {
            account: Some(person.account.clone()),
            connector_id: Some(source.connector_id.clone()),
            connector_name: source.connector_name.clone(),
            connector_type: "ldap".into(),
            email: person.email.clone(),
            groups: Some(groups),
            is_admin: false,
            state: Some(STATE_ACTIVE.into()),
            username: person.display_name.clone(),
            valid: Some(true),
            ..UserSpec::default()
        },
    );
    user.metadata.labels = Some(user_labels(source, name, STATE_ACTIVE, true));
    user
}

/// The merge patch that brings an owned User in line, or None when nothing differs.
/// `is_admin` and the other platform-kept fields (password, last login, expiry, ...)
/// are never touched; a state other than `active`/`invalid` (set by someone else, e.g.
/// `disabled`, `locked`) is kept while the person is in LDAP; an expired User stays
/// `disabled`.
fn user_update(
    source: &SyncSource,
    name: &str,
    person: &DirUser,
    groups: Vec<String>,
    user: &User,
    now: DateTime<Utc>,
) -> Option<Value> {
    let spec = &user.spec;
    let current_state = spec.state.as_deref().unwrap_or_default();
    let state = if expired_at(spec, now) {
        STATE_DISABLED
    } else if current_state.is_empty() || current_state == STATE_INVALID {
        STATE_ACTIVE
    } else {
        current_state
    };
    let mut s = Map::new();
    let mut set = |field: &str, differs: bool, value: Value| {
        if differs {
            s.insert(field.to_string(), value);
        }
    };
    set(
        "account",
        spec.account.as_deref() != Some(&person.account),
        json!(person.account),
    );
    set("email", spec.email != person.email, json!(person.email));
    set(
        "username",
        spec.username != person.display_name,
        json!(person.display_name),
    );
    set(
        "connector_name",
        spec.connector_name != source.connector_name,
        json!(source.connector_name),
    );
    set(
        "connector_type",
        spec.connector_type != "ldap",
        json!("ldap"),
    );
    set(
        "groups",
        spec.groups.as_ref() != Some(&groups),
        json!(groups),
    );
    set("state", spec.state.as_deref() != Some(state), json!(state));
    set("valid", spec.valid != Some(true), json!(true));
    if state == STATE_DISABLED {
        set("is_disabled", spec.is_disabled != Some(true), json!(true));
    }
    let wanted = user_labels(source, name, state, true);
    let stored = user.metadata.labels.clone().unwrap_or_default();
    let labels: Map<String, Value> = wanted
        .into_iter()
        .filter(|(k, v)| stored.get(k) != Some(v))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if s.is_empty() && labels.is_empty() {
        return None;
    }
    let mut metadata = Map::new();
    metadata.insert(
        "resourceVersion".into(),
        json!(user.metadata.resource_version),
    );
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    let mut patch = Map::new();
    patch.insert("metadata".into(), Value::Object(metadata));
    if !s.is_empty() {
        patch.insert("spec".into(), Value::Object(s));
    }
    Some(Value::Object(patch))
}

/// Users of a deleted Connector: every owned User not already invalid is invalidated.
pub fn invalidate_all(connector_id: &str, existing: &[User]) -> Vec<Update> {
    invalidations(connector_id, existing, &BTreeSet::new())
}

/// Owned Users whose name is not in `found`, not yet invalid: `state: invalid`,
/// `valid: false` and their labels.
fn invalidations(connector_id: &str, existing: &[User], found: &BTreeSet<String>) -> Vec<Update> {
    let mut out = Vec::new();
    for user in existing {
        let Some(name) = user.metadata.name.as_deref() else {
            continue;
        };
        if found.contains(name) || !owned_by(user, connector_id) {
            continue;
        }
        let labels = user.metadata.labels.clone().unwrap_or_default();
        let label_ok = labels.get(LABEL_STATE).map(String::as_str) == Some(STATE_INVALID)
            && labels.get(LABEL_VALID).map(String::as_str) == Some("false");
        if user.spec.state.as_deref() == Some(STATE_INVALID)
            && user.spec.valid == Some(false)
            && label_ok
        {
            continue;
        }
        out.push(Update {
            name: name.to_string(),
            patch: json!({
                "metadata": {
                    "resourceVersion": user.metadata.resource_version,
                    "labels": {LABEL_STATE: STATE_INVALID, LABEL_VALID: "false"},
                },
                "spec": {"state": STATE_INVALID, "valid": false},
            }),
        });
    }
    out
}

/// What validity enforcement does now, and when it must look again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValidityPlan {
    /// Users whose `expired.end` has passed and are not yet disabled.
    pub disable: Vec<Update>,
    /// The earliest `expired.end` still in the future.
    pub next_expiry: Option<DateTime<Utc>>,
}

/// For every User (synced or not): disable those whose `expired.end` has passed (state
/// `disabled`, `is_disabled: true`, the state label), and the next instant to wake at.
/// An `expired.end` that is not RFC 3339 is ignored.
pub fn validity(users: &[User], now: DateTime<Utc>) -> ValidityPlan {
    let mut plan = ValidityPlan::default();
    for user in users {
        let Some(name) = user.metadata.name.as_deref() else {
            continue;
        };
        let Some(end) = expiry(&user.spec) else {
            continue;
        };
        if end > now {
            plan.next_expiry = Some(plan.next_expiry.map_or(end, |n| n.min(end)));
            continue;
        }
        let label = user
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_STATE))
            .map(String::as_str);
        if user.spec.state.as_deref() == Some(STATE_DISABLED)
            && user.spec.is_disabled == Some(true)
            && label == Some(STATE_DISABLED)
        {
            continue;
        }
        plan.disable.push(Update {
            name: name.to_string(),
            patch: json!({
                "metadata": {
                    "resourceVersion": user.metadata.resource_version,
                    "labels": {LABEL_STATE: STATE_DISABLED},
                },
                "spec": {"state": STATE_DISABLED, "is_disabled": true},
            }),
        });
    }
    plan
}

/// The LDAP server the groups come from, as `oc` marks them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSource {
    pub host: String,
    pub port: u16,
}

impl GroupSource {
    /// `host:port` (`openshift.io/ldap.url`).
    pub fn url(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// What the group sync (or prune) does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupPlan {
    /// The group search came back empty where synced Groups exist: nothing is written.
    pub empty_result: bool,
    pub creates: Vec<Group>,
    /// Full desired Groups of existing ones that differ (for printing), with the patch.
    pub updates: Vec<(Group, Update)>,
    pub unchanged: Vec<Group>,
    pub conflicts: Vec<Conflict>,
    pub skipped: Vec<Skipped>,
    /// Names of Groups to delete (prune only).
    pub prunes: Vec<String>,
    pub groups: usize,
}

impl GroupPlan {
    pub fn writes(&self) -> usize {
        self.creates.len() + self.updates.len() + self.prunes.len()
    }

    /// Every Group the sync would leave in place (created, updated or unchanged), name
    /// order: what `groups sync` prints.
    pub fn desired(&self) -> Vec<Group> {
        let mut all: Vec<Group> = self
            .creates
            .iter()
            .cloned()
            .chain(self.updates.iter().map(|(g, _)| g.clone()))
            .chain(self.unchanged.iter().cloned())
            .collect();
        all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        all
    }
}

/// What to do with the Groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupMode {
    /// Create and update.
    Sync,
    /// Create and update, then delete synced Groups whose LDAP group is gone.
    SyncAndPrune,
    /// Only delete synced Groups whose LDAP group is gone (`groups prune`).
    PruneOnly,
}

/// Whether `group` carries this server's marks (`url` and `host`): synced from it.
fn synced_from(group: &Group, source: &GroupSource) -> bool {
    let annotations = group.metadata.annotations.as_ref();
    let labels = group.metadata.labels.as_ref();
    annotations
        .and_then(|a| a.get(LDAP_URL_ANNOTATION))
        .is_some_and(|u| *u == source.url())
        && labels
            .and_then(|l| l.get(LDAP_HOST_LABEL))
            .is_some_and(|h| *h == source.host)
        && annotations.is_some_and(|a| a.contains_key(LDAP_UID_ANNOTATION))
}

fn group_uid(group: &Group) -> Option<&str> {
    group
        .metadata
        .annotations
        .as_ref()?
        .get(LDAP_UID_ANNOTATION)
        .map(String::as_str)
}

/// Plans the group sync: `dir_groups` from LDAP, `existing` Groups of the cluster,
/// `sync_time` (RFC 3339) written on created and changed Groups.
pub fn plan_groups(
    source: &GroupSource,
    dir_groups: &[DirGroup],
    existing: &[Group],
    mode: GroupMode,
    sync_time: &str,
) -> GroupPlan {
    let any_synced = existing.iter().any(|g| synced_from(g, source));
    if dir_groups.is_empty() && any_synced {
        return GroupPlan {
            empty_result: true,
            ..GroupPlan::default()
        };
    }
    let mut plan = GroupPlan {
        groups: dir_groups.len(),
        ..GroupPlan::default()
    };
    if mode != GroupMode::PruneOnly {
        plan_group_writes(&mut plan, source, dir_groups, existing, sync_time);
    }
    if mode != GroupMode::Sync {
        plan.prunes = gone_groups(source, dir_groups, existing);
    }
    plan
}

/// Adds to `plan` the create, update, unchanged, conflict or skip of each LDAP group.
fn plan_group_writes(
    plan: &mut GroupPlan,
    source: &GroupSource,
    dir_groups: &[DirGroup],
    existing: &[Group],
    sync_time: &str,
) {
    let by_name: HashMap<&str, &Group> = existing
        .iter()
        .filter_map(|g| Some((g.metadata.name.as_deref()?, g)))
        .collect();
    let mut seen_names = BTreeSet::new();
    for dir in dir_groups {
        if let Some(reason) = unsyncable_reason(dir, &mut seen_names) {
            plan.skipped.push(Skipped {
                what: dir.name.clone(),
                reason,
            });
            continue;
        }
        let users: Vec<String> = dir
            .members
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let desired = synced_group(source, dir, users.clone(), sync_time);
        let Some(group) = by_name.get(dir.name.as_str()) else {
            plan.creates.push(desired);
            continue;
        };
        if !synced_from(group, source)
            || group_uid(group).map(normalise) != Some(normalise(&dir.uid))
        {
            plan.conflicts.push(Conflict {
                name: dir.name.clone(),
                reason: group_conflict_reason(group, source, &dir.uid),
            });
            continue;
        }
        let mut stored: Vec<String> = group.users.clone();
        stored.sort();
        stored.dedup();
        if stored == users && group.users.len() == users.len() {
            plan.unchanged.push((*group).clone());
        } else {
            plan.updates
                .push(group_update(group, &dir.name, desired.users, sync_time));
        }
    }
}

/// Why `dir` cannot become a Group (an invalid or already taken name), if it cannot;
/// a usable name is recorded in `seen_names` so later LDAP groups of that name skip.
fn unsyncable_reason(dir: &DirGroup, seen_names: &mut BTreeSet<String>) -> Option<String> {
    if !valid_object_name(&dir.name) {
        return Some(format!(
            "{:?} is not a valid object name (group {})",
            dir.name, dir.uid
        ));
    }
    if !seen_names.insert(dir.name.clone()) {
        return Some(format!(
            "another LDAP group is also named {:?} (group {})",
            dir.name, dir.uid
        ));
    }
    None
}

/// The update of the synced `group` to `users`: the Group as it will be (for printing)
/// and the merge patch, which carries the stored resourceVersion.
fn group_update(group: &Group, name: &str, users: Vec<String>, sync_time: &str) -> (Group, Update) {
    let patch = json!({
        "metadata": {
            "resourceVersion": group.metadata.resource_version,
            "annotations": {LDAP_SYNC_TIME_ANNOTATION: sync_time},
        },
        "users": users,
    });
    let mut shown = group.clone();
    shown.users = users;
    shown
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(LDAP_SYNC_TIME_ANNOTATION.into(), sync_time.into());
    (
        shown,
        Update {
            name: name.to_string(),
            patch,
        },
    )
}

/// Names (sorted) of the Groups synced from `source` whose LDAP group is no longer in
/// `dir_groups`.
fn gone_groups(source: &GroupSource, dir_groups: &[DirGroup], existing: &[Group]) -> Vec<String> {
    let live_uids: BTreeSet<String> = dir_groups.iter().map(|g| normalise(&g.uid)).collect();
    let mut prunes: Vec<String> = existing
        .iter()
        .filter(|g| synced_from(g, source))
        .filter(|g| group_uid(g).is_some_and(|uid| !live_uids.contains(&normalise(uid))))
        .filter_map(|g| g.metadata.name.clone())
        .collect();
    prunes.sort();
    prunes
}

fn group_conflict_reason(group: &Group, source: &GroupSource, uid: &str) -> String {
    let name = group.metadata.name.as_deref().unwrap_or_default();
    match group_uid(group) {
        None => format!("Group {name:?} exists and was not synced from LDAP: left unchanged"),
        Some(other) if !synced_from(group, source) => format!(
            "Group {name:?} was synced from another LDAP server (uid {other:?}): left unchanged"
        ),
        Some(other) => format!(
            "Group {name:?} was synced from LDAP group {other:?}, not {uid:?}: left unchanged"
        ),
    }
}

fn synced_group(
    source: &GroupSource,
    dir: &DirGroup,
    users: Vec<String>,
    sync_time: &str,
) -> Group {
    Group {
        metadata: ObjectMeta {
            name: Some(dir.name.clone()),
            annotations: Some(
                [
                    (LDAP_UID_ANNOTATION.to_string(), dir.uid.clone()),
                    (LDAP_URL_ANNOTATION.to_string(), source.url()),
                    (LDAP_SYNC_TIME_ANNOTATION.to_string(), sync_time.to_string()),
                ]
                .into(),
            ),
            labels: Some([(LDAP_HOST_LABEL.to_string(), source.host.clone())].into()),
            ..ObjectMeta::default()
        },
        users,
        ..Group::default()
    }
}

/// The `groups` of each user account, from the directory groups (for `UserSpec.groups`).
pub fn memberships(groups: &[DirGroup]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in groups {
        for m in &g.members {
            out.entry(m.clone()).or_default().insert(g.name.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dex::UserMatcher;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn source() -> SyncSource {
        SyncSource {
            connector_id: "ldap".into(),
            connector_name: "Corp LDAP".into(),
        }
    }

    fn person(account: &str, name: &str) -> DirUser {
        DirUser {
            dn: format!("uid={account},ou=people,dc=example,dc=org"),
            email: format!("{account}@Example.org"),
            account: account.into(),
            display_name: name.into(),
        }
    }

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> Entry {
        Entry::new(
            dn,
            attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())),
        )
    }

    /// The Users a sync would create, applied as the apiserver would store them.
    fn stored(plan: &UserPlan) -> Vec<User> {
        plan.creates
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, mut u)| {
                u.metadata.resource_version = Some(format!("{i}"));
                u
            })
            .collect()
    }

    fn apply(user: &User, patch: &Value) -> User {
        let mut v = serde_json::to_value(user).unwrap();
        merge(&mut v, patch);
        serde_json::from_value(v).unwrap()
    }

    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn user_names_are_the_md5_of_the_lowercased_email() {
        // md5("alice@example.org")
        assert_eq!(
            user_name("Alice@Example.org"),
            user_name("alice@example.org")
        );
        assert_eq!(
            user_name("alice@example.org"),
            format!("{:x}", md5::compute(b"alice@example.org"))
        );
        assert_eq!(user_name("alice@example.org").len(), 32);
    }

    #[test]
    fn entries_without_email_or_with_a_duplicate_email_are_skipped() {
        let search = UserSearch {
            email_attr: Some("mail".into()),
            username: Some("uid".into()),
            name_attr: Some("cn".into()),
            ..UserSearch::default()
        };
        let entries = [
            entry(
                "uid=a,dc=x",
                &[("uid", &["a"]), ("MAIL", &["a@x.org"]), ("cn", &["Alice"])],
            ),
            entry("uid=b,dc=x", &[("uid", &["b"])]),
            entry("uid=c,dc=x", &[("uid", &["c"]), ("mail", &["A@x.org"])]),
            entry("uid=d,dc=x", &[("uid", &["d"]), ("mail", &["d@x.org"])]),
        ];
        let (users, skipped) = users_from_entries(&entries, &search);
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].display_name, "Alice");
        assert_eq!(users[1].display_name, "d", "no cn: the account");
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].reason.contains("no mail"));
        assert!(skipped[1].reason.contains("another entry"));
    }

    #[test]
    fn dex_user_matchers_give_group_members_by_dn_or_attribute() {
        let users_entries = [
            entry(
                "uid=a,ou=people,dc=x",
                &[("uid", &["a"]), ("mail", &["a@x"])],
            ),
            entry(
                "uid=b,ou=people,dc=x",
                &[("uid", &["b"]), ("mail", &["b@x"])],
            ),
        ];
        let (users, _) = users_from_entries(&users_entries, &UserSearch::default());
        let groups = [
            entry(
                "cn=dev,ou=groups,dc=x",
                &[
                    ("cn", &["dev"]),
                    ("member", &["UID=A,ou=people,dc=x", "uid=zz,dc=x"]),
                ],
            ),
            entry(
                "cn=ops,ou=groups,dc=x",
                &[("cn", &["ops"]), ("memberUid", &["b"])],
            ),
            entry("cn=none,ou=groups,dc=x", &[]),
        ];
        let search = GroupSearch {
            name_attr: Some("cn".into()),
            user_matchers: vec![
                UserMatcher {
                    user_attr: Some("DN".into()),
                    group_attr: Some("member".into()),
                },
                UserMatcher {
                    user_attr: Some("uid".into()),
                    group_attr: Some("memberUid".into()),
                },
            ],
            ..GroupSearch::default()
        };
        let (dir, skipped) = groups_from_dex(&groups, &users_entries, &users, &search);
        assert_eq!(dir.len(), 2);
        assert_eq!(dir[0].members, ["a"]);
        assert_eq!(dir[1].members, ["b"]);
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn a_first_sync_creates_one_user_per_person_with_fields_and_labels() {
        let groups = [DirGroup {
            uid: "cn=dev".into(),
            name: "dev".into(),
            members: vec!["alice".into()],
        }];
        let plan = plan_users(
            &source(),
            &[person("alice", "Alice A")],
            vec![],
            &groups,
            &[],
            false,
            now(),
        );
        assert_eq!(plan.creates.len(), 1);
        let u = &plan.creates[0];
        let name = user_name("alice@example.org");
        assert_eq!(u.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(u.spec.email, "alice@Example.org");
        assert_eq!(u.spec.account.as_deref(), Some("alice"));
        assert_eq!(u.spec.username, "Alice A");
        assert_eq!(u.spec.connector_id.as_deref(), Some("ldap"));
        assert_eq!(u.spec.connector_name, "Corp LDAP");
        assert_eq!(u.spec.connector_type, "ldap");
        assert_eq!(u.spec.groups.as_deref(), Some(&["dev".to_string()][..]));
        assert_eq!(u.spec.state.as_deref(), Some("active"));
        assert_eq!(u.spec.valid, Some(true));
        assert!(!u.spec.is_admin);
        let labels = u.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_EMAIL], name);
        assert_eq!(labels[LABEL_CONNECTOR_ID], "ldap");
        assert_eq!(labels[LABEL_CONNECTOR_TYPE], "ldap");
        assert_eq!(labels[LABEL_STATE], "active");
        assert_eq!(labels[LABEL_VALID], "true");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        assert_eq!(plan.users, 1);
    }

    #[test]
    fn an_unchanged_directory_writes_nothing() {
        let people = [person("alice", "Alice"), person("bob", "Bob")];
        let first = plan_users(&source(), &people, vec![], &[], &[], false, now());
        let existing = stored(&first);
        let second = plan_users(&source(), &people, vec![], &[], &existing, true, now());
        assert_eq!(second.writes(), 0, "{second:?}");
        assert_eq!(second.unchanged, 2);
    }

    #[test]
    fn a_renamed_person_updates_only_username() {
        let first = plan_users(
            &source(),
            &[person("alice", "Alice")],
            vec![],
            &[],
            &[],
            false,
            now(),
        );
        let existing = stored(&first);
        let plan = plan_users(
            &source(),
            &[person("alice", "Alice B")],
            vec![],
            &[],
            &existing,
            true,
            now(),
        );
        assert_eq!(plan.updates.len(), 1);
        assert_eq!(
            plan.updates[0].patch["spec"],
            json!({"username": "Alice B"})
        );
        assert_eq!(plan.updates[0].patch["metadata"]["resourceVersion"], "0");
        assert!(plan.updates[0].patch["metadata"].get("labels").is_none());
    }

    #[test]
    fn a_gone_person_is_invalidated_not_deleted_and_comes_back_active() {
        let people = [person("alice", "Alice"), person("bob", "Bob")];
        let existing = stored(&plan_users(
            &source(),
            &people,
            vec![],
            &[],
            &[],
            false,
            now(),
        ));
        let plan = plan_users(&source(), &people[..1], vec![], &[], &existing, true, now());
        assert_eq!(plan.invalidations.len(), 1);
        let inv = &plan.invalidations[0];
        assert_eq!(inv.name, user_name("bob@example.org"));
        assert_eq!(
            inv.patch["spec"],
            json!({"state": "invalid", "valid": false})
        );
        assert_eq!(
            inv.patch["metadata"]["labels"],
            json!({LABEL_STATE: "invalid", LABEL_VALID: "false"})
        );
        // applied, then synced again without Bob: nothing more
        let bob = existing
            .iter()
            .find(|u| u.metadata.name.as_deref() == Some(&inv.name))
            .unwrap();
        let bob_invalid = apply(bob, &inv.patch);
        let after = vec![existing[0].clone(), bob_invalid.clone()];
        let again = plan_users(&source(), &people[..1], vec![], &[], &after, true, now());
        assert_eq!(again.writes(), 0);
        // back in LDAP: active, valid
        let back = plan_users(&source(), &people, vec![], &[], &after, true, now());
        assert_eq!(back.updates.len(), 1);
        assert_eq!(
            back.updates[0].patch["spec"],
            json!({"state": "active", "valid": true})
        );
        assert_eq!(
            back.updates[0].patch["metadata"]["labels"],
            json!({LABEL_STATE: "active", LABEL_VALID: "true"})
        );
        let restored = apply(&bob_invalid, &back.updates[0].patch);
        assert_eq!(
            plan_users(
                &source(),
                &people,
                vec![],
                &[],
                &[existing[0].clone(), restored],
                true,
                now()
            )
            .writes(),
            0
        );
    }

    #[test]
    fn users_not_ours_are_conflicts_and_never_modified() {
        let name = user_name("alice@example.org");
        let hand_made = User::new(
            &name,
            UserSpec {
                email: "alice@example.org".into(),
                username: "someone".into(),
                connector_name: "local".into(),
                connector_type: "local".into(),
                ..UserSpec::default()
            },
        );
        let mut other_idp = new_user(
            &source(),
            &user_name("bob@example.org"),
            &person("bob", "Bob"),
            vec![],
        );
        other_idp.spec.connector_id = Some("other".into());
        let existing = [hand_made, other_idp];
        let plan = plan_users(
            &source(),
            &[person("alice", "A"), person("bob", "B")],
            vec![],
            &[],
            &existing,
            false,
            now(),
        );
        assert_eq!(plan.writes(), 0);
        assert_eq!(plan.conflicts.len(), 2);
        assert!(plan.conflicts[0].reason.contains("not made by this sync"));
        assert!(plan.conflicts[1].reason.contains("\"other\""));
        // and not invalidated when gone either
        let gone = plan_users(
            &source(),
            &[person("carol", "C")],
            vec![],
            &[],
            &existing,
            false,
            now(),
        );
        assert!(gone.invalidations.is_empty());
        assert_eq!(gone.creates.len(), 1);
    }

    #[test]
    fn an_empty_result_after_users_changes_nothing() {
        let existing = stored(&plan_users(
            &source(),
            &[person("alice", "A")],
            vec![],
            &[],
            &[],
            false,
            now(),
        ));
        let plan = plan_users(&source(), &[], vec![], &[], &existing, true, now());
        assert!(plan.empty_result);
        assert_eq!(plan.writes(), 0);
        // without a last sync either, active Users of this connector guard it
        assert!(plan_users(&source(), &[], vec![], &[], &existing, false, now()).empty_result);
        // the first sync of an empty directory is not an error
        let first = plan_users(&source(), &[], vec![], &[], &[], false, now());
        assert!(!first.empty_result);
        // a Connector's deletion invalidates every owned User
        assert_eq!(invalidate_all("ldap", &existing).len(), 1);
        assert!(invalidate_all("other", &existing).is_empty());
    }

    #[test]
    fn platform_states_and_admin_are_kept_and_expired_users_stay_disabled() {
        let mut existing = stored(&plan_users(
            &source(),
            &[person("alice", "A")],
            vec![],
            &[],
            &[],
            false,
            now(),
        ));
        existing[0].spec.state = Some("locked".into());
        existing[0]
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_STATE.into(), "locked".into());
        existing[0].spec.is_admin = true;
        assert_eq!(
            plan_users(
                &source(),
                &[person("alice", "A")],
                vec![],
                &[],
                &existing,
                true,
                now()
            )
            .writes(),
            0
        );
        existing[0].spec.expired =
            Some(serde_json::from_value(json!({"end": "2025-12-31T00:00:00Z"})).unwrap());
        let plan = plan_users(
            &source(),
            &[person("alice", "A")],
            vec![],
            &[],
            &existing,
            true,
            now(),
        );
        assert_eq!(
            plan.updates[0].patch["spec"],
            json!({"state": "disabled", "is_disabled": true})
        );
    }

    fn user_with_expiry(name: &str, end: &str) -> User {
        let mut u = User::new(
            name,
            UserSpec {
                email: format!("{name}@x"),
                username: name.into(),
                connector_name: "local".into(),
                connector_type: "local".into(),
                state: Some("active".into()),
                expired: Some(
                    serde_json::from_value(json!({"start": "2020-01-01T00:00:00Z", "end": end}))
                        .unwrap(),
                ),
                ..UserSpec::default()
            },
        );
        u.metadata.resource_version = Some("7".into());
        u
    }

    #[test]
    fn validity_disables_expired_users_and_gives_the_next_expiry() {
        let users = [
            user_with_expiry("past", "2025-12-31T23:59:59Z"),
            user_with_expiry("soon", "2026-01-01T00:00:20Z"),
            user_with_expiry("later", "2026-02-01T00:00:00+08:00"),
            user_with_expiry("garbage", "tomorrow"),
            user_with_expiry("exactly", "2026-01-01T00:00:00Z"),
        ];
        let plan = validity(&users, now());
        let names: Vec<&str> = plan.disable.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["past", "exactly"]);
        assert_eq!(
            plan.disable[0].patch["spec"],
            json!({"state": "disabled", "is_disabled": true})
        );
        assert_eq!(
            plan.disable[0].patch["metadata"]["labels"],
            json!({LABEL_STATE: "disabled"})
        );
        assert_eq!(plan.disable[0].patch["metadata"]["resourceVersion"], "7");
        assert_eq!(
            plan.next_expiry.unwrap().to_rfc3339(),
            "2026-01-01T00:00:20+00:00"
        );
        // once applied, nothing more to do
        let done: Vec<User> = users[..1]
            .iter()
            .map(|u| apply(u, &plan.disable[0].patch))
            .collect();
        assert!(validity(&done, now()).disable.is_empty());
        assert_eq!(validity(&[], now()), ValidityPlan::default());
    }

    fn ldap() -> GroupSource {
        GroupSource {
            host: "ldap.example.org".into(),
            port: 389,
        }
    }

    fn dir(name: &str, members: &[&str]) -> DirGroup {
        DirGroup {
            uid: format!("cn={name},ou=groups,dc=example,dc=org"),
            name: name.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn groups_get_ocs_marks_and_sorted_users() {
        let plan = plan_groups(
            &ldap(),
            &[dir("dev", &["bob", "alice", "bob"])],
            &[],
            GroupMode::Sync,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(plan.creates.len(), 1);
        let g = &plan.creates[0];
        assert_eq!(g.users, ["alice", "bob"]);
        let a = g.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[LDAP_UID_ANNOTATION], "cn=dev,ou=groups,dc=example,dc=org");
        assert_eq!(a[LDAP_URL_ANNOTATION], "ldap.example.org:389");
        assert_eq!(a[LDAP_SYNC_TIME_ANNOTATION], "2026-01-01T00:00:00Z");
        assert_eq!(
            g.metadata.labels.as_ref().unwrap()[LDAP_HOST_LABEL],
            "ldap.example.org"
        );
    }

    #[test]
    fn a_resync_without_change_writes_nothing_though_the_sync_time_moves() {
        let first = plan_groups(
            &ldap(),
            &[dir("dev", &["a"]), dir("ops", &[])],
            &[],
            GroupMode::Sync,
            "t1",
        );
        let existing = first.creates.clone();
        let second = plan_groups(
            &ldap(),
            &[dir("dev", &["a"]), dir("ops", &[])],
            &existing,
            GroupMode::SyncAndPrune,
            "t2",
        );
        assert_eq!(second.writes(), 0, "{second:?}");
        assert_eq!(second.desired().len(), 2);
        let changed = plan_groups(
            &ldap(),
            &[dir("dev", &["a", "b"]), dir("ops", &[])],
            &existing,
            GroupMode::Sync,
            "t3",
        );
        assert_eq!(changed.updates.len(), 1);
        assert_eq!(changed.updates[0].1.patch["users"], json!(["a", "b"]));
        assert_eq!(
            changed.updates[0].1.patch["metadata"]["annotations"][LDAP_SYNC_TIME_ANNOTATION],
            "t3"
        );
    }

    #[test]
    fn groups_with_other_marks_are_conflicts_and_not_pruned() {
        let hand_made = Group {
            metadata: ObjectMeta {
                name: Some("dev".into()),
                ..ObjectMeta::default()
            },
            users: vec!["x".into()],
            ..Group::default()
        };
        let mut other_server = plan_groups(
            &GroupSource {
                host: "other".into(),
                port: 389,
            },
            &[dir("ops", &[])],
            &[],
            GroupMode::Sync,
            "t",
        )
        .creates;
        let mut other_uid =
            plan_groups(&ldap(), &[dir("qa", &[])], &[], GroupMode::Sync, "t").creates;
        other_uid[0]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(LDAP_UID_ANNOTATION.into(), "cn=elsewhere".into());
        let mut existing = vec![hand_made];
        existing.append(&mut other_server);
        existing.append(&mut other_uid);
        let plan = plan_groups(
            &ldap(),
            &[dir("dev", &["a"]), dir("ops", &["a"]), dir("qa", &["a"])],
            &existing,
            GroupMode::SyncAndPrune,
            "t",
        );
        assert_eq!(plan.conflicts.len(), 3, "{plan:?}");
        assert!(plan.conflicts[0].reason.contains("not synced from LDAP"));
        assert!(plan.conflicts[1].reason.contains("another LDAP server"));
        // qa carries this server's marks with another uid, which is gone from LDAP: prune
        // takes it, as oc does (its LDAP group no longer exists).
        assert_eq!(plan.prunes, ["qa"]);
        assert_eq!(plan.creates.len() + plan.updates.len(), 0);
    }

    #[test]
    fn prune_removes_only_synced_groups_whose_ldap_group_is_gone_and_only_when_asked() {
        let existing = plan_groups(
            &ldap(),
            &[dir("dev", &[]), dir("old", &[])],
            &[],
            GroupMode::Sync,
            "t",
        )
        .creates;
        let hand_made = Group {
            metadata: ObjectMeta {
                name: Some("mine".into()),
                ..ObjectMeta::default()
            },
            users: vec![],
            ..Group::default()
        };
        let all: Vec<Group> = existing.into_iter().chain([hand_made]).collect();
        assert!(
            plan_groups(&ldap(), &[dir("dev", &[])], &all, GroupMode::Sync, "t")
                .prunes
                .is_empty()
        );
        assert_eq!(
            plan_groups(
                &ldap(),
                &[dir("dev", &[])],
                &all,
                GroupMode::SyncAndPrune,
                "t"
            )
            .prunes,
            ["old"]
        );
        let only = plan_groups(&ldap(), &[dir("dev", &[])], &all, GroupMode::PruneOnly, "t");
        assert_eq!(only.prunes, ["old"]);
        assert!(only.creates.is_empty() && only.updates.is_empty());
        // an empty group search never prunes
        let empty = plan_groups(&ldap(), &[], &all, GroupMode::SyncAndPrune, "t");
        assert!(empty.empty_result && empty.prunes.is_empty());
    }

    fn oc_schema() -> OcSchema {
        OcSchema {
            group_uid_attribute: "dn".into(),
            group_name_attributes: vec!["cn".into()],
            group_membership_attributes: vec!["member".into()],
            user_uid_attribute: "dn".into(),
            user_name_attributes: vec!["mail".into(), "uid".into()],
            uid_name_mapping: BTreeMap::new(),
        }
    }

    #[test]
    fn rfc2307_groups_name_members_by_the_user_name_attributes() {
        let users = [
            entry("uid=a,ou=p", &[("uid", &["a"]), ("mail", &["a@x"])]),
            entry("uid=b,ou=p", &[("uid", &["b"])]),
        ];
        let groups = [entry(
            "cn=g,ou=g",
            &[
                ("cn", &["g"]),
                ("member", &["uid=A,ou=p", "uid=b,ou=p", "uid=z,ou=p"]),
            ],
        )];
        let mut schema = oc_schema();
        let (dir, skipped) = groups_rfc2307(&groups, &users, &schema);
        assert_eq!(
            dir,
            [DirGroup {
                uid: "cn=g,ou=g".into(),
                name: "g".into(),
                members: vec!["a@x".into(), "b".into()]
            }]
        );
        assert_eq!(skipped.len(), 1);
        schema
            .uid_name_mapping
            .insert("cn=g,ou=g".into(), "mapped".into());
        assert_eq!(groups_rfc2307(&groups, &users, &schema).0[0].name, "mapped");
    }

    #[test]
    fn active_directory_groups_come_from_member_of() {
        let users = [
            entry(
                "uid=a,ou=p",
                &[("uid", &["a"]), ("memberOf", &["cn=g,ou=g", "cn=h,ou=g"])],
            ),
            entry(
                "uid=b,ou=p",
                &[("uid", &["b"]), ("memberof", &["CN=G,ou=g"])],
            ),
        ];
        let mut schema = oc_schema();
        schema.group_membership_attributes = vec!["memberOf".into()];
        schema.user_name_attributes = vec!["uid".into()];
        schema
            .uid_name_mapping
            .insert("cn=g,ou=g".into(), "g".into());
        let (ad, _) = groups_active_directory(None, &users, &schema);
        assert_eq!(ad.len(), 2);
        assert_eq!(
            (ad[0].name.as_str(), ad[0].members.clone()),
            ("g", vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(
            ad[1].name, "cn=h,ou=g",
            "no mapping: named by its UID (then skipped as invalid)"
        );
        schema.uid_name_mapping.clear();
        let groups = [entry("cn=g,ou=g", &[("cn", &["team-g"])])];
        let (aug, _) = groups_active_directory(Some(&groups), &users, &schema);
        assert_eq!(
            aug,
            [DirGroup {
                uid: "cn=g,ou=g".into(),
                name: "team-g".into(),
                members: vec!["a".into(), "b".into()]
            }]
        );
        let filtered = filter_groups(ad.clone(), &["CN=G,OU=G".into()], &[]);
        assert_eq!(filtered.len(), 1);
        assert!(filter_groups(ad, &[], &["g".into(), "cn=h,ou=g".into()]).is_empty());
    }

    #[test]
    fn invalid_or_duplicate_group_names_are_skipped() {
        let plan = plan_groups(
            &ldap(),
            &[dir("Domain Admins", &[]), dir("dev", &[]), dir("dev", &[])],
            &[],
            GroupMode::Sync,
            "t",
        );
        assert_eq!(plan.creates.len(), 1);
        assert_eq!(plan.skipped.len(), 2);
        assert!(valid_object_name("a.b-c"));
        for bad in ["", "A", "a b", "-a", "a..b", "cn=x,dc=y"] {
            assert!(!valid_object_name(bad), "{bad}");
        }
    }
}
