//! ConnectorClass rules that need only the class (compile checks live in the probe
//! engine, which is what runs the code; [`validate_class`] merges both).

use std::collections::BTreeSet;

use crate::api::{ConnectorClass, ParamSpec, Probe};
use crate::probe::CompiledClass;

use crate::types::FieldError;

/// Every rule of SPEC section 6 for a class, including compile errors of its CEL, Rego
/// and templates. Returns the compiled class when there is no error.
pub fn validate_class(class: &ConnectorClass) -> Result<CompiledClass, Vec<FieldError>> {
    let mut errors = structural_errors(class);
    let compiled = match CompiledClass::compile(class) {
        Ok(compiled) => Some(compiled),
        Err(compile_errors) => {
            errors.extend(compile_errors);
            None
        }
    };
    match compiled {
        Some(compiled) if errors.is_empty() => Ok(compiled),
        _ => Err(errors),
    }
}

/// Duplicate names, undeclared auth names, probe methods and schemes.
pub fn structural_errors(class: &ConnectorClass) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &class.spec;
    let types = spec
        .auth
        .as_ref()
        .and_then(|a| a.types.as_deref())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, t) in types.iter().enumerate() {
        if !seen.insert(t.name.as_str()) {
            errors.push(FieldError::new(
                format!("spec.auth.types[{i}].name"),
                format!("duplicate auth type {:?}", t.name),
            ));
        }
        unique_param_names(
            &format!("spec.auth.types[{i}].params"),
            t.params.as_deref(),
            &mut errors,
        );
    }
    unique_param_names("spec.params", spec.params.as_deref(), &mut errors);
    unique_param_names(
        "spec.addressExtensions",
        spec.address_extensions.as_deref(),
        &mut errors,
    );
    let declared: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    for (i, p) in spec.auth_probes.iter().flatten().enumerate() {
        let path = format!("spec.authProbes[{i}]");
        if !seen.insert(p.auth_name.as_str()) {
            errors.push(FieldError::new(
                format!("{path}.authName"),
                format!("duplicate auth probe for {:?}", p.auth_name),
            ));
        }
        if !declared.contains(&p.auth_name.as_str()) {
            errors.push(FieldError::new(
                format!("{path}.authName"),
                format!(
                    "{:?} is not declared in spec.auth.types (declared: {})",
                    p.auth_name,
                    if declared.is_empty() {
                        "none".to_string()
                    } else {
                        declared.join(", ")
                    }
                ),
            ));
        }
        unique_param_names(&format!("{path}.params"), p.params.as_deref(), &mut errors);
        if let Some(probe) = &p.probe {
            probe_errors(&format!("{path}.probe"), probe, &mut errors);
        }
    }
    if let Some(probe) = &spec.liveness_probe {
        probe_errors("spec.livenessProbe", probe, &mut errors);
    }
    errors
}

fn probe_errors(path: &str, probe: &Probe, errors: &mut Vec<FieldError>) {
    let Some(http) = &probe.http else { return };
    if let Some(method) = http
        .method
        .as_deref()
        .filter(|m| !matches!(*m, "GET" | "POST"))
    {
        errors.push(FieldError::new(
            format!("{path}.http.method"),
            format!("{method:?} is not supported: use GET or POST"),
        ));
    }
    if let Some(scheme) = http
        .scheme
        .as_deref()
        .filter(|s| !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https"))
    {
        errors.push(FieldError::new(
            format!("{path}.http.scheme"),
            format!("{scheme:?} is not supported: use http or https"),
        ));
    }
}

fn unique_param_names(path: &str, params: Option<&[ParamSpec]>, errors: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, p) in params.unwrap_or_default().iter().enumerate() {
        if !seen.insert(p.name.as_str()) {
            errors.push(FieldError::new(
                format!("{path}[{i}].name"),
                format!("duplicate param {:?}", p.name),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_class_merges_structural_and_compile_errors_once() {
        let class: ConnectorClass = serde_yaml::from_str(
            r#"
metadata: {name: x}
spec:
  auth: {types: [{name: basic}]}
  authProbes:
  - authName: token
    probe: {http: {path: /, response: {cel: "response.statusCode =="}}}
"#,
        )
        .unwrap();
        let errors: Vec<String> = validate_class(&class)
            .err()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[0],
            r#"spec.authProbes[0].authName: "token" is not declared in spec.auth.types (declared: basic)"#
        );
        assert!(
            errors[1].starts_with("spec.authProbes[0].probe.http.response.cel: "),
            "{errors:?}"
        );
    }

    #[test]
    fn structural_rules_name_each_field() {
        let class: ConnectorClass = serde_yaml::from_str(
            r#"
metadata: {name: x}
spec:
  auth:
    types: [{name: basic}, {name: basic}]
  authProbes:
  - authName: token
    probe: {http: {path: /, method: PUT, scheme: ftp}}
  params: [{name: a}, {name: a}]
"#,
        )
        .unwrap();
        let errors: Vec<String> = structural_errors(&class)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                r#"spec.auth.types[1].name: duplicate auth type "basic""#,
                r#"spec.params[1].name: duplicate param "a""#,
                r#"spec.authProbes[0].authName: "token" is not declared in spec.auth.types (declared: basic, basic)"#,
                r#"spec.authProbes[0].probe.http.method: "PUT" is not supported: use GET or POST"#,
                r#"spec.authProbes[0].probe.http.scheme: "ftp" is not supported: use http or https"#,
            ]
        );
    }
}
