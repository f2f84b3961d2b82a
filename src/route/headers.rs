//! Header hygiene between client and tool (SPEC-proxy sections 4 and 6): hop-by-hop
//! headers and every name `Connection` lists go, so do the client's credentials and
//! every carrier of its token; injection comes after, so nothing a client sends can
//! remove or duplicate an injected header.

use http::{HeaderMap, HeaderName, header};

use super::token::Carrier;

/// Hop-by-hop headers (RFC 9110 section 7.6.1, plus the legacy `Proxy-Connection`).
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_listed(headers) {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Strips a request before injection: hop-by-hop and `Connection`-listed headers,
/// `Proxy-Authorization`, `Authorization`, `Host` (the tool's is set when sending), and
/// every header that carried the token. Returns the query without the token's
/// parameters when it changes.
pub fn strip_for_upstream(
    headers: &mut HeaderMap,
    query: Option<&str>,
    carriers: &[Carrier],
) -> Option<String> {
    remove_hop_by_hop(headers);
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
    let mut drop_keys = Vec::new();
    for carrier in carriers {
        match carrier {
            Carrier::Header(name) => {
                headers.remove(name);
            }
            Carrier::Query(key) => drop_keys.push(key.as_str()),
        }
    }
    let query = query?;
    if drop_keys.is_empty() {
        return None;
    }
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| !drop_keys.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Some(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .finish(),
    )
}

/// Strips a response's hop-by-hop headers before it goes back to the client.
pub fn strip_response_hop_by_hop(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}
