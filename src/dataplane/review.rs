//! Who the client is and what it may do (SPEC-proxy section 3): TokenReview, cached by
//! a hash of the token for at most 30 s and never past the token's expiry;
//! SubjectAccessReview, allowed cached 10 s, denied 5 s. The token itself is never
//! kept, logged or put in an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use crate::runtime::{KeyLocks, TtlCache};

const TOKEN_TTL: Duration = Duration::from_secs(30);
const ALLOWED_TTL: Duration = Duration::from_secs(10);
const DENIED_TTL: Duration = Duration::from_secs(5);
const REVIEW_DEADLINE: Duration = Duration::from_secs(10);
const CACHE_ENTRIES: usize = 50_000;

const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// An authenticated client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Identity {
    /// The namespace of a ServiceAccount user (`system:serviceaccount:{ns}:{name}`).
    pub fn service_account_namespace(&self) -> Option<&str> {
        let rest = self.username.strip_prefix("system:serviceaccount:")?;
        rest.split_once(':').map(|(ns, _)| ns)
    }

    /// `(namespace, pod)` of a token bound to a Pod.
    pub fn pod(&self) -> Option<(&str, &str)> {
        let pod = self.extra.get(POD_NAME_EXTRA)?.first()?;
        Some((self.service_account_namespace()?, pod.as_str()))
    }
}

/// A review could not be made (the apiserver did not answer): `503`, not cached.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReviewUnavailable(pub String);

/// What is asked of the authoriser: a verb on a resource of `connectors.alauda.io`
/// (a Connector or one of its subresources; the connectorclasses). An empty namespace
/// or name is left out of the review.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
    pub subresource: Option<String>,
    pub verb: String,
}

impl Access {
    /// `verb` on Connector `namespace/name` (or a subresource of it).
    pub fn connector(namespace: &str, name: &str, subresource: Option<String>, verb: &str) -> Self {
        Access {
            resource: "connectors",
            namespace: namespace.to_string(),
            name: name.to_string(),
            subresource,
            verb: verb.to_string(),
        }
    }
}

pub struct Reviewer {
    client: Client,
    audience: Option<String>,
    tokens: TtlCache<[u8; 32], Option<Arc<Identity>>>,
    decisions: TtlCache<(Arc<Identity>, Access), bool>,
    token_fetches: KeyLocks<[u8; 32]>,
    decision_fetches: KeyLocks<(Arc<Identity>, Access)>,
}

/// Cache hits and misses, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl Reviewer {
    pub fn new(client: Client, audience: Option<String>) -> Self {
        Reviewer {
            client,
            audience,
            tokens: TtlCache::new(CACHE_ENTRIES),
            decisions: TtlCache::new(CACHE_ENTRIES),
            token_fetches: KeyLocks::default(),
            decision_fetches: KeyLocks::default(),
        }
    }

    /// The token's identity, `None` when the token is not valid.
    pub async fn authenticate(
        &self,
        token: &str,
    ) -> Result<(Option<Arc<Identity>>, Lookup), ReviewUnavailable> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(cached) = self.tokens.get(&key) {
            return Ok((cached, Lookup::Hit));
        }
        // One review per token at a time; the others read what it found.
        let _fetching = self.token_fetches.lock(&key).await;
        if let Some(cached) = self.tokens.get(&key) {
            return Ok((cached, Lookup::Hit));
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: self.audience.clone().map(|a| vec![a]),
            },
            ..Default::default()
        };
        let answer = self.create("TokenReview", &review).await?;
        let status = answer.status.unwrap_or_default();
        let identity = (status.authenticated == Some(true) && status.error.is_none())
            .then_some(status.user)
            .flatten()
            .map(|user| {
                Arc::new(Identity {
                    username: user.username.unwrap_or_default(),
                    uid: user.uid.unwrap_or_default(),
                    groups: user.groups.unwrap_or_default(),
                    extra: user.extra.unwrap_or_default(),
                })
            });
        self.tokens.insert(key, identity.clone(), token_ttl(token));
        Ok((identity, Lookup::Miss))
    }

    /// Whether `identity` may do `access`.
    pub async fn allowed(
        &self,
        identity: &Arc<Identity>,
        access: &Access,
    ) -> Result<(bool, Lookup), ReviewUnavailable> {
        let key = (identity.clone(), access.clone());
        if let Some(allowed) = self.decisions.get(&key) {
            return Ok((allowed, Lookup::Hit));
        }
        let _fetching = self.decision_fetches.lock(&key).await;
        if let Some(allowed) = self.decisions.get(&key) {
            return Ok((allowed, Lookup::Hit));
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(identity.username.clone()),
                uid: Some(identity.uid.clone()).filter(|u| !u.is_empty()),
                groups: Some(identity.groups.clone()),
                extra: Some(identity.extra.clone()).filter(|e| !e.is_empty()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(crate::api::GROUP.to_string()),
                    resource: Some(access.resource.into()),
                    subresource: access.subresource.clone(),
                    name: Some(access.name.clone()).filter(|n| !n.is_empty()),
                    namespace: Some(access.namespace.clone()).filter(|n| !n.is_empty()),
                    verb: Some(access.verb.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = self.create("SubjectAccessReview", &review).await?;
        let allowed = answer
            .status
            .is_some_and(|s| s.allowed && s.denied != Some(true));
        let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
        self.decisions.insert(key, allowed, ttl);
        Ok((allowed, Lookup::Miss))
    }
}

impl Reviewer {
    /// Creates a review object within the deadline.
    async fn create<K>(&self, kind: &str, review: &K) -> Result<K, ReviewUnavailable>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api = Api::<K>::all(self.client.clone());
        tokio::time::timeout(REVIEW_DEADLINE, api.create(&PostParams::default(), review))
            .await
            .map_err(|_| ReviewUnavailable(format!("{kind} timed out")))?
            .map_err(|e| ReviewUnavailable(format!("{kind} failed: {}", short(&e))))
    }
}

/// An API error without its body (which could echo the request).
fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.reason, status.code),
        other => other.to_string().chars().take(200).collect(),
    }
}

/// How long a review of `token` may be reused: 30 s, less when a JWT expires sooner
/// (its `exp` claim, read without verifying: it only shortens the cache).
fn token_ttl(token: &str) -> Duration {
    let exp = token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload.trim_end_matches('='))
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|claims| claims.get("exp").and_then(serde_json::Value::as_i64));
    let Some(exp) = exp else {
        return TOKEN_TTL;
    };
    let now = chrono::Utc::now().timestamp();
    let left = u64::try_from(exp.saturating_sub(now)).unwrap_or(0);
    TOKEN_TTL.min(Duration::from_secs(left))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(exp: i64) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(&format!(r#"{{"exp":{exp}}}"#))
        )
    }

    #[test]
    fn token_cache_never_outlives_the_token() {
        let now = chrono::Utc::now().timestamp();
        assert_eq!(token_ttl(&jwt(now + 3600)), TOKEN_TTL);
        assert!(token_ttl(&jwt(now + 5)) <= Duration::from_secs(5));
        assert_eq!(token_ttl(&jwt(now - 10)), Duration::ZERO);
        assert_eq!(token_ttl("opaque-token"), TOKEN_TTL);
    }

    #[test]
    fn pod_bound_identity_names_its_pod() {
        let identity = Identity {
            username: "system:serviceaccount:team:builder".into(),
            uid: String::new(),
            groups: vec![],
            extra: [(POD_NAME_EXTRA.to_string(), vec!["builder-7f".to_string()])].into(),
        };
        assert_eq!(identity.service_account_namespace(), Some("team"));
        assert_eq!(identity.pod(), Some(("team", "builder-7f")));
    }
}
