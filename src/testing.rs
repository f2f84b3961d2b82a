//! Fixtures shared by the unit tests: objects from YAML, with or without the
//! surrounding document.

use serde::de::DeserializeOwned;

use crate::api::{Connector, ConnectorClass};

/// Any object from a whole YAML document.
pub fn object<T: DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad yaml: {e}\n{yaml}"))
}

/// A ConnectorClass from a whole YAML document.
pub fn class_doc(yaml: &str) -> ConnectorClass {
    object(yaml)
}

/// A Connector from a whole YAML document.
pub fn connector_doc(yaml: &str) -> Connector {
    object(yaml)
}

/// ConnectorClass `test` with this spec (indented or not).
pub fn class(spec_yaml: &str) -> ConnectorClass {
    object(&format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: ConnectorClass\nmetadata:\n  name: test\nspec:\n{}",
        indent(spec_yaml)
    ))
}

/// Connector `my-git` in namespace `team-a` with this spec (indented or not).
pub fn connector(spec_yaml: &str) -> Connector {
    object(&format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: my-git\n  namespace: team-a\nspec:\n{}",
        indent(spec_yaml)
    ))
}

fn indent(s: &str) -> String {
    unindent(s).lines().map(|l| format!("  {l}\n")).collect()
}

/// Removes the common leading indentation of a raw string literal.
pub fn unindent(s: &str) -> String {
    let min = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    s.lines()
        .map(|l| {
            if l.len() >= min {
                &l[min..]
            } else {
                l.trim_start()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A fixed time for decide tests (stored times have second precision).
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap_or_default(),
    )
}
