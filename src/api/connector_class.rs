//! The cluster-scoped ConnectorClass kind: one kind of tool.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AddressSpec, Addressable, Condition, KReference, ParamSpec};

/// Spec defines the desired state of ConnectorClass.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "connectors.alauda.io",
    version = "v1alpha1",
    kind = "ConnectorClass",
    status = "ConnectorClassStatus",
    shortname = "ccls",
    category = "alauda",
    doc = "ConnectorClass is the Schema for the connectorclasses API: one kind of tool.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.authProbes) || self.authProbes.all(p, has(self.auth) && has(self.auth.types) && self.auth.types.exists(t, t.name == p.authName))",
    "messageExpression": "'spec.authProbes[].authName must name an auth type declared in spec.auth.types[].name; not declared: ' + self.authProbes.map(p, !(has(self.auth) && has(self.auth.types) && self.auth.types.exists(t, t.name == p.authName)), p.authName)[0]",
    "fieldPath": ".authProbes",
    "reason": "FieldValueInvalid"
}]))]
pub struct ConnectorClassSpec {
    /// Address indicates address param constraints for this ConnectorClass of
    /// connectors; only the string param type is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressSpec>,
    /// AddressExtensions declares named extra addresses a Connector of this class may or
    /// must (no default) carry in its spec.addressExtensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub address_extensions: Option<Vec<ParamSpec>>,
    /// API defines the connectorclass plugin api address and openapi specification.
    /// `api.ref` can point at a Kubernetes Service; `api.uri` can be an absolute URL
    /// (non-empty scheme and host) or a URI relative to the ref's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ConnectorClassApi>,
    /// Auth indicates authentication constraints for this ConnectorClass of connectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectorClassAuth>,
    /// AuthProbes defines authentication probe for this ConnectorClass of connectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["authName"], "maxItems" = 32))]
    pub auth_probes: Option<Vec<AuthProbe>>,
    /// Configurations defines connectorclass configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configurations: Option<Vec<ConnectorClassConfiguration>>,
    /// LivenessProbe defines liveness probe for this ConnectorClass of connectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Params indicates param constraints for this ConnectorClass of connectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub params: Option<Vec<ParamSpec>>,
    /// Proxy defines the proxy configuration for this ConnectorClass: how network
    /// traffic should be routed through a proxy server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ConnectorClassProxy>,
}

/// The address fields shared by a class's `api` and `proxy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClassEndpoint {
    /// Ref points to an Addressable (a Service, with its namespace).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub ref_: Option<KReference>,
    /// URI can be an absolute URL (non-empty scheme and non-empty host) pointing to the
    /// target or a relative URI. Relative URIs will be resolved using the base URI
    /// retrieved from Ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// CACerts are Certification Authority (CA) certificates in PEM format according to
    /// https://www.rfc-editor.org/rfc/rfc7468 (stored, not acted on).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "CACerts")]
    pub ca_certs: Option<String>,
    /// Audience is the OIDC audience (stored, not acted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// API defines connectorclass plugin api address and openapi specification.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorClassApi {
    /// Where the service is: ref, uri, CA certificates and audience.
    #[serde(flatten)]
    pub endpoint: ClassEndpoint,
    /// OpenAPI defines the openapi specification for the connectorclass api. Requests
    /// whose path is not in it are forwarded to the proxy of the connectorclass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub openapi: Option<serde_json::Value>,
    /// Permissions defines the request matching rules for different operations on the
    /// connectorclass api.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<RegoPolicy>,
}

/// Proxy defines the proxy configuration for this ConnectorClass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorClassProxy {
    /// Where the service is: ref, uri, CA certificates and audience.
    #[serde(flatten)]
    pub endpoint: ClassEndpoint,
    /// AuthExtractor specifies the method used to extract authentication data from
    /// incoming requests: a Rego policy in package `proxy` producing `auth.token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_extractor: Option<RegoPolicy>,
}

/// A Rego policy script.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegoPolicy {
    /// Rego contains the Rego policy script (v1 syntax, or v0 rule bodies without `if`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rego: Option<String>,
}

/// Auth indicates authentication constraints for this ConnectorClass of connectors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorClassAuth {
    /// Types represent the authentication types supported by connectors of this class;
    /// a Connector chooses one by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"], "maxItems" = 32))]
    pub types: Option<Vec<AuthType>>,
}

/// ConnectorClassAuthType represent an authentication type supported by connectors of
/// the current connectorclass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthType {
    /// Name of the AuthType. Must be unique within the ConnectorClass.
    #[schemars(length(max = 253))]
    pub name: String,
    /// DisplayName is the human readable name of the AuthType.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description is the description of the AuthType.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// SecretType represents the secret type of the current authentication information,
    /// following the Kubernetes Secret type definition, e.g. kubernetes.io/basic-auth,
    /// kubernetes.io/ssh-auth, Opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// Optional indicates whether the authentication information is optional for this
    /// ConnectorClass of connectors; the default value is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// Params declares the data fields included in this authentication type. For known
    /// types, the definition of included params is optional. If not defined, the
    /// conventional params will be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub params: Option<Vec<ParamSpec>>,
    /// Generator specifies how to generate authentication data dynamically: a Rego
    /// policy in package `proxy` producing an `auth` object {position, auth, contentType}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<RegoPolicy>,
}

/// ConnectorClassAuthProbe represents the authentication check for one auth type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthProbe {
    /// AuthName corresponds to `spec.auth.types[].name`, indicating the way to check for
    /// the corresponding authentication type.
    #[schemars(length(max = 253))]
    pub auth_name: String,
    /// Params declares the data fields included in this probe; it will use the param
    /// value when probing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub params: Option<Vec<ParamSpec>>,
    /// Probe represents current detection configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}

/// Probe represents a detection configuration: an HTTP request to the tool, or a
/// request to the class's API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Probe {
    /// Http represents the network detection using an HTTP request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// API defines a network detection probe that uses the ConnectorClass API. The
    /// endpoint is resolved from the ConnectorClass's `spec.api`; `path` is appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiProbe>,
}

/// Http represents the network detection using an HTTP request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Path represents the API address accessed during the current detection. It is an
    /// absolute path (Go template allowed, may carry a query string) appended to the
    /// host of spec.address of the connector; the address's own path is not kept.
    pub path: String,
    /// Host represents the tool address for the current detection. Usually empty: the
    /// host of the connector's spec.address is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Scheme to use for connecting to the host (http or https). If empty: when Host is
    /// empty or matches the connector's address, the scheme from the connector's address
    /// is used; otherwise http.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-validations" = [{
        "rule": "self.lowerAscii() in ['http', 'https']",
        "messageExpression": "'scheme must be http or https, not \"' + self + '\"'"
    }]))]
    pub scheme: Option<String>,
    /// Method represents the HTTP method to use for the probe: GET (default) or POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self in ['GET', 'POST']",
        "messageExpression": "'method must be GET or POST, not \"' + self + '\"'"
    }]))]
    pub method: Option<String>,
    /// Custom headers to set in the request (Go template values). HTTP allows repeated
    /// headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_headers: Option<Vec<HttpHeader>>,
    /// DisableRedirect indicates whether the probe should not follow redirects; default
    /// false (redirects are followed, at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_redirect: Option<bool>,
    /// Response defines the expected response validation rules. If not specified, the
    /// probe is considered successful if the request completes without error and returns
    /// a 2xx status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ProbeResponse>,
}

/// HTTPHeader describes a custom header to be used in HTTP probes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpHeader {
    /// The header field name. This will be canonicalized upon output, so case-variant
    /// names will be understood as the same header.
    pub name: String,
    /// The header field value (a Go template).
    pub value: String,
}

/// Response defines the expected response validation rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeResponse {
    /// CEL contains a CEL (Common Expression Language) expression for response
    /// validation; it must evaluate to a boolean. Variables: response.statusCode (int),
    /// response.headers (map of header name, lowercase or canonical, to list of
    /// values), response.body (parsed JSON when the body is JSON, else the body string),
    /// response.bodyString (string). Examples:
    /// `response.statusCode == 200 && response.body.status == 'healthy'`,
    /// `response.headers['content-type'][0].startsWith('application/json')`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel: Option<String>,
}

/// API probe: a request to the class's resolved API URL.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiProbe {
    /// Path represents the API path accessed during the current detection (Go template
    /// allowed); it is appended to the URI resolved from spec.api.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// ConnectorClassConfiguration defines one named configuration of the class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorClassConfiguration {
    /// Name of the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Annotations is an unstructured key value map stored with the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Data contains the configuration data. Each key must consist of alphanumeric
    /// characters, '-', '_' or '.'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<BTreeMap<String, String>>,
    /// Params declares parameters of this configuration (stored, not acted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<ParamSpec>>,
}

/// Status defines the actual state of ConnectorClass.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorClassStatus {
    /// ObservedGeneration is the 'Generation' of the ConnectorClass that was last
    /// processed by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions the latest available observations of a resource's current state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Annotations is additional Status fields for the Resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// API is the resolved address of spec.api; unset when spec.api is empty or invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ClassApiStatus>,
    /// Proxy is the resolved address of spec.proxy; unset when spec.proxy is empty or
    /// invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<super::connector::ProxyStatus>,
}

/// The resolved API address of a class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClassApiStatus {
    /// Address is a single Addressable address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Addressable>,
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "OpenAPI defines the openapi specification for the connectorclass api.",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The auth type a Connector uses (SPEC section 4): the name it gives in
/// `spec.auth.name`, else the class's first auth type. The one rule for the Secret
/// checks, the auth probe and the proxy.
pub fn chosen_auth_name<'a>(named: Option<&'a str>, first: Option<&'a str>) -> Option<&'a str> {
    named.filter(|n| !n.is_empty()).or(first)
}

impl ConnectorClass {
    /// The auth type the Connector uses: see [`chosen_auth_name`]. `None` when it names
    /// an auth type the class does not declare, or the class declares none.
    pub fn chosen_auth_type(&self, connector: &super::Connector) -> Option<&AuthType> {
        let first = self
            .spec
            .auth
            .as_ref()
            .and_then(|a| a.types.as_ref())
            .and_then(|t| t.first())
            .map(|t| t.name.as_str());
        self.auth_type(chosen_auth_name(connector.auth_name(), first)?)
    }

    /// The declared auth type of that name.
    pub fn auth_type(&self, name: &str) -> Option<&AuthType> {
        self.spec
            .auth
            .as_ref()?
            .types
            .as_ref()?
            .iter()
            .find(|t| t.name == name)
    }

    /// The auth probe for an auth type name.
    pub fn auth_probe(&self, auth_name: &str) -> Option<&AuthProbe> {
        self.spec
            .auth_probes
            .as_ref()?
            .iter()
            .find(|p| p.auth_name == auth_name)
    }
}
