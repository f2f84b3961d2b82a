//! The live OIDC check of an `oidc` Connector (SPEC-identity section 2): discovery at
//! `{issuer}/.well-known/openid-configuration` with an exact issuer match, the JWKS
//! with at least one key, and the token endpoint's verdict on the client credentials
//! (a deliberately invalid code must be refused with `invalid_grant`, not
//! `invalid_client`).
//!
//! The probes' HTTP client: rustls on `ring`, the destination policy, no redirects,
//! bounded bodies. `insecureSkipVerify` is not honoured: certificates are verified.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::api::dex::OidcConfig;
use crate::decide::identity::reasons::*;
use crate::decide::identity::{Check, LiveChecks};
use crate::probe::{DestinationPolicy, ProbeSettings, TrustBundle, probe_client};

use super::ldap::Password;

/// The largest discovery, JWKS or token response read.
const BODY_CAP: usize = 1024 * 1024;

/// Everything one OIDC check needs.
#[derive(Clone, Debug)]
pub struct OidcTarget {
    pub config: OidcConfig,
    pub secret: Option<Password>,
    pub secret_usable: bool,
    pub trust: TrustBundle,
    pub timeout: Duration,
    pub destinations: DestinationPolicy,
}

/// Discovery and JWKS (liveness), then the token endpoint (auth).
pub async fn check_oidc(target: &OidcTarget) -> LiveChecks {
    let not_run = |why: &str| Check::NotRun(why.to_string());
    let settings = ProbeSettings {
        timeout: target.timeout,
        destinations: target.destinations,
        ..ProbeSettings::default()
    };
    let client = match probe_client(&target.trust, &settings) {
        Ok(c) => c,
        Err(e) => {
            return LiveChecks {
                liveness: Check::failed(CONNECTION_FAILED, format!("cannot set up HTTP: {e}")),
                auth: not_run("the provider is not reachable"),
                search: not_run(""),
            };
        }
    };
    let (liveness, discovery) = match discover(&client, target).await {
        Ok(pair) => pair,
        Err(failed) => {
            return LiveChecks {
                liveness: failed,
                auth: not_run("the provider is not reachable"),
                search: not_run(""),
            };
        }
    };
    let auth = match (&target.secret, target.secret_usable) {
        (Some(secret), true) => token_check(&client, target, &discovery, secret).await,
        _ => not_run("the client secret is not available"),
    };
    LiveChecks {
        liveness,
        auth,
        search: not_run(""),
    }
}

/// GET a JSON document, bounded in time and size.
async fn get_json(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<Value, Check> {
    let request = client.get(url).header("Accept", "application/json");
    let response = tokio::time::timeout(timeout, request.send())
        .await
        .map_err(|_| Check::failed(CONNECTION_FAILED, format!("GET {url} timed out")))?
        .map_err(|e| Check::failed(CONNECTION_FAILED, format!("GET {url}: {}", error_chain(&e))))?;
    let status = response.status().as_u16();
    let body = read_capped(response, timeout).await?;
    if status != 200 {
        return Err(Check::failed(
            DISCOVERY_FAILED,
            format!("GET {url} returned HTTP {status}"),
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|_| Check::failed(DISCOVERY_FAILED, format!("GET {url} did not return JSON")))
}

async fn read_capped(mut response: reqwest::Response, timeout: Duration) -> Result<Vec<u8>, Check> {
    let mut body = Vec::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.transpose() {
            let chunk = chunk.map_err(|e| error_chain(&e))?;
            if body.len() + chunk.len() > BODY_CAP {
                return Err(format!("response larger than {BODY_CAP} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(())) => Ok(body),
        Ok(Err(e)) => Err(Check::failed(CONNECTION_FAILED, e)),
        Err(_) => Err(Check::failed(
            CONNECTION_FAILED,
            "reading the response timed out",
        )),
    }
}

/// The transport error and its causes, e.g. "error sending request: ... connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(s) = next {
        parts.push(s.to_string());
        next = s.source();
    }
    parts.dedup();
    let text = parts.join(": ");
    text.chars().take(300).collect()
}

async fn discover(client: &reqwest::Client, target: &OidcTarget) -> Result<(Check, Value), Check> {
    let issuer = target.config.issuer.clone().unwrap_or_default();
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let discovery = get_json(client, &url, target.timeout).await?;
    let announced = discovery["issuer"].as_str().unwrap_or_default();
    if announced != issuer {
        return Err(Check::failed(
            ISSUER_MISMATCH,
            format!("the discovery document names issuer {announced:?}, the config {issuer:?}"),
        ));
    }
    let Some(jwks_uri) = discovery["jwks_uri"].as_str() else {
        return Err(Check::failed(
            NO_SIGNING_KEYS,
            "the discovery document has no jwks_uri",
        ));
    };
    let jwks = get_json(client, jwks_uri, target.timeout).await?;
    let keys = jwks["keys"].as_array().map_or(0, Vec::len);
    if keys == 0 {
        return Err(Check::failed(
            NO_SIGNING_KEYS,
            format!("the JWKS at {jwks_uri} holds no key"),
        ));
    }
    Ok((
        Check::Passed(format!("discovery and JWKS of {issuer} fetched")),
        discovery,
    ))
}

/// RFC 6749 section 2.3.1: client id and secret form-encoded, then Basic.
fn basic_auth(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn token_check(
    client: &reqwest::Client,
    target: &OidcTarget,
    discovery: &Value,
    secret: &Password,
) -> Check {
    let Some(endpoint) = discovery["token_endpoint"].as_str() else {
        return Check::failed(
            TOKEN_ENDPOINT_FAILED,
            "the discovery document has no token_endpoint",
        );
    };
    let client_id = target.config.client_id.clone().unwrap_or_default();
    let redirect = target
        .config
        .redirect_uri
        .clone()
        .unwrap_or_else(|| "https://invalid.invalid/callback".into());
    let methods = discovery["token_endpoint_auth_methods_supported"].as_array();
    let post = methods.is_some_and(|m| {
        !m.iter().any(|v| v == "client_secret_basic") && m.iter().any(|v| v == "client_secret_post")
    });
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        (
            "code",
            "connectors-operator-health-check-invalid-code".to_string(),
        ),
        ("redirect_uri", redirect),
    ];
    let mut request = client.post(endpoint);
    if post {
        form.push(("client_id", client_id.clone()));
        form.push(("client_secret", secret.0.clone()));
    } else {
        request = request.header("Authorization", basic_auth(&client_id, &secret.0));
    }
    let body = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let request = request
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .body(body);
    let response = match tokio::time::timeout(target.timeout, request.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Check::failed(
                TOKEN_ENDPOINT_FAILED,
                format!("POST {endpoint}: {}", error_chain(&e)),
            );
        }
        Err(_) => {
            return Check::failed(TOKEN_ENDPOINT_FAILED, format!("POST {endpoint} timed out"));
        }
    };
    let status = response.status().as_u16();
    let body = read_capped(response, target.timeout)
        .await
        .unwrap_or_default();
    let error = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    judge_token_response(status, &error, &client_id)
}

/// The token endpoint's answer to an invalid code.
pub fn judge_token_response(status: u16, error: &str, client_id: &str) -> Check {
    match (status, error) {
        (_, "invalid_client" | "unauthorized_client") | (401, _) => Check::failed(
            INVALID_CLIENT_CREDENTIALS,
            format!("the token endpoint refused client {client_id:?} (HTTP {status}, {error:?})"),
        ),
        (400, "invalid_grant") => Check::Passed(format!(
            "the token endpoint accepts the credentials of client {client_id:?}"
        )),
        _ => Check::failed(
            TOKEN_ENDPOINT_FAILED,
            format!("the token endpoint answered HTTP {status} {error:?} to an invalid code"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses() {
        assert!(judge_token_response(400, "invalid_grant", "dex").passed());
        assert!(matches!(
            judge_token_response(401, "invalid_client", "dex"),
            Check::Failed { reason, .. } if reason == INVALID_CLIENT_CREDENTIALS
        ));
        assert!(matches!(
            judge_token_response(500, "", "dex"),
            Check::Failed { reason, .. } if reason == TOKEN_ENDPOINT_FAILED
        ));
    }

    #[test]
    fn basic_auth_form_encodes_first() {
        let header = basic_auth("a b", "p:w");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(header.trim_start_matches("Basic "))
            .unwrap();
        assert_eq!(raw, b"a+b:p%3Aw");
    }
}
