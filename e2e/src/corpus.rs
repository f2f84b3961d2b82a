//! The bad-input corpus (`e2e/corpus/*.yaml`): one file per case, each stating the
//! objects to apply and the outcome it expects. `e2e/tests/corpus.rs` runs them all
//! against one operator.
//!
//! A case file:
//!
//! ```yaml
//! description: what is wrong and why the expected outcome is right
//! objects: |          # YAML documents, applied in order, each on its own
//!   apiVersion: ...   # placeholders: see `Placeholders`
//! expect:             # either a rejection of the LAST document (earlier ones must pass)
//!   admission: "substring of kubectl's stderr"
//! # or a list of checks on stored objects, all of which must hold at once:
//! expect:
//! - {kind: Connector, name: c, type: Ready, status: "False", reason: X,
//!    messageContains: "...", messageExcludes: "..."}
//! - {kind: Connector, name: c, field: status.proxy.httpAddress.url, contains: "..."}
//! ```
//!
//! `kind` is `Connector` (in the case's namespace) or `ConnectorClass`.
//!
//! `webhook: true` puts the case in the scope of the operator's admission webhook
//! (registered for the corpus run); without it only the CRD's own rules apply at
//! admission and the controller judges the rest.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// Values substituted into `objects` and into every string of `expect`.
#[derive(Clone, Debug)]
pub struct Placeholders {
    /// `${NS}`: the case's own namespace.
    pub namespace: String,
    /// `${CLASS}`: a class name unique to the case (append `-a`, `-b` for more).
    pub class: String,
    /// `${OTHER_NS}`: a namespace shared by all cases, holding Secret `other-creds`.
    pub other_namespace: String,
    /// `${GIT_CLASS}`: a valid git class shared by all cases (liveness `/`, CEL on the
    /// body, Basic auth probe on `/{repository}/info/refs`).
    pub git_class: String,
    /// `${TOOL}`: `http://127.0.0.1:PORT` of the demo tool; `${TOOL_PORT}` its port.
    pub tool_port: u16,
    /// `${TOOL_IPV6}`: `http://[::1]:PORT` of the same tool.
    pub tool_ipv6_url: String,
}

impl Placeholders {
    pub fn apply(&self, text: &str) -> String {
        text.replace("${NS}", &self.namespace)
            .replace("${CLASS}", &self.class)
            .replace("${OTHER_NS}", &self.other_namespace)
            .replace("${GIT_CLASS}", &self.git_class)
            .replace("${TOOL_IPV6}", &self.tool_ipv6_url)
            .replace("${TOOL_PORT}", &self.tool_port.to_string())
            .replace("${TOOL}", &format!("http://127.0.0.1:{}", self.tool_port))
    }
}

/// What a case expects.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// Applying the last document fails and kubectl's stderr contains this.
    Admission(String),
    /// Every check holds on the stored objects (eventually, all at the same time).
    Checks(Vec<Check>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Condition {
        target: Target,
        type_: String,
        status: String,
        reason: String,
        message_contains: Option<String>,
        message_excludes: Option<String>,
    },
    /// A dotted path into the object (`status.proxy.httpAddress.url`) whose string
    /// value contains `contains`.
    Field {
        target: Target,
        path: String,
        contains: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// `Connector` or `ConnectorClass`.
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Case {
    /// The file stem.
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    /// The raw `objects` text, before substitution.
    pub objects: String,
    pub expect: Expect,
    /// `webhook: true`: the operator's admission webhook judges this case's objects
    /// (its namespace and classes are put in the webhook's scope).
    pub webhook: bool,
}

impl Case {
    /// The documents to apply, placeholders substituted, empty ones dropped.
    pub fn documents(&self, values: &Placeholders) -> Vec<String> {
        values
            .apply(&self.objects)
            .split("\n---")
            .map(|d| d.trim_start_matches('-').trim().to_string())
            .filter(|d| !d.is_empty())
            .collect()
    }

    /// The expectation with placeholders substituted.
    pub fn expect(&self, values: &Placeholders) -> Expect {
        match &self.expect {
            Expect::Admission(text) => Expect::Admission(values.apply(text)),
            Expect::Checks(checks) => {
                Expect::Checks(checks.iter().map(|c| substitute_check(c, values)).collect())
            }
        }
    }
}

fn substitute_check(check: &Check, values: &Placeholders) -> Check {
    let target = |t: &Target| Target {
        kind: t.kind.clone(),
        name: values.apply(&t.name),
    };
    let opt = |s: &Option<String>| s.as_deref().map(|s| values.apply(s));
    match check {
        Check::Condition {
            target: t,
            type_,
            status,
            reason,
            message_contains,
            message_excludes,
        } => Check::Condition {
            target: target(t),
            type_: type_.clone(),
            status: status.clone(),
            reason: reason.clone(),
            message_contains: opt(message_contains),
            message_excludes: opt(message_excludes),
        },
        Check::Field {
            target: t,
            path,
            contains,
        } => Check::Field {
            target: target(t),
            path: path.clone(),
            contains: values.apply(contains),
        },
    }
}

/// Every `*.yaml` case under `dir`, sorted by name. Errors name the file and the field.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

pub fn load(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Case, String> {
    let at = |what: &str| format!("{}: {what}", path.display());
    let doc: Value = serde_yaml::from_str(text).map_err(|e| at(&e.to_string()))?;
    let string = |v: &Value, key: &str| -> Result<String, String> {
        match &v[key] {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Err(at(&format!("`{key}` is missing"))),
            other => Ok(serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string()),
        }
    };
    let optional = |v: &Value, key: &str| v[key].as_str().map(str::to_string);
    let description = string(&doc, "description")?;
    let objects = string(&doc, "objects")?;
    let expect = match &doc["expect"] {
        Value::Mapping(m) if m.contains_key("admission") => {
            Expect::Admission(string(&doc["expect"], "admission")?)
        }
        Value::Sequence(items) if !items.is_empty() => {
            let mut checks = Vec::new();
            for item in items {
                let target = Target {
                    kind: string(item, "kind")?,
                    name: string(item, "name")?,
                };
                if !matches!(target.kind.as_str(), "Connector" | "ConnectorClass") {
                    return Err(at(&format!("unknown kind {:?}", target.kind)));
                }
                checks.push(if item["field"].is_null() {
                    Check::Condition {
                        target,
                        type_: string(item, "type")?,
                        status: string(item, "status")?,
                        reason: optional(item, "reason").unwrap_or_default(),
                        message_contains: optional(item, "messageContains"),
                        message_excludes: optional(item, "messageExcludes"),
                    }
                } else {
                    Check::Field {
                        target,
                        path: string(item, "field")?,
                        contains: string(item, "contains")?,
                    }
                });
            }
            Expect::Checks(checks)
        }
        _ => {
            return Err(at(
                "`expect` must be {admission: TEXT} or a non-empty list of checks",
            ));
        }
    };
    Ok(Case {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        description,
        objects,
        expect,
        webhook: doc["webhook"].as_bool().unwrap_or(false),
    })
}

/// Checks one expectation against the stored object (`None`: not found). `Err` says
/// what was seen instead.
pub fn check(check: &Check, object: Option<&serde_json::Value>) -> Result<(), String> {
    let (Check::Condition { target, .. } | Check::Field { target, .. }) = check;
    let object = object.ok_or_else(|| format!("{} {} not found", target.kind, target.name))?;
    match check {
        Check::Condition {
            type_,
            status,
            reason,
            message_contains,
            message_excludes,
            ..
        } => {
            let (s, r, m) = crate::condition(object, type_)
                .ok_or_else(|| format!("{} has no {type_} condition yet", target.name))?;
            let seen = format!("{type_} is {s}/{r:?} ({m:?})");
            if &s != status || &r != reason {
                return Err(format!("{seen}, want {status}/{reason:?}"));
            }
            if let Some(part) = message_contains
                && !m.contains(part.as_str())
            {
                return Err(format!("{seen}, want a message containing {part:?}"));
            }
            if let Some(part) = message_excludes
                && m.contains(part.as_str())
            {
                return Err(format!("{seen}, want a message without {part:?}"));
            }
            Ok(())
        }
        Check::Field { path, contains, .. } => {
            let value = path
                .split('.')
                .fold(object, |v, key| &v[key])
                .as_str()
                .unwrap_or_default();
            if value.contains(contains.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "{path} is {value:?}, want it to contain {contains:?}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_of_expectation() {
        let admission = parse(
            Path::new("a.yaml"),
            "description: d\nobjects: |\n  kind: X\nexpect:\n  admission: nope\n",
        )
        .unwrap();
        assert_eq!(admission.expect, Expect::Admission("nope".into()));
        let checks = parse(
            Path::new("b.yaml"),
            "description: d\nobjects: |\n  a: 1\n  ---\n  b: ${NS}\nexpect:\n- {kind: Connector, name: c, type: Ready, status: \"False\", reason: R}\n- {kind: ConnectorClass, name: '${CLASS}', field: status.x, contains: y}\n",
        )
        .unwrap();
        let Expect::Checks(list) = &checks.expect else {
            panic!("checks expected")
        };
        assert_eq!(list.len(), 2);
        let values = Placeholders {
            namespace: "ns".into(),
            class: "cls".into(),
            other_namespace: "o".into(),
            git_class: "g".into(),
            tool_port: 1,
            tool_ipv6_url: "http://[::1]:2".into(),
        };
        assert_eq!(checks.documents(&values), ["a: 1", "b: ns"]);
        let Expect::Checks(list) = checks.expect(&values) else {
            panic!("checks expected")
        };
        assert!(matches!(&list[1], Check::Field { target, .. } if target.name == "cls"));
    }

    #[test]
    fn rejects_a_case_without_expectation() {
        let err = parse(Path::new("c.yaml"), "description: d\nobjects: x\n").unwrap_err();
        assert!(err.contains("expect"), "{err}");
    }

    #[test]
    fn condition_check_reports_what_it_saw() {
        let object = serde_json::json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "R", "message": "boom"}]}});
        let target = Target {
            kind: "Connector".into(),
            name: "c".into(),
        };
        let want = |reason: &str, contains: Option<&str>| Check::Condition {
            target: target.clone(),
            type_: "Ready".into(),
            status: "False".into(),
            reason: reason.into(),
            message_contains: contains.map(str::to_string),
            message_excludes: None,
        };
        assert_eq!(check(&want("R", Some("boo")), Some(&object)), Ok(()));
        assert!(check(&want("Other", None), Some(&object)).is_err());
        assert!(check(&want("R", Some("bang")), Some(&object)).is_err());
        assert!(check(&want("R", None), None).is_err());
    }
}
