//! Directory sync (SPEC-identity sections 3 and 4): LDAP people into `User`s
//! (`auth.alauda.io/v1`), LDAP groups into `Group`s (`user.openshift.io/v1`, the
//! stand-in CRD), User validity, with a real slapd (e2e/src/ldap.rs) and the operator
//! as a process on the real apiserver.
//!
//! Users and Groups are cluster-scoped: each test uses its own email domain, Connector
//! id and group names, and deletes what it made.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use connectors_e2e::ldap::{ADMIN_DN, GROUPS_DN, PEOPLE_DN, SUFFIX, Slapd, SlapdOptions};
use connectors_e2e::process::{Operator, OperatorOptions};
use connectors_e2e::{TestNamespace, apply_yaml, eventually, get_json, kubectl, kubectl_ok};
use serde_json::{Value, json};

const RESOURCE: &str = "connectors.dex.coreos.com";
const TIMEOUT: Duration = Duration::from_secs(60);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Dex, User and Group CRDs (none is in `crds/`).
fn install_crds() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        connectors_e2e::install_crds();
        for (file, crd) in [
            ("dex/dex.coreos.com.yaml", "connectors.dex.coreos.com"),
            ("users/auth.alauda.io.yaml", "users.auth.alauda.io"),
            ("groups/user.openshift.io.yaml", "groups.user.openshift.io"),
        ] {
            let path = format!("{}/../crds/{file}", env!("CARGO_MANIFEST_DIR"));
            let out = kubectl([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=e2e-crds",
                "-f",
                &path,
            ]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "applying {file}: {stderr}");
            assert!(!stderr.to_ascii_lowercase().contains("warning"), "{stderr}");
            connectors_e2e::wait("", "crd", crd, "Established", TIMEOUT);
        }
        eventually(TIMEOUT, || {
            for r in [RESOURCE, "users.auth.alauda.io", "groups.user.openshift.io"] {
                let out = kubectl(["get", r, "--all-namespaces", "-o", "name"]);
                if !out.status.success() {
                    return Err(String::from_utf8_lossy(&out.stderr).into_owned());
                }
            }
            Ok(())
        });
    });
}

fn operator(name: &str) -> Operator {
    install_crds();
    Operator::start(OperatorOptions {
        identity: format!("e2e-sync-{name}"),
        probe_interval_seconds: 60,
        probe_timeout_seconds: 3,
        extra_args: vec!["--leader-elect=false".into(), "--webhook=false".into()],
        ..OperatorOptions::default()
    })
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn md5_name(email: &str) -> String {
    format!("{:x}", md5::compute(email.to_lowercase().as_bytes()))
}

/// A directory: people `(uid, cn, mail)` (mail None: none), groupOfNames `(cn, [uid])`.
fn ldif(people: &[(&str, &str, Option<String>)], groups: &[(&str, &[&str])]) -> String {
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: cn=reader,{SUFFIX}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n\
         cn: reader\nuserPassword: reader-password\n\n"
    );
    for (uid, cn, mail) in people {
        out.push_str(&person(uid, cn, mail.as_deref()));
        out.push('\n');
    }
    for (cn, members) in groups {
        out.push_str(&group(cn, members));
        out.push('\n');
    }
    out
}

fn person(uid: &str, cn: &str, mail: Option<&str>) -> String {
    let mut out = format!(
        "dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: Example\n"
    );
    if let Some(mail) = mail {
        out.push_str(&format!("mail: {mail}\n"));
    }
    out
}

fn group(cn: &str, members: &[&str]) -> String {
    let mut out = format!("dn: cn={cn},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: {cn}\n");
    if members.is_empty() {
        // groupOfNames requires a member: the group itself stands in for nobody.
        out.push_str(&format!("member: cn={cn},{GROUPS_DN}\n"));
    }
    for m in members {
        out.push_str(&format!("member: uid={m},{PEOPLE_DN}\n"));
    }
    out
}

fn ldap_config(slapd: &Slapd, matchers: Value) -> Value {
    json!({
        "host": slapd.ldaps_host(),
        "rootCAData": b64(&slapd.ca_pem),
        "bindDN": ADMIN_DN,
        "bindPWRef": {"name": "bind", "key": "password"},
        "userSearch": {
            "baseDN": PEOPLE_DN,
            "filter": "(objectClass=inetOrgPerson)",
            "username": "uid", "idAttr": "uid", "emailAttr": "mail", "nameAttr": "cn",
        },
        "groupSearch": {
            "baseDN": GROUPS_DN,
            "filter": "(objectClass=groupOfNames)",
            "userMatchers": matchers,
            "nameAttr": "cn",
        },
    })
}

fn connector(name: &str, config: &Value, annotations: Value) -> String {
    json!({
        "apiVersion": "dex.coreos.com/v1",
        "kind": "Connector",
        "metadata": {"name": name, "labels": {"cpaas.io/ldap.autoSync": "true"}, "annotations": annotations},
        "id": name,
        "name": "Corp LDAP",
        "type": "ldap",
        "spec": {"config": config},
    })
    .to_string()
}

fn bind_secret(password: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "bind"},
        "stringData": {"password": password},
    })
    .to_string()
}

fn user(name: &str) -> Option<Value> {
    connectors_e2e::try_get_json("", "users.auth.alauda.io", name).unwrap()
}

fn group_obj(name: &str) -> Option<Value> {
    connectors_e2e::try_get_json("", "groups.user.openshift.io", name).unwrap()
}

/// Asks for one sync (annotation) and waits until `status.lastSync.request` says it
/// ran; returns the Connector.
#[track_caller]
fn sync_now(ns: &str, name: &str, request: &str) -> Value {
    kubectl_ok([
        "annotate",
        "--overwrite",
        RESOURCE,
        name,
        "-n",
        ns,
        &format!("connectors.alauda.io/ldap.sync-request={request}"),
    ]);
    eventually(TIMEOUT, || {
        let c = get_json(ns, RESOURCE, name);
        if c["status"]["lastSync"]["request"] == request {
            Ok(c)
        } else {
            Err(format!("lastSync: {}", c["status"]["lastSync"]))
        }
    })
}

fn sync_ready(c: &Value) -> (String, String, String) {
    connectors_e2e::condition(c, "SyncReady").unwrap_or_default()
}

/// Deletes what a test made (Users by connector id, Groups by name).
fn cleanup(connector_id: &str, groups: &[&str]) {
    let _ = kubectl([
        "delete",
        "users.auth.alauda.io",
        "-l",
        &format!("auth.cpaas.io/user.connector_id={connector_id}"),
        "--wait=false",
    ]);
    for g in groups {
        let _ = kubectl(["delete", "groups.user.openshift.io", g, "--wait=false"]);
    }
}

/// The sum of a metric's samples whose line contains every one of `parts`.
fn metric(op: &Operator, name: &str, parts: &[&str]) -> f64 {
    op.metrics()
        .lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn users_and_groups_follow_the_directory() {
    let _serial = serial();
    let ns = TestNamespace::new("e2e-sync");
    let id: String = format!("s{}", &ns.name().replace('-', "")[..])
        .chars()
        .take(30)
        .collect();
    let domain = format!("{id}.example.org");
    let mail = |uid: &str| Some(format!("{uid}@{domain}"));
    let g = |n: &str| format!("{id}-{n}");
    let (admins, devs, ops, old) = (g("admins"), g("devs"), g("ops"), g("old"));
    let slapd = Slapd::start_with(
        "admin-secret",
        SlapdOptions {
            ldif: Some(ldif(
                &[
                    ("alice", "Alice Example", mail("alice")),
                    ("bob", "Bob Example", mail("bob")),
                    ("carol", "Carol NoMail", None),
                    ("dave", "Dave Example", mail("dave")),
                ],
                &[
                    (&admins, &["alice"]),
                    (&devs, &["alice", "bob"]),
                    (&ops, &["bob"]),
                    (&old, &[]),
                ],
            )),
            ..SlapdOptions::default()
        },
    );
    // Dave's User was made by hand; Group ops too (no LDAP marks).
    let dave = md5_name(&format!("dave@{domain}"));
    let hand_made = json!({
        "apiVersion": "auth.alauda.io/v1", "kind": "User",
        "metadata": {"name": dave, "labels": {"auth.cpaas.io/user.connector_id": id}},
        "spec": {"connector_name": "local", "connector_type": "local", "email": format!("dave@{domain}"),
                 "is_admin": true, "username": "Dave by hand"},
    });
    apply_yaml("", &hand_made.to_string());
    apply_yaml(
        "",
        &json!({"apiVersion": "user.openshift.io/v1", "kind": "Group",
                "metadata": {"name": ops}, "users": ["someone"]})
        .to_string(),
    );
    let dave_before = user(&dave).unwrap();
    let ops_before = group_obj(&ops).unwrap();
    let op = operator("follow");
    apply_yaml(&ns, &bind_secret("admin-secret"));
    let matchers = json!([{"userAttr": "DN", "groupAttr": "member"}]);
    apply_yaml(
        &ns,
        &connector(&id, &ldap_config(&slapd, matchers), json!({})),
    );

    // First sync: one User per person with mail, named by the MD5 of the email.
    let c = eventually(TIMEOUT, || {
        let c = get_json(&ns, RESOURCE, &id);
        if c["status"]["lastSync"]["time"].is_string() {
            Ok(c)
        } else {
            Err(format!("{}", c["status"]))
        }
    });
    let last = &c["status"]["lastSync"];
    assert_eq!(last["users"], 3, "{last}");
    assert_eq!(last["groups"], 4, "{last}");
    assert_eq!(last["skipped"], 1, "carol has no mail: {last}");
    assert_eq!(last["conflicts"], 2, "dave's User and Group ops: {last}");
    let (status, reason, message) = sync_ready(&c);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Synced"),
        "{message}"
    );
    let alice = md5_name(&format!("alice@{domain}"));
    let a = user(&alice).expect("alice's User");
    assert_eq!(a["spec"]["email"], format!("alice@{domain}"));
    assert_eq!(a["spec"]["account"], "alice");
    assert_eq!(a["spec"]["username"], "Alice Example");
    assert_eq!(a["spec"]["connector_id"], id.as_str());
    assert_eq!(a["spec"]["connector_name"], "Corp LDAP");
    assert_eq!(a["spec"]["connector_type"], "ldap");
    assert_eq!(a["spec"]["state"], "active");
    assert_eq!(a["spec"]["valid"], true);
    assert_eq!(a["spec"]["is_admin"], false);
    assert_eq!(a["spec"]["groups"], json!([admins, devs]));
    let labels = &a["metadata"]["labels"];
    assert_eq!(labels["auth.cpaas.io/user.email"], alice.as_str());
    assert_eq!(labels["auth.cpaas.io/user.connector_id"], id.as_str());
    assert_eq!(labels["auth.cpaas.io/user.connector_type"], "ldap");
    assert_eq!(labels["auth.cpaas.io/user.state"], "active");
    assert_eq!(labels["auth.cpaas.io/user.valid"], "true");
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "connectors-operator"
    );
    assert!(user(&md5_name(&format!("carol@{domain}"))).is_none());
    // The hand-made User and Group: byte-identical, reported.
    assert_eq!(user(&dave).unwrap(), dave_before);
    assert_eq!(group_obj(&ops).unwrap(), ops_before);
    let events = kubectl_ok(["get", "events", "-n", &ns, "-o", "json"]);
    assert!(events.contains("SyncConflict"), "{events}");
    // Groups with oc's marks and the right users.
    let d = group_obj(&devs).expect("Group devs");
    assert_eq!(d["users"], json!(["alice", "bob"]));
    let ann = &d["metadata"]["annotations"];
    assert_eq!(
        ann["openshift.io/ldap.uid"],
        format!("cn={devs},{GROUPS_DN}")
    );
    assert_eq!(ann["openshift.io/ldap.url"], slapd.ldaps_host());
    assert!(ann["openshift.io/ldap.sync-time"].is_string());
    assert_eq!(
        d["metadata"]["labels"]["openshift.io/ldap.host"],
        "127.0.0.1"
    );
    assert_eq!(group_obj(&old).unwrap()["users"], json!([]));

    // A re-sync with no LDAP change writes nothing.
    let rv = |v: Option<Value>| v.unwrap()["metadata"]["resourceVersion"].clone();
    let before: Vec<Value> = vec![rv(user(&alice)), rv(group_obj(&devs)), rv(group_obj(&old))];
    let writes = |op: &Operator| {
        ["created", "updated", "invalidated", "pruned"]
            .iter()
            .map(|a| {
                metric(
                    op,
                    "connectors_operator_directory_sync_objects_total",
                    &[&format!("action=\"{a}\"")],
                )
            })
            .sum::<f64>()
    };
    let writes_before = writes(&op);
    sync_now(&ns, &id, "no-change");
    let after: Vec<Value> = vec![rv(user(&alice)), rv(group_obj(&devs)), rv(group_obj(&old))];
    assert_eq!(before, after, "a no-change sync wrote");
    assert_eq!(writes(&op), writes_before);

    // cn renamed: username follows.
    slapd.ldapmodify(
        &format!("dn: uid=alice,{PEOPLE_DN}\nchangetype: modify\nreplace: cn\ncn: Alice Renamed\n"),
        false,
    );
    sync_now(&ns, &id, "rename");
    assert_eq!(user(&alice).unwrap()["spec"]["username"], "Alice Renamed");

    // Bob removed: invalid, not deleted; restored: active.
    let bob = md5_name(&format!("bob@{domain}"));
    slapd.ldapmodify(
        &format!("dn: uid=bob,{PEOPLE_DN}\nchangetype: delete\n"),
        false,
    );
    sync_now(&ns, &id, "bob-gone");
    let b = user(&bob).expect("bob's User is kept");
    assert_eq!(b["spec"]["state"], "invalid");
    assert_eq!(b["spec"]["valid"], false);
    assert_eq!(
        b["metadata"]["labels"]["auth.cpaas.io/user.state"],
        "invalid"
    );
    assert_eq!(b["metadata"]["labels"]["auth.cpaas.io/user.valid"], "false");
    slapd.ldapmodify(&person("bob", "Bob Example", mail("bob").as_deref()), true);
    sync_now(&ns, &id, "bob-back");
    let b = user(&bob).unwrap();
    assert_eq!(b["spec"]["state"], "active");
    assert_eq!(b["spec"]["valid"], true);
    assert_eq!(b["metadata"]["labels"]["auth.cpaas.io/user.valid"], "true");

    // Group old gone from LDAP: kept without prune, deleted with it; ops never.
    slapd.ldapmodify(
        &format!("dn: cn={old},{GROUPS_DN}\nchangetype: delete\n"),
        false,
    );
    sync_now(&ns, &id, "old-gone");
    assert!(group_obj(&old).is_some(), "pruned without prune enabled");
    kubectl_ok([
        "annotate",
        RESOURCE,
        &id,
        "-n",
        &ns,
        "connectors.alauda.io/ldap.prune=true",
    ]);
    sync_now(&ns, &id, "prune");
    eventually(TIMEOUT, || match group_obj(&old) {
        None => Ok(()),
        Some(_) => Err("still there".to_string()),
    });
    assert_eq!(group_obj(&ops).unwrap(), ops_before);
    assert!(group_obj(&devs).is_some());

    // A search that returns nothing after a successful sync: nobody invalidated.
    let mut config = ldap_config(&slapd, json!([{"userAttr": "DN", "groupAttr": "member"}]));
    config["userSearch"]["baseDN"] = json!(format!("ou=nobody,{SUFFIX}"));
    kubectl_ok([
        "patch",
        RESOURCE,
        &id,
        "-n",
        &ns,
        "--type=merge",
        "-p",
        &json!({"spec": {"config": config}}).to_string(),
    ]);
    let c = connectors_e2e::wait_condition(
        &ns,
        RESOURCE,
        &id,
        "SyncReady",
        "False",
        "EmptyResult",
        TIMEOUT,
    );
    assert_eq!(
        c["status"]["lastSync"]["users"], 3,
        "the counts of the last good sync stay"
    );
    for name in [&alice, &bob] {
        assert_eq!(user(name).unwrap()["spec"]["state"], "active");
    }
    // The health check's conditions are still there beside SyncReady.
    assert!(
        connectors_e2e::condition(&c, "Ready").is_some(),
        "{}",
        c["status"]
    );

    // Deleting the Connector invalidates its Users.
    kubectl_ok(["delete", RESOURCE, &id, "-n", &ns]);
    eventually(TIMEOUT, || {
        let a = user(&alice).unwrap();
        if a["spec"]["state"] == "invalid" {
            Ok(())
        } else {
            Err(format!("{}", a["spec"]))
        }
    });
    assert_eq!(
        user(&dave).unwrap(),
        dave_before,
        "the hand-made User is still untouched"
    );
    drop(op);
    cleanup(&id, &[&admins, &devs, &ops, &old]);
    let _ = kubectl(["delete", "users.auth.alauda.io", &dave, "--wait=false"]);
}

#[test]
fn memberof_groups_are_synced() {
    let _serial = serial();
    let ns = TestNamespace::new("e2e-sync-memberof");
    let id: String = format!("m{}", ns.name().replace('-', ""))
        .chars()
        .take(30)
        .collect();
    let domain = format!("{id}.example.org");
    let team = format!("{id}-team");
    let slapd = Slapd::start_with(
        "admin-secret",
        SlapdOptions {
            ldif: Some(ldif(
                &[
                    ("erin", "Erin", Some(format!("erin@{domain}"))),
                    ("frank", "Frank", Some(format!("frank@{domain}"))),
                ],
                &[],
            )),
            memberof: true,
            ..SlapdOptions::default()
        },
    );
    // Added over LDAP so that the overlay writes memberOf on the people.
    slapd.ldapmodify(&group(&team, &["erin"]), true);
    let op = operator("memberof");
    apply_yaml(&ns, &bind_secret("admin-secret"));
    let matchers = json!([{"userAttr": "memberOf", "groupAttr": "DN"}]);
    apply_yaml(
        &ns,
        &connector(&id, &ldap_config(&slapd, matchers), json!({})),
    );
    let t = eventually(TIMEOUT, || {
        group_obj(&team).ok_or("no Group yet".to_string())
    });
    assert_eq!(t["users"], json!(["erin"]));
    assert_eq!(
        t["metadata"]["annotations"]["openshift.io/ldap.uid"],
        format!("cn={team},{GROUPS_DN}")
    );
    let erin = user(&md5_name(&format!("erin@{domain}"))).unwrap();
    assert_eq!(erin["spec"]["groups"], json!([team]));
    drop(op);
    cleanup(&id, &[&team]);
}

#[test]
fn more_entries_than_the_size_limit_are_all_synced() {
    let _serial = serial();
    let ns = TestNamespace::new("e2e-sync-paging");
    let id: String = format!("p{}", ns.name().replace('-', ""))
        .chars()
        .take(30)
        .collect();
    let domain = format!("{id}.example.org");
    let people: Vec<(String, String, Option<String>)> = (0..1100)
        .map(|i| {
            (
                format!("u{i:04}"),
                format!("User {i}"),
                Some(format!("u{i:04}@{domain}")),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, Option<String>)> = people
        .iter()
        .map(|(u, c, m)| (u.as_str(), c.as_str(), m.clone()))
        .collect();
    let slapd = Slapd::start_with(
        "admin-secret",
        SlapdOptions {
            ldif: Some(ldif(&refs, &[])),
            size_limit: Some(500),
            ..SlapdOptions::default()
        },
    );
    // Without paging the server stops at 500 for this bind.
    let (rc, n) = slapd.ldapsearch(
        &format!("cn=reader,{SUFFIX}"),
        "reader-password",
        PEOPLE_DN,
        "(objectClass=inetOrgPerson)",
    );
    assert_eq!((rc, n), (4, 500), "the size limit does not apply");
    let op = operator("paging");
    apply_yaml(&ns, &bind_secret("reader-password"));
    let mut config = ldap_config(&slapd, json!([]));
    config["bindDN"] = json!(format!("cn=reader,{SUFFIX}"));
    config.as_object_mut().unwrap().remove("groupSearch");
    apply_yaml(&ns, &connector(&id, &config, json!({})));
    let c = eventually(Duration::from_secs(180), || {
        let c = get_json(&ns, RESOURCE, &id);
        if c["status"]["lastSync"]["time"].is_string() {
            Ok(c)
        } else {
            Err(format!("{}", c["status"]))
        }
    });
    let (status, reason, message) = sync_ready(&c);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Synced"),
        "{message}"
    );
    assert_eq!(c["status"]["lastSync"]["users"], 1100);
    let listed = kubectl_ok([
        "get",
        "users.auth.alauda.io",
        "-l",
        &format!("auth.cpaas.io/user.connector_id={id}"),
        "-o",
        "name",
    ]);
    assert_eq!(listed.lines().count(), 1100);
    drop(op);
    cleanup(&id, &[]);
}

#[test]
fn an_expired_user_is_disabled_on_time_without_polling() {
    let _serial = serial();
    let op = operator("validity");
    let name = format!("e2e-expiry-{:08x}", rand::random::<u32>());
    // Wait for the validity task to be up (its first evaluation is counted).
    eventually(TIMEOUT, || {
        if metric(&op, "connectors_operator_user_validity_checks_total", &[]) > 0.0 {
            Ok(())
        } else {
            Err("no validity evaluation yet".to_string())
        }
    });
    let timers_before = metric(
        &op,
        "connectors_operator_user_validity_checks_total",
        &["trigger=\"timer\""],
    );
    let end = std::time::SystemTime::now() + Duration::from_secs(20);
    let end_text = kubectl_ok(["version", "-o", "json"]); // keeps kubectl warm
    drop(end_text);
    let secs = end.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let end_rfc = iso8601(secs);
    apply_yaml(
        "",
        &json!({
            "apiVersion": "auth.alauda.io/v1", "kind": "User",
            "metadata": {"name": name},
            "spec": {"connector_name": "local", "connector_type": "local", "email": format!("{name}@x.org"),
                     "is_admin": false, "username": name, "state": "active",
                     "expired": {"start": "2020-01-01T00:00:00Z", "end": end_rfc}},
        })
        .to_string(),
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        user(&name).unwrap()["spec"]["state"],
        "active",
        "disabled early"
    );
    let u = eventually(Duration::from_secs(40), || {
        let u = user(&name).unwrap();
        if u["spec"]["state"] == "disabled" {
            Ok(u)
        } else {
            Err(format!("{}", u["spec"]))
        }
    });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(18) && took <= Duration::from_secs(26),
        "{took:?}"
    );
    assert_eq!(u["spec"]["is_disabled"], true);
    assert_eq!(
        u["metadata"]["labels"]["auth.cpaas.io/user.state"],
        "disabled"
    );
    let timers = metric(
        &op,
        "connectors_operator_user_validity_checks_total",
        &["trigger=\"timer\""],
    );
    assert_eq!(timers - timers_before, 1.0, "one timer wake-up, no polling");
    let _ = kubectl(["delete", "users.auth.alauda.io", &name, "--wait=false"]);
}

/// `secs` since the epoch as RFC 3339 (UTC).
fn iso8601(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // civil from days (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Runs `connectors-operator groups <args>`: (success, stdout, stderr).
fn groups_command(args: &[&str]) -> (bool, String, String) {
    let bin = connectors_e2e::process::bin_dir().join("connectors-operator");
    let out = std::process::Command::new(bin)
        .arg("groups")
        .args(args)
        .output()
        .expect("run connectors-operator groups");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn groups_sync_command_has_ocs_semantics_and_matches_the_controller() {
    let _serial = serial();
    install_crds();
    let ns = TestNamespace::new("e2e-sync-cli");
    let id: String = format!("c{}", ns.name().replace('-', ""))
        .chars()
        .take(30)
        .collect();
    let domain = format!("{id}.example.org");
    let (g1, g2) = (format!("{id}-one"), format!("{id}-two"));
    let slapd = Slapd::start_with(
        "admin-secret",
        SlapdOptions {
            ldif: Some(ldif(
                &[
                    ("gina", "Gina", Some(format!("gina@{domain}"))),
                    ("hank", "Hank", Some(format!("hank@{domain}"))),
                ],
                &[],
            )),
            memberof: true,
            ..SlapdOptions::default()
        },
    );
    slapd.ldapmodify(&group(&g1, &["gina", "hank"]), true);
    slapd.ldapmodify(&group(&g2, &["hank"]), true);
    let dir = std::env::temp_dir().join(format!("connectors-e2e-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &slapd.ca_pem).unwrap();
    let rfc2307 = dir.join("rfc2307.yaml");
    std::fs::write(
        &rfc2307,
        format!(
            "kind: LDAPSyncConfig\napiVersion: v1\nurl: ldaps://{host}\nbindDN: {ADMIN_DN}\n\
             bindPassword: admin-secret\nca: {ca}\nrfc2307:\n  groupsQuery:\n    baseDN: {GROUPS_DN}\n\
             \x20   scope: sub\n    derefAliases: never\n    filter: (objectClass=groupOfNames)\n\
             \x20 groupUIDAttribute: dn\n  groupNameAttributes: [cn]\n  groupMembershipAttributes: [member]\n\
             \x20 usersQuery:\n    baseDN: {PEOPLE_DN}\n    scope: sub\n    derefAliases: never\n\
             \x20 userUIDAttribute: dn\n  userNameAttributes: [uid]\n",
            host = slapd.ldaps_host(),
            ca = ca.display()
        ),
    )
    .unwrap();
    let config = rfc2307.to_str().unwrap();

    // Dry run: prints the Groups, writes nothing.
    let (ok, out, err) = groups_command(&["sync", "--sync-config", config]);
    assert!(ok, "{err}");
    assert!(
        out.contains("kind: List") && out.contains(&g1) && out.contains(&g2),
        "{out}"
    );
    assert!(out.contains("openshift.io/ldap.uid"), "{out}");
    assert!(
        group_obj(&g1).is_none() && group_obj(&g2).is_none(),
        "a dry run wrote"
    );
    // A whitelist keeps only what it lists.
    let white = dir.join("white.txt");
    std::fs::write(&white, format!("cn={g1},{GROUPS_DN}\n")).unwrap();
    let (ok, out, err) = groups_command(&[
        "sync",
        "--sync-config",
        config,
        "--whitelist",
        white.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(&g1) && !out.contains(&g2), "{out}");
    // activeDirectory (memberOf) gives the same members, named by the mapping.
    let ad = dir.join("ad.yaml");
    std::fs::write(
        &ad,
        format!(
            "kind: LDAPSyncConfig\napiVersion: v1\nurl: ldap://{host}\ninsecure: true\nbindDN: {ADMIN_DN}\n\
             bindPassword: admin-secret\ngroupUIDNameMapping:\n  \"cn={g1},{GROUPS_DN}\": {g1}-ad\n\
             activeDirectory:\n  usersQuery:\n    baseDN: {PEOPLE_DN}\n    scope: sub\n    filter: (objectClass=inetOrgPerson)\n\
             \x20 userNameAttributes: [uid]\n  groupMembershipAttributes: [memberOf]\n",
            host = slapd.ldap_host(),
        ),
    )
    .unwrap();
    let (_, out, err) = groups_command(&["sync", "--sync-config", ad.to_str().unwrap()]);
    let listed: Value =
        serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(&out).unwrap()).unwrap();
    let mapped = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == format!("{g1}-ad"))
        .unwrap_or_else(|| panic!("{out}\n{err}"));
    assert_eq!(mapped["users"], json!(["gina", "hank"]));
    assert!(
        err.contains("skipped"),
        "the unmapped group (named by its DN) is skipped: {err}"
    );

    // --confirm writes them.
    let (ok, _, err) = groups_command(&["sync", "--sync-config", config, "--confirm"]);
    assert!(ok, "{err}");
    let one = group_obj(&g1).expect("created");
    assert_eq!(one["users"], json!(["gina", "hank"]));
    assert_eq!(
        one["metadata"]["annotations"]["openshift.io/ldap.url"],
        slapd.ldaps_host()
    );
    assert_eq!(group_obj(&g2).unwrap()["users"], json!(["hank"]));

    // The controller on the same directory finds nothing to change.
    let rv_before = (
        one["metadata"]["resourceVersion"].clone(),
        group_obj(&g2).unwrap()["metadata"]["resourceVersion"].clone(),
    );
    let op = operator("cli");
    apply_yaml(&ns, &bind_secret("admin-secret"));
    let matchers = json!([{"userAttr": "DN", "groupAttr": "member"}]);
    apply_yaml(
        &ns,
        &connector(&id, &ldap_config(&slapd, matchers), json!({})),
    );
    let c = eventually(TIMEOUT, || {
        let c = get_json(&ns, RESOURCE, &id);
        if c["status"]["lastSync"]["time"].is_string() {
            Ok(c)
        } else {
            Err(format!("{}", c["status"]))
        }
    });
    assert_eq!(c["status"]["lastSync"]["groups"], 2);
    assert_eq!(c["status"]["lastSync"]["conflicts"], 0, "{}", c["status"]);
    let rv_after = (
        group_obj(&g1).unwrap()["metadata"]["resourceVersion"].clone(),
        group_obj(&g2).unwrap()["metadata"]["resourceVersion"].clone(),
    );
    assert_eq!(
        rv_before, rv_after,
        "the controller rewrote the command's Groups"
    );
    drop(op);

    // prune: dry run names, --confirm deletes only the synced Group whose LDAP group is gone.
    slapd.ldapmodify(
        &format!("dn: cn={g2},{GROUPS_DN}\nchangetype: delete\n"),
        false,
    );
    let (ok, out, err) = groups_command(&["prune", "--sync-config", config]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("group/{g2}"));
    assert!(group_obj(&g2).is_some(), "a dry run deleted");
    let (ok, _, err) = groups_command(&["prune", "--sync-config", config, "--confirm"]);
    assert!(ok, "{err}");
    eventually(TIMEOUT, || match group_obj(&g2) {
        None => Ok(()),
        Some(_) => Err("still there".to_string()),
    });
    assert!(group_obj(&g1).is_some());
    cleanup(&id, &[&g1, &g2]);
    let _ = std::fs::remove_dir_all(&dir);
}
