//! connectors-operator: keeps the status of Connectors and ConnectorClasses true.
//!
//! observe (I/O: [`observe`], controllers) -> decide (pure: [`decide`], [`validation`])
//! -> act (I/O: write only what changed). Layers: `docs/architecture.md`, checked by
//! `tests/architecture.rs`.

pub mod admission;
pub mod api;
pub mod check;
pub mod controller;
pub mod dataplane;
pub mod decide;
pub mod gateway;
pub mod identity;
pub mod inject;
pub mod observe;
pub mod probe;
pub mod proxy;
pub mod route;
pub mod runtime;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod types;
pub mod validation;
