//! Secret material handed to the probe engine, and the scrubbing that keeps its
//! values out of every message (SPEC section 7).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// The Secret a Connector references, with its `data` already base64-decoded.
///
/// `Debug` prints the key names only, never a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretMaterial {
    /// `metadata.name` of the Secret.
    pub name: String,
    /// `type` of the Secret, e.g. `kubernetes.io/basic-auth`.
    pub type_: String,
    /// Decoded `data` (and `stringData`) of the Secret.
    pub data: BTreeMap<String, String>,
}

impl fmt::Debug for SecretMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretMaterial")
            .field("name", &self.name)
            .field("type_", &self.type_)
            .field("data", &RedactedKeys(&self.data))
            .finish()
    }
}

struct RedactedKeys<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, REDACTED)))
            .finish()
    }
}

/// What replaces a secret value in any text.
pub(crate) const REDACTED: &str = "[redacted]";

/// Values shorter than this are not scrubbed from messages: they are not meaningful
/// secrets, and replacing every `a` or `401` in a message would make it unreadable.
const MIN_SCRUBBED_LEN: usize = 4;

/// The secret strings of one request (Secret values, credential header values,
/// injected credentials). Scrubbing replaces them in the forms they may take in a
/// message: as is, URL-encoded, and escaped the way `Debug` and JSON escape them.
/// Those forms are computed on the first scrub only (messages are rare; requests are
/// not). Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    inner: Arc<RedactorInner>,
}

#[derive(Default)]
struct RedactorInner {
    /// Values, each with whether its words are secrets too (credential headers).
    raw: Vec<(String, bool)>,
    forms: OnceLock<Vec<String>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} values)", self.inner.raw.len())
    }
}

#[derive(Default)]
pub(crate) struct RedactorBuilder {
    raw: Vec<(String, bool)>,
}

impl RedactorBuilder {
    /// Adds one secret value.
    pub(crate) fn add(&mut self, value: &str) {
        if value.len() >= MIN_SCRUBBED_LEN {
            self.raw.push((value.to_string(), false));
        }
    }

    /// Adds a credential header value, and each of its words (`Basic dXNlcjpwYXNz`
    /// also hides the token alone, which a server may echo).
    pub(crate) fn add_credential(&mut self, value: &str) {
        if value.len() >= MIN_SCRUBBED_LEN {
            self.raw.push((value.to_string(), true));
        }
    }

    pub(crate) fn add_all<'a>(&mut self, values: impl IntoIterator<Item = &'a String>) {
        for v in values {
            self.add(v);
        }
    }

    /// The redactor of the values added so far.
    pub(crate) fn snapshot(&self) -> Redactor {
        Redactor {
            inner: Arc::new(RedactorInner {
                raw: self.raw.clone(),
                forms: OnceLock::new(),
            }),
        }
    }
}

/// Every form of every value, longest first (so a value containing another is
/// replaced whole).
fn expand(raw: &[(String, bool)]) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    let mut push = |v: &str| {
        if v.len() >= MIN_SCRUBBED_LEN && !values.iter().any(|x| x == v) {
            values.push(v.to_string());
        }
    };
    let add = |value: &str, push: &mut dyn FnMut(&str)| {
        push(value);
        let url_encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        push(&url_encoded);
        push(&percent_encode_path(value));
        let debug = format!("{value:?}");
        push(debug.trim_start_matches('"').trim_end_matches('"'));
        if let Ok(json) = serde_json::to_string(value) {
            push(json.trim_start_matches('"').trim_end_matches('"'));
        }
    };
    for (value, with_words) in raw {
        add(value, &mut push);
        if *with_words {
            for word in value.split_whitespace() {
                add(word, &mut push);
            }
        }
    }
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values
}

fn percent_encode_path(value: &str) -> String {
    // What `url` does to a value placed in a path or query by a template.
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Redactor {
    /// `text` with every secret value replaced by `[redacted]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        if self.inner.raw.is_empty() {
            return out;
        }
        let forms = self.inner.forms.get_or_init(|| expand(&self.inner.raw));
        for v in forms {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_values() {
        let s = SecretMaterial {
            name: "creds".into(),
            type_: "kubernetes.io/basic-auth".into(),
            data: [("password".to_string(), "hunter2-SENTINEL".to_string())].into(),
        };
        let d = format!("{s:?}");
        assert!(d.contains("password") && d.contains("creds"));
        assert!(!d.contains("SENTINEL"), "{d}");
    }

    #[test]
    fn scrub_replaces_all_forms() {
        let mut b = RedactorBuilder::default();
        b.add("p@ss w\"rd");
        b.add("abc");
        let r = b.snapshot();
        assert_eq!(r.scrub("x p@ss w\"rd y"), "x [redacted] y");
        assert_eq!(r.scrub("q=p%40ss+w%22rd"), "q=[redacted]");
        assert_eq!(
            r.scrub("String(\"p@ss w\\\"rd\")"),
            "String(\"[redacted]\")"
        );
        // Too short to be scrubbed.
        assert_eq!(r.scrub("abc"), "abc");
    }
}
