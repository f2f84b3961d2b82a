//! The namespaced Connector kind: one instance of a tool.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Addressable, Condition, Param};

/// ConnectorSpec defines the desired state of Connector.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "connectors.alauda.io",
    version = "v1alpha1",
    kind = "Connector",
    namespaced,
    status = "ConnectorStatus",
    shortname = "conn",
    category = "alauda",
    doc = "Connector is the Schema for the connectors API: one instance of an external tool.",
    printcolumn = r#"{"name":"Class","type":"string","jsonPath":".spec.connectorClassName"}"#,
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.address"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorSpec {
    /// ConnectorClassName of current connector.
    #[schemars(length(min = 1))]
    pub connector_class_name: String,
    /// Address is connector address: an absolute http or https URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''",
        "message": "spec.address must be an absolute http or https URL, e.g. https://github.com"
    }]))]
    pub address: Option<String>,
    /// Auth represents authenticate data of current connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectorAuth>,
    /// Params information required for spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub params: Option<Vec<Param>>,
    /// AddressExtensions are named extra addresses of the tool (http or https URLs); the
    /// names must be declared by the class's spec.addressExtensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub address_extensions: Option<Vec<Param>>,
    /// CACertSecretRef names a Secret in the Connector's namespace holding PEM CA
    /// certificates (keys ending .crt or .pem, or any value with a PEM header) trusted
    /// when probing this Connector's tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_secret_ref: Option<LocalSecretReference>,
}

/// Auth represents authenticate data of current connector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorAuth {
    /// Name represent auth name that configured in ConnectorClass.spec.auth.types[].name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Params information required for authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub params: Option<Vec<Param>>,
    /// SecretRef secret reference when doing authentication. The Secret must be in the
    /// Connector's namespace; a different namespace is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "secret_reference_schema")]
    pub secret_ref: Option<ObjectReference>,
}

/// A Kubernetes object name (a lowercase RFC 1123 subdomain): the CRD's pattern for
/// Secret names, so a name is never something that changes an API path.
pub const OBJECT_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// The ObjectReference schema with the object-name pattern on `name`.
fn secret_reference_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <ObjectReference as JsonSchema>::json_schema(generator);
    if let Some(name) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("name"))
        .and_then(|n| n.as_object_mut())
    {
        name.insert("pattern".into(), OBJECT_NAME_PATTERN.into());
        name.insert("maxLength".into(), 253.into());
    }
    // As for any other optional field of the spec.
    schema.insert("nullable".into(), true.into());
    schema
}

/// A reference to a Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocalSecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), extend("pattern" = OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// ConnectorStatus defines the observed state of Connector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    /// ObservedGeneration is the 'Generation' of the Connector that was last processed by
    /// the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions the latest available observations of a resource's current state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Annotations is additional Status fields for the Resource to save some additional
    /// State as well as convey more information to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// API contains the status information for the connector's api.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ConnectorApiStatus>,
    /// Proxy contains the status information for the connector's proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStatus>,
}

/// API contains the status information for the connector's api.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorApiStatus {
    /// Path provides the path for the connector API, used to construct the api path for
    /// the connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Proxy status: the addressable HTTP endpoint of the proxy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    /// HTTPAddress provides the addressable HTTP endpoint for the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_address: Option<Addressable>,
}

impl Connector {
    /// The auth type the Connector chose, if any.
    pub fn auth_name(&self) -> Option<&str> {
        self.spec.auth.as_ref()?.name.as_deref()
    }

    pub fn secret_ref(&self) -> Option<&ObjectReference> {
        self.spec.auth.as_ref()?.secret_ref.as_ref()
    }
}
