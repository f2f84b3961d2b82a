//! Address resolution of a class's `spec.api` / `spec.proxy` (SPEC section 2), and the
//! per-Connector proxy Service name and URL (SPEC section 3). Pure.

use sha2::{Digest, Sha256};

use crate::api::KReference;

/// What the resolver needs to know about a referenced Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub port: Option<i32>,
    pub name: Option<String>,
}

/// How a ref or uri resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    Resolved(String),
    Unresolved(String),
}

/// The Service a ref names, if it is a Service ref with a namespace.
pub fn service_key(reference: &KReference) -> Result<(String, String), String> {
    if reference.kind != "Service" {
        return Err(format!(
            "ref kind {:?} is not supported: only Service",
            reference.kind
        ));
    }
    match reference.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => Ok((ns.to_string(), reference.name.clone())),
        None => Err(format!(
            "ref to Service {:?} has no namespace: it is required because ConnectorClass is cluster-scoped",
            reference.name
        )),
    }
}

/// Resolves `field` (`spec.api` or `spec.proxy`) from its ref, uri and the looked-up
/// Service (`Some(None)`: the ref's Service does not exist; `None`: not looked up).
pub fn resolve(
    field: &str,
    reference: Option<&KReference>,
    uri: Option<&str>,
    service: Option<Option<&ServicePort>>,
    cluster_domain: &str,
) -> Resolution {
    let uri = uri.filter(|u| !u.is_empty());
    if let Some(absolute) = uri
        .and_then(|u| url::Url::parse(u).ok())
        .filter(|u| u.has_host())
    {
        return Resolution::Resolved(absolute.to_string().trim_end_matches('/').to_string());
    }
    let Some(reference) = reference else {
        return Resolution::Unresolved(match uri {
            Some(u) => format!("{field}.uri {u:?} is relative and {field}.ref is not set"),
            None => format!("neither {field}.ref nor {field}.uri is set"),
        });
    };
    let (namespace, name) = match service_key(reference) {
        Ok(key) => key,
        Err(why) => return Resolution::Unresolved(format!("{field}.{why}")),
    };
    let Some(Some(service)) = service else {
        return Resolution::Unresolved(format!(
            "Service {name} not found in namespace {namespace}"
        ));
    };
    let https = service.port == Some(443) || service.name.as_deref() == Some("https");
    let scheme = if https { "https" } else { "http" };
    let default_port = if https { 443 } else { 80 };
    let port = match service.port {
        Some(p) if p != default_port => format!(":{p}"),
        _ => String::new(),
    };
    let mut url = format!("{scheme}://{name}.{namespace}.svc.{cluster_domain}{port}");
    if let Some(relative) = uri {
        if !relative.starts_with('/') {
            url.push('/');
        }
        url.push_str(relative);
    }
    Resolution::Resolved(url)
}

/// Kubernetes Service names are DNS labels (<= 63, no dots); Connector names are DNS
/// subdomains. Dots become dashes; an over-long name is cut and given a stable hash.
pub fn proxy_service_name(connector_name: &str) -> String {
    const MAX: usize = 63;
    let name = format!("c-{}", connector_name.replace('.', "-"));
    if name.len() <= MAX {
        return name;
    }
    let digest = Sha256::digest(connector_name.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = MAX - hash.len() - 1;
    format!("{}-{hash}", name[..keep].trim_end_matches('-'))
}

/// `status.proxy.httpAddress.url` of a Connector.
pub fn connector_proxy_url(
    class_proxy_absolute_uri: Option<&str>,
    path_resolver: bool,
    service_name: &str,
    namespace: &str,
    connector_name: &str,
    cluster_domain: &str,
) -> String {
    let base = match class_proxy_absolute_uri {
        Some(uri) => uri.trim_end_matches('/').to_string(),
        None => format!("http://{service_name}.{namespace}.svc.{cluster_domain}"),
    };
    if path_resolver {
        format!("{base}/namespaces/{namespace}/connectors/{connector_name}")
    } else {
        base
    }
}

/// `status.api.path` of a Connector.
pub fn connector_api_path(namespace: &str, name: &str) -> String {
    format!("/connectors/v1alpha1/{namespace}/{name}/path")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc_ref(ns: Option<&str>) -> KReference {
        KReference {
            kind: "Service".into(),
            name: "api".into(),
            namespace: ns.map(Into::into),
            ..Default::default()
        }
    }

    fn port(port: i32, name: Option<&str>) -> ServicePort {
        ServicePort {
            port: Some(port),
            name: name.map(Into::into),
        }
    }

    #[test]
    fn service_ref_scheme_and_port_rules() {
        let r = svc_ref(Some("sys"));
        let cases = [
            (port(80, None), "http://api.sys.svc.cluster.local"),
            (port(443, None), "https://api.sys.svc.cluster.local"),
            (
                port(8443, Some("https")),
                "https://api.sys.svc.cluster.local:8443",
            ),
            (
                port(8080, Some("web")),
                "http://api.sys.svc.cluster.local:8080",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(
                resolve("spec.api", Some(&r), None, Some(Some(&p)), "cluster.local"),
                Resolution::Resolved(want.into())
            );
        }
    }

    #[test]
    fn uri_rules() {
        let r = svc_ref(Some("sys"));
        let p = port(80, None);
        assert_eq!(
            resolve(
                "spec.api",
                Some(&r),
                Some("/api"),
                Some(Some(&p)),
                "k.local"
            ),
            Resolution::Resolved("http://api.sys.svc.k.local/api".into())
        );
        assert_eq!(
            resolve(
                "spec.api",
                Some(&r),
                Some("https://ext.example.com/x/"),
                None,
                "k.local"
            ),
            Resolution::Resolved("https://ext.example.com/x".into())
        );
        assert!(
            matches!(resolve("spec.api", None, None, None, "k"), Resolution::Unresolved(m) if m == "neither spec.api.ref nor spec.api.uri is set")
        );
        assert!(
            matches!(resolve("spec.proxy", Some(&svc_ref(None)), None, None, "k"), Resolution::Unresolved(m) if m.contains("has no namespace"))
        );
        assert_eq!(
            resolve("spec.proxy", Some(&r), None, Some(None), "k"),
            Resolution::Unresolved("Service api not found in namespace sys".into())
        );
    }

    #[test]
    fn service_names_are_valid_dns_labels() {
        assert_eq!(proxy_service_name("github"), "c-github");
        assert_eq!(proxy_service_name("my.git.server"), "c-my-git-server");
        let long = "a".repeat(100) + ".b";
        let name = proxy_service_name(&long);
        assert_eq!(name.len(), 63);
        assert_eq!(name, proxy_service_name(&long), "stable");
        assert_ne!(
            name,
            proxy_service_name(&("a".repeat(100) + ".c")),
            "distinct"
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn proxy_urls() {
        assert_eq!(
            connector_proxy_url(None, false, "c-x", "ns", "x", "cluster.local"),
            "http://c-x.ns.svc.cluster.local"
        );
        assert_eq!(
            connector_proxy_url(None, true, "c-x", "ns", "x", "cluster.local"),
            "http://c-x.ns.svc.cluster.local/namespaces/ns/connectors/x"
        );
        assert_eq!(
            connector_proxy_url(
                Some("https://proxy.example.com/"),
                true,
                "c-x",
                "ns",
                "x",
                "cluster.local"
            ),
            "https://proxy.example.com/namespaces/ns/connectors/x"
        );
    }
}
