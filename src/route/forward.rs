//! Pure rules of the forward proxy (SPEC-proxy sections 2, 3, 5): who a
//! `Proxy-Authorization` names, the CONNECT authority, and whether an inner request
//! stays on it.

use super::token::basic_credentials;

/// A Connector named in `Proxy-Authorization`; no namespace means the token's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedConnector {
    pub namespace: Option<String>,
    pub name: String,
}

/// What `Proxy-Authorization: Basic base64("ns/name[,ns2/name2...]:token")` says.
/// `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    pub connectors: Vec<NamedConnector>,
    pub token: String,
}

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCredentials")
            .field("connectors", &self.connectors)
            .finish_non_exhaustive()
    }
}

/// Parses a `Proxy-Authorization` value: the user part is percent-decoded first
/// (`default%2Fsonar`), then split at commas; each item is `ns/name` or `name`.
/// `None` without a usable token or Connector.
pub fn proxy_credentials(value: &str) -> Option<ProxyCredentials> {
    let (user, token) = basic_credentials(value)?;
    let user = percent_decode(&user);
    let connectors: Vec<NamedConnector> = user
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('/') {
            Some((ns, name)) => NamedConnector {
                namespace: Some(ns.to_string()),
                name: name.to_string(),
            },
            None => NamedConnector {
                namespace: None,
                name: item.to_string(),
            },
        })
        .collect();
    let valid = !token.is_empty()
        && !connectors.is_empty()
        && connectors
            .iter()
            .all(|c| !c.name.is_empty() && c.namespace.as_deref() != Some(""));
    valid.then_some(ProxyCredentials { connectors, token })
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("k={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A CONNECT target: host (without brackets for IPv6) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// `host:port` (a port is required; `[v6]:port` for IPv6).
    pub fn parse(text: &str) -> Option<Authority> {
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then(|| Authority {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The `https://` origin of requests inside the tunnel.
    pub fn https_origin(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 443 {
            format!("https://{host}")
        } else {
            format!("https://{host}:{}", self.port)
        }
    }

    /// Whether an inner request's `Host` names this authority (no port = 443).
    pub fn matches_host(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once(']') {
                Some((name, tail)) => {
                    (name.to_string(), tail.strip_prefix(':').map(str::to_string))
                }
                None => return false,
            }
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) => (name.to_string(), Some(port.to_string())),
                None => (host.clone(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok(),
            None => Some(443),
        };
        name == self.host && port == Some(self.port)
    }

    /// Whether a TLS SNI name is this authority's host.
    pub fn matches_sni(&self, sni: &str) -> bool {
        sni.trim_end_matches('.').eq_ignore_ascii_case(&self.host)
    }
}
