//! The condition vocabulary of Connectors and ConnectorClasses (SPEC sections 2, 3):
//! named once, used by decide, the controllers, `check` and the tests.

/// Condition statuses.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// Condition types.
pub const READY: &str = "Ready";
pub const CONNECTOR_CLASS_READY: &str = "ConnectorClassReady";
pub const SECRET_READY: &str = "SecretReady";
pub const LIVENESS_READY: &str = "LivenessReady";
pub const AUTH_READY: &str = "AuthReady";
pub const PROXY_SERVICE_READY: &str = "ProxyServiceReady";
pub const API_READY: &str = "APIReady";
pub const CA_CERT_READY: &str = "CACertReady";
pub const PROXY_READY: &str = "ProxyReady";
pub const SPEC_VALID: &str = "SpecValid";

/// Condition types of IdP connectors (`dex.coreos.com/v1` Connector, SPEC-identity 2).
pub const CONFIG_VALID: &str = "ConfigValid";
pub const SEARCH_READY: &str = "SearchReady";
/// The directory sync of an `ldap` Dex Connector (written by the sync only).
pub const SYNC_READY: &str = "SyncReady";
