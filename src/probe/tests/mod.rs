//! Unit tests of the probe engine: pure parts (templates, URL rules, CEL, Rego,
//! compile errors, judging, secrets) and I/O against in-process HTTP(S) servers.

mod compile_errors;
mod hostile;
mod hostile_engines;
mod judging;
mod net;
mod requests;
mod runner;
mod secrets;
pub(crate) mod server;
mod templates;

use std::collections::BTreeMap;

use crate::api::Connector;

use super::{CompiledClass, ProbeKind, ProbeOutcome, ProbeRequest, ProbeTarget, SecretMaterial};

pub(super) use crate::testing::{class, connector, unindent};

/// Runs an engine's future (an evaluation awaits its pool thread) where a test is
/// not async itself.
pub(super) fn wait<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a test runtime")
        .block_on(future)
}

pub(super) fn compiled(spec_yaml: &str) -> CompiledClass {
    match CompiledClass::compile(&class(spec_yaml)) {
        Ok(c) => c,
        Err(errors) => panic!("class does not compile: {errors:#?}"),
    }
}

pub(super) fn secret(pairs: &[(&str, &str)]) -> SecretMaterial {
    SecretMaterial {
        name: "creds".into(),
        type_: "kubernetes.io/basic-auth".into(),
        data: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// Builds a request, failing the test when there is none or it is an error.
pub(super) fn build(
    class: &CompiledClass,
    kind: ProbeKind,
    connector: &Connector,
    secret: Option<&SecretMaterial>,
) -> ProbeRequest {
    let target = ProbeTarget {
        connector,
        secret,
        class_api_url: None,
    };
    match class.request(kind, &target) {
        Some(Ok(r)) => r,
        Some(Err(o)) => panic!("request failed: {o:?}"),
        None => panic!("no probe of kind {kind:?}"),
    }
}

/// Builds a request that must fail; returns the outcome.
pub(super) fn build_err(
    class: &CompiledClass,
    kind: ProbeKind,
    connector: &Connector,
    secret: Option<&SecretMaterial>,
) -> ProbeOutcome {
    let target = ProbeTarget {
        connector,
        secret,
        class_api_url: None,
    };
    match class.request(kind, &target) {
        Some(Ok(r)) => panic!("request unexpectedly built: {r:?}"),
        Some(Err(o)) => o,
        None => panic!("no probe of kind {kind:?}"),
    }
}

pub(super) fn header_values(r: &ProbeRequest, name: &str) -> Vec<String> {
    r.headers()
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.to_str().unwrap_or_default().to_string())
        .collect()
}
