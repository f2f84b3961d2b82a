//! [`ProbeRunner`]: shared liveness requests, per-host and global limits.

use std::sync::Arc;
use std::time::Duration;

use super::server::{Reply, serve};
use super::{compiled, connector, secret};
use crate::probe::{
    Deferred, HttpProber, ProbeKind, ProbeOutcome, ProbeRunner, ProbeSettings, ProbeTarget,
    RunnerSettings, TrustBundle,
};

const CLASS: &str = r#"
    livenessProbe:
      http:
        path: /health
    auth:
      types:
      - name: basicAuth
        secretType: kubernetes.io/basic-auth
    authProbes:
    - authName: basicAuth
      probe:
        http:
          path: /auth
"#;

fn runner(settings: RunnerSettings) -> Arc<ProbeRunner> {
    Arc::new(ProbeRunner::new(
        HttpProber::new(ProbeSettings {
            timeout: Duration::from_secs(2),
            ..ProbeSettings::default()
        }),
        settings,
    ))
}

async fn probe(
    runner: &ProbeRunner,
    kind: ProbeKind,
    address: &str,
    name: &str,
) -> (ProbeOutcome, bool) {
    let class = compiled(CLASS);
    let mut c = connector(&format!(
        "connectorClassName: test\naddress: {address}\nauth:\n  name: basicAuth\n  secretRef: {{name: creds}}"
    ));
    c.metadata.name = Some(name.to_string());
    let material = secret(&[("username", "u"), ("password", "p")]);
    let target = ProbeTarget {
        connector: &c,
        secret: Some(&material),
        class_api_url: None,
    };
    let report = try_probe(runner, &class, kind, &target)
        .await
        .expect("not deferred");
    (report.outcome, report.shared)
}

async fn try_probe(
    runner: &ProbeRunner,
    class: &crate::probe::CompiledClass,
    kind: ProbeKind,
    target: &ProbeTarget<'_>,
) -> Result<crate::probe::ProbeReport, Deferred> {
    runner
        .run(class, kind, target, &TrustBundle::empty())
        .await
        .map(|report| report.unwrap_or_else(|| panic!("no {kind:?} probe")))
}

/// One Connector's liveness probe against a tool that answers 200 after `answer_ms`,
/// on a runner whose other callers wait `patience_ms` from the send.
struct SlowShared {
    server: super::server::TestServer,
    runner: Arc<ProbeRunner>,
    class: crate::probe::CompiledClass,
    connector: crate::api::Connector,
}

impl SlowShared {
    async fn new(answer_ms: u64, patience_ms: u64) -> Self {
        let server = serve(move |_| {
            Reply::After(
                Duration::from_millis(answer_ms),
                Box::new(Reply::status(200)),
            )
        })
        .await;
        let runner = runner(RunnerSettings {
            defer_shared_after: Some(Duration::from_millis(patience_ms)),
            ..RunnerSettings::default()
        });
        let connector = connector(&format!(
            "connectorClassName: test\naddress: {}",
            server.url("")
        ));
        SlowShared {
            server,
            runner,
            class: compiled(CLASS),
            connector,
        }
    }

    async fn probe(&self) -> Result<crate::probe::ProbeReport, Deferred> {
        let target = ProbeTarget {
            connector: &self.connector,
            secret: None,
            class_api_url: None,
        };
        try_probe(&self.runner, &self.class, ProbeKind::Liveness, &target).await
    }
}

/// A caller that only waits for another's liveness request gives up after its
/// patience (freeing its worker); the sender keeps waiting, and the answer, once in,
/// is shared with everyone who asks again.
#[tokio::test]
async fn waiters_of_a_slow_shared_request_are_deferred() {
    let s = SlowShared::new(600, 100).await;
    let sender = s.probe();
    let waiter = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.probe().await
    };
    let (sent, waited) = futures::future::join(sender, waiter).await;
    assert_eq!(
        sent.expect("the sender waits").outcome,
        ProbeOutcome::Passed
    );
    assert!(waited.is_err(), "the waiter is deferred");
    let later = s.probe().await;
    assert!(later.expect("answered by now").shared);
    assert_eq!(s.server.recorded().len(), 1, "one request for all three");
}

/// Counts its calls.
fn counting_wake() -> (
    Arc<std::sync::atomic::AtomicUsize>,
    impl FnOnce() + Send + 'static,
) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    (calls, move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
}

fn calls(counter: &std::sync::atomic::AtomicUsize) -> usize {
    counter.load(std::sync::atomic::Ordering::SeqCst)
}

/// A deferred caller is called back when the answer is in, not before; one that
/// registers after the answer is called back at once.
#[tokio::test]
async fn a_deferred_caller_is_called_back_when_the_answer_is_in() {
    let s = SlowShared::new(500, 100).await;
    let (woken, wake) = counting_wake();
    let sender = s.probe();
    let waiter = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let deferred = s
            .probe()
            .await
            .expect_err("the answer takes longer than the patience");
        deferred.when_answered(wake);
        assert_eq!(calls(&woken), 0, "not before the answer");
        deferred
    };
    let (sent, deferred) = futures::future::join(sender, waiter).await;
    assert_eq!(sent.expect("sent").outcome, ProbeOutcome::Passed);
    assert_eq!(calls(&woken), 1, "woken by the answer");
    let (late, wake) = counting_wake();
    deferred.when_answered(wake);
    assert_eq!(calls(&late), 1, "answered already: woken at once");
    assert_eq!(calls(&woken), 1, "each caller once");
}

/// Once a shared request has been out longer than the patience, later callers do
/// not wait for it at all (a hanging tool holds no worker but its sender's).
#[tokio::test]
async fn late_callers_of_a_slow_shared_request_do_not_wait() {
    let s = SlowShared::new(900, 300).await;
    let sender = s.probe();
    let early_and_late = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let asked = tokio::time::Instant::now();
        let early = s.probe().await;
        let early_waited = asked.elapsed();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = tokio::time::Instant::now();
        let late = s.probe().await;
        (early.is_err(), early_waited, late.is_err(), asked.elapsed())
    };
    let (sent, (early_deferred, early_waited, late_deferred, late_waited)) =
        futures::future::join(sender, early_and_late).await;
    assert!(sent.is_ok());
    assert!(early_deferred && late_deferred);
    assert!(
        early_waited >= Duration::from_millis(250),
        "an early caller waits out the patience: {early_waited:?}"
    );
    assert!(
        late_waited < Duration::from_millis(100),
        "a late caller is deferred at once: {late_waited:?}"
    );
}

/// A sender cancelled before its answer wakes the callers deferred on it, and the
/// next caller sends the request again instead of waiting for the lost one.
#[tokio::test]
async fn an_abandoned_shared_request_wakes_its_waiters_and_is_sent_again() {
    let s = SlowShared::new(400, 50).await;
    let (woken, wake) = counting_wake();
    let cancelled_sender = tokio::time::timeout(Duration::from_millis(150), s.probe());
    let waiter = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let deferred = s.probe().await.expect_err("deferred");
        deferred.when_answered(wake);
    };
    let (cancelled, ()) = futures::future::join(cancelled_sender, waiter).await;
    assert!(cancelled.is_err(), "the sender was cancelled");
    assert_eq!(calls(&woken), 1, "woken by the abandonment");
    let again = s.probe().await.expect("a new sender, not deferred");
    assert_eq!(again.outcome, ProbeOutcome::Passed);
    assert!(
        !again.shared,
        "sent again, not shared from the lost request"
    );
}

#[tokio::test]
async fn identical_liveness_requests_share_one_request() {
    let s = serve(|_| Reply::After(Duration::from_millis(200), Box::new(Reply::status(200)))).await;
    let r = runner(RunnerSettings::default());
    let address = s.url("");
    let results = futures::future::join_all((0..20).map(|i| {
        let r = r.clone();
        let address = address.clone();
        async move { probe(&r, ProbeKind::Liveness, &address, &format!("c{i}")).await }
    }))
    .await;
    assert!(results.iter().all(|(o, _)| *o == ProbeOutcome::Passed));
    assert_eq!(results.iter().filter(|(_, shared)| !shared).count(), 1);
    // Later within the window: still shared.
    assert!(probe(&r, ProbeKind::Liveness, &address, "late").await.1);
    assert_eq!(s.recorded().len(), 1);
}

#[tokio::test]
async fn failures_are_shared_only_briefly() {
    let s = serve(|_| Reply::status(503)).await;
    let r = runner(RunnerSettings {
        share_failure_for: Duration::from_millis(100),
        ..RunnerSettings::default()
    });
    let address = s.url("");
    assert!(
        !probe(&r, ProbeKind::Liveness, &address, "a")
            .await
            .0
            .is_passed()
    );
    assert!(probe(&r, ProbeKind::Liveness, &address, "b").await.1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!probe(&r, ProbeKind::Liveness, &address, "c").await.1);
    assert_eq!(s.recorded().len(), 2);
}

#[tokio::test]
async fn auth_probes_are_never_shared() {
    let s = serve(|_| Reply::status(200)).await;
    let r = runner(RunnerSettings::default());
    let address = s.url("");
    for name in ["a", "b", "c"] {
        let (outcome, shared) = probe(&r, ProbeKind::Auth, &address, name).await;
        assert_eq!(outcome, ProbeOutcome::Passed);
        assert!(!shared);
    }
    assert_eq!(s.recorded().len(), 3);
}

#[tokio::test]
async fn a_hanging_host_does_not_hold_up_another_host() {
    let hanging =
        serve(|_| Reply::After(Duration::from_secs(10), Box::new(Reply::status(200)))).await;
    let healthy = serve(|_| Reply::status(200)).await;
    // Two global permits, one per host: the hanging host can hold only one.
    let r = runner(RunnerSettings {
        max_concurrent: 2,
        max_per_host: 1,
        ..RunnerSettings::default()
    });
    let stuck: Vec<_> = (0..5)
        .map(|i| {
            let r = r.clone();
            let address = hanging.url("");
            tokio::spawn(
                async move { probe(&r, ProbeKind::Auth, &address, &format!("h{i}")).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        r.waiting(),
        4,
        "four hanging probes queue behind the host limit"
    );
    let started = std::time::Instant::now();
    for i in 0..3 {
        let (outcome, _) = probe(&r, ProbeKind::Auth, &healthy.url(""), &format!("ok{i}")).await;
        assert_eq!(outcome, ProbeOutcome::Passed);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    for task in stuck {
        task.abort();
    }
}

/// A tool that answers 200 while it starts (SonarQube's `{"status":"STARTING"}`)
/// fails the class's check: that answer is reused only for the failure window, so
/// the tool is seen up at the next retry, not after the probe interval.
#[tokio::test]
async fn a_healthy_status_that_fails_the_check_is_shared_only_briefly() {
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let s = serve(move |_| {
        let status = match answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => "STARTING",
            _ => "UP",
        };
        Reply::body(
            200,
            "application/json",
            &format!(r#"{{"status":"{status}"}}"#),
        )
    })
    .await;
    let r = runner(RunnerSettings {
        share_failure_for: Duration::from_millis(150),
        ..RunnerSettings::default()
    });
    let class = compiled(
        "livenessProbe:\n  http:\n    path: /status\n    response:\n      cel: response.statusCode == 200 && response.body.status == 'UP'\n",
    );
    let c = connector(&format!("connectorClassName: test\naddress: {}", s.url("")));
    let target = ProbeTarget {
        connector: &c,
        secret: None,
        class_api_url: None,
    };
    let liveness = || async {
        try_probe(&r, &class, ProbeKind::Liveness, &target)
            .await
            .expect("not deferred")
    };
    let first = liveness().await;
    assert!(!first.outcome.is_passed(), "{:?}", first.outcome);
    assert!(liveness().await.shared, "reused within the failure window");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let recovered = liveness().await;
    assert!(!recovered.shared, "asked again after the failure window");
    assert_eq!(recovered.outcome, ProbeOutcome::Passed);
    assert_eq!(s.recorded().len(), 2);
}

/// Twenty Connectors of one class share a liveness answer with a `response.cel`
/// check: a pass is evaluated once and taken by the others; a failure is judged by
/// each (its message is scrubbed with each caller's own secrets).
#[tokio::test]
async fn a_pass_of_one_check_on_a_shared_answer_is_evaluated_once() {
    let class = compiled(
        "livenessProbe:\n  http:\n    path: /status\n    response:\n      cel: response.body.status == 'UP'\n",
    );
    for (status, passes) in [("UP", true), ("DOWN", false)] {
        let body = format!(r#"{{"status":"{status}"}}"#);
        let s = serve(move |_| Reply::body(200, "application/json", &body)).await;
        let r = runner(RunnerSettings::default());
        let c = connector(&format!("connectorClassName: test\naddress: {}", s.url("")));
        let target = ProbeTarget {
            connector: &c,
            secret: None,
            class_api_url: None,
        };
        let mut judged = 0;
        for _ in 0..20 {
            let report = try_probe(&r, &class, ProbeKind::Liveness, &target)
                .await
                .expect("not deferred");
            assert_eq!(report.outcome.is_passed(), passes, "{:?}", report.outcome);
            judged += usize::from(report.judged);
        }
        assert_eq!(s.recorded().len(), 1, "one shared request");
        let expected = if passes { 1 } else { 20 };
        assert_eq!(judged, expected, "judged {judged} times ({status})");
    }
}
