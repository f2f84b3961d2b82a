//! `connectors-operator check -f FILE`: validate and probe Connectors without a cluster,
//! with the same observe -> decide code the controller runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use crate::api::{Connector, ConnectorClass, ConnectorStatus, KReference};
use crate::observe::{
    ca_facts, reachability, run_connector_probes, secret_facts, secret_lookup, secret_material,
};
use crate::probe::{HttpProber, ProbeRunner, ProbeSettings, RunnerSettings, TrustBundle};
use crate::status::address::{Resolution, resolve};
use crate::status::class::{AddressFacts, ClassFacts as ClassStatusFacts, decide_class_status};
use crate::status::connector::{
    ClassFacts, ConnectorFacts, ProxyServiceFacts, decide_connector_status,
};
use crate::validation::{spec_mismatch_errors, validate_class};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Describe,
    Yaml,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: document {index}: {message}")]
    Parse {
        path: PathBuf,
        index: usize,
        message: String,
    },
    #[error("no Connector found in the given files")]
    NoConnector,
    #[error("encoding output: {0}")]
    Encode(String),
}

/// The objects read from the files.
#[derive(Default)]
pub struct Documents {
    pub classes: BTreeMap<String, ConnectorClass>,
    pub connectors: Vec<Connector>,
    /// Keyed by (namespace, name).
    pub secrets: BTreeMap<(String, String), Secret>,
}

const DEFAULT_NAMESPACE: &str = "default";

/// Reads multi-document YAML (or JSON) files; unknown kinds are ignored.
pub fn read_documents(paths: &[PathBuf]) -> Result<Documents, CheckError> {
    let mut docs = Documents::default();
    for path in paths {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        }
        .map_err(|source| CheckError::Read {
            path: path.clone(),
            source,
        })?;
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let parse_error = |message: String| CheckError::Parse {
                path: path.clone(),
                index: index + 1,
                message,
            };
            let value =
                serde_yaml::Value::deserialize(document).map_err(|e| parse_error(e.to_string()))?;
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            match kind.as_str() {
                "ConnectorClass" => {
                    let class: ConnectorClass = serde_yaml::from_value(value)
                        .map_err(|e| parse_error(format!("ConnectorClass: {e}")))?;
                    docs.classes
                        .insert(class.metadata.name.clone().unwrap_or_default(), class);
                }
                "Connector" => {
                    let mut connector: Connector = serde_yaml::from_value(value)
                        .map_err(|e| parse_error(format!("Connector: {e}")))?;
                    connector
                        .metadata
                        .namespace
                        .get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());
                    docs.connectors.push(connector);
                }
                "Secret" => {
                    // Errors from Secret parsing never quote the document (it holds values).
                    let secret: Secret = serde_yaml::from_value(value)
                        .map_err(|_| parse_error("Secret: invalid Secret document".into()))?;
                    let ns = secret
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
                    docs.secrets.insert(
                        (ns, secret.metadata.name.clone().unwrap_or_default()),
                        secret,
                    );
                }
                _ => {}
            }
        }
    }
    if docs.connectors.is_empty() {
        return Err(CheckError::NoConnector);
    }
    Ok(docs)
}

/// Without a cluster a Service ref cannot be looked up; absolute URIs are checked.
async fn offline_address(
    field: &str,
    reference: Option<&KReference>,
    uri: Option<&str>,
    prober: &HttpProber,
) -> AddressFacts {
    match resolve(field, reference, uri, None, "cluster.local") {
        Resolution::Resolved(url) => {
            let reachable = Some(reachability(prober, &url, &TrustBundle::empty()).await);
            AddressFacts::Resolved { url, reachable }
        }
        Resolution::Unresolved(_) if reference.is_some() => AddressFacts::NotChecked(format!(
            "{field}.ref is a Service: check runs without a cluster and does not resolve it"
        )),
        Resolution::Unresolved(why) => AddressFacts::Unresolved(why),
    }
}

/// Computes the status of every Connector in `docs`, probing for real.
pub async fn check(docs: &Documents, settings: ProbeSettings) -> Vec<(Connector, ConnectorStatus)> {
    let runner = ProbeRunner::new(HttpProber::new(settings), RunnerSettings::default());
    let prober = runner.prober();
    let now = crate::controller::now();
    let mut classes = BTreeMap::new();
    for (name, class) in &docs.classes {
        let compiled = validate_class(class);
        let spec_errors = compiled.as_ref().err().cloned().unwrap_or_default();
        let api = match &class.spec.api {
            None => AddressFacts::Absent,
            Some(api) => {
                offline_address("spec.api", api.ref_.as_ref(), api.uri.as_deref(), prober).await
            }
        };
        let proxy = match &class.spec.proxy {
            None => AddressFacts::Absent,
            Some(p) => {
                offline_address("spec.proxy", p.ref_.as_ref(), p.uri.as_deref(), prober).await
            }
        };
        let api_url = api.url().map(str::to_string);
        let status = decide_class_status(
            &ClassStatusFacts {
                class,
                api,
                proxy,
                spec_errors: &spec_errors,
            },
            &now,
        );
        let mut observed = class.clone();
        observed.status = Some(status);
        classes.insert(name.clone(), (observed, compiled, api_url));
    }

    let mut results = Vec::new();
    for connector in &docs.connectors {
        let namespace = connector.metadata.namespace.clone().unwrap_or_default();
        let lookup = secret_lookup(connector);
        let material = match &lookup {
            crate::observe::SecretLookup::InOwnNamespace(name) => docs
                .secrets
                .get(&(namespace.clone(), name.clone()))
                .map(secret_material),
            _ => None,
        };
        let secret = secret_facts(&lookup, material.as_ref());
        let ca_name = connector
            .spec
            .ca_cert_secret_ref
            .as_ref()
            .map(|r| r.name.as_str());
        let ca_secret = ca_name.and_then(|n| docs.secrets.get(&(namespace.clone(), n.to_string())));
        let (ca, trust) = ca_facts(ca_name, ca_secret);
        let class_name = &connector.spec.connector_class_name;
        let mut liveness = None;
        let mut auth = None;
        let class_facts = match classes.get(class_name) {
            None => ClassFacts::NotFound {
                name: class_name.clone(),
            },
            Some((_, Err(errors), _)) => ClassFacts::Invalid {
                message: crate::validation::join_errors(errors),
            },
            Some((class, Ok(compiled), api_url)) => {
                let errors = spec_mismatch_errors(connector, class);
                if errors.is_empty() {
                    let (live, authn) = run_connector_probes(
                        compiled,
                        class,
                        connector,
                        material.as_ref(),
                        &secret,
                        api_url.as_deref(),
                        &runner,
                        &trust,
                    )
                    .await;
                    liveness = live.map(|r| r.outcome);
                    auth = authn.map(|r| r.outcome);
                    ClassFacts::Usable { class }
                } else {
                    ClassFacts::Mismatch { errors }
                }
            }
        };
        let facts = ConnectorFacts {
            connector,
            class: class_facts,
            secret,
            liveness,
            auth,
            proxy_service: ProxyServiceFacts::NotChecked,
            ca,
            cluster_domain: "cluster.local",
        };
        let status = decide_connector_status(&facts, &now);
        results.push((connector.clone(), status));
    }
    results
}

pub fn is_ready(status: &ConnectorStatus) -> bool {
    crate::api::find_condition(&status.conditions, "Ready").is_some_and(|c| c.status == "True")
}

/// Renders results like `kubectl describe` does for conditions, or as YAML/JSON.
pub fn render(
    results: &[(Connector, ConnectorStatus)],
    output: Output,
) -> Result<String, CheckError> {
    let named: Vec<serde_json::Value> = results
        .iter()
        .map(|(c, status)| {
            serde_json::json!({
                "name": c.metadata.name,
                "namespace": c.metadata.namespace,
                "status": status,
            })
        })
        .collect();
    match output {
        Output::Json => {
            serde_json::to_string_pretty(&named).map_err(|e| CheckError::Encode(e.to_string()))
        }
        Output::Yaml => {
            serde_yaml::to_string(&named).map_err(|e| CheckError::Encode(e.to_string()))
        }
        Output::Describe => Ok(describe(results)),
    }
}

fn describe(results: &[(Connector, ConnectorStatus)]) -> String {
    let mut out = String::new();
    for (connector, status) in results {
        let _ = writeln!(
            out,
            "Name:         {}",
            connector.metadata.name.as_deref().unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "Namespace:    {}",
            connector.metadata.namespace.as_deref().unwrap_or_default()
        );
        let _ = writeln!(out, "Class:        {}", connector.spec.connector_class_name);
        let _ = writeln!(
            out,
            "Address:      {}",
            connector.spec.address.as_deref().unwrap_or_default()
        );
        let _ = writeln!(out, "Conditions:");
        let rows: Vec<[&str; 4]> = status
            .conditions
            .iter()
            .map(|c| {
                [
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or(""),
                ]
            })
            .collect();
        let header = ["Type", "Status", "Reason", "Message"];
        let width = |i: usize| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        let _ = writeln!(
            out,
            "  {:w0$}  {:w1$}  {:w2$}  {}",
            header[0], header[1], header[2], header[3]
        );
        let _ = writeln!(
            out,
            "  {:w0$}  {:w1$}  {:w2$}  -------",
            "----", "------", "------"
        );
        for r in rows {
            let _ = writeln!(out, "  {:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3]);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::tests::server::{Reply, serve};

    /// SPEC section 4: without `spec.auth.name` the chosen auth type is the class's
    /// first one, for the Secret checks and the auth probe alike.
    #[tokio::test]
    async fn unnamed_auth_uses_the_first_auth_type_for_the_probe() {
        let tool = serve(|r| {
            if r.target == "/user" && !r.header("authorization").is_empty() {
                Reply::status(200)
            } else {
                Reply::status(401)
            }
        })
        .await;
        let yaml = format!(
            r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata: {{name: git}}
spec:
  auth:
    types:
    - {{name: basicAuth, secretType: kubernetes.io/basic-auth}}
  authProbes:
  - authName: basicAuth
    probe:
      http:
        path: /user
        httpHeaders:
        - name: Authorization
          value: '{{{{ printf "%s:%s" .Secret.StringData.username .Secret.StringData.password | b64enc | printf "Basic %s" }}}}'
---
apiVersion: v1
kind: Secret
metadata: {{name: creds, namespace: default}}
type: kubernetes.io/basic-auth
stringData: {{username: u, password: p}}
---
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {{name: git, namespace: default}}
spec:
  connectorClassName: git
  address: {}
  auth:
    secretRef: {{name: creds}}
"#,
            tool.url("")
        );
        let dir = std::env::temp_dir().join(format!("check-unnamed-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("docs.yaml");
        std::fs::write(&file, yaml).unwrap();
        let docs = read_documents(&[file]).unwrap();
        let results = check(&docs, ProbeSettings::default()).await;
        let auth = crate::api::find_condition(&results[0].1.conditions, "AuthReady").unwrap();
        assert_eq!(
            (auth.status.as_str(), auth.reason.as_deref()),
            ("True", None),
            "{auth:?}"
        );
        assert_eq!(tool.recorded().len(), 1, "one auth request");
    }
}
