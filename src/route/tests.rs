use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue};
use url::Url;

use super::*;

fn own() -> ProxyService {
    ProxyService {
        name: "connectors-proxy-service".into(),
        namespace: "connectors-system".into(),
        public_hosts: vec!["connectors.example.com".into()],
    }
}

fn index() -> ConnectorIndex {
    let mut index = ConnectorIndex::default();
    index.insert("team", "git");
    index.insert("team", "my.dotted.tool");
    index
}

#[test]
fn host_form_resolves_through_the_index_with_any_suffix_and_port() {
    let index = index();
    for host in [
        "c-git.team",
        "c-git.team.svc",
        "c-git.team.svc.cluster.local",
        "C-GIT.team.svc.cluster.local:80",
        "c-git.team.svc:8080",
    ] {
        let routed = route(host, "/org/repo.git/info/refs", &index, &own()).unwrap();
        assert_eq!(
            (routed.namespace.as_str(), routed.name.as_str()),
            ("team", "git"),
            "{host}"
        );
        assert_eq!(routed.rest, "/org/repo.git/info/refs");
        assert_eq!(routed.form, Form::Host);
    }
    let dotted = route("c-my-dotted-tool.team.svc", "/", &index, &own()).unwrap();
    assert_eq!(dotted.name, "my.dotted.tool");
}

#[test]
fn unknown_hosts_and_services_are_not_routed() {
    let index = index();
    for host in [
        "evil.example",
        "c-git.other-ns.svc",
        "c-nope.team.svc",
        "c-git.team.evil.example",
        "127.0.0.1:8080",
        "",
    ] {
        assert_eq!(route(host, "/x", &index, &own()), None, "{host}");
    }
}

#[test]
fn path_form_on_the_proxy_service_and_on_the_connector_service() {
    let index = index();
    let routed = route(
        "connectors-proxy-service.connectors-system.svc",
        "/namespaces/team/connectors/git/org/repo.git",
        &index,
        &own(),
    )
    .unwrap();
    assert_eq!(routed.rest, "/org/repo.git");
    assert_eq!(routed.form, Form::Path);
    let bare = route(
        "c-git.team",
        "/namespaces/team/connectors/git",
        &index,
        &own(),
    )
    .unwrap();
    assert_eq!((bare.rest.as_str(), bare.form), ("", Form::Path));
    // A published host name of the proxy serves the path form too.
    let public = route(
        "Connectors.example.com:443",
        "/namespaces/team/connectors/git/x",
        &index,
        &own(),
    )
    .unwrap();
    assert_eq!((public.name.as_str(), public.rest.as_str()), ("git", "/x"));
    // The proxy's own Service without the path form names no Connector.
    assert_eq!(
        route(
            "connectors-proxy-service.connectors-system",
            "/org",
            &index,
            &own()
        ),
        None
    );
    // A path naming another Connector on a Connector's Service is plain host form.
    let other = route("c-git.team", "/namespaces/x/connectors/y/z", &index, &own()).unwrap();
    assert_eq!((other.name.as_str(), other.form), ("git", Form::Host));
}

#[test]
fn index_remove_forgets_only_that_connector() {
    let mut index = index();
    index.remove("team", "git");
    assert_eq!(index.resolve_service("team", "c-git"), None);
    assert_eq!(
        index.resolve_service("team", "c-my-dotted-tool"),
        Some("my.dotted.tool")
    );
}

#[test]
fn targets_match_origin_and_path_prefix_on_a_segment_boundary() {
    let allowed = Url::parse("https://git.example/prefix").unwrap();
    let ok = |u: &str| target_allowed(&allowed, &Url::parse(u).unwrap());
    assert!(ok("https://git.example/prefix"));
    assert!(ok("https://git.example:443/prefix/repo"));
    assert!(ok("https://GIT.example/prefix/"));
    assert!(!ok("https://git.example/prefix-evil"));
    assert!(!ok("https://git.example/"));
    assert!(!ok("http://git.example/prefix/repo"));
    assert!(!ok("https://git.example:8443/prefix/repo"));
    assert!(!ok("https://evil.example/prefix/repo"));
    let origin = Url::parse("http://tool:8080").unwrap();
    assert!(target_allowed(
        &origin,
        &Url::parse("http://tool:8080/any/thing").unwrap()
    ));
}

#[test]
fn join_keeps_the_prefix_the_raw_path_and_the_query() {
    let address = Url::parse("https://git.example/gitlab/").unwrap();
    let url = join_target(&address, "/api/v4/projects/group%2Fproject", Some("a=1")).unwrap();
    assert_eq!(
        url.as_str(),
        "https://git.example/gitlab/api/v4/projects/group%2Fproject?a=1"
    );
    let root = Url::parse("http://tool:8080").unwrap();
    assert_eq!(
        join_target(&root, "", None).unwrap().as_str(),
        "http://tool:8080/"
    );
}

#[test]
fn locations_into_the_address_are_rewritten_others_kept() {
    let address = Url::parse("http://tool:8080/git").unwrap();
    let base = "http://c-git.team.svc";
    assert_eq!(
        rewrite_location("http://tool:8080/git/login?next=1", &address, base).as_deref(),
        Some("http://c-git.team.svc/login?next=1")
    );
    assert_eq!(
        rewrite_location("/git/x", &address, base).as_deref(),
        Some("http://c-git.team.svc/x")
    );
    assert_eq!(
        rewrite_location("https://other.example/x", &address, base),
        None
    );
    assert_eq!(
        rewrite_location("http://tool:8080/gitevil", &address, base),
        None
    );
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

#[test]
fn bearer_and_both_basic_shapes_give_the_token() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(
        token_from_authorization("Bearer abc.def").as_deref(),
        Some("abc.def")
    );
    assert_eq!(
        token_from_authorization("bearer abc").as_deref(),
        Some("abc")
    );
    assert_eq!(
        token_from_authorization(&format!("Basic {}", b64("anyone:abc"))).as_deref(),
        Some("abc")
    );
    assert_eq!(
        token_from_authorization(&format!("Basic {}", b64("abc"))).as_deref(),
        Some("abc")
    );
    assert_eq!(
        token_from_authorization(&format!("Basic {}", b64("user:"))),
        None
    );
    assert_eq!(token_from_authorization("Bearer "), None);
    assert_eq!(token_from_authorization("Digest x"), None);
}

#[test]
fn every_carrier_of_the_token_is_stripped_and_hop_by_hop_go() {
    let mut map = headers(&[
        ("authorization", "Bearer tok123"),
        ("private-token", "tok123"),
        ("connection", "keep-alive, X-Drop-Me"),
        ("x-drop-me", "1"),
        ("proxy-authorization", "Basic x"),
        ("host", "c-git.team"),
        ("accept", "*/*"),
    ]);
    let found = locate_token("tok123", &map, Some("private_token=tok123&page=2"));
    let query = strip_for_upstream(
        &mut map,
        Some("private_token=tok123&page=2"),
        &found.carriers,
    );
    assert_eq!(query.as_deref(), Some("page=2"));
    let names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, vec!["accept"]);
    assert!(!format!("{found:?}").contains("tok123"));
}

#[test]
fn flags_parse_known_true_false_and_report_the_rest() {
    let data: BTreeMap<String, String> = [
        ("enable-connector-proxy-permissions", "true"),
        ("enable-multi-connector", "false"),
        ("enable-something-else", "true"),
        ("enable-custom-ca-certs", "yes"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (flags, ignored) = parse_flags(&data);
    assert!(flags.proxy_permissions());
    assert!(!flags.multi_connector());
    assert!(!flags.get("enable-custom-ca-certs"));
    assert_eq!(
        ignored,
        vec!["enable-custom-ca-certs", "enable-something-else"]
    );
    assert_eq!(flags.all().len(), 7);
}

mod api {
    use http::Method;
    use serde_json::json;

    use crate::route::ConnectorTargets;
    use crate::route::api::*;

    #[test]
    fn api_paths_name_the_connector_and_keep_the_rest_raw() {
        let p =
            parse_api_path("/connectors/v1alpha1/team/gitlab/path/api/v4/projects/group%2Fproject")
                .unwrap();
        assert_eq!((p.namespace.as_str(), p.name.as_str()), ("team", "gitlab"));
        assert_eq!(p.rest, "/api/v4/projects/group%2Fproject");
        assert_eq!(
            parse_api_path("/connectors/v1alpha1/team/gitlab/path")
                .unwrap()
                .rest,
            ""
        );
        assert_eq!(
            parse_api_path("/connectors/v1alpha1/team/gitlab/other/x"),
            None
        );
        assert_eq!(parse_api_path("/connectors/v1alpha1/team"), None);
    }

    #[test]
    fn writes_pass_only_with_the_flag() {
        assert!(method_allowed(&Method::GET, false));
        assert!(method_allowed(&Method::OPTIONS, false));
        assert!(!method_allowed(&Method::POST, false));
        assert!(method_allowed(&Method::POST, true));
        assert!(!method_allowed(&Method::TRACE, true));
        assert_eq!(verb(&Method::HEAD), "get");
        assert_eq!(verb(&Method::PATCH), "patch");
    }

    fn openapi() -> serde_json::Value {
        json!({"paths": {
            "/api/v4/projects/{id}/repository/branches": {"get": {"x-provider-type": "api"}},
            "/api/v4/projects/{id}": {"get": {"x-provider-type": "proxy"}},
            "/api/v4/projects/starred": {"get": {"x-openapi-address": "web"}},
            "/api/v4/{kind}/starred": {"get": {}},
        }})
    }

    #[test]
    fn routing_matches_raw_segments_and_literals_win() {
        let spec = openapi();
        let op = match_operation(
            Some(&spec),
            &Method::GET,
            "/api/v4/projects/group%2Fproject/repository/branches",
        )
        .unwrap();
        assert_eq!(op.template, "/api/v4/projects/{id}/repository/branches");
        assert_eq!(op.provider, Provider::ClassApi);
        let starred =
            match_operation(Some(&spec), &Method::GET, "/api/v4/projects/starred").unwrap();
        assert_eq!(starred.template, "/api/v4/projects/starred");
        assert_eq!(starred.address.as_deref(), Some("web"));
        // A decoded slash would make two segments: the raw path keeps one.
        assert_eq!(
            match_operation(Some(&spec), &Method::GET, "/api/v4/projects/group/project")
                .map(|o| o.template),
            None
        );
        assert_eq!(
            match_operation(Some(&spec), &Method::POST, "/api/v4/projects/x"),
            None
        );
        assert_eq!(match_operation(None, &Method::GET, "/x"), None);
    }

    #[test]
    fn tool_bases_follow_x_openapi_address() {
        let connector: crate::api::Connector = serde_json::from_value(json!({
            "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector",
            "metadata": {"name": "c", "namespace": "n"},
            "spec": {"connectorClassName": "k", "address": "https://git.example/gitlab",
                     "addressExtensions": [{"name": "web", "value": "https://web.example"}]}
        }))
        .unwrap();
        let targets = ConnectorTargets::of(&connector);
        assert_eq!(
            tool_base(None, &targets).unwrap().as_str(),
            "https://git.example/gitlab"
        );
        assert_eq!(
            tool_base(Some("web"), &targets).unwrap().as_str(),
            "https://web.example/"
        );
        assert!(
            tool_base(Some("missing"), &targets)
                .unwrap_err()
                .0
                .contains("missing")
        );
        assert_eq!(
            tool_base(Some("https://git.example/gitlab/api"), &targets)
                .unwrap()
                .as_str(),
            "https://git.example/gitlab/api"
        );
        assert!(tool_base(Some("https://evil.example/"), &targets).is_err());
        assert_eq!(
            apis_subresources(
                "gitlab",
                Some(&Operation {
                    template: "/api/{id}".into(),
                    provider: Provider::Tool,
                    address: None
                })
            ),
            vec![
                "apis/gitlab/api/{id}".to_string(),
                "apis/gitlab".to_string()
            ]
        );
    }
}

mod forward {
    use base64::Engine as _;

    use crate::route::forward::*;

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn proxy_authorization_names_connectors_and_carries_the_token() {
        let c = proxy_credentials(&basic("default%2Fsonar,team/git,nexus:tok.en")).unwrap();
        assert_eq!(c.token, "tok.en");
        assert_eq!(
            c.connectors,
            vec![
                NamedConnector {
                    namespace: Some("default".into()),
                    name: "sonar".into()
                },
                NamedConnector {
                    namespace: Some("team".into()),
                    name: "git".into()
                },
                NamedConnector {
                    namespace: None,
                    name: "nexus".into()
                },
            ]
        );
        assert!(!format!("{c:?}").contains("tok.en"));
        assert_eq!(proxy_credentials(&basic("git:")), None);
        assert_eq!(proxy_credentials(&basic(":token")), None);
        assert_eq!(proxy_credentials(&basic("/git:token")), None);
        assert_eq!(proxy_credentials("Bearer x"), None);
    }

    #[test]
    fn authorities_and_inner_hosts() {
        let a = Authority::parse("Git.Example:8443").unwrap();
        assert_eq!(a.https_origin(), "https://git.example:8443");
        assert!(a.matches_host("git.example:8443"));
        assert!(!a.matches_host("git.example"));
        assert!(!a.matches_host("evil.example:8443"));
        let std = Authority::parse("git.example:443").unwrap();
        assert!(std.matches_host("git.example") && std.matches_host("git.example:443"));
        assert_eq!(std.https_origin(), "https://git.example");
        let v6 = Authority::parse("[::1]:6443").unwrap();
        assert_eq!(v6.host, "::1");
        assert!(v6.matches_host("[::1]:6443"));
        assert_eq!(v6.https_origin(), "https://[::1]:6443");
        assert!(a.matches_sni("git.example") && !a.matches_sni("evil.example"));
        assert_eq!(Authority::parse("no-port"), None);
    }
}
