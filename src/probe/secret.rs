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
/// injected credentials, the output of every template that reads `.Secret`).
/// Scrubbing replaces them in every form they are sent in or may take in a message:
/// as is; as the URL parser writes them into a path, a query or a fragment (it keeps
/// `[ ] | ^ '` in a path, turns `\` into `/`, ...); percent-encoded the ways
/// templates and encoders do (`urlquery`, form encoding, strict RFC 3986, either hex
/// case); base64 (standard and URL alphabets, padded or not, and the part that shows
/// inside a longer base64 text at any alignment); escaped the way `Debug` and JSON
/// escape them. Those forms are computed on the first scrub only (messages are rare;
/// requests are not). Cheap to clone.
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

/// Base64 text shorter than this (inside a longer base64 text) is not scrubbed: too
/// likely to match by chance.
const MIN_BASE64_CORE: usize = 8;

/// Every form of every value, longest first (so a value containing another is
/// replaced whole).
fn expand(raw: &[(String, bool)]) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for (value, with_words) in raw {
        add_forms(value, &mut values);
        if *with_words {
            for word in value.split_whitespace() {
                add_forms(word, &mut values);
            }
        }
    }
    values.retain(|v| v.len() >= MIN_SCRUBBED_LEN);
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
    values
}

/// The forms of one value (see [`Redactor`]).
fn add_forms(value: &str, out: &mut Vec<String>) {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut encoded: Vec<String> = vec![value.to_string()];
    encoded.extend(url_forms(value));
    encoded.push(url::form_urlencoded::byte_serialize(value.as_bytes()).collect());
    encoded.push(percent_encode(value, b"-._~", true));
    encoded.push(percent_encode(value, b"-._~", false));
    encoded.push(percent_encode(value, b"-._~!$&'()*+,;=:@/", false));
    // Hex digits in lower case, as some encoders write them.
    let lower: Vec<String> = encoded
        .iter()
        .filter(|f| f.contains('%'))
        .map(|f| lower_hex_escapes(f))
        .collect();
    encoded.extend(lower);
    for f in &encoded {
        let debug = format!("{f:?}");
        out.push(
            debug
                .trim_start_matches('"')
                .trim_end_matches('"')
                .to_string(),
        );
        if let Ok(json) = serde_json::to_string(f) {
            out.push(
                json.trim_start_matches('"')
                    .trim_end_matches('"')
                    .to_string(),
            );
        }
    }
    out.extend(encoded);
    // Base64, whole, and the part that shows at each alignment inside a longer base64
    // text (`printf "%s:%s" user pass | b64enc`); also of the base64 text itself
    // (base64 of JSON holding base64 values, as X-Plugin-Secret).
    let once = STANDARD.encode(value);
    for bytes in [value.as_bytes(), once.as_bytes()] {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            let whole = engine.encode(bytes);
            out.extend(url_forms(&whole));
            out.push(url::form_urlencoded::byte_serialize(whole.as_bytes()).collect());
            out.push(whole);
        }
        for shift in 0..3usize {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(bytes);
            let text = STANDARD_NO_PAD.encode(&shifted);
            // Characters that depend on bytes before or after the value are dropped:
            // the first group when shifted, the last one when partial.
            let skip = if shift > 0 { 4 } else { 0 };
            let full = shifted.len() / 3 * 4;
            if full > skip && full - skip >= MIN_BASE64_CORE {
                let core = &text[skip..full];
                out.push(core.to_string());
                out.push(core.replace('+', "-").replace('/', "_"));
                out.push(url::form_urlencoded::byte_serialize(core.as_bytes()).collect());
            }
        }
    }
}

/// How the URL parser writes `value` into a path (from its start, or after a
/// segment), a query and a fragment: the parser percent-encodes fewer characters than
/// a percent-encoder, turns `\` into `/` and resolves dot segments. For a value that
/// carries `?` or `#`, the parts after them are written as the query or fragment.
fn url_forms(value: &str) -> Vec<String> {
    const BASE: &str = "http://redacted.invalid";
    let mut out = Vec::new();
    let tail = |u: &url::Url| u[url::Position::BeforePath..].to_string();
    if let Ok(u) = url::Url::parse(&format!("{BASE}/{}", value.trim_start_matches('/'))) {
        let t = tail(&u);
        if value.starts_with('/') {
            out.push(t);
        } else {
            out.push(t.trim_start_matches('/').to_string());
        }
    }
    if let Ok(u) = url::Url::parse(&format!("{BASE}/?{value}")) {
        out.push(
            u[url::Position::AfterPath..]
                .trim_start_matches('?')
                .to_string(),
        );
    }
    if let Ok(u) = url::Url::parse(&format!("{BASE}/#{value}")) {
        out.push(u.fragment().unwrap_or_default().to_string());
    }
    out
}

/// Percent-encodes every byte but ASCII alphanumerics and `keep`; a space as `+` when
/// `space_plus` (Go's `url.QueryEscape`, the template function `urlquery`).
fn percent_encode(value: &str, keep: &[u8], space_plus: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else if b == b' ' && space_plus {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn lower_hex_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for _ in 0..2 {
                if let Some(h) = chars.next() {
                    out.push(h.to_ascii_lowercase());
                }
            }
        }
    }
    out
}

/// Condition messages are at most this many bytes (SPEC section 4).
pub(crate) const MAX_MESSAGE_BYTES: usize = 1024;

/// What ends a message that was cut.
const CUT_MARK: &str = " …";

/// `text` cut to at most [`MAX_MESSAGE_BYTES`] on a character boundary, with a mark
/// when cut. A cut never leaves half of a `[redacted]` marker.
pub(crate) fn cut_message(text: &str) -> String {
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES - CUT_MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut kept = &text[..end];
    // A marker cut in two reads as a secret that was cut: drop its start.
    if let Some(open) = kept.rfind('[')
        && kept.len() - open < REDACTED.len()
        && REDACTED.starts_with(&kept[open..])
    {
        kept = &kept[..open];
    }
    format!("{kept}{CUT_MARK}")
}

impl Redactor {
    /// `text` with every secret value replaced by `[redacted]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        if self.inner.raw.is_empty() {
            return out;
        }
        for v in self.forms() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }

    fn forms(&self) -> &[String] {
        self.inner.forms.get_or_init(|| expand(&self.inner.raw))
    }

    /// A message fit for a condition: scrubbed whole (so no secret form that spans the
    /// cut survives as a piece), cut to [`MAX_MESSAGE_BYTES`], and scrubbed again after
    /// the cut, which also hides a trailing piece of a secret form that the cut left
    /// (a form the text held only in part).
    pub(crate) fn bounded(&self, text: &str) -> String {
        let scrubbed = self.scrub(text);
        if scrubbed.len() <= MAX_MESSAGE_BYTES {
            return scrubbed;
        }
        let cut = cut_message(&scrubbed);
        let body = cut.strip_suffix(CUT_MARK).unwrap_or(&cut);
        let mut body = self.scrub(body);
        if let Some(start) = self.trailing_piece(&body) {
            body.truncate(start);
            body.push_str(REDACTED);
        }
        cut_message(&format!("{body}{CUT_MARK}"))
    }

    /// Where `text` ends with the start (at least 4 bytes) of a secret form.
    fn trailing_piece(&self, text: &str) -> Option<usize> {
        if self.inner.raw.is_empty() {
            return None;
        }
        let mut found: Option<usize> = None;
        for form in self.forms() {
            let longest = form.len().min(text.len());
            for len in (MIN_SCRUBBED_LEN..=longest).rev() {
                if !form.is_char_boundary(len) {
                    continue;
                }
                if text.ends_with(&form[..len]) {
                    let start = text.len() - len;
                    found = Some(found.map_or(start, |f: usize| f.min(start)));
                    break;
                }
            }
        }
        found
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

    /// Forms the URL parser and the template functions produce, which a plain
    /// percent-encoder does not.
    #[test]
    fn scrub_replaces_sent_forms() {
        use base64::Engine as _;
        let value = "Tk9 [x]|y\\z^{w}'q";
        let mut b = RedactorBuilder::default();
        b.add(value);
        let r = b.snapshot();
        let mut url = url::Url::parse("http://h/a/").unwrap();
        url.set_path(&format!("/a/{value}/b"));
        url.set_query(Some(&format!("k={value}")));
        let scrubbed = r.scrub(url.as_str());
        assert!(!scrubbed.contains("Tk9"), "{url} -> {scrubbed}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{value}"));
        let scrubbed = r.scrub(&format!("auth {b64} end"));
        assert!(!scrubbed.contains(&b64[8..20]), "{b64} -> {scrubbed}");
    }

    /// A secret that spans the cut leaves no piece in the message, and the message
    /// fits 1 KiB, cut on a character boundary.
    #[test]
    fn bounded_cuts_after_scrubbing() {
        let secret = "Wx5-9f8e7d6c5b4a3-the-secret";
        let mut b = RedactorBuilder::default();
        b.add(secret);
        let r = b.snapshot();
        for pad in 990..1030 {
            let text = format!(
                "{}{secret} and more",
                "é".repeat(pad / 2) + &"x".repeat(pad % 2)
            );
            let out = r.bounded(&text);
            assert!(out.len() <= MAX_MESSAGE_BYTES, "{}", out.len());
            assert!(!out.contains("Wx5-"), "{pad}: {out}");
        }
        // A text that holds only the start of a form, cut right after it.
        let text = format!("{}Wx5-9f8e7d6c5b4a3{}", "y".repeat(1005), "z".repeat(100));
        let out = r.bounded(&text);
        assert!(!out.contains("Wx5-9f8e"), "{out}");
        assert!(out.len() <= MAX_MESSAGE_BYTES);
        // Short texts are only scrubbed.
        assert_eq!(r.bounded(&format!("a {secret} b")), "a [redacted] b");
    }
}
