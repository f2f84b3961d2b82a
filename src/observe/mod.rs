//! The observe step, shared by the controllers and the `check` CLI: objects are read
//! through [`Objects`] (the cluster, or files), turned into the facts the decide step
//! takes, and the probe plan is executed. Only this module and the processes do I/O.

mod class;
mod connector;
pub mod identity;
mod secrets;

pub use class::{ServiceLookup, observe_class};
pub use connector::{
    ClassView, ConnectorInputs, Objects, class_facts, connector_facts, observe_inputs, run_probes,
};
pub use secrets::{
    GLOBAL_CA_LABEL, InvalidPem, SecretLookup, ca_bundle_from_secret, ca_facts, ca_lookup,
    referenced_secrets, secret_facts, secret_lookup, secret_material,
};
