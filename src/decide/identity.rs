//! Status of a Dex `Connector` (SPEC-identity section 2), from observed facts. Pure:
//! the identity controller and `check` observe (Secrets, LDAP, OIDC), then call
//! [`decide_idp_status`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{Condition, DexConnectorStatus};
use crate::types::conditions::{
    AUTH_READY, CONFIG_VALID, LIVENESS_READY, READY, SEARCH_READY, SECRET_READY, SYNC_READY,
};
use crate::types::join_errors;
use crate::validation::identity::{IdpKind, IdpValidation};

use super::conditions::{Desired, aggregate_ready, merge};

/// Condition reasons of IdP connectors.
pub mod reasons {
    pub const INVALID_CONFIG: &str = "InvalidConfig";
    pub const INLINE_SECRET: &str = "InlineSecret";
    pub const ANONYMOUS: &str = "Anonymous";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const KEY_NOT_FOUND: &str = "KeyNotFound";
    pub const UNSUPPORTED_TYPE: &str = "UnsupportedType";
    pub const NOT_CHECKED: &str = "NotChecked";
    pub const CONNECTION_FAILED: &str = "ConnectionFailed";
    pub const TLS_FAILED: &str = "TLSFailed";
    pub const INVALID_CREDENTIALS: &str = "InvalidCredentials";
    pub const BIND_FAILED: &str = "BindFailed";
    pub const NO_USERS_FOUND: &str = "NoUsersFound";
    pub const SEARCH_FAILED: &str = "SearchFailed";
    pub const NON_SEARCH: &str = "NonSearch";
    pub const DISCOVERY_FAILED: &str = "DiscoveryFailed";
    pub const ISSUER_MISMATCH: &str = "IssuerMismatch";
    pub const NO_SIGNING_KEYS: &str = "NoSigningKeys";
    pub const INVALID_CLIENT_CREDENTIALS: &str = "InvalidClientCredentials";
    pub const TOKEN_ENDPOINT_FAILED: &str = "TokenEndpointFailed";
}

use reasons::*;

/// The bind password or client secret, as far as the operator looked (never a value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdpSecretFacts {
    /// LDAP without `bindDN`: an anonymous bind, no password.
    Anonymous,
    /// Given inline in the config.
    Inline,
    /// A `...Ref` to a Secret that exists and has the key.
    Found {
        name: String,
        key: String,
    },
    SecretNotFound {
        name: String,
    },
    KeyNotFound {
        name: String,
        key: String,
    },
}

impl IdpSecretFacts {
    pub fn usable(&self) -> bool {
        matches!(
            self,
            IdpSecretFacts::Anonymous | IdpSecretFacts::Inline | IdpSecretFacts::Found { .. }
        )
    }
}

/// One live check: passed, failed (reason and message, no secret), or not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Passed(String),
    Failed { reason: String, message: String },
    NotRun(String),
}

impl Check {
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Check::Failed {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn passed(&self) -> bool {
        matches!(self, Check::Passed(_))
    }

    fn condition(&self, type_: &'static str) -> Desired {
        match self {
            Check::Passed(message) => Desired::ok(type_, "", message.clone()),
            Check::Failed { reason, message } => Desired::failed(type_, reason, message.clone()),
            Check::NotRun(why) => Desired::unknown(type_, NOT_CHECKED, why.clone()),
        }
    }
}

/// The live checks of one round (LDAP: connect, bind, search; OIDC: discovery and
/// JWKS, token endpoint; search is not run for OIDC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveChecks {
    pub liveness: Check,
    pub auth: Check,
    pub search: Check,
}

/// Everything observed about one Connector.
pub struct IdpFacts<'a> {
    pub generation: Option<i64>,
    pub validation: &'a IdpValidation,
    /// None when the config is invalid or the type unsupported (nothing looked at).
    pub secret: Option<IdpSecretFacts>,
    /// None when the checks were not run (invalid config).
    pub live: Option<LiveChecks>,
}

/// The desired conditions, in the order of SPEC-identity section 2.
pub fn idp_conditions(facts: &IdpFacts) -> Vec<Desired> {
    let v = facts.validation;
    if let Some(IdpKind::Unsupported(type_)) = &v.kind {
        return vec![Desired::unknown(
            READY,
            UNSUPPORTED_TYPE,
            format!("connectors of type {type_:?} are not checked by this operator"),
        )];
    }
    let config = if !v.errors.is_empty() {
        Desired::failed(CONFIG_VALID, INVALID_CONFIG, join_errors(&v.errors))
    } else if v.inline_secret {
        Desired::ok(
            CONFIG_VALID,
            INLINE_SECRET,
            "the secret is stored inline in the config: move it to a Secret (bindPWRef / clientSecretRef)",
        )
        .with_severity("Warning")
    } else {
        Desired::ok(CONFIG_VALID, "", "")
    };
    let not_checked = |type_| Desired::unknown(type_, NOT_CHECKED, "the config is invalid");
    let secret = match &facts.secret {
        None => not_checked(SECRET_READY),
        Some(s) => secret_condition(s),
    };
    let mut out = vec![config, secret];
    match &facts.live {
        None => out.extend([LIVENESS_READY, AUTH_READY, SEARCH_READY].map(not_checked)),
        Some(live) => {
            out.push(live.liveness.condition(LIVENESS_READY));
            out.push(live.auth.condition(AUTH_READY));
            let search = match &v.kind {
                Some(IdpKind::Oidc(_)) => {
                    Desired::ok(SEARCH_READY, NON_SEARCH, "OIDC providers are not searched")
                }
                _ => live.search.condition(SEARCH_READY),
            };
            out.push(search);
        }
    }
    out.push(aggregate_ready(&out));
    out
}

fn secret_condition(facts: &IdpSecretFacts) -> Desired {
    match facts {
        IdpSecretFacts::Anonymous => Desired::ok(
            SECRET_READY,
            ANONYMOUS,
            "no bindDN: the operator binds anonymously",
        ),
        IdpSecretFacts::Inline => Desired::ok(SECRET_READY, INLINE_SECRET, ""),
        IdpSecretFacts::Found { .. } => Desired::ok(SECRET_READY, "", ""),
        IdpSecretFacts::SecretNotFound { name } => Desired::failed(
            SECRET_READY,
            SECRET_NOT_FOUND,
            format!("Secret {name:?} not found in the Connector's namespace"),
        ),
        IdpSecretFacts::KeyNotFound { name, key } => Desired::failed(
            SECRET_READY,
            KEY_NOT_FOUND,
            format!("Secret {name:?} has no key {key:?}"),
        ),
    }
}

/// The status to store: conditions merged with the stored ones (transition times
/// move only on a status change) and the observed generation.
///
/// Conditions of the directory sync (`SyncReady`) are written by the sync only: they
/// are kept as stored (one writer per condition type).
pub fn decide_idp_status(stored: &[Condition], facts: &IdpFacts, now: &Time) -> DexConnectorStatus {
    let mut conditions = merge(stored, &idp_conditions(facts), now);
    conditions.extend(stored.iter().filter(|c| c.type_ == SYNC_READY).cloned());
    DexConnectorStatus {
        observed_generation: facts.generation,
        conditions,
        last_sync: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FieldError;
    use crate::types::conditions::{FALSE, TRUE, UNKNOWN};

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn ldap_validation() -> IdpValidation {
        IdpValidation {
            kind: Some(IdpKind::Ldap(Box::default())),
            ..IdpValidation::default()
        }
    }

    fn all_passed() -> LiveChecks {
        LiveChecks {
            liveness: Check::Passed("".into()),
            auth: Check::Passed("".into()),
            search: Check::Passed("3 users".into()),
        }
    }

    fn get<'a>(c: &'a [Desired], type_: &str) -> &'a Desired {
        c.iter().find(|d| d.type_ == type_).unwrap()
    }

    #[test]
    fn all_checks_passing_is_ready() {
        let v = ldap_validation();
        let facts = IdpFacts {
            generation: Some(2),
            validation: &v,
            secret: Some(IdpSecretFacts::Found {
                name: "s".into(),
                key: "k".into(),
            }),
            live: Some(all_passed()),
        };
        let c = idp_conditions(&facts);
        let types: Vec<_> = c.iter().map(|d| d.type_).collect();
        assert_eq!(
            types,
            [
                CONFIG_VALID,
                SECRET_READY,
                LIVENESS_READY,
                AUTH_READY,
                SEARCH_READY,
                READY
            ]
        );
        assert!(c.iter().all(|d| d.status == TRUE), "{c:?}");
        let status = decide_idp_status(&[], &facts, &t(1));
        assert_eq!(status.observed_generation, Some(2));
    }

    #[test]
    fn wrong_password_makes_auth_and_ready_false() {
        let v = ldap_validation();
        let mut live = all_passed();
        live.auth = Check::failed(
            INVALID_CREDENTIALS,
            "the server refused the bind (result 49)",
        );
        live.search = Check::NotRun("the bind failed".into());
        let c = idp_conditions(&IdpFacts {
            generation: None,
            validation: &v,
            secret: Some(IdpSecretFacts::Inline),
            live: Some(live),
        });
        assert_eq!(get(&c, AUTH_READY).status, FALSE);
        assert_eq!(get(&c, SEARCH_READY).status, UNKNOWN);
        assert_eq!(get(&c, READY).reason, INVALID_CREDENTIALS);
    }

    #[test]
    fn inline_secret_is_a_warning_and_still_ready() {
        let v = IdpValidation {
            inline_secret: true,
            ..ldap_validation()
        };
        let c = idp_conditions(&IdpFacts {
            generation: None,
            validation: &v,
            secret: Some(IdpSecretFacts::Inline),
            live: Some(all_passed()),
        });
        let config = get(&c, CONFIG_VALID);
        assert_eq!(
            (config.status, config.reason.as_str()),
            (TRUE, INLINE_SECRET)
        );
        assert_eq!(config.severity, Some("Warning"));
        assert_eq!(get(&c, READY).status, TRUE);
    }

    #[test]
    fn invalid_config_checks_nothing() {
        let v = IdpValidation {
            errors: vec![FieldError::new("spec.config.host", "Required value")],
            ..ldap_validation()
        };
        let c = idp_conditions(&IdpFacts {
            generation: None,
            validation: &v,
            secret: None,
            live: None,
        });
        assert_eq!(get(&c, CONFIG_VALID).status, FALSE);
        assert_eq!(get(&c, LIVENESS_READY).status, UNKNOWN);
        assert_eq!(get(&c, READY).reason, INVALID_CONFIG);
    }

    #[test]
    fn missing_secret_and_unsupported_types() {
        let v = ldap_validation();
        let c = idp_conditions(&IdpFacts {
            generation: None,
            validation: &v,
            secret: Some(IdpSecretFacts::SecretNotFound { name: "s".into() }),
            live: Some(LiveChecks {
                liveness: Check::Passed("".into()),
                auth: Check::NotRun("no bind password".into()),
                search: Check::NotRun("no bind".into()),
            }),
        });
        assert_eq!(get(&c, READY).reason, SECRET_NOT_FOUND);
        let v = IdpValidation {
            kind: Some(IdpKind::Unsupported("github".into())),
            ..IdpValidation::default()
        };
        let c = idp_conditions(&IdpFacts {
            generation: None,
            validation: &v,
            secret: None,
            live: None,
        });
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].status, c[0].reason.as_str()),
            (UNKNOWN, UNSUPPORTED_TYPE)
        );
    }

    #[test]
    fn oidc_search_is_non_search() {
        let v = IdpValidation {
            kind: Some(IdpKind::Oidc(Box::default())),
            ..IdpValidation::default()
        };
        let mut live = all_passed();
        live.search = Check::NotRun("".into());
        let c = idp_conditions(&IdpFacts {
            generation: None,
            validation: &v,
            secret: Some(IdpSecretFacts::Inline),
            live: Some(live),
        });
        assert_eq!(get(&c, SEARCH_READY).reason, NON_SEARCH);
        assert_eq!(get(&c, READY).status, TRUE);
    }
}
