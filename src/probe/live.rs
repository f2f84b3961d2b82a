//! The engine's part of a live request (the proxy and the gateway): the class's
//! `authExtractor` finds a client's token, and the chosen auth type's generator says
//! what to inject. The auth probe asks the same [`CompiledClass::generated_injection`],
//! so a probe and a proxied request inject alike.

use std::collections::BTreeMap;

use crate::inject::{self, Injection, RequestView};

use super::CompiledClass;

impl CompiledClass {
    /// Whether the class has `spec.proxy.authExtractor`.
    pub fn has_auth_extractor(&self) -> bool {
        self.auth_extractor().is_some()
    }

    /// The token `spec.proxy.authExtractor` finds in a request (`auth.token`; empty or
    /// undefined = none). Errors never quote request values.
    pub fn extract_token(&self, request: &RequestView<'_>) -> Result<Option<String>, String> {
        let Some(policy) = self.auth_extractor() else {
            return Ok(None);
        };
        let result = policy
            .evaluate(inject::extractor_input(request))
            .map_err(|e| format!("spec.proxy.authExtractor.rego: evaluation failed: {e}"))?;
        let token = result
            .as_ref()
            .and_then(|auth| auth.get("token"))
            .and_then(|t| t.as_str())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        Ok(token.map(str::to_string))
    }

    /// What the generator of `auth_type` injects into `request`, or `None` when the
    /// auth type has no generator or the rule is undefined. Errors name the field.
    pub fn generated_injection(
        &self,
        auth_type: &str,
        secret_data: Option<&BTreeMap<String, String>>,
        request: &RequestView<'_>,
    ) -> Result<Option<Injection>, String> {
        let Some((field, policy)) = self.generator(auth_type) else {
            return Ok(None);
        };
        let input = inject::generator_input(secret_data, request);
        let Some(result) = policy
            .evaluate(input)
            .map_err(|e| format!("{field}: evaluation failed: {e}"))?
        else {
            return Ok(None);
        };
        inject::parse_generator_output(&result)
            .map(Some)
            .map_err(|e| format!("{field}: {e}"))
    }

    /// Whether the auth type has a generator.
    pub fn has_generator(&self, auth_type: &str) -> bool {
        self.generator(auth_type).is_some()
    }
}
