//! Connector rules: those that need only the Connector, and the class contract.

use std::collections::BTreeSet;

use crate::api::{Connector, ConnectorClass, Param, ParamSpec, ParamType, ParamValue};

use crate::types::FieldError;

/// Field of the cross-namespace Secret rule: admission rejects it; on a stored
/// Connector the SecretReady condition reports it (`CrossNamespaceSecret`).
pub const SECRET_NAMESPACE_FIELD: &str = "spec.auth.secretRef.namespace";

/// What makes a stored Connector's `ConnectorClassReady` False (`SpecMismatch`): its
/// own rules and the class contract, except the cross-namespace Secret rule, which
/// `SecretReady` reports. Shared by the controller and `check`.
pub fn spec_mismatch_errors(connector: &Connector, class: &ConnectorClass) -> Vec<FieldError> {
    let mut errors = validate_connector(connector);
    let reported_by_conditions = secret_name_errors(connector);
    errors.retain(|e| e.path != SECRET_NAMESPACE_FIELD && !reported_by_conditions.contains(e));
    errors.extend(validate_against_class(connector, class));
    errors
}

/// Field of the auth Secret's name and of the CA Secret's name.
pub const SECRET_NAME_FIELD: &str = "spec.auth.secretRef.name";
pub const CA_SECRET_NAME_FIELD: &str = "spec.caCertSecretRef.name";

/// Longest object name (a DNS subdomain).
const MAX_OBJECT_NAME: usize = 253;

/// Whether `name` is a valid Kubernetes object name (a lowercase RFC 1123 subdomain:
/// `[a-z0-9]` labels joined by `.`, `-` inside labels, at most 253 characters). Only
/// such names are ever put into an API path.
pub fn is_object_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    !name.is_empty() && name.len() <= MAX_OBJECT_NAME && name.split('.').all(label_ok)
}

/// Why a Secret name is refused (the value is quoted cut, escaped: names are not secret).
pub fn object_name_error(name: &str) -> String {
    let shown: String = name.chars().take(64).collect();
    let cut = if shown.len() < name.len() { "..." } else { "" };
    format!(
        "{shown:?}{cut} is not a valid Secret name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most {MAX_OBJECT_NAME} characters"
    )
}

/// The Secret names of a Connector that are not valid object names. On a stored
/// Connector the conditions report them (`InvalidSecretName`); admission rejects them.
pub fn secret_name_errors(connector: &Connector) -> Vec<FieldError> {
    let auth = connector
        .secret_ref()
        .and_then(|r| r.name.as_deref())
        .filter(|n| !n.is_empty())
        .map(|n| (SECRET_NAME_FIELD, n));
    let ca = connector
        .spec
        .ca_cert_secret_ref
        .as_ref()
        .map(|r| (CA_SECRET_NAME_FIELD, r.name.as_str()))
        .filter(|(_, n)| !n.is_empty());
    auth.into_iter()
        .chain(ca)
        .filter(|(_, name)| !is_object_name(name))
        .map(|(field, name)| FieldError::new(field, object_name_error(name)))
        .collect()
}

/// Rules that need only the Connector itself.
pub fn validate_connector(connector: &Connector) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &connector.spec;
    match spec.address.as_deref() {
        None | Some("") => errors.push(FieldError::new(
            "spec.address",
            "required: an absolute http or https URL",
        )),
        Some(address) => {
            if let Err(why) = check_http_url(address) {
                errors.push(FieldError::new(
                    "spec.address",
                    format!("{address:?} {why}"),
                ));
            }
        }
    }
    if spec.connector_class_name.is_empty() {
        errors.push(FieldError::new("spec.connectorClassName", "required"));
    }
    if let Some(auth) = &spec.auth {
        if let Some(secret_ref) = &auth.secret_ref {
            let own = connector.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(ns) = secret_ref
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty() && *ns != own)
            {
                errors.push(FieldError::new(
                    SECRET_NAMESPACE_FIELD,
                    format!("{ns:?} differs from the Connector's namespace {own:?}: a Connector may only use Secrets in its own namespace"),
                ));
            }
            if secret_ref.name.as_deref().unwrap_or_default().is_empty() {
                errors.push(FieldError::new(
                    "spec.auth.secretRef.name",
                    "required when secretRef is set",
                ));
            }
        }
        check_unique_names("spec.auth.params", auth.params.as_deref(), &mut errors);
    }
    errors.extend(secret_name_errors(connector));
    check_unique_names("spec.params", spec.params.as_deref(), &mut errors);
    check_unique_names(
        "spec.addressExtensions",
        spec.address_extensions.as_deref(),
        &mut errors,
    );
    for (i, ext) in spec.address_extensions.iter().flatten().enumerate() {
        let path = format!("spec.addressExtensions[{i}].value");
        match &ext.value {
            ParamValue::String(value) => {
                if let Err(why) = check_http_url(value) {
                    errors.push(FieldError::new(path, format!("{value:?} {why}")));
                } else if spec.address.as_deref() == Some(value.as_str()) {
                    errors.push(FieldError::new(
                        path,
                        format!("{value:?} must differ from spec.address"),
                    ));
                }
            }
            other => errors.push(FieldError::new(
                path,
                format!("must be a string URL, not {}", other.type_name()),
            )),
        }
    }
    errors
}

/// The class contract: what a Connector must satisfy to be used with its class.
pub fn validate_against_class(connector: &Connector, class: &ConnectorClass) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let class_name = class.metadata.name.as_deref().unwrap_or_default();
    let spec = &connector.spec;
    check_params(
        "spec.params",
        spec.params.as_deref(),
        class.spec.params.as_deref(),
        class_name,
        "spec.params",
        &mut errors,
    );
    check_params(
        "spec.addressExtensions",
        spec.address_extensions.as_deref(),
        class.spec.address_extensions.as_deref(),
        class_name,
        "spec.addressExtensions",
        &mut errors,
    );
    let declared_auth: Vec<&str> = class
        .spec
        .auth
        .iter()
        .flat_map(|a| a.types.iter().flatten())
        .map(|t| t.name.as_str())
        .collect();
    if let Some(name) = connector.auth_name().filter(|n| !n.is_empty()) {
        if !declared_auth.contains(&name) {
            errors.push(FieldError::new(
                "spec.auth.name",
                format!(
                    "{name:?} is not an auth type of ConnectorClass {class_name:?} (declared: {})",
                    list_or_none(&declared_auth)
                ),
            ));
        } else if let Some(probe) = class.auth_probe(name) {
            // Auth-probe params are given in spec.auth.params.
            let given = spec.auth.as_ref().and_then(|a| a.params.as_deref());
            check_params(
                "spec.auth.params",
                given,
                probe.params.as_deref(),
                class_name,
                &format!("spec.authProbes[authName={name}].params"),
                &mut errors,
            );
        }
    }
    errors
}

/// Checks given params against declared specs: required present, none undeclared,
/// value types and enums.
fn check_params(
    path: &str,
    given: Option<&[Param]>,
    declared: Option<&[ParamSpec]>,
    class_name: &str,
    declared_path: &str,
    errors: &mut Vec<FieldError>,
) {
    let given = given.unwrap_or_default();
    let declared = declared.unwrap_or_default();
    let declared_names: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
    for (i, param) in given.iter().enumerate() {
        let Some(spec) = declared.iter().find(|d| d.name == param.name) else {
            errors.push(FieldError::new(
                format!("{path}[{i}].name"),
                format!(
                    "{:?} is not declared by ConnectorClass {class_name:?} (declared: {})",
                    param.name,
                    list_or_none(&declared_names)
                ),
            ));
            continue;
        };
        let want = spec.spec.param_type();
        let got = param.value.type_name();
        if want.as_str() != got {
            errors.push(FieldError::new(
                format!("{path}[{i}].value"),
                format!(
                    "must be of type {} as {declared_path} declares, not {got}",
                    want.as_str()
                ),
            ));
        } else if let (Some(allowed), ParamValue::String(v)) = (&spec.spec.enum_, &param.value)
            && !allowed.is_empty()
            && !allowed.contains(v)
        {
            {
                errors.push(FieldError::new(
                    format!("{path}[{i}].value"),
                    format!(
                        "{v:?} is not one of the allowed values: {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        if want == ParamType::Object
            && let (Some(props), ParamValue::Object(map)) = (&spec.spec.properties, &param.value)
        {
            {
                for key in map.keys().filter(|k| !props.contains_key(*k)) {
                    errors.push(FieldError::new(
                        format!("{path}[{i}].value.{key}"),
                        format!("key is not declared in {declared_path} properties"),
                    ));
                }
            }
        }
    }
    for spec in declared.iter().filter(|d| d.is_required()) {
        if !given.iter().any(|p| p.name == spec.name) {
            errors.push(FieldError::new(
                path,
                format!(
                    "{:?} is required by ConnectorClass {class_name:?} and missing",
                    spec.name
                ),
            ));
        }
    }
}

fn check_unique_names(path: &str, params: Option<&[Param]>, errors: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, p) in params.unwrap_or_default().iter().enumerate() {
        if p.name.is_empty() {
            errors.push(FieldError::new(format!("{path}[{i}].name"), "required"));
        } else if !seen.insert(p.name.as_str()) {
            errors.push(FieldError::new(
                format!("{path}[{i}].name"),
                format!("duplicate name {:?}", p.name),
            ));
        }
    }
}

/// An absolute http(s) URL with a host.
pub fn check_http_url(value: &str) -> Result<url::Url, String> {
    // The parser's reason ("invalid port number", ...) says what to fix.
    let parsed = url::Url::parse(value).map_err(|e| format!("is not an absolute URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must use the http or https scheme".into());
    }
    if parsed.host_str().unwrap_or_default().is_empty() {
        return Err("has no host".into());
    }
    Ok(parsed)
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{class_doc as class, connector_doc as connector};

    const GIT_CLASS: &str = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata: {name: git}
spec:
  params:
  - name: sslVerify
    type: string
    default: "true"
    enum: ["true", "false"]
  auth:
    types:
    - name: basicAuth
      secretType: kubernetes.io/basic-auth
  authProbes:
  - authName: basicAuth
    params:
    - name: repository
      type: string
    probe:
      http:
        path: /x
"#;

    #[test]
    fn secret_names_must_be_object_names() {
        for good in ["creds", "my.creds-1", "a", &"a".repeat(253)] {
            assert!(is_object_name(good), "{good:?}");
        }
        for bad in [
            "",
            "?watch=true",
            "?",
            "my secret",
            "a/b",
            "A",
            "a..b",
            ".a",
            "a-",
            "é",
            &"a".repeat(254),
        ] {
            assert!(!is_object_name(bad), "{bad:?}");
        }
        let c = connector(
            "metadata: {name: c, namespace: dev}\nspec: {connectorClassName: git, address: 'https://g.io', auth: {secretRef: {name: '?watch=true'}}, caCertSecretRef: {name: 'my secret'}}",
        );
        let errors = validate_connector(&c);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, [SECRET_NAME_FIELD, CA_SECRET_NAME_FIELD]);
        assert!(errors[0].message.contains("is not a valid Secret name"));
        // On a stored Connector the conditions report them, not the class contract.
        let class = class("metadata: {name: git}\nspec: {}");
        assert!(spec_mismatch_errors(&c, &class).is_empty());
    }

    #[test]
    fn undeclared_param_names_the_field_and_the_declared_ones() {
        let c = connector(
            r#"
metadata: {name: c, namespace: ns}
spec:
  connectorClassName: git
  address: https://github.com
  params:
  - {name: sslVerify, value: "true"}
  - {name: sslVerfy, value: "false"}
  auth: {name: basicAuth, params: [{name: repository, value: org/repo}]}
"#,
        );
        let errors = validate_against_class(&c, &class(GIT_CLASS));
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                r#"spec.params[1].name: "sslVerfy" is not declared by ConnectorClass "git" (declared: sslVerify)"#
            ]
        );
    }

    #[test]
    fn missing_auth_probe_param_and_bad_enum_and_wrong_type() {
        let c = connector(
            r#"
metadata: {name: c, namespace: ns}
spec:
  connectorClassName: git
  address: https://github.com
  params:
  - {name: sslVerify, value: "maybe"}
  auth: {name: basicAuth}
"#,
        );
        let errors: Vec<String> = validate_against_class(&c, &class(GIT_CLASS))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0]
                .starts_with(r#"spec.params[0].value: "maybe" is not one of the allowed values"#)
        );
        assert_eq!(
            errors[1],
            r#"spec.auth.params: "repository" is required by ConnectorClass "git" and missing"#
        );

        let c = connector(
            r#"
metadata: {name: c, namespace: ns}
spec:
  connectorClassName: git
  address: https://github.com
  params: [{name: sslVerify, value: [a, b]}]
  auth: {name: oauth}
"#,
        );
        let errors: Vec<String> = validate_against_class(&c, &class(GIT_CLASS))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors[0],
            "spec.params[0].value: must be of type string as spec.params declares, not array"
        );
        assert_eq!(
            errors[1],
            r#"spec.auth.name: "oauth" is not an auth type of ConnectorClass "git" (declared: basicAuth)"#
        );
    }

    #[test]
    fn self_rules() {
        let c = connector(
            r#"
metadata: {name: c, namespace: ns}
spec:
  connectorClassName: git
  address: ftp://x
  auth: {secretRef: {name: s, namespace: other}}
  addressExtensions:
  - {name: web, value: "https://a"}
  - {name: web, value: "not a url"}
"#,
        );
        let errors: Vec<String> = validate_connector(&c)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                r#"spec.address: "ftp://x" must use the http or https scheme"#.to_string(),
                r#"spec.auth.secretRef.namespace: "other" differs from the Connector's namespace "ns": a Connector may only use Secrets in its own namespace"#.to_string(),
                r#"spec.addressExtensions[1].name: duplicate name "web""#.to_string(),
                r#"spec.addressExtensions[1].value: "not a url" is not an absolute URL (relative URL without a base)"#.to_string(),
            ]
        );
    }

    #[test]
    fn valid_connector_has_no_errors() {
        let c = connector(
            r#"
metadata: {name: c, namespace: ns}
spec:
  connectorClassName: git
  address: https://github.com
  auth: {name: basicAuth, secretRef: {name: s, namespace: ns}, params: [{name: repository, value: org/repo}]}
"#,
        );
        assert!(validate_connector(&c).is_empty());
        assert!(validate_against_class(&c, &class(GIT_CLASS)).is_empty());
    }
}
