//! `connectors-operator check -f FILE`: validate and probe Connectors without a cluster,
//! with the same observe -> decide code the controller runs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource as _;
use serde::Deserialize;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    Condition, Connector, ConnectorClass, ConnectorStatus, DexConnector, DexConnectorStatus,
};
use crate::decide::class::{ClassFacts as ClassStatusFacts, decide_class_status};
use crate::decide::connector::{ClassFacts, ProxyServiceFacts, decide_connector_status};
use crate::decide::identity::{IdpFacts, decide_idp_status};
use crate::decide::plan::probe_plan;
use crate::observe::identity::{IdpCheckSettings, observe_idp};
use crate::observe::{
    ClassView, Objects, ServiceLookup, class_facts, connector_facts, observe_class, observe_inputs,
    run_probes,
};
use crate::probe::{
    CompiledClass, HttpProber, ProbeRunner, ProbeSettings, RunnerSettings, TrustBundle,
};
use crate::types::FieldError;
use crate::types::conditions::{READY, TRUE};
use crate::validation::identity::validate_dex;
use crate::validation::validate_class;

/// The cluster domain `check` assumes for Service addresses.
const CLUSTER_DOMAIN: &str = "cluster.local";

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
    /// Dex Connectors (`dex.coreos.com/v1`, identity providers).
    pub dex_connectors: Vec<DexConnector>,
}

const DEFAULT_NAMESPACE: &str = "default";

/// Reads multi-document YAML (or JSON) files; unknown kinds are ignored.
pub fn read_documents(paths: &[PathBuf]) -> Result<Documents, CheckError> {
    let mut docs = Documents::default();
    for path in paths {
        let text = read_bounded(path).map_err(|source| CheckError::Read {
            path: path.clone(),
            source,
        })?;
        // The YAML parser's time grows with the square of flow nesting: bound it first.
        if let Some(index) = too_deep(&text, MAX_DEPTH) {
            return Err(CheckError::Parse {
                path: path.clone(),
                index,
                message: format!("nesting deeper than {MAX_DEPTH}"),
            });
        }
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let parse_error = |message: String| CheckError::Parse {
                path: path.clone(),
                index: index + 1,
                message,
            };
            let mut value =
                serde_yaml::Value::deserialize(document).map_err(|e| parse_error(e.to_string()))?;
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            if kind == "Connector" && is_dex(&value) {
                docs.dex_connectors
                    .push(read_dex(value).map_err(parse_error)?);
                continue;
            }
            admit(&kind, &mut value).map_err(parse_error)?;
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
    if docs.connectors.is_empty() && docs.dex_connectors.is_empty() {
        return Err(CheckError::NoConnector);
    }
    Ok(docs)
}

/// A `Connector` of Dex's API group (SPEC-identity) rather than this project's.
fn is_dex(value: &serde_yaml::Value) -> bool {
    value.get("apiVersion").and_then(|v| v.as_str())
        == Some(DexConnector::api_version(&()).as_ref())
}

/// A Dex Connector document, in namespace `default` unless it names one. Its errors
/// never quote the config (which may hold an inline secret).
fn read_dex(value: serde_yaml::Value) -> Result<DexConnector, String> {
    let mut connector: DexConnector = serde_yaml::from_value(value)
        .map_err(|_| "Connector (dex.coreos.com/v1): invalid document".to_string())?;
    connector
        .metadata
        .namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.to_string());
    Ok(connector)
}

/// The apiVersion this project serves `kind` at, for the kinds `check` reads.
fn served_api_version(kind: &str) -> Option<Cow<'static, str>> {
    match kind {
        "ConnectorClass" => Some(ConnectorClass::api_version(&())),
        "Connector" => Some(Connector::api_version(&())),
        "Secret" => Some(Secret::api_version(&())),
        _ => None,
    }
}

/// SPEC section 1: a document of a kind `check` reads must carry the apiVersion this
/// project serves it at (`kubectl apply` fails on any other); a ConnectorClass or
/// Connector without `spec` (or with `spec: null`) is judged as one with `spec: {}`, as
/// the CRD has the apiserver do. Other kinds pass untouched (they are ignored).
fn admit(kind: &str, value: &mut serde_yaml::Value) -> Result<(), String> {
    let Some(served) = served_api_version(kind) else {
        return Ok(());
    };
    match value.get("apiVersion").and_then(|v| v.as_str()) {
        None => return Err(format!("{kind} without apiVersion (expected {served})")),
        Some(api_version) if api_version != served => {
            return Err(format!(
                "no matches for kind \"{kind}\" in version \"{api_version}\" (this project serves {kind} as {served})"
            ));
        }
        Some(_) => {}
    }
    if kind != "Secret"
        && value.get("spec").is_none_or(serde_yaml::Value::is_null)
        && let Some(document) = value.as_mapping_mut()
    {
        document.insert("spec".into(), serde_yaml::Mapping::new().into());
    }
    Ok(())
}

/// Inputs larger than this are refused before parsing.
const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Nesting a document may have: block levels (indentation, `- ` items) plus flow
/// levels (`{` and `[`). Kubernetes objects need about 20.
const MAX_DEPTH: usize = 64;

/// The file (or stdin for `-`) as text, refusing more than [`MAX_INPUT_BYTES`].
fn read_bounded(path: &PathBuf) -> std::io::Result<String> {
    use std::io::Read as _;
    let reader: Box<dyn std::io::Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path)?)
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB; refusing to parse it",
                MAX_INPUT_BYTES / (1024 * 1024)
            ),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

/// A cheap, linear pre-scan of YAML text: the (1-based) document whose nesting goes
/// deeper than `max`, counting block levels (indentation and `- ` items) plus flow
/// levels (`{`, `[` outside quoted scalars, comments and block scalars). It only needs
/// to be right for sane documents and never slow for hostile ones; the parser still
/// judges the syntax.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    let mut scan = DepthScan::new(max);
    for line in text.lines() {
        if scan.line(line).is_err() {
            return Some(scan.document);
        }
    }
    None
}

/// The nesting of the text scanned went deeper than the limit.
struct TooDeep;

/// State of [`too_deep`] that carries from one line to the next.
struct DepthScan {
    max: usize,
    /// The (1-based) document being scanned.
    document: usize,
    has_content: bool,
    /// Indentation of the open block levels.
    indents: Vec<usize>,
    flow: usize,
    quote: Option<char>,
    /// Indentation of the line that opened a literal or folded block scalar.
    block_scalar: Option<usize>,
}

/// State of the character step that starts afresh on every line.
struct LineChars {
    previous: char,
    /// The last non-whitespace character (`\n` at the line start).
    significant: char,
    closed_single_at: Option<usize>,
    escaped: bool,
    /// Inside a plain scalar, where a bracket is text.
    plain: bool,
}

impl DepthScan {
    fn new(max: usize) -> Self {
        Self {
            max,
            document: 1,
            has_content: false,
            indents: Vec::new(),
            flow: 0,
            quote: None,
            block_scalar: None,
        }
    }

    /// One line: block levels, then flow levels and quotes, then whether it opens a
    /// block scalar.
    fn line(&mut self, line: &str) -> Result<(), TooDeep> {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some(parent) = self.block_scalar {
            // A block scalar's content is text, whatever it looks like.
            if line.trim().is_empty() || indent > parent {
                return Ok(());
            }
            self.block_scalar = None;
        }
        let (rest, block_depth) = if self.quote.is_none() && self.flow == 0 {
            match self.block_levels(line, indent)? {
                Some(found) => found,
                None => return Ok(()),
            }
        } else {
            // Inside a multi-line quoted scalar or flow collection indentation means nothing.
            (line, self.indents.len())
        };
        let comment_at = self.flow_and_quotes(rest, block_depth)?;
        if self.quote.is_none() && self.flow == 0 && opens_block_scalar(&rest[..comment_at]) {
            self.block_scalar = Some(indent);
        }
        Ok(())
    }

    /// The block-level step of a line outside quotes and flow collections: document
    /// markers, indentation and `- `/`? ` items. Returns the text left for the character
    /// step and the block depth it starts at; `None` when nothing is left (a blank or
    /// comment line, a document end).
    fn block_levels<'a>(
        &mut self,
        line: &'a str,
        indent: usize,
    ) -> Result<Option<(&'a str, usize)>, TooDeep> {
        let mut rest = line;
        if line.starts_with("---") && (line.len() == 3 || line[3..].starts_with([' ', '\t'])) {
            // Only a document with content counts: a leading `---` starts the first one.
            if self.has_content {
                self.document += 1;
            }
            self.has_content = false;
            self.indents.clear();
            rest = &line[3..];
        } else if line == "..." {
            self.indents.clear();
            return Ok(None);
        }
        let content = rest.trim_start();
        if content.is_empty() || content.starts_with('#') {
            return Ok(None);
        }
        self.has_content = true;
        // Content after `---` on the same line is at the top level.
        let indent = if rest.len() == line.len() { indent } else { 0 };
        while self.indents.last().is_some_and(|&open| open >= indent) {
            self.indents.pop();
        }
        self.indents.push(indent);
        let mut items = content;
        let mut dashes = 0;
        while let Some(after) = items
            .strip_prefix("- ")
            .or_else(|| items.strip_prefix("? "))
        {
            dashes += 1;
            items = after.trim_start();
        }
        let block_depth = self.indents.len() + dashes;
        if block_depth > self.max {
            return Err(TooDeep);
        }
        Ok(Some((rest, block_depth)))
    }

    /// Flow levels and quoted scalars of `rest`, character by character. Returns where
    /// a comment starts (the end of `rest` when none does).
    fn flow_and_quotes(&mut self, rest: &str, block_depth: usize) -> Result<usize, TooDeep> {
        let mut line = LineChars {
            previous: ' ',
            significant: '\n',
            closed_single_at: None,
            escaped: false,
            plain: false,
        };
        for (at, c) in rest.char_indices() {
            if self.quote.is_none() && c == '#' && line.previous.is_whitespace() {
                return Ok(at);
            }
            self.character(&mut line, at, c, block_depth)?;
        }
        Ok(rest.len())
    }

    /// One character outside comments: opens or closes a quoted scalar or flow level.
    fn character(
        &mut self,
        line: &mut LineChars,
        at: usize,
        c: char,
        block_depth: usize,
    ) -> Result<(), TooDeep> {
        match self.quote {
            Some('\'') => {
                if c == '\'' {
                    self.quote = None;
                    line.closed_single_at = Some(at);
                }
            }
            Some(_) => {
                if line.escaped {
                    line.escaped = false;
                } else if c == '\\' {
                    line.escaped = true;
                } else if c == '"' {
                    self.quote = None;
                }
            }
            None => match c {
                // `''` inside a single-quoted scalar is an escaped quote.
                '\'' if line.closed_single_at.is_some_and(|end| end + 1 == at) => {
                    self.quote = Some(c);
                }
                '\'' | '"' if starts_value(line.significant) => self.quote = Some(c),
                // In block context a bracket opens a flow collection only as a
                // value's first character; elsewhere it is text of a plain scalar.
                '{' | '[' if self.flow > 0 || (!line.plain && starts_value(line.significant)) => {
                    self.flow += 1;
                    if block_depth + self.flow > self.max {
                        return Err(TooDeep);
                    }
                }
                '}' | ']' => self.flow = self.flow.saturating_sub(1),
                _ => {}
            },
        }
        if self.quote.is_none() && self.flow == 0 {
            // A plain scalar runs to the next `:` (or the end of the line).
            if c == ':' {
                line.plain = false;
            } else if !c.is_whitespace()
                && !matches!(c, '{' | '[' | '}' | ']' | '\'' | '"' | '-' | '?' | ',')
            {
                line.plain = true;
            }
        }
        line.previous = c;
        if !c.is_whitespace() {
            line.significant = c;
        }
        Ok(())
    }
}

/// Whether a line's text before its comment ends with a block scalar header
/// (`|`, `>`, with optional indentation and chomping indicators).
fn opens_block_scalar(before_comment: &str) -> bool {
    let last = before_comment
        .split_whitespace()
        .next_back()
        .unwrap_or_default();
    let mut chars = last.chars();
    matches!(chars.next(), Some('|' | '>'))
        && chars.all(|c| c.is_ascii_digit() || c == '+' || c == '-')
}

/// Whether a scalar or collection may start after this character (`\n`: line start).
fn starts_value(previous_significant: char) -> bool {
    matches!(
        previous_significant,
        ':' | '-' | '[' | '{' | ',' | '?' | '\n'
    )
}

/// The files as the observe step reads them: Secrets from the documents, no Services
/// (without a cluster a Service ref cannot be looked up; absolute URIs are checked).
struct FileObjects<'a>(&'a Documents);

impl Objects for FileObjects<'_> {
    type Error = std::convert::Infallible;

    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>, Self::Error> {
        let key = (namespace.to_string(), name.to_string());
        Ok(self.0.secrets.get(&key).cloned().map(Arc::new))
    }

    async fn service(&self, _: &str, _: &str) -> Result<ServiceLookup, Self::Error> {
        Ok(ServiceLookup::Unavailable)
    }
}

/// A class with the status its controller would write, and its compiled form.
struct CheckedClass {
    class: ConnectorClass,
    compiled: Result<Arc<CompiledClass>, Vec<FieldError>>,
}

/// Judges every class in `docs` as the class controller would.
async fn check_classes(
    docs: &Documents,
    prober: &HttpProber,
    now: &Time,
) -> BTreeMap<String, CheckedClass> {
    let objects = FileObjects(docs);
    let mut classes = BTreeMap::new();
    for (name, class) in &docs.classes {
        let compiled = validate_class(class).map(Arc::new);
        let spec_errors = compiled.as_ref().err().cloned().unwrap_or_default();
        let Ok((api, proxy)) = observe_class(&objects, class, prober, CLUSTER_DOMAIN).await;
        let status = decide_class_status(
            &ClassStatusFacts {
                class,
                api,
                proxy,
                spec_errors: &spec_errors,
            },
            now,
        );
        let mut observed = class.clone();
        observed.status = Some(status);
        classes.insert(
            name.clone(),
            CheckedClass {
                class: observed,
                compiled,
            },
        );
    }
    classes
}

/// Computes the status of every Connector in `docs`, probing for real, through the
/// observe and decide steps the controller runs.
pub async fn check(docs: &Documents, settings: ProbeSettings) -> Vec<(Connector, ConnectorStatus)> {
    let runner = ProbeRunner::new(HttpProber::new(settings), RunnerSettings::default());
    let now = crate::runtime::now();
    let classes = check_classes(docs, runner.prober(), &now).await;
    let objects = FileObjects(docs);
    let mut results = Vec::new();
    for connector in &docs.connectors {
        let Ok(inputs) = observe_inputs(&objects, connector, &TrustBundle::empty()).await;
        let class_name = &connector.spec.connector_class_name;
        let view = classes.get(class_name).map(|c| ClassView {
            class: &c.class,
            compiled: &c.compiled,
        });
        let facts = class_facts(connector, class_name, view.as_ref());
        let mut outcomes = (None, None);
        if let (ClassFacts::Usable { class }, Some(view), Some(Ok(compiled))) =
            (&facts, &view, view.as_ref().map(|v| v.compiled))
        {
            let plan = probe_plan(connector, class, &inputs.secret);
            // The default runner waits for shared requests: it never defers.
            if let Ok((live, auth)) =
                run_probes(&plan, compiled, connector, &inputs, view.api_url(), &runner).await
            {
                outcomes = (live.map(|r| r.outcome), auth.map(|r| r.outcome));
            }
        }
        let facts = connector_facts(
            connector,
            facts,
            &inputs,
            outcomes,
            ProxyServiceFacts::NotChecked,
            CLUSTER_DOMAIN,
        );
        results.push((connector.clone(), decide_connector_status(&facts, &now)));
    }
    results
}

/// Computes the status of every Dex Connector in `docs` (SPEC-identity section 2),
/// checking the LDAP or OIDC provider for real, with the identity controller's observe
/// and decide steps.
pub async fn check_identity(
    docs: &Documents,
    settings: ProbeSettings,
) -> Vec<(DexConnector, DexConnectorStatus)> {
    let now = crate::runtime::now();
    let objects = FileObjects(docs);
    let check_settings = IdpCheckSettings {
        timeout: settings.timeout,
        destinations: settings.destinations,
    };
    let mut results = Vec::new();
    for connector in &docs.dex_connectors {
        let validation = validate_dex(connector);
        let namespace = connector.metadata.namespace.as_deref().unwrap_or_default();
        let Ok((secret, live)) = observe_idp(
            &objects,
            namespace,
            &validation,
            &TrustBundle::empty(),
            &check_settings,
        )
        .await;
        let facts = IdpFacts {
            generation: connector.metadata.generation,
            validation: &validation,
            secret,
            live,
        };
        results.push((connector.clone(), decide_idp_status(&[], &facts, &now)));
    }
    results
}

/// Whether a Dex Connector's status says Ready.
pub fn is_idp_ready(status: &DexConnectorStatus) -> bool {
    crate::api::find_condition(&status.conditions, READY).is_some_and(|c| c.status == TRUE)
}

/// [`render`] of tool Connectors followed by Dex Connectors (in JSON and YAML one list;
/// Dex entries carry their `apiVersion`).
pub fn render_all(
    results: &[(Connector, ConnectorStatus)],
    identity: &[(DexConnector, DexConnectorStatus)],
    output: Output,
) -> Result<String, CheckError> {
    if identity.is_empty() {
        return render(results, output);
    }
    let encode = |e: String| CheckError::Encode(e);
    match output {
        Output::Describe => Ok(describe(results) + &describe_identity(identity)),
        Output::Json | Output::Yaml => {
            let text = render(results, Output::Json)?;
            let mut all: Vec<serde_json::Value> =
                serde_json::from_str(&text).map_err(|e| encode(e.to_string()))?;
            all.extend(identity.iter().map(|(c, status)| {
                serde_json::json!({
                    "apiVersion": DexConnector::api_version(&()),
                    "name": c.metadata.name,
                    "namespace": c.metadata.namespace,
                    "status": status,
                })
            }));
            if output == Output::Json {
                serde_json::to_string_pretty(&all).map_err(|e| encode(e.to_string()))
            } else {
                serde_yaml::to_string(&all).map_err(|e| encode(e.to_string()))
            }
        }
    }
}

fn describe_identity(results: &[(DexConnector, DexConnectorStatus)]) -> String {
    let mut out = String::new();
    for (connector, status) in results {
        let meta = &connector.metadata;
        let _ = writeln!(
            out,
            "Name:         {}",
            meta.name.as_deref().unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "Namespace:    {}",
            meta.namespace.as_deref().unwrap_or_default()
        );
        let _ = writeln!(out, "API Version:  {}", DexConnector::api_version(&()));
        let _ = writeln!(
            out,
            "Type:         {}",
            connector.type_.as_deref().unwrap_or_default()
        );
        conditions_table(&mut out, &status.conditions);
    }
    out
}

pub fn is_ready(status: &ConnectorStatus) -> bool {
    crate::api::find_condition(&status.conditions, READY).is_some_and(|c| c.status == TRUE)
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
        conditions_table(&mut out, &status.conditions);
    }
    out
}

/// The conditions as `kubectl describe` shows them, then a blank line.
fn conditions_table(out: &mut String, conditions: &[Condition]) {
    let _ = writeln!(out, "Conditions:");
    let rows: Vec<[&str; 4]> = conditions
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

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
        let docs = read_documents(&[write_docs("unnamed-auth", &yaml)]).unwrap();
        let results = check(&docs, ProbeSettings::default()).await;
        let auth = crate::api::find_condition(&results[0].1.conditions, "AuthReady").unwrap();
        assert_eq!(
            (auth.status.as_str(), auth.reason.as_deref()),
            ("True", None),
            "{auth:?}"
        );
        assert_eq!(tool.recorded().len(), 1, "one auth request");
    }

    /// The error reading `file` gives (the test fails when it reads).
    fn read_error(file: &PathBuf) -> String {
        match read_documents(std::slice::from_ref(file)) {
            Ok(_) => panic!("{} was read without an error", file.display()),
            Err(e) => e.to_string(),
        }
    }

    /// `docs.yaml` in a directory of its own holding `yaml`.
    fn write_docs(test: &str, yaml: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("check-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("docs.yaml");
        std::fs::write(&file, yaml).unwrap();
        file
    }

    /// SPEC section 1 (issue 13): a ConnectorClass without `spec` (published snippets
    /// carry only metadata) is read as one with an empty spec; a Connector without
    /// `spec` is judged as an empty one, which lacks `connectorClassName`.
    #[test]
    fn documents_without_spec_are_judged_as_empty_specs() {
        let class = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata:
  name: git
  annotations: {connectors.cpaas.io/proxy-resolver: path}
"#;
        let connector = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: Connector
metadata: {name: git}
spec: {connectorClassName: git}
"#;
        let file = write_docs("class-no-spec", &format!("{class}---{connector}"));
        let docs = read_documents(&[file]).unwrap();
        assert_eq!(
            docs.classes["git"].spec,
            crate::api::ConnectorClassSpec::default()
        );

        let without_spec =
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: c}\n";
        let file = write_docs("connector-no-spec", &format!("{class}---\n{without_spec}"));
        let error = read_error(&file);
        assert_eq!(
            error,
            format!(
                "{}: document 2: Connector: missing field `connectorClassName`",
                file.display()
            )
        );
    }

    /// SPEC section 1 (issue 13): documents of another group or version are not these
    /// kinds; as `kubectl apply` would fail on them, so does `check`, naming the document.
    #[test]
    fn documents_of_another_api_version_are_refused() {
        let class = r#"
apiVersion: connectors.alauda.io/v1alpha1
kind: ConnectorClass
metadata: {name: git}
spec: {}
"#;
        let connector = |api_version: &str| {
            format!(
                "apiVersion: {api_version}\nkind: Connector\nmetadata: {{name: git}}\nspec: {{connectorClassName: git}}\n"
            )
        };
        let yaml = format!(
            "{class}---\n{}",
            connector("operator.connectors.alauda.io/v1alpha1")
        );
        let valid = format!("{class}---\n{}", connector("connectors.alauda.io/v1alpha1"));
        assert!(read_documents(&[write_docs("served", &valid)]).is_ok());
        let file = write_docs("other-group", &yaml);
        let error = read_error(&file);
        assert_eq!(
            error,
            format!(
                "{}: document 2: no matches for kind \"Connector\" in version \"operator.connectors.alauda.io/v1alpha1\" (this project serves Connector as connectors.alauda.io/v1alpha1)",
                file.display()
            )
        );
        for (kind, api_version, expected) in [
            (
                "ConnectorClass",
                "connectors.alauda.io/v1beta1",
                "connectors.alauda.io/v1alpha1",
            ),
            ("Secret", "connectors.alauda.io/v1alpha1", "v1"),
        ] {
            let doc = format!("apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x}}\n");
            let file = write_docs(
                &format!("other-version-{kind}"),
                &format!("{valid}---\n{doc}"),
            );
            let error = read_error(&file);
            assert!(
                error.contains(&format!("document 3: no matches for kind \"{kind}\" in version \"{api_version}\" (this project serves {kind} as {expected})")),
                "{error}"
            );
        }
        let doc = "kind: Connector\nmetadata: {name: y}\nspec: {connectorClassName: git}\n";
        let file = write_docs("no-api-version", &format!("{valid}---\n{doc}"));
        let error = read_error(&file);
        assert!(
            error.contains("document 3: Connector without apiVersion"),
            "{error}"
        );
    }

    /// Reads `text` as a file; the result and how long reading took.
    fn read_text(name: &str, text: &str) -> (Result<Documents, CheckError>, Duration) {
        let path = write_docs(&format!("limits-{name}"), text);
        let start = Instant::now();
        let result = read_documents(std::slice::from_ref(&path));
        (result, start.elapsed())
    }

    const CONNECTOR: &str = "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata: {name: c}\nspec: {connectorClassName: git, address: 'https://x'}\n";

    #[test]
    fn deep_flow_nesting_is_refused_quickly() {
        // Mappings, sequences and a mix, in the second document, as a value of a field.
        for (name, open, close) in [
            ("maps", "{a: ", "}"),
            ("seqs", "[", "]"),
            ("mixed", "{k: [", "]}"),
        ] {
            let depth = 40_000;
            let hostile = format!(
                "{CONNECTOR}---\nkind: Connector\nspec: {}1{}\n",
                open.repeat(depth),
                close.repeat(depth)
            );
            let (result, took) = read_text(name, &hostile);
            let message = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                message.ends_with("document 2: nesting deeper than 64"),
                "{name}: {message}"
            );
            assert!(took < Duration::from_secs(1), "{name}: took {took:?}");
        }
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        let mut hostile = String::from("kind: Connector\n");
        for level in 0..200 {
            hostile.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
        }
        let (result, _) = read_text("block", &hostile);
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.ends_with("document 1: nesting deeper than 64"),
            "{message}"
        );
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let padding = format!("# {}\n", "x".repeat(1023)).repeat(5 * 1024);
        let (result, took) = read_text("big", &format!("{CONNECTOR}{padding}"));
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("larger than 4 MiB"), "{message}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }

    #[test]
    fn brackets_in_quotes_comments_and_block_scalars_do_not_count() {
        let deep = "{".repeat(100);
        let text = format!(
            "{CONNECTOR}  # {deep}\nmetadata2: {{a: '{deep}', b: \"{deep}\\\"\", c: x}}\nnote: it's {deep}\nrego: |\n  {deep}\n  x := [{deep}\nafter: [[1]]\n"
        );
        let (result, _) = read_text("quoted", &text);
        assert!(result.is_ok(), "{:?}", result.err().map(|e| e.to_string()));
    }
}
