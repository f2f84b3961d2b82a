//! Directory sync benchmark (issue 18): 10,000 LDAP people in 500 groups synced by the
//! operator into an empty cluster, against a bare-client floor of the same creates
//! (Users and Groups, same concurrency) in the same run; then a second sync with no
//! LDAP change (goal: 0 writes); the operator's peak RSS.
//!
//! Needs a cluster in `KUBECONFIG` (run it under `e2e/cluster.sh with --`) and the
//! operator binary in `E2E_BIN_DIR` (e.g. `target/release`):
//!
//! ```sh
//! cargo build --release -p connectors-operator -p connectors-e2e --bins
//! E2E_DIR=/tmp/bench-sync e2e/cluster.sh with -- env E2E_BIN_DIR=$PWD/target/release \
//!   target/release/bench-sync --users 10000 --groups 500
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use connectors_e2e::ldap::{ADMIN_DN, GROUPS_DN, PEOPLE_DN, SUFFIX, Slapd, SlapdOptions};
use connectors_e2e::process::{Operator, OperatorOptions};
use connectors_e2e::{TestNamespace, apply_yaml, eventually, get_json, kubectl, kubectl_ok};
use connectors_operator::api::{Group, User};
use connectors_operator::decide::directory::{
    self, DirGroup, DirUser, GroupMode, GroupSource, SyncSource,
};
use futures::StreamExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 500)]
    groups: usize,
}

const RESOURCE: &str = "connectors.dex.coreos.com";
/// The operator's write concurrency (src/identity/sync.rs WRITE_CONCURRENCY).
const CONCURRENCY: usize = 16;

fn progress(m: &str) {
    eprintln!("bench-sync: {m}");
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn metric(op: &Operator, name: &str, parts: &[&str]) -> f64 {
    op.metrics()
        .lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn writes(op: &Operator) -> f64 {
    ["created", "updated", "invalidated", "pruned"]
        .iter()
        .map(|a| {
            metric(
                op,
                "connectors_operator_directory_sync_objects_total",
                &[&format!("action=\"{a}\"")],
            )
        })
        .sum()
}

fn ldif(users: usize, groups: usize, domain: &str) -> String {
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n\n"
    );
    for i in 0..users {
        out.push_str(&format!(
            "dn: uid=u{i:05},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: u{i:05}\ncn: User {i}\nsn: U\nmail: u{i:05}@{domain}\n\n"
        ));
    }
    for g in 0..groups {
        out.push_str(&format!(
            "dn: cn=bench-g{g:03},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: bench-g{g:03}\n"
        ));
        for i in (g..users).step_by(groups.max(1)) {
            out.push_str(&format!("member: uid=u{i:05},{PEOPLE_DN}\n"));
        }
        out.push('\n');
    }
    out
}

fn install_crds() {
    for file in [
        "dex/dex.coreos.com.yaml",
        "users/auth.alauda.io.yaml",
        "groups/user.openshift.io.yaml",
    ] {
        let path = format!("{}/../crds/{file}", env!("CARGO_MANIFEST_DIR"));
        kubectl_ok([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=bench",
            "-f",
            &path,
        ]);
    }
    for crd in [
        "connectors.dex.coreos.com",
        "users.auth.alauda.io",
        "groups.user.openshift.io",
    ] {
        connectors_e2e::wait("", "crd", crd, "Established", Duration::from_secs(60));
    }
}

/// The floor: the same Users and Groups the sync creates, created by a bare client
/// with the operator's concurrency, then deleted.
async fn floor(users: &[DirUser], groups: &[DirGroup]) -> f64 {
    let client = kube::Client::try_default().await.expect("client");
    let source = SyncSource {
        connector_id: "floor".into(),
        connector_name: "Floor".into(),
    };
    let plan = directory::plan_users(
        &source,
        users,
        vec![],
        groups,
        &[],
        false,
        chrono::Utc::now(),
    );
    let renamed: Vec<DirGroup> = groups
        .iter()
        .map(|g| DirGroup {
            name: format!("floor-{}", g.name),
            ..g.clone()
        })
        .collect();
    let gplan = directory::plan_groups(
        &GroupSource {
            host: "floor".into(),
            port: 1,
        },
        &renamed,
        &[],
        GroupMode::Sync,
        "2026-01-01T00:00:00Z",
    );
    let uapi = Api::<User>::all(client.clone());
    let gapi = Api::<Group>::all(client.clone());
    let started = Instant::now();
    let params = PostParams::default();
    let failed = futures::stream::iter(plan.creates.iter().map(|u| {
        let (uapi, params) = (uapi.clone(), params.clone());
        async move { uapi.create(&params, u).await.is_err() }
    }))
    .buffer_unordered(CONCURRENCY)
    .filter(|e| futures::future::ready(*e))
    .count()
    .await;
    let gfailed = futures::stream::iter(gplan.creates.iter().map(|g| {
        let (gapi, params) = (gapi.clone(), params.clone());
        async move { gapi.create(&params, g).await.is_err() }
    }))
    .buffer_unordered(CONCURRENCY)
    .filter(|e| futures::future::ready(*e))
    .count()
    .await;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(failed + gfailed, 0, "floor creates failed");
    let _ = uapi
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("auth.cpaas.io/user.connector_id=floor"),
        )
        .await;
    let _ = gapi
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("openshift.io/ldap.host=floor"),
        )
        .await;
    took
}

fn main() {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    install_crds();
    let domain = "bench.example.org";
    progress(&format!(
        "slapd with {} people in {} groups",
        args.users, args.groups
    ));
    let slapd = Slapd::start_with(
        "admin-secret",
        SlapdOptions {
            ldif: Some(ldif(args.users, args.groups, domain)),
            ..SlapdOptions::default()
        },
    );
    // The directory as the sync reads it (for the floor's objects).
    let dir_users: Vec<DirUser> = (0..args.users)
        .map(|i| DirUser {
            dn: format!("uid=u{i:05},{PEOPLE_DN}"),
            email: format!("u{i:05}@floor.example.org"),
            account: format!("u{i:05}"),
            display_name: format!("User {i}"),
        })
        .collect();
    let dir_groups: Vec<DirGroup> = (0..args.groups)
        .map(|g| DirGroup {
            uid: format!("cn=bench-g{g:03},{GROUPS_DN}"),
            name: format!("bench-g{g:03}"),
            members: (g..args.users)
                .step_by(args.groups.max(1))
                .map(|i| format!("u{i:05}"))
                .collect(),
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    progress("floor: bare-client creates");
    let floor_s = runtime.block_on(floor(&dir_users, &dir_groups));
    progress(&format!("floor {floor_s:.2}s"));

    let op = Operator::start(OperatorOptions {
        identity: "bench-sync".into(),
        probe_interval_seconds: 300,
        probe_timeout_seconds: 5,
        extra_args: vec!["--leader-elect=false".into(), "--webhook=false".into()],
        rust_log: Some("info".into()),
        ..OperatorOptions::default()
    });
    let ns = TestNamespace::new("bench-sync");
    apply_yaml(
        &ns,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bind"},
                "stringData": {"password": "admin-secret"}})
        .to_string(),
    );
    let connector = json!({
        "apiVersion": "dex.coreos.com/v1", "kind": "Connector",
        "metadata": {"name": "bench", "labels": {"cpaas.io/ldap.autoSync": "true"}},
        "id": "bench", "name": "Bench LDAP", "type": "ldap",
        "spec": {"config": {
            "host": slapd.ldap_host(), "insecureNoSSL": true,
            "bindDN": ADMIN_DN, "bindPWRef": {"name": "bind", "key": "password"},
            "userSearch": {"baseDN": PEOPLE_DN, "filter": "(objectClass=inetOrgPerson)",
                           "username": "uid", "idAttr": "uid", "emailAttr": "mail", "nameAttr": "cn"},
            "groupSearch": {"baseDN": GROUPS_DN, "filter": "(objectClass=groupOfNames)",
                            "userMatchers": [{"userAttr": "DN", "groupAttr": "member"}], "nameAttr": "cn"},
        }},
    });
    progress("operator sync into the empty cluster");
    let started = Instant::now();
    apply_yaml(&ns, &connector.to_string());
    let c = eventually(Duration::from_secs(900), || {
        let c = get_json(&ns, RESOURCE, "bench");
        if c["status"]["lastSync"]["time"].is_string() {
            Ok(c)
        } else {
            Err("not synced".to_string())
        }
    });
    let sync_s = started.elapsed().as_secs_f64();
    let (s, r, m) = connectors_e2e::condition(&c, "SyncReady").unwrap_or_default();
    let sync_inner_s = metric(
        &op,
        "connectors_operator_directory_sync_duration_seconds_sum",
        &[],
    );
    let first_writes = writes(&op);
    progress(&format!("first sync {sync_s:.2}s ({s} {r}: {m})"));

    progress("second sync, no LDAP change");
    kubectl_ok([
        "annotate",
        "--overwrite",
        RESOURCE,
        "bench",
        "-n",
        &ns,
        "connectors.alauda.io/ldap.sync-request=2",
    ]);
    let started = Instant::now();
    eventually(Duration::from_secs(600), || {
        let c = get_json(&ns, RESOURCE, "bench");
        if c["status"]["lastSync"]["request"] == "2" {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    let second_s = started.elapsed().as_secs_f64();
    let second_writes = writes(&op) - first_writes;
    let rss = peak_rss_mib(op.pid());
    let users_listed = kubectl_ok([
        "get",
        "users.auth.alauda.io",
        "-l",
        "auth.cpaas.io/user.connector_id=bench",
        "-o",
        "name",
    ])
    .lines()
    .count();
    let ratio = sync_s / floor_s;
    println!(
        "| measure | value |\n|---|---|\n\
         | LDAP people / groups | {} / {} |\n\
         | Users in the cluster after the sync | {users_listed} |\n\
         | floor: bare-client creates ({} Users + {} Groups, {CONCURRENCY} at a time) | {floor_s:.2} s |\n\
         | operator: Connector created -> lastSync written | {sync_s:.2} s (sync itself {sync_inner_s:.2} s) |\n\
         | ratio (goal <= 1.3) | {ratio:.2} |\n\
         | writes of the first sync | {first_writes} |\n\
         | second sync, no LDAP change: time / writes (goal 0) | {second_s:.2} s / {second_writes} |\n\
         | operator peak RSS (VmHWM) | {rss:.1} MiB |",
        args.users, args.groups, args.users, args.groups
    );
    println!(
        "bench-sync users={} groups={} floor_s={floor_s:.2} sync_s={sync_s:.2} ratio={ratio:.2} second_sync_writes={second_writes} rss_mib={rss:.1}",
        args.users, args.groups
    );
    drop(op);
    let _ = kubectl([
        "delete",
        "users.auth.alauda.io",
        "-l",
        "auth.cpaas.io/user.connector_id=bench",
        "--wait=false",
    ]);
    let _ = kubectl([
        "delete",
        "groups.user.openshift.io",
        "-l",
        "openshift.io/ldap.host=127.0.0.1",
        "--wait=false",
    ]);
}
