//! Shapes shared by both kinds: Tekton-style params, Knative-style conditions and
//! addressables. Field names and JSON spellings follow the published API exactly.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A Tekton-style parameter value: a string, a list of strings, or a map of strings.
///
/// In JSON it is the bare value (`"main"`, `["a","b"]`, `{"k":"v"}`), so the CRD schema
/// is `x-kubernetes-preserve-unknown-fields` (a typed `anyOf` is not structural); the
/// shape is checked by validation instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    String(String),
    Array(Vec<String>),
    Object(BTreeMap<String, String>),
}

impl ParamValue {
    /// The Tekton type name of this value: `string`, `array` or `object`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamValue::String(_) => "string",
            ParamValue::Array(_) => "array",
            ParamValue::Object(_) => "object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::String(s) => Some(s),
            _ => None,
        }
    }
}

impl JsonSchema for ParamValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ParamValue".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A string, a list of strings, or a map of string to string.",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// Param declares a value to use for the parameter called name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Param {
    /// Name of the parameter.
    pub name: String,
    /// Value: a string, a list of strings, or a map of strings.
    pub value: ParamValue,
}

/// The declared type of a parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    #[default]
    String,
    Array,
    Object,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Array => "array",
            ParamType::Object => "object",
        }
    }
}

/// PropertySpec defines the type of one key of an object parameter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PropertySpec {
    /// Type of the property (only `string` is meaningful today).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<String>,
}

/// Everything a ParamSpec carries besides its name. Shared by [`ParamSpec`] (name
/// required) and [`AddressSpec`] (name optional, as published class examples omit it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ParamSpecFields {
    /// Type is the user-specified type of the parameter. The possible types are
    /// currently "string", "array" and "object", and "string" is the default.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<ParamType>,
    /// Description is a user-facing description of the parameter that may be used to
    /// populate a UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Properties is the JSON Schema properties to support key-value pairs parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, PropertySpec>>,
    /// Default is the value a parameter takes if no input value is supplied. A
    /// parameter without a default is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ParamValue>,
    /// Enum declares a set of allowed param input values. If Enum is not set, no input
    /// validation is performed for the param.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "enum")]
    pub enum_: Option<Vec<String>>,
}

impl ParamSpecFields {
    pub fn param_type(&self) -> ParamType {
        self.type_.unwrap_or_default()
    }
}

/// ParamSpec defines arbitrary parameters needed beyond typed inputs (such as resources).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ParamSpec {
    /// Name declares the name by which a parameter is referenced.
    pub name: String,
    #[serde(flatten)]
    pub spec: ParamSpecFields,
}

impl ParamSpec {
    /// A parameter without a default must be given.
    pub fn is_required(&self) -> bool {
        self.spec.default.is_none()
    }
}

/// Address indicates address param constraints for this ConnectorClass of connectors;
/// only the string param type is supported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AddressSpec {
    /// Name declares the name by which the address is referenced (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub spec: ParamSpecFields,
}

/// Condition defines a readiness condition for a Knative resource. See:
/// https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#typical-status-properties
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of condition.
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition, one of True, False, Unknown.
    pub status: String,
    /// Severity with which to treat failures of this type of condition. When this is not
    /// specified, it defaults to Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// LastTransitionTime is the last time the condition transitioned from one status to
    /// another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The reason for the condition's last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human readable message indicating details about the transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Addressable is a single addressable address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Addressable {
    /// Name is the name of the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// URL of the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// CACerts is the Certification Authority (CA) certificates in PEM format according
    /// to https://www.rfc-editor.org/rfc/rfc7468.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "CACerts")]
    pub ca_certs: Option<String>,
    /// Audience is the OIDC audience for this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// KReference contains enough information to refer to another object (Knative duck type).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KReference {
    /// Kind of the referent (only `Service` is resolved).
    pub kind: String,
    /// Namespace of the referent. Required here: the ConnectorClass is cluster-scoped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the referent.
    pub name: String,
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Group of the API, without the version of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Address points to a specific Address Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Looks a condition up by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
