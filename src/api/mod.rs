//! API types of `connectors.alauda.io/v1alpha1` and the CRDs generated from them.

pub mod common;
pub mod connector;
pub mod connector_class;

pub use common::*;
pub use connector::*;
pub use connector_class::*;

use kube::CustomResourceExt;

/// The API group of both kinds.
pub const GROUP: &str = "connectors.alauda.io";

/// Both CRDs as one multi-document YAML stream, as committed under `crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in [ConnectorClass::crd(), Connector::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed CRDs must match what the types generate.
    #[test]
    fn committed_crds_are_current() {
        let generated = crds_yaml().unwrap();
        let committed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/connectors.alauda.io.yaml"
        ))
        .unwrap();
        assert!(
            generated == committed,
            "crds/connectors.alauda.io.yaml is stale: run `cargo run -- crds > crds/connectors.alauda.io.yaml`"
        );
    }
}
