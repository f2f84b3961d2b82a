//! Dex's `Connector` kind (`dex.coreos.com/v1`, SPEC-identity section 1): one identity
//! provider (LDAP, OIDC, or a type this project leaves alone).
//!
//! Dex keeps `id`, `name`, `type` and the deprecated `config` bytes at the top level of
//! the object, beside `metadata`, which kube's `CustomResource` derive cannot express.
//! So [`DexConnector`] is written by hand (with its [`kube::Resource`] impl), and the
//! CRD is generated from the derive of its `spec` and `status` ([`DexConnectorCrd`])
//! with the top-level fields added from their own schemas ([`dex_crd`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::common::Condition;

/// The API group of Dex's kinds.
pub const DEX_GROUP: &str = "dex.coreos.com";
/// The version of Dex's `Connector`.
pub const DEX_VERSION: &str = "v1";

/// ConnectorSpec defines the desired state of a Dex Connector: the identity provider's
/// configuration as an object.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dex.coreos.com",
    version = "v1",
    kind = "Connector",
    plural = "connectors",
    root = "DexConnectorCrd",
    namespaced,
    status = "DexConnectorStatus",
    doc = "Connector is the Schema for the connectors API: one Dex identity provider.",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct DexConnectorSpec {
    /// Config is the identity provider's configuration (Dex's connector config: for
    /// `ldap` host, bindDN, userSearch, ...; for `oidc` issuer, clientID, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub config: Option<Map<String, Value>>,
}

/// ConnectorStatus defines the observed state of a Dex Connector (written by this
/// operator only; Dex does not read it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DexConnectorStatus {
    /// ObservedGeneration is the generation last judged by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: ConfigValid, SecretReady, LivenessReady, AuthReady, SearchReady, Ready
    /// (the health check), SyncReady (the directory sync).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// LastSync is the outcome of the last directory sync (LDAP users and groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<LastSync>,
}

/// The outcome of one directory sync (SPEC-identity section 3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastSync {
    /// Time the sync finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Users found in LDAP.
    #[serde(default)]
    pub users: i64,
    /// Groups found in LDAP.
    #[serde(default)]
    pub groups: i64,
    /// Users and Groups created.
    #[serde(default)]
    pub created: i64,
    /// Users and Groups updated.
    #[serde(default)]
    pub updated: i64,
    /// Users invalidated (gone from LDAP).
    #[serde(default)]
    pub invalidated: i64,
    /// Entries skipped (no email, invalid or duplicate names).
    #[serde(default)]
    pub skipped: i64,
    /// Users and Groups of the same name not owned by this sync (left unchanged).
    #[serde(default)]
    pub conflicts: i64,
    /// Groups deleted by prune.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<i64>,
    /// The value of the manual-sync annotation this sync answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The Connector generation synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A Dex `Connector` as stored: Dex's top-level fields, `spec`, `status`, and whatever
/// else Dex keeps (carried along, never interpreted).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DexConnector {
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// ID is the unique identifier of the connector (at most 32 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name is the display name of the connector (at most 32 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Type of the identity provider (`ldap`, `oidc`, `github`, ...).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Deprecated: base64 of Dex's JSON config, read when `spec.config` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<DexConnectorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DexConnectorStatus>,
}

impl kube::Resource for DexConnector {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Connector".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        DEX_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        DEX_VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "connectors".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Where a Connector's config came from, or why it could not be read.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigSource {
    /// `spec.config`.
    Spec(Map<String, Value>),
    /// The decoded top-level `config` bytes.
    Legacy(Map<String, Value>),
    /// Neither is present.
    Missing,
    /// The `config` bytes are not base64 of a JSON object (the message names no value).
    Undecodable(String),
}

impl DexConnector {
    /// The IdP config: `spec.config`, or else the decoded top-level `config`.
    pub fn config_source(&self) -> ConfigSource {
        if let Some(config) = self.spec.as_ref().and_then(|s| s.config.clone()) {
            return ConfigSource::Spec(config);
        }
        let Some(encoded) = self.config.as_deref().filter(|c| !c.is_empty()) else {
            return ConfigSource::Missing;
        };
        let bytes = match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
            Ok(b) => b,
            Err(_) => return ConfigSource::Undecodable("config is not valid base64".into()),
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => ConfigSource::Legacy(map),
            Ok(_) => ConfigSource::Undecodable("config does not hold a JSON object".into()),
            Err(_) => ConfigSource::Undecodable("config does not hold valid JSON".into()),
        }
    }

    /// The stored conditions (empty without status).
    pub fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default()
    }
}

/// `{name, key}` of a Secret in the Connector's namespace (this project's addition to
/// Dex's config: `bindPWRef`, `clientSecretRef`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretKeyRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
}

/// Dex's LDAP connector config (the fields this project reads; the rest is ignored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LdapConfig {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default, rename = "insecureNoSSL")]
    pub insecure_no_ssl: bool,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default, rename = "startTLS")]
    pub start_tls: bool,
    /// A file path inside Dex's pod (read by the operator only if it exists there too).
    #[serde(default, rename = "rootCA")]
    pub root_ca: Option<String>,
    /// base64 of PEM CA certificates.
    #[serde(default, rename = "rootCAData")]
    pub root_ca_data: Option<String>,
    #[serde(default, rename = "bindDN")]
    pub bind_dn: Option<String>,
    #[serde(default, rename = "bindPW")]
    pub bind_pw: Option<String>,
    #[serde(default, rename = "bindPWRef")]
    pub bind_pw_ref: Option<SecretKeyRef>,
    #[serde(default)]
    pub user_search: Option<UserSearch>,
    #[serde(default)]
    pub group_search: Option<GroupSearch>,
}

/// `userSearch` of the LDAP config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSearch {
    #[serde(default, rename = "baseDN")]
    pub base_dn: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub id_attr: Option<String>,
    #[serde(default)]
    pub email_attr: Option<String>,
    #[serde(default)]
    pub name_attr: Option<String>,
    #[serde(default)]
    pub preferred_username_attr: Option<String>,
}

/// `groupSearch` of the LDAP config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSearch {
    #[serde(default, rename = "baseDN")]
    pub base_dn: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub user_matchers: Vec<UserMatcher>,
    #[serde(default)]
    pub name_attr: Option<String>,
}

/// One `groupSearch.userMatchers` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserMatcher {
    #[serde(default)]
    pub user_attr: Option<String>,
    #[serde(default)]
    pub group_attr: Option<String>,
}

/// Dex's OIDC connector config (the fields this project reads).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcConfig {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default, rename = "clientID")]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_ref: Option<SecretKeyRef>,
    #[serde(default, rename = "redirectURI")]
    pub redirect_uri: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// File paths inside Dex's pod, or PEM text (read when it is PEM).
    #[serde(default, rename = "rootCAs")]
    pub root_cas: Vec<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// The LDAP defaults of Dex: port 636, or 389 with `insecureNoSSL`.
impl LdapConfig {
    pub fn default_port(&self) -> u16 {
        if self.insecure_no_ssl { 389 } else { 636 }
    }
}

/// `type: object` that keeps every field (Dex's config shapes vary by type).
fn free_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The `Connector` CRD of `dex.coreos.com`: `spec` and `status` from the derive, the
/// top-level Dex fields added, the root keeping unknown fields (Dex stores more).
pub fn dex_crd() -> CustomResourceDefinition {
    let mut crd = DexConnectorCrd::crd();
    for version in crd.spec.versions.iter_mut() {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        root.x_kubernetes_preserve_unknown_fields = Some(true);
        if let Some(required) = root.required.as_mut() {
            required.retain(|f| f != "spec");
        }
        if root.required.as_ref().is_some_and(Vec::is_empty) {
            root.required = None;
        }
        let properties = root.properties.get_or_insert_with(BTreeMap::new);
        let string = |description: &str, max: Option<i64>| JSONSchemaProps {
            type_: Some("string".into()),
            description: Some(description.into()),
            max_length: max,
            ..JSONSchemaProps::default()
        };
        properties.insert(
            "id".into(),
            string(
                "ID is the unique identifier for the connector (max 32 characters)",
                Some(32),
            ),
        );
        properties.insert(
            "name".into(),
            string(
                "Name is the display name of the connector (max 32 characters)",
                Some(32),
            ),
        );
        properties.insert(
            "type".into(),
            string(
                "Type specifies the identity provider type (ldap or oidc)",
                None,
            ),
        );
        properties.insert(
            "config".into(),
            string(
                "Deprecated: Config holds legacy connector configuration as JSON bytes, use Spec.Config instead",
                None,
            ),
        );
    }
    crd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_comes_from_spec_then_legacy_bytes() {
        let legacy = base64::engine::general_purpose::STANDARD.encode(br#"{"host":"a:389"}"#);
        let mut c: DexConnector = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ldap"},
            "id": "ldap", "name": "LDAP", "type": "ldap", "config": legacy,
        }))
        .unwrap();
        assert!(matches!(c.config_source(), ConfigSource::Legacy(m) if m["host"] == "a:389"));
        c.spec = Some(DexConnectorSpec {
            config: Some(serde_json::from_value(serde_json::json!({"host": "b"})).unwrap()),
        });
        assert!(matches!(c.config_source(), ConfigSource::Spec(m) if m["host"] == "b"));
        c.spec = None;
        c.config = Some("%%%".into());
        assert!(matches!(c.config_source(), ConfigSource::Undecodable(_)));
        c.config = None;
        assert_eq!(c.config_source(), ConfigSource::Missing);
    }

    #[test]
    fn crd_keeps_unknown_fields_and_has_dex_top_level_fields() {
        let crd = serde_json::to_value(dex_crd()).unwrap();
        let v = &crd["spec"]["versions"][0];
        let root = &v["schema"]["openAPIV3Schema"];
        assert_eq!(root["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(root["properties"]["id"]["maxLength"], 32);
        assert_eq!(root["properties"]["name"]["maxLength"], 32);
        assert_eq!(
            root["properties"]["spec"]["properties"]["config"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(v["subresources"]["status"], serde_json::json!({}));
        let columns: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Type", "Ready", "Reason", "Age"]);
        assert_eq!(crd["spec"]["scope"], "Namespaced");
    }
}
