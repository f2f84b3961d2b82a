//! Rules for Dex `Connector` objects (SPEC-identity sections 1, 2: `ConfigValid`),
//! shared by the admission webhook, the identity controller and `check`. Pure.
//!
//! No message names a value of `bindPW` or `clientSecret`: parse errors of the typed
//! views are scrubbed of the offending value ([`scrub_serde`]).

use serde_json::{Map, Value};

use crate::api::dex::{
    ConfigSource, DexConnector, GroupSearch, LdapConfig, OidcConfig, SecretKeyRef, UserSearch,
};
use crate::types::FieldError;

use super::connector::is_object_name;

/// The longest `id` and `name` Dex accepts.
pub const MAX_ID_LEN: usize = 32;

/// What kind of identity provider a Connector is, with its typed config.
#[derive(Clone, Debug, PartialEq)]
pub enum IdpKind {
    Ldap(Box<LdapConfig>),
    Oidc(Box<OidcConfig>),
    /// Any other `type` (github, saml, ...): accepted and left alone.
    Unsupported(String),
}

/// The verdict on one Connector: its kind (when the config could be read), field
/// errors (refused at admission, `ConfigValid` False), warnings (admitted, reported).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdpValidation {
    pub kind: Option<IdpKind>,
    pub errors: Vec<FieldError>,
    pub warnings: Vec<FieldError>,
    /// `bindPW` or `clientSecret` given inline (used, and reported).
    pub inline_secret: bool,
}

/// Judges a Dex Connector: top-level fields, then the config of its type.
pub fn validate_dex(connector: &DexConnector) -> IdpValidation {
    let mut out = IdpValidation::default();
    top_level_errors(connector, &mut out.errors);
    let Some(type_) = connector.type_.as_deref().filter(|t| !t.is_empty()) else {
        out.errors.push(FieldError::new("type", "Required value"));
        return out;
    };
    if type_ != "ldap" && type_ != "oidc" {
        out.kind = Some(IdpKind::Unsupported(type_.to_string()));
        return out;
    }
    let (path, config) = match connector.config_source() {
        ConfigSource::Spec(map) => ("spec.config", map),
        ConfigSource::Legacy(map) => ("config", map),
        ConfigSource::Missing => {
            out.errors.push(FieldError::new(
                "spec.config",
                "Required value: spec.config (or the deprecated config) holds the connector's configuration",
            ));
            return out;
        }
        ConfigSource::Undecodable(why) => {
            out.errors.push(FieldError::new("config", why));
            return out;
        }
    };
    if type_ == "ldap" {
        match typed::<LdapConfig>(path, config) {
            Ok(ldap) => {
                ldap_rules(path, &ldap, &mut out);
                out.kind = Some(IdpKind::Ldap(Box::new(ldap)));
            }
            Err(e) => out.errors.push(e),
        }
    } else {
        match typed::<OidcConfig>(path, config) {
            Ok(oidc) => {
                oidc_rules(path, &oidc, &mut out);
                out.kind = Some(IdpKind::Oidc(Box::new(oidc)));
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

fn top_level_errors(connector: &DexConnector, errors: &mut Vec<FieldError>) {
    let object_name = connector.metadata.name.as_deref().unwrap_or_default();
    match connector.id.as_deref().filter(|i| !i.is_empty()) {
        None => errors.push(FieldError::new("id", "Required value")),
        Some(id) if id.chars().count() > MAX_ID_LEN => errors.push(FieldError::new(
            "id",
            format!("must be at most {MAX_ID_LEN} characters"),
        )),
        Some(id) if !object_name.is_empty() && id != object_name => errors.push(FieldError::new(
            "id",
            format!("{id:?} must equal metadata.name {object_name:?}"),
        )),
        Some(_) => {}
    }
    if connector
        .name
        .as_deref()
        .is_some_and(|n| n.chars().count() > MAX_ID_LEN)
    {
        errors.push(FieldError::new(
            "name",
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
}

/// The typed view of a config object; a type mismatch is reported without the value.
fn typed<T: serde::de::DeserializeOwned>(
    path: &str,
    config: Map<String, Value>,
) -> Result<T, FieldError> {
    serde_json::from_value(Value::Object(config))
        .map_err(|e| FieldError::new(path, scrub_serde(&e.to_string())))
}

/// serde's message without the value it quotes (`invalid type: string "..."`).
pub fn scrub_serde(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(at) = message.find(marker) {
            let expected = message[at..]
                .find(", expected ")
                .map(|e| &message[at + e + 2..])
                .unwrap_or("");
            return format!("{}a value of the wrong type, {expected}", &message[..at]);
        }
    }
    message.to_string()
}

fn required(errors: &mut Vec<FieldError>, path: String, value: Option<&str>) {
    if value.is_none_or(|v| v.trim().is_empty()) {
        errors.push(FieldError::new(path, "Required value"));
    }
}

fn ldap_rules(path: &str, ldap: &LdapConfig, out: &mut IdpValidation) {
    let errors = &mut out.errors;
    match ldap.host.as_deref().filter(|h| !h.is_empty()) {
        None => errors.push(FieldError::new(format!("{path}.host"), "Required value")),
        Some(host) => {
            if let Err(why) = split_host_port(host, ldap.default_port()) {
                errors.push(FieldError::new(format!("{path}.host"), why));
            }
        }
    }
    if let Some(data) = ldap.root_ca_data.as_deref()
        && decode_root_ca_data(data).is_none()
    {
        errors.push(FieldError::new(
            format!("{path}.rootCAData"),
            "must be base64 of PEM certificates",
        ));
    }
    secret_rules(
        path,
        ("bindPW", ldap.bind_pw.as_deref()),
        ("bindPWRef", ldap.bind_pw_ref.as_ref()),
        ldap.bind_dn.as_deref().is_some_and(|d| !d.is_empty()),
        out,
    );
    user_search_rules(path, ldap.user_search.as_ref(), &mut out.errors);
    if let Some(gs) = &ldap.group_search {
        group_search_rules(&format!("{path}.groupSearch"), gs, &mut out.errors);
    }
    if ldap.insecure_skip_verify {
        out.warnings.push(FieldError::new(
            format!("{path}.insecureSkipVerify"),
            "the server's certificate is not verified",
        ));
    }
    if ldap.insecure_no_ssl && !ldap.start_tls {
        out.warnings.push(FieldError::new(
            format!("{path}.insecureNoSSL"),
            "the bind password and user passwords travel in clear text",
        ));
    }
}

fn user_search_rules(path: &str, user_search: Option<&UserSearch>, errors: &mut Vec<FieldError>) {
    match user_search {
        None => errors.push(FieldError::new(
            format!("{path}.userSearch"),
            "Required value",
        )),
        Some(us) => {
            let p = format!("{path}.userSearch");
            required(errors, format!("{p}.baseDN"), us.base_dn.as_deref());
            required(errors, format!("{p}.username"), us.username.as_deref());
            required(errors, format!("{p}.idAttr"), us.id_attr.as_deref());
            required(errors, format!("{p}.emailAttr"), us.email_attr.as_deref());
            filter_rule(errors, &p, us.filter.as_deref());
            scope_rule(errors, &p, us.scope.as_deref());
            for (field, value) in [
                ("username", &us.username),
                ("idAttr", &us.id_attr),
                ("emailAttr", &us.email_attr),
                ("nameAttr", &us.name_attr),
                ("preferredUsernameAttr", &us.preferred_username_attr),
            ] {
                attribute_rule(errors, format!("{p}.{field}"), value.as_deref());
            }
        }
    }
}

fn group_search_rules(p: &str, gs: &GroupSearch, errors: &mut Vec<FieldError>) {
    required(errors, format!("{p}.baseDN"), gs.base_dn.as_deref());
    required(errors, format!("{p}.nameAttr"), gs.name_attr.as_deref());
    filter_rule(errors, p, gs.filter.as_deref());
    scope_rule(errors, p, gs.scope.as_deref());
    attribute_rule(errors, format!("{p}.nameAttr"), gs.name_attr.as_deref());
    if gs.user_matchers.is_empty() {
        errors.push(FieldError::new(
            format!("{p}.userMatchers"),
            "Required value: at least one {userAttr, groupAttr}",
        ));
    }
    for (i, m) in gs.user_matchers.iter().enumerate() {
        let m_path = format!("{p}.userMatchers[{i}]");
        required(errors, format!("{m_path}.userAttr"), m.user_attr.as_deref());
        required(
            errors,
            format!("{m_path}.groupAttr"),
            m.group_attr.as_deref(),
        );
        attribute_rule(errors, format!("{m_path}.userAttr"), m.user_attr.as_deref());
        attribute_rule(
            errors,
            format!("{m_path}.groupAttr"),
            m.group_attr.as_deref(),
        );
    }
}

/// An inline secret field and its `...Ref` counterpart: exactly one when `needed`.
fn secret_rules(
    path: &str,
    (inline_name, inline): (&str, Option<&str>),
    (ref_name, reference): (&str, Option<&SecretKeyRef>),
    needed: bool,
    out: &mut IdpValidation,
) {
    let inline = inline.filter(|v| !v.is_empty());
    match (inline, reference) {
        (Some(_), Some(_)) => out.errors.push(FieldError::new(
            format!("{path}.{ref_name}"),
            format!("set {inline_name} or {ref_name}, not both"),
        )),
        (Some(_), None) => {
            out.inline_secret = true;
            out.warnings.push(FieldError::new(
                format!("{path}.{inline_name}"),
                format!(
                    "the secret is stored in the object: move it to a Secret and use {ref_name}"
                ),
            ));
        }
        (None, Some(r)) => {
            if !is_object_name(&r.name) {
                out.errors.push(FieldError::new(
                    format!("{path}.{ref_name}.name"),
                    "must be the name of a Secret in the Connector's namespace",
                ));
            }
            if r.key.is_empty()
                || !r
                    .key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
            {
                out.errors.push(FieldError::new(
                    format!("{path}.{ref_name}.key"),
                    "must be a Secret key (letters, digits, '-', '_', '.')",
                ));
            }
        }
        (None, None) if needed => out.errors.push(FieldError::new(
            format!("{path}.{ref_name}"),
            format!("Required value: {inline_name} or {ref_name}"),
        )),
        (None, None) => {}
    }
}

fn filter_rule(errors: &mut Vec<FieldError>, path: &str, filter: Option<&str>) {
    let Some(filter) = filter.filter(|f| !f.is_empty()) else {
        return;
    };
    if !filter.starts_with('(') || ldap3::parse_filter(filter).is_err() {
        errors.push(FieldError::new(
            format!("{path}.filter"),
            format!(
                "{filter:?} is not a valid LDAP filter (RFC 4515, e.g. \"(objectClass=person)\")"
            ),
        ));
    }
}

/// An attribute description (RFC 4512: a name or an OID, with `;options`): the only
/// form that may be placed in a search filter, so no attribute injects filter syntax.
pub fn is_attribute_name(name: &str) -> bool {
    let mut parts = name.split(';');
    let base = parts.next().unwrap_or_default();
    let keystring = base.starts_with(|c: char| c.is_ascii_alphabetic())
        && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid = !base.is_empty()
        && base
            .split('.')
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    (keystring || oid)
        && parts.all(|o| !o.is_empty() && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

fn attribute_rule(errors: &mut Vec<FieldError>, path: String, value: Option<&str>) {
    if let Some(v) = value.filter(|v| !v.is_empty() && !is_attribute_name(v)) {
        errors.push(FieldError::new(
            path,
            format!("{v:?} is not an LDAP attribute name"),
        ));
    }
}

fn scope_rule(errors: &mut Vec<FieldError>, path: &str, scope: Option<&str>) {
    if let Some(scope) = scope.filter(|s| !s.is_empty() && *s != "sub" && *s != "one") {
        errors.push(FieldError::new(
            format!("{path}.scope"),
            format!("Unsupported value: {scope:?}: supported values: \"sub\", \"one\""),
        ));
    }
}

/// `host`, `host:port` or `[v6]:port` as Dex reads it, with Dex's default port.
pub fn split_host_port(host: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || format!("{host:?} is not host or host:port");
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
        inner.parse::<core::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => (inner.to_string(), None),
            p => (
                inner.to_string(),
                Some(p.strip_prefix(':').ok_or_else(bad)?),
            ),
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (host.to_string(), None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
    };
    let valid_name = !name.is_empty()
        && name.len() <= 253
        && (name.contains(':')
            || name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if valid_name {
        Ok((name, port))
    } else {
        Err(bad())
    }
}

/// PEM bytes of `rootCAData` (base64 of PEM, as Dex reads it), if it decodes to PEM.
pub fn decode_root_ca_data(data: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    bytes
        .windows(11)
        .any(|w| w == b"-----BEGIN ")
        .then_some(bytes)
}

fn oidc_rules(path: &str, oidc: &OidcConfig, out: &mut IdpValidation) {
    match oidc.issuer.as_deref().filter(|i| !i.is_empty()) {
        None => out
            .errors
            .push(FieldError::new(format!("{path}.issuer"), "Required value")),
        Some(issuer) => {
            if let Err(why) = issuer_rule(issuer) {
                out.errors
                    .push(FieldError::new(format!("{path}.issuer"), why));
            }
        }
    }
    required(
        &mut out.errors,
        format!("{path}.clientID"),
        oidc.client_id.as_deref(),
    );
    if let Some(uri) = oidc.redirect_uri.as_deref().filter(|u| !u.is_empty())
        && url::Url::parse(uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .is_none()
    {
        out.errors.push(FieldError::new(
            format!("{path}.redirectURI"),
            format!("{uri:?} is not an absolute http or https URL"),
        ));
    }
    secret_rules(
        path,
        ("clientSecret", oidc.client_secret.as_deref()),
        ("clientSecretRef", oidc.client_secret_ref.as_ref()),
        true,
        out,
    );
    if oidc.insecure_skip_verify {
        out.warnings.push(FieldError::new(
            format!("{path}.insecureSkipVerify"),
            "the issuer's certificate is not verified",
        ));
    }
}

/// The issuer: an absolute https URL (http only for a loopback host), no query or
/// fragment.
pub fn issuer_rule(issuer: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(issuer).map_err(|_| format!("{issuer:?} is not an absolute URL"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<core::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" if !host.is_empty() => {}
        "http" if loopback => {}
        "http" => return Err(format!("{issuer:?} must be https (http only on loopback)")),
        _ => return Err(format!("{issuer:?} is not an absolute https URL")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{issuer:?} must have no query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn dex(value: Value) -> DexConnector {
        serde_json::from_value(value).unwrap()
    }

    fn ldap(config: Value) -> DexConnector {
        dex(json!({
            "metadata": {"name": "corp-ldap", "namespace": "cpaas-system"},
            "id": "corp-ldap", "name": "Corp LDAP", "type": "ldap",
            "spec": {"config": config},
        }))
    }

    fn good_ldap() -> Value {
        json!({
            "host": "ldap.example.org:636",
            "bindDN": "cn=admin,dc=example,dc=org",
            "bindPWRef": {"name": "ldap-bind", "key": "password"},
            "userSearch": {
                "baseDN": "ou=people,dc=example,dc=org",
                "filter": "(objectClass=person)",
                "username": "uid", "idAttr": "uid", "emailAttr": "mail",
                "nameAttr": "cn", "scope": "sub",
            },
            "groupSearch": {
                "baseDN": "ou=groups,dc=example,dc=org",
                "filter": "(objectClass=groupOfNames)",
                "userMatchers": [{"userAttr": "DN", "groupAttr": "member"}],
                "nameAttr": "cn",
            },
        })
    }

    fn paths(v: &IdpValidation) -> Vec<&str> {
        v.errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn a_good_ldap_config_is_valid() {
        let v = validate_dex(&ldap(good_ldap()));
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        assert!(v.warnings.is_empty());
        assert!(matches!(v.kind, Some(IdpKind::Ldap(_))));
    }

    #[test]
    fn id_must_equal_the_name_and_be_short() {
        let mut c = ldap(good_ldap());
        c.id = Some("other".into());
        assert_eq!(paths(&validate_dex(&c)), ["id"]);
        c.id = None;
        assert_eq!(paths(&validate_dex(&c)), ["id"]);
        c.id = Some("corp-ldap".into());
        c.name = Some("x".repeat(33));
        assert_eq!(paths(&validate_dex(&c)), ["name"]);
    }

    #[test]
    fn filters_scopes_and_hosts_are_checked() {
        let mut config = good_ldap();
        config["userSearch"]["filter"] = json!("(objectClass=person");
        config["groupSearch"]["scope"] = json!("base");
        config["host"] = json!("ldap.example.org:99999");
        let v = validate_dex(&ldap(config));
        assert_eq!(
            paths(&v),
            [
                "spec.config.host",
                "spec.config.userSearch.filter",
                "spec.config.groupSearch.scope"
            ]
        );
    }

    #[test]
    fn inline_password_is_a_warning_and_never_echoed() {
        let mut config = good_ldap();
        config.as_object_mut().unwrap().remove("bindPWRef");
        config["bindPW"] = json!("S3ntinel-bind");
        config["insecureSkipVerify"] = json!(true);
        let v = validate_dex(&ldap(config.clone()));
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        assert!(v.inline_secret);
        assert_eq!(v.warnings.len(), 2);
        // A mistyped secret field is reported without its value.
        config["bindPW"] = json!(["S3ntinel-bind"]);
        config["insecureSkipVerify"] = json!("S3ntinel-x");
        let v = validate_dex(&ldap(config));
        assert_eq!(paths(&v), ["spec.config"]);
        assert!(!format!("{:?}", v.errors).contains("S3ntinel"), "{v:?}");
    }

    #[test]
    fn bind_dn_needs_a_password() {
        let mut config = good_ldap();
        config.as_object_mut().unwrap().remove("bindPWRef");
        assert_eq!(
            paths(&validate_dex(&ldap(config.clone()))),
            ["spec.config.bindPWRef"]
        );
        config.as_object_mut().unwrap().remove("bindDN");
        assert!(validate_dex(&ldap(config)).errors.is_empty());
    }

    #[test]
    fn attribute_names_cannot_inject_filter_syntax() {
        assert!(is_attribute_name("uid"));
        assert!(is_attribute_name("userPrincipalName"));
        assert!(is_attribute_name("2.5.4.3"));
        assert!(is_attribute_name("cn;lang-en"));
        assert!(is_attribute_name("DN"));
        for bad in ["uid=*)(x", "", "a b", "1a", "cn;", "(cn)"] {
            assert!(!is_attribute_name(bad), "{bad}");
        }
        let mut config = good_ldap();
        config["userSearch"]["emailAttr"] = json!("mail)(uid=*");
        assert_eq!(
            paths(&validate_dex(&ldap(config))),
            ["spec.config.userSearch.emailAttr"]
        );
    }

    #[test]
    fn host_syntax() {
        assert_eq!(
            split_host_port("ldap.example.org", 636),
            Ok(("ldap.example.org".into(), 636))
        );
        assert_eq!(
            split_host_port("127.0.0.1:389", 636),
            Ok(("127.0.0.1".into(), 389))
        );
        assert_eq!(split_host_port("[::1]:1389", 636), Ok(("::1".into(), 1389)));
        assert!(split_host_port("ldap://x", 636).is_err());
        assert!(split_host_port("a b", 636).is_err());
        assert!(split_host_port("x:", 636).is_err());
    }

    #[test]
    fn oidc_rules() {
        let c = |config: Value| {
            dex(json!({
                "metadata": {"name": "sso"}, "id": "sso", "type": "oidc",
                "spec": {"config": config},
            }))
        };
        let good = json!({
            "issuer": "https://sso.example.org/realms/x", "clientID": "dex",
            "clientSecretRef": {"name": "sso", "key": "secret"},
            "redirectURI": "https://dex.example.org/callback",
        });
        assert!(validate_dex(&c(good.clone())).errors.is_empty());
        let mut bad = good.clone();
        bad["issuer"] = json!("http://sso.example.org");
        bad["clientID"] = json!("");
        assert_eq!(
            paths(&validate_dex(&c(bad))),
            ["spec.config.issuer", "spec.config.clientID"]
        );
        let mut local = good;
        local["issuer"] = json!("http://127.0.0.1:5556/dex");
        assert!(validate_dex(&c(local)).errors.is_empty());
    }

    #[test]
    fn other_types_are_left_alone() {
        let v = validate_dex(&dex(json!({
            "metadata": {"name": "gh"}, "id": "gh", "type": "github",
            "spec": {"config": {"clientID": 1}},
        })));
        assert!(v.errors.is_empty());
        assert_eq!(v.kind, Some(IdpKind::Unsupported("github".into())));
    }
}
