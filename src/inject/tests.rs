use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn injection(position: Position, pairs: &[(&str, &str)]) -> Injection {
    Injection {
        position,
        content_type: None,
        auth: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn generator_output_shapes() {
    let ok = parse_generator_output(
        &serde_json::json!({"auth": {"X-Token": "t", "n": 5, "gone": null}}),
    )
    .unwrap();
    assert_eq!(ok.position, Position::Header);
    assert_eq!(
        ok.auth,
        BTreeMap::from([("X-Token".into(), "t".into()), ("n".into(), "5".into())])
    );
    let query =
        parse_generator_output(&serde_json::json!({"position": " Query ", "auth": {}})).unwrap();
    assert_eq!(query.position, Position::Query);
    for (bad, says) in [
        (serde_json::json!("x"), "not a string"),
        (
            serde_json::json!({"position": "cookie"}),
            "\"cookie\" is not header",
        ),
        (serde_json::json!({"position": 1}), "position is a number"),
        (serde_json::json!({"auth": [1]}), "auth is a array"),
    ] {
        let err = parse_generator_output(&bad).unwrap_err();
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn header_query_and_body_plans() {
    let effects = plan(
        &injection(Position::Header, &[("Authorization", "Bearer t")]),
        &url("https://g.io/x"),
    )
    .unwrap();
    assert_eq!(effects.set_headers.len(), 1);
    assert_eq!(effects.set_headers[0].0, http::header::AUTHORIZATION);
    assert!(effects.query.is_none() && effects.body.is_none());

    let effects = plan(
        &injection(Position::Query, &[("private_token", "a b&c")]),
        &url("https://g.io/api?page=1&private_token=old"),
    )
    .unwrap();
    assert_eq!(
        effects.query.as_deref(),
        Some("page=1&private_token=a+b%26c")
    );

    let form = plan(
        &injection(Position::Body, &[("user", "u"), ("pass", "p=1")]),
        &url("https://g.io"),
    )
    .unwrap();
    let (content_type, body) = form.body.unwrap();
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    assert_eq!(&body[..], b"pass=p%3D1&user=u");

    let mut json = injection(Position::Body, &[("token", "t")]);
    json.content_type = Some("application/json; charset=utf-8".into());
    let (content_type, body) = plan(&json, &url("https://g.io")).unwrap().body.unwrap();
    assert_eq!(content_type, "application/json; charset=utf-8");
    assert_eq!(&body[..], br#"{"token":"t"}"#);

    let bad = plan(
        &injection(Position::Header, &[("bad name", "v")]),
        &url("https://g.io"),
    );
    assert!(bad.unwrap_err().contains("not a valid header name"));
}

#[test]
fn basic_and_bearer_without_a_generator() {
    let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let basic = from_secret_type(
        BASIC_AUTH_SECRET_TYPE,
        &data(&[("username", "u"), ("password", "p")]),
    )
    .unwrap();
    assert_eq!(basic.auth["Authorization"], "Basic dTpw");
    let bearer = from_secret_type(BEARER_TOKEN_SECRET_TYPE, &data(&[("token", "t")])).unwrap();
    assert_eq!(bearer.auth["Authorization"], "Bearer t");
    assert_eq!(
        from_secret_type(BEARER_TOKEN_SECRET_TYPE, &data(&[])),
        Err(NoInjection::MissingKey("token"))
    );
    assert!(matches!(
        from_secret_type("Opaque", &data(&[("token", "t")])),
        Err(NoInjection::UnsupportedSecretType(_))
    ));
    assert!(
        !format!("{bearer:?}").contains("Bearer"),
        "Debug shows no value"
    );
}

#[test]
fn generator_input_has_canonical_headers_and_query_lists() {
    let headers = [(
        HeaderName::from_static("x-plain"),
        HeaderValue::from_static("v"),
    )];
    let u = url("https://g.io:8443/api/user?page=1&page=2");
    let input = generator_input(
        Some(&BTreeMap::from([("token".to_string(), "t".to_string())])),
        &RequestView {
            method: &Method::GET,
            url: &u,
            headers: &headers,
            body: "",
        },
    );
    let json = serde_json::to_value(&input).unwrap();
    assert_eq!(json["request"]["host"], "g.io:8443");
    assert_eq!(
        json["request"]["headers"]["X-Plain"],
        serde_json::json!(["v"])
    );
    assert_eq!(
        json["request"]["query"]["page"],
        serde_json::json!(["1", "2"])
    );
    assert_eq!(json["data"]["token"], "t");
}

#[test]
fn plugin_headers_for_a_class_api() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let decode = |v: &HeaderValue| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .unwrap(),
        )
        .unwrap()
    };
    let meta_only = plugin_headers("https://g.io/base", None);
    assert_eq!(meta_only.len(), 1);
    assert_eq!(meta_only[0].name, PLUGIN_META);
    assert!(!meta_only[0].credential);
    assert_eq!(
        decode(&meta_only[0].value),
        r#"{"baseURL":"https://g.io/base"}"#
    );

    let data = BTreeMap::from([("password".to_string(), "p w".to_string())]);
    let secret = PluginSecret {
        type_: BASIC_AUTH_SECRET_TYPE,
        data: &data,
    };
    let all = plugin_headers("https://g.io", Some(&secret));
    let names: Vec<&str> = all.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, [PLUGIN_META, PLUGIN_AUTH, PLUGIN_SECRET]);
    assert_eq!(decode(&all[1].value), BASIC_AUTH_SECRET_TYPE);
    assert_eq!(
        decode(&all[2].value),
        format!(r#"{{"password":"{}"}}"#, b64("p w"))
    );
    assert!(all[1].credential && all[2].credential);
}

#[test]
fn body_injection_merges_into_a_json_object_or_a_form() {
    let injection = Injection {
        position: Position::Body,
        content_type: None,
        auth: [("token".to_string(), "s3cret".to_string())].into(),
    };
    let (ct, body) = merge_into_body(
        &injection,
        br#"{"query":"x","token":"client"}"#,
        Some("application/json"),
    )
    .unwrap();
    assert_eq!(ct, "application/json");
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value, serde_json::json!({"query": "x", "token": "s3cret"}));
    let (_, empty) = merge_into_body(&injection, b"", Some("application/json")).unwrap();
    assert_eq!(&empty[..], br#"{"token":"s3cret"}"#);
    assert!(merge_into_body(&injection, b"[1]", Some("application/json")).is_err());
    let (ct, form) = merge_into_body(&injection, b"a=1&token=client", None).unwrap();
    assert_eq!(ct, "application/x-www-form-urlencoded");
    assert_eq!(&form[..], b"a=1&token=s3cret");
}
