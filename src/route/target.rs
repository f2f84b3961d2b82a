//! Where a request goes and where credentials may go (SPEC-proxy sections 2, 4, 6).

use url::Url;

use crate::api::{Connector, ParamValue};

/// The addresses credentials of a Connector may go to: `spec.address` and the string
/// values of `spec.addressExtensions` that are URLs.
#[derive(Clone, Debug, Default)]
pub struct ConnectorTargets {
    pub address: Option<Url>,
    pub extensions: Vec<(String, Url)>,
}

impl ConnectorTargets {
    pub fn of(connector: &Connector) -> Self {
        let address = connector
            .spec
            .address
            .as_deref()
            .and_then(|a| Url::parse(a).ok())
            .filter(|u| u.has_host());
        let extensions = connector
            .spec
            .address_extensions
            .iter()
            .flatten()
            .filter_map(|p| match &p.value {
                ParamValue::String(s) => Url::parse(s)
                    .ok()
                    .filter(|u| u.has_host())
                    .map(|u| (p.name.clone(), u)),
                _ => None,
            })
            .collect();
        ConnectorTargets {
            address,
            extensions,
        }
    }

    /// Whether credentials may go to `url`.
    pub fn allows(&self, url: &Url) -> bool {
        self.address
            .iter()
            .chain(self.extensions.iter().map(|(_, u)| u))
            .any(|allowed| target_allowed(allowed, url))
    }
}

/// `url` is within `allowed`: same scheme, host and port (default ports implied), and
/// a path under `allowed`'s path on a segment boundary (`/prefix` admits `/prefix` and
/// `/prefix/x`, never `/prefix-evil`; no path admits the whole origin).
pub fn target_allowed(allowed: &Url, url: &Url) -> bool {
    let same_origin = allowed.scheme().eq_ignore_ascii_case(url.scheme())
        && allowed.host_str().map(str::to_ascii_lowercase)
            == url.host_str().map(str::to_ascii_lowercase)
        && allowed.port_or_known_default() == url.port_or_known_default();
    if !same_origin {
        return false;
    }
    let prefix = allowed.path().trim_end_matches('/');
    let path = url.path();
    prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// The tool URL of a reverse-proxy request: `spec.address` (its path kept as a prefix)
/// joined with the rest of the request path (raw, still encoded) and the query.
pub fn join_target(address: &Url, rest: &str, query: Option<&str>) -> Result<Url, String> {
    let mut base = address.clone();
    base.set_query(None);
    base.set_fragment(None);
    let prefix = base.path().trim_end_matches('/').to_string();
    let rest = if rest.is_empty() || rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    let path = match (prefix.is_empty(), rest.is_empty()) {
        (true, true) => "/".to_string(),
        _ => format!("{prefix}{rest}"),
    };
    let origin = base.origin().ascii_serialization();
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Url::parse(&format!("{origin}{path}{query}")).map_err(|e| format!("target URL: {e}"))
}

/// A reverse-mode `Location` that points into `address` (absolute, or relative to the
/// tool) becomes the same place under `proxy_base`; any other is left as it is.
pub fn rewrite_location(location: &str, address: &Url, proxy_base: &str) -> Option<String> {
    let resolved = address.join(location).ok()?;
    if !target_allowed(address, &resolved) {
        return None;
    }
    let prefix = address.path().trim_end_matches('/');
    let rest = &resolved.path()[prefix.len()..];
    let query = resolved
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    Some(format!("{}{rest}{query}", proxy_base.trim_end_matches('/')))
}
