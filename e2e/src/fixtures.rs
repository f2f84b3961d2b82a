//! YAML builders and guards shared by the e2e tests that run the operator.

use crate::{apply_yaml, kubectl};

/// The start of a class with a string address, up to its auth types: append
/// `    - name: ...` items, then more spec fields.
pub fn class_head(name: &str) -> String {
    format!(
        "apiVersion: connectors.alauda.io/v1alpha1\nkind: ConnectorClass\nmetadata:\n  name: {name}\nspec:\n  address:\n    type: string\n  auth:\n    types:\n"
    )
}

/// An auth type item of [`class_head`]: Basic from a basic-auth Secret.
pub const BASIC_AUTH_TYPE: &str =
    "    - name: basicAuth\n      secretType: kubernetes.io/basic-auth\n";

/// A git-like class as published: liveness with a CEL check, a templated auth probe.
pub fn git_class(name: &str) -> String {
    format!(
        r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata:
  name: {name}
spec:
  address:
    type: string
  auth:
    types:
    - name: basicAuth
      secretType: kubernetes.io/basic-auth
  livenessProbe:
    http:
      path: /
      response:
        cel: response.statusCode == 200 && response.body.status == 'healthy'
  authProbes:
  - authName: basicAuth
    params:
    - name: repository
      type: string
    probe:
      http:
        path: /{{{{- range .Connector.Spec.Auth.Params }}}}{{{{- if eq .Name "repository" }}}}{{{{ .Value.StringVal }}}}{{{{ end }}}}{{{{- end }}}}/info/refs?service=git-upload-pack
        httpHeaders:
        - name: Authorization
          value: '{{{{- if .Secret }}}}Basic {{{{ printf "%s:%s" .Secret.StringData.username .Secret.StringData.password | b64enc }}}} {{{{- end }}}}'
"#
    )
}

pub fn basic_secret(name: &str, password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/basic-auth\nstringData:\n  username: demo\n  password: {password}\n"
    )
}

pub fn connector(name: &str, class: &str, address: &str, secret: &str) -> String {
    format!(
        r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata:
  name: {name}
spec:
  connectorClassName: {class}
  address: {address}
  auth:
    name: basicAuth
    secretRef: {{name: {secret}}}
    params:
    - {{name: repository, value: org/repo}}
"#
    )
}

/// Appended to a class spec: a proxy outside the test cluster (never contacted by the
/// operator beyond a reachability check).
pub const PROXY_CLASS_EXTRA: &str =
    "  proxy:\n    uri: http://connectors-proxy.connectors-system.svc:8080\n";

/// A Secret `name` holding the test CA certificate (`e2e/fixtures/ca.pem`) under
/// `ca.crt`; `global` adds the label that makes it a global CA bundle.
pub fn ca_secret(name: &str, global: bool) -> String {
    let pem: String = include_str!("../fixtures/ca.pem")
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let labels = if global {
        "  labels:\n    connectors.cpaas.io/ca-cert: \"true\"\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n{labels}stringData:\n  ca.crt: |\n{pem}"
    )
}

pub fn delete_class(name: &str) {
    kubectl(["delete", "connectorclass", name, "--ignore-not-found"]);
}

/// Deletes the cluster-scoped class at the end of a test.
pub struct ClassGuard(String);

impl ClassGuard {
    pub fn apply(name: &str, yaml: &str) -> Self {
        crate::install_crds();
        apply_yaml("", yaml);
        ClassGuard(name.to_string())
    }

    /// Deletes class `name` on drop (applied by someone else, or maybe never created).
    pub fn adopt(name: &str) -> Self {
        ClassGuard(name.to_string())
    }
}

impl Drop for ClassGuard {
    fn drop(&mut self) {
        delete_class(&self.0);
    }
}
