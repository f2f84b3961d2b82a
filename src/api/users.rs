//! `User` (`auth.alauda.io/v1`, cluster-scoped) and the `Group` stand-in
//! (`user.openshift.io/v1`) of SPEC-identity section 1.
//!
//! `User` carries every published field of the reference
//! (`../shared/reference/alauda-user-api.txt`); the required ones are those of the
//! original (`connector_name`, `connector_type`, `email`, `is_admin`, `username`). An
//! Alauda cluster already serves it: the CRD is installable on its own
//! (`config/identity-users`) and is never needed there.
//!
//! `Group` keeps `users` at the top level beside `metadata` (OpenShift's shape), which
//! kube's `CustomResource` derive cannot express: [`Group`] is written by hand and its
//! CRD built by [`group_crd`]. OpenShift serves the API itself; the stand-in
//! (`config/identity-groups`) is for clusters that do not.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::ClusterResourceScope;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps,
    JSONSchemaPropsOrArray,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The API group of `User`.
pub const USER_GROUP: &str = "auth.alauda.io";
/// The API group of OpenShift's `Group`.
pub const OPENSHIFT_USER_GROUP: &str = "user.openshift.io";

/// UserSpec defines the desired state of User.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "auth.alauda.io",
    version = "v1",
    kind = "User",
    plural = "users",
    status = "UserStatus",
    derive = "PartialEq",
    doc = "User is the Schema for the users API",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.connector_type"}"#,
    printcolumn = r#"{"name":"Username","type":"string","jsonPath":".spec.username"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct UserSpec {
    /// Account is the user's account identifier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// ConnectorId is the unique identifier for the connector
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_id: Option<String>,
    /// ConnectorName is the name of the authentication connector
    pub connector_name: String,
    /// ConnectorType specifies the authentication connector type (e.g., ldap, oidc, local)
    pub connector_type: String,
    /// ContinuityErrors tracks consecutive login failures
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuity_errors: Option<i64>,
    /// Email is the user's email address or username, used as the unique identifier
    pub email: String,
    /// Expired defines the validity period for the user account
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub expired: Option<Map<String, Value>>,
    /// Extra contains additional arbitrary metadata for the user from third-party systems
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_schema")]
    pub extra: Option<Map<String, Value>>,
    /// Groups contains the list of groups the user belongs to
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Ids contains additional user identifiers from various systems
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object_array_schema")]
    pub ids: Option<Vec<Map<String, Value>>>,
    /// Whether initial administrator account
    pub is_admin: bool,
    /// IsDisabled indicates whether the user account is disabled
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_disabled: Option<bool>,
    /// LastLoginTime records the timestamp of the user's last successful login
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login_time: Option<String>,
    /// Mail is an alternative email address for notifications
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// Mobile is the user's mobile phone number
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// Deprecated OldPassword stores the previous password for password change operations
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_password: Option<String>,
    /// Deprecated Password is the user's password (for local authentication)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// State represents the current state of the user (active, disabled, locked, invalid)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Username is the user's display name
    pub username: String,
    /// Valid indicates whether the user account is valid
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    /// WebhookType specifies the type of webhook integration
    #[serde(
        default,
        rename = "webhookType",
        skip_serializing_if = "Option::is_none"
    )]
    pub webhook_type: Option<String>,
    /// WebhookUrl is the webhook URL for user notifications
    #[serde(
        default,
        rename = "webhookUrl",
        skip_serializing_if = "Option::is_none"
    )]
    pub webhook_url: Option<String>,
}

/// UserStatus defines the observed state of User (kept as the original: any object).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(schema_with = "free_object_schema")]
pub struct UserStatus(pub Map<String, Value>);

impl UserSpec {
    /// `expired.end`, when set and a string.
    pub fn expiry_end(&self) -> Option<&str> {
        self.expired.as_ref()?.get("end")?.as_str()
    }
}

/// `type: object` that keeps every field.
fn free_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// An array of objects that keep every field.
fn free_object_array_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// The `User` CRD (cluster-scoped, status subresource, the original's printer columns).
pub fn user_crd() -> CustomResourceDefinition {
    User::crd()
}

/// OpenShift's `Group`: a named set of user names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    #[serde(rename = "apiVersion", default = "group_api_version")]
    pub api_version: String,
    #[serde(default = "group_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Users is the list of users in this group.
    #[serde(default)]
    pub users: Vec<String>,
}

fn group_api_version() -> String {
    format!("{OPENSHIFT_USER_GROUP}/v1")
}

fn group_kind() -> String {
    "Group".into()
}

impl Default for Group {
    fn default() -> Self {
        Group {
            api_version: group_api_version(),
            kind: group_kind(),
            metadata: ObjectMeta::default(),
            users: Vec::new(),
        }
    }
}

impl kube::Resource for Group {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Group".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        OPENSHIFT_USER_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "groups".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The stand-in `Group` CRD: `users` required (may be empty), nothing else.
pub fn group_crd() -> CustomResourceDefinition {
    let string = |description: &str| JSONSchemaProps {
        type_: Some("string".into()),
        description: Some(description.into()),
        ..JSONSchemaProps::default()
    };
    let users = JSONSchemaProps {
        type_: Some("array".into()),
        description: Some("Users is the list of users in this group.".into()),
        items: Some(JSONSchemaPropsOrArray::Schema(Box::new(JSONSchemaProps {
            type_: Some("string".into()),
            ..JSONSchemaProps::default()
        }))),
        ..JSONSchemaProps::default()
    };
    let properties: BTreeMap<String, JSONSchemaProps> = [
        (
            "apiVersion".to_string(),
            string("APIVersion defines the versioned schema of this representation of an object."),
        ),
        (
            "kind".to_string(),
            string("Kind is a string value representing the REST resource this object represents."),
        ),
        (
            "metadata".to_string(),
            JSONSchemaProps {
                type_: Some("object".into()),
                ..JSONSchemaProps::default()
            },
        ),
        ("users".to_string(), users),
    ]
    .into();
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("groups.{OPENSHIFT_USER_GROUP}")),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: OPENSHIFT_USER_GROUP.into(),
            names: CustomResourceDefinitionNames {
                kind: "Group".into(),
                list_kind: Some("GroupList".into()),
                plural: "groups".into(),
                singular: Some("group".into()),
                ..CustomResourceDefinitionNames::default()
            },
            scope: "Cluster".into(),
            versions: vec![CustomResourceDefinitionVersion {
                name: "v1".into(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(JSONSchemaProps {
                        type_: Some("object".into()),
                        description: Some("Group represents a referenceable set of Users (stand-in for clusters that do not serve user.openshift.io)".into()),
                        properties: Some(properties),
                        required: Some(vec!["users".into()]),
                        ..JSONSchemaProps::default()
                    }),
                }),
                additional_printer_columns: Some(vec![
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition {
                        name: "Users".into(),
                        type_: "string".into(),
                        json_path: ".users".into(),
                        ..Default::default()
                    },
                ]),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}

/// The `User` CRD as YAML, as committed in `crds/users/auth.alauda.io.yaml`.
pub fn user_crd_yaml() -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}", serde_yaml::to_string(&user_crd())?))
}

/// The `Group` stand-in CRD as YAML, as committed in `crds/groups/user.openshift.io.yaml`.
pub fn group_crd_yaml() -> Result<String, serde_yaml::Error> {
    Ok(format!("---\n{}", serde_yaml::to_string(&group_crd())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_crd_has_the_originals_required_fields_and_columns() {
        let crd = serde_json::to_value(user_crd()).unwrap();
        assert_eq!(crd["spec"]["scope"], "Cluster");
        let v = &crd["spec"]["versions"][0];
        let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut required: Vec<&str> = spec["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        required.sort();
        assert_eq!(
            required,
            [
                "connector_name",
                "connector_type",
                "email",
                "is_admin",
                "username"
            ]
        );
        for field in [
            "account",
            "connector_id",
            "continuity_errors",
            "expired",
            "extra",
            "groups",
            "ids",
            "is_disabled",
            "last_login_time",
            "mail",
            "mobile",
            "old_password",
            "password",
            "state",
            "valid",
            "webhookType",
            "webhookUrl",
        ] {
            assert!(spec["properties"].get(field).is_some(), "{field}");
        }
        assert_eq!(
            spec["properties"]["expired"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        let columns: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Type", "Username", "State", "Age"]);
    }

    #[test]
    fn a_published_user_reads_and_writes_back_unchanged() {
        let doc = serde_json::json!({
            "apiVersion": "auth.alauda.io/v1", "kind": "User",
            "metadata": {"name": "abc"},
            "spec": {
                "connector_name": "LDAP", "connector_type": "ldap", "email": "a@b.c",
                "is_admin": false, "username": "A", "account": "a", "connector_id": "ldap",
                "expired": {"start": "2020-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"},
                "extra": {"x": [1]}, "ids": [{"k": "v"}], "groups": ["g"], "state": "active",
                "valid": true, "is_disabled": false, "webhookType": "t", "webhookUrl": "u",
                "continuity_errors": 2,
            },
        });
        let user: User = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(user.spec.expiry_end(), Some("2030-01-01T00:00:00Z"));
        assert_eq!(serde_json::to_value(&user).unwrap(), doc);
    }

    #[test]
    fn group_crd_requires_users() {
        let crd = serde_json::to_value(group_crd()).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(root["required"], serde_json::json!(["users"]));
        assert_eq!(crd["metadata"]["name"], "groups.user.openshift.io");
        let g: Group =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "g"}, "users": []}))
                .unwrap();
        assert!(g.users.is_empty());
    }
}
