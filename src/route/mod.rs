//! Pure rules of a proxied request (SPEC-proxy.md sections 2-4 and 6): which Connector
//! a request is for, where the token is, which headers go, where credentials may go,
//! how a redirect is rewritten, and the feature flags. No I/O: the proxy process
//! (`proxy/`) observes, asks these rules, and sends.

pub mod api;
mod flags;
pub mod forward;
mod headers;
mod index;
mod target;
mod token;

#[cfg(test)]
mod tests;

pub use flags::FLAG_KEYS;
pub use flags::{Flags, parse_flags};
pub use headers::{HOP_BY_HOP, strip_for_upstream, strip_response_hop_by_hop};
pub use index::ConnectorIndex;
pub use target::{ConnectorTargets, join_target, rewrite_location, target_allowed};
pub use token::{Carrier, Found, basic_credentials, locate_token, token_from_authorization};

/// How a request named its Connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Form {
    /// `Host: c-{service}.{ns}[.svc[.domain]]`.
    Host,
    /// `/namespaces/{ns}/connectors/{name}/...`.
    Path,
}

/// The Connector a request is for, and the rest of its path (raw, still encoded,
/// starting with `/` or empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    pub namespace: String,
    pub name: String,
    pub rest: String,
    pub form: Form,
}

/// What the `Host` header names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostNames {
    /// A per-Connector Service `c-...` in a namespace.
    ConnectorService {
        namespace: String,
        service: String,
    },
    /// The proxy's own Service.
    Proxy,
    Other,
}

/// The proxy's own names, so path-form requests may name it in `Host`: its Service,
/// and the host names it is published under (a class's absolute `spec.proxy.uri`,
/// e.g. an Ingress), without port.
#[derive(Clone, Debug, Default)]
pub struct ProxyService {
    pub name: String,
    pub namespace: String,
    pub public_hosts: Vec<String>,
}

fn host_names(host: &str, own: &ProxyService) -> HostNames {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let without_port = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host,
    };
    if own
        .public_hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&without_port))
    {
        return HostNames::Proxy;
    }
    let labels: Vec<&str> = without_port.split('.').collect();
    let (Some(first), Some(namespace)) = (labels.first(), labels.get(1)) else {
        return if labels.first() == Some(&own.name.as_str()) {
            HostNames::Proxy
        } else {
            HostNames::Other
        };
    };
    // Only `.svc` and `.svc.{cluster domain}` may follow the namespace.
    if labels.len() > 2 && labels[2] != "svc" {
        return HostNames::Other;
    }
    if *first == own.name && *namespace == own.namespace {
        HostNames::Proxy
    } else if first.starts_with("c-") {
        HostNames::ConnectorService {
            namespace: namespace.to_string(),
            service: first.to_string(),
        }
    } else {
        HostNames::Other
    }
}

/// `/namespaces/{ns}/connectors/{name}{rest}` -> (ns, name, rest).
fn path_form(path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix("/namespaces/")?;
    let (namespace, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("connectors/")?;
    let (name, rest) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if namespace.is_empty() || name.is_empty() {
        return None;
    }
    Some((namespace.to_string(), name.to_string(), rest.to_string()))
}

/// Which Connector a reverse-proxy request is for (SPEC-proxy section 2): by `Host`
/// through the index of cached Connectors, or by the path form (on a Connector's
/// Service or on the proxy's own). `None` is a `404`. Whether the class wants the
/// form used is checked once the class is known.
pub fn route(host: &str, path: &str, index: &ConnectorIndex, own: &ProxyService) -> Option<Routed> {
    match host_names(host, own) {
        HostNames::ConnectorService { namespace, service } => {
            let name = index.resolve_service(&namespace, &service)?;
            if let Some((ns, n, rest)) = path_form(path)
                && ns == namespace
                && n == name
            {
                return Some(Routed {
                    namespace,
                    name: name.to_string(),
                    rest,
                    form: Form::Path,
                });
            }
            Some(Routed {
                name: name.to_string(),
                namespace,
                rest: path.to_string(),
                form: Form::Host,
            })
        }
        HostNames::Proxy => {
            let (namespace, name, rest) = path_form(path)?;
            Some(Routed {
                namespace,
                name,
                rest,
                form: Form::Path,
            })
        }
        HostNames::Other => None,
    }
}
