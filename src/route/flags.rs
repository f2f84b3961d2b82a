//! Feature flags from ConfigMap `connectors-config` (SPEC-proxy section 1): string
//! values `"true"`/`"false"`, missing keys `false`, unknown keys reported.

use std::collections::BTreeMap;

/// Every flag the original system defines, in its spelling.
pub const FLAG_KEYS: [&str; 7] = [
    "enable-connector-proxy-permissions",
    "enable-connector-apis-permissions",
    "enable-connector-apis-write-passthrough",
    "enable-connectors-approval",
    "enable-multi-connector",
    "enable-custom-ca-certs",
    "enable-pod-image-pull-via-connector",
];

/// The flags the data plane reads; all `false` by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    values: BTreeMap<&'static str, bool>,
}

impl Flags {
    pub fn get(&self, key: &str) -> bool {
        self.values.get(key).copied().unwrap_or(false)
    }

    pub fn proxy_permissions(&self) -> bool {
        self.get("enable-connector-proxy-permissions")
    }

    pub fn multi_connector(&self) -> bool {
        self.get("enable-multi-connector")
    }

    /// Every known flag with its value (defaults included).
    pub fn all(&self) -> BTreeMap<&'static str, bool> {
        FLAG_KEYS.iter().map(|k| (*k, self.get(k))).collect()
    }
}

/// The flags of a ConfigMap's data, and the keys that are not flags or whose value is
/// not `"true"`/`"false"` (those keep the default).
pub fn parse_flags(data: &BTreeMap<String, String>) -> (Flags, Vec<String>) {
    let mut flags = Flags::default();
    let mut ignored = Vec::new();
    for (key, value) in data {
        let known = FLAG_KEYS.iter().find(|k| **k == key.as_str());
        match (known, value.trim()) {
            (Some(k), "true") => {
                flags.values.insert(k, true);
            }
            (Some(k), "false") => {
                flags.values.insert(k, false);
            }
            _ => ignored.push(key.clone()),
        }
    }
    (flags, ignored)
}
