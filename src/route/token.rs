//! Where a client's token is (SPEC-proxy section 3): `Authorization: Bearer`, Basic
//! with the token as password (or as the whole value without a colon), or wherever the
//! class's extractor found it; and every place it travelled, so none reaches the tool.

use base64::Engine as _;
use http::{HeaderMap, HeaderName};

/// A place a token travels in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Carrier {
    Header(HeaderName),
    Query(String),
}

/// A token and every carrier it was seen in. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Found {
    pub token: String,
    pub carriers: Vec<Carrier>,
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found")
            .field("token_len", &self.token.len())
            .field("carriers", &self.carriers)
            .finish()
    }
}

fn decode_base64(value: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let value = value.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(value).ok())
}

/// `Basic` credentials: (user, password); a value without a colon is all password.
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(decode_base64(rest)?).ok()?;
    match decoded.split_once(':') {
        Some((user, password)) => Some((user.to_string(), password.to_string())),
        None => Some((String::new(), decoded)),
    }
}

/// The token of an `Authorization` value: Bearer, or the password of Basic.
pub fn token_from_authorization(value: &str) -> Option<String> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_string()
    } else {
        basic_credentials(value)?.1
    };
    (!token.is_empty()).then_some(token)
}

/// Every header and query parameter that carries `token`, as is, as Bearer or inside
/// Basic: the stripper removes them all.
pub fn locate_token(token: &str, headers: &HeaderMap, query: Option<&str>) -> Found {
    let mut carriers = Vec::new();
    for name in headers.keys() {
        let carries = headers.get_all(name).iter().any(|value| {
            let text = String::from_utf8_lossy(value.as_bytes());
            text.contains(token) || token_from_authorization(&text).as_deref() == Some(token)
        });
        if carries {
            carriers.push(Carrier::Header(name.clone()));
        }
    }
    if let Some(query) = query {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let carrier = Carrier::Query(key.into_owned());
            if value == token && !carriers.contains(&carrier) {
                carriers.push(carrier);
            }
        }
    }
    Found {
        token: token.to_string(),
        carriers,
    }
}
