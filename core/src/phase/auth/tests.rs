//! JWT and API-key tests with keys and tokens made here, covering the attacks the module must
//! refuse: `alg: none`, algorithm confusion, `crit`, `jku`/`x5u`/`jwk` key injection, unknown
//! `kid`, bad signatures, expiry, `nbf`, issuer and audience.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
#[cfg(feature = "asymmetric-jwt")]
use jwt_compact::alg::{ModulusBits, RsaPrivateKey};
use jwt_compact::{Claims as JwtClaims, Header};
use serde_json::json;
#[cfg(feature = "asymmetric-jwt")]
use std::sync::OnceLock;

pub(crate) const NOW: u64 = 1_700_000_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn provider() -> JwtProvider {
    JwtProvider {
        name: "main".into(),
        label: "jwt:main".into(),
        issuer: Some("https://auth.example.com/".into()),
        audiences: vec!["api".into()],
        jwks_url: None,
        keys: vec![],
        leeway_s: 60,
        require_exp: true,
        header: http::header::AUTHORIZATION,
        jwks_min_ttl_s: 60,
        jwks_max_ttl_s: 3600,
        jwks_cooldown_s: 30,
        fail_open: false,
        consumer_claim: None,
        plan_claim: None,
        plan_names: Rc::from([]),
        max_token_bytes: 8192,
    }
}

fn claims(extra: Value) -> JwtClaims<Map<String, Value>> {
    let mut m = json!({"iss": "https://auth.example.com/", "aud": "api", "sub": "alice", "exp": NOW / 1000 + 600});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            m.as_object_mut().unwrap().remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    JwtClaims::new(m.as_object().unwrap().clone())
}

fn hs_key() -> Key {
    Key::hmac(Some("hs".into()), Alg::HS256, SECRET).unwrap()
}

fn hs_token(header: &Header<Map<String, Value>>, extra: Value) -> String {
    Hs256
        .token(header, &claims(extra), &Hs256Key::new(SECRET))
        .unwrap()
}

fn kid(k: &str) -> Header<Map<String, Value>> {
    Header::new(Map::new()).with_key_id(k)
}

#[cfg(feature = "asymmetric-jwt")]
fn rsa() -> &'static (RsaPrivateKey, Value) {
    static KEY: OnceLock<(RsaPrivateKey, Value)> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = Rsa::generate(&mut rand::thread_rng(), ModulusBits::TwoKibibytes)
            .unwrap()
            .0
            .into_inner();
        let public = RsaPublicKey::from(&key);
        let jwk = serde_json::to_value(JsonWebKey::from(&public)).unwrap();
        (key, jwk)
    })
}

fn check(keys: &[Key], token: &str) -> Result<Verified, TokenError> {
    verify_token(&provider(), &keys.iter().collect::<Vec<_>>(), token, NOW)
}

/// What `Key::from_jwk` makes of `jwk` for `alg`: `Ok(())` or its message.
fn jwk_outcome(alg: Alg, jwk: &Value) -> Result<(), String> {
    Key::from_jwk(None, alg, jwk).map(|_| ())
}

#[test]
#[cfg(not(feature = "hs384-hs512"))]
fn hs384_and_hs512_keys_need_the_feature() {
    for alg in [Alg::HS384, Alg::HS512] {
        assert_eq!(
            Key::hmac(None, alg, &[7u8; 64]).err().unwrap(),
            format!(
                "{} is not verified by this build (cargo feature `hs384-hs512` is off)",
                alg.name()
            )
        );
    }
}

#[test]
fn valid_tokens_for_every_algorithm() {
    let header = kid("k");
    // HMAC
    #[allow(unused_mut)] // extended only with `hs384-hs512`
    let mut tokens = vec![(
        Alg::HS256,
        Hs256
            .token(&header, &claims(json!({})), &Hs256Key::new(SECRET))
            .unwrap(),
    )];
    #[cfg(feature = "hs384-hs512")]
    tokens.extend([
        (
            Alg::HS384,
            Hs384
                .token(&header, &claims(json!({})), &Hs384Key::new([7u8; 48]))
                .unwrap(),
        ),
        (
            Alg::HS512,
            Hs512
                .token(&header, &claims(json!({})), &Hs512Key::new([7u8; 64]))
                .unwrap(),
        ),
    ]);
    for (alg, token) in tokens {
        let secret: &[u8] = match alg {
            Alg::HS256 => SECRET,
            Alg::HS384 => &[7u8; 48],
            _ => &[7u8; 64],
        };
        let key = Key::hmac(Some("k".into()), alg, secret).unwrap();
        assert_eq!(
            check(&[key], &token).map(|v| v.consumer.claims["sub"].clone()),
            Ok(json!("alice")),
            "{alg:?}"
        );
    }
}

#[test]
#[cfg(feature = "asymmetric-jwt")]
fn valid_tokens_for_every_asymmetric_algorithm() {
    let header = kid("k");
    // RSA, PKCS#1 and PSS
    let (private, jwk) = rsa();
    for (alg, rsa_alg) in [
        (Alg::RS256, Rsa::rs256()),
        (Alg::RS384, Rsa::rs384()),
        (Alg::RS512, Rsa::rs512()),
        (Alg::PS256, Rsa::ps256()),
    ] {
        let token = rsa_alg.token(&header, &claims(json!({})), private).unwrap();
        let key = Key::from_jwk(Some("k".into()), alg, jwk).unwrap();
        assert!(check(&[key], &token).is_ok(), "{alg:?}");
    }
    // ES256
    let signing = p256::ecdsa::SigningKey::random(&mut rand::thread_rng());
    let token = Es256.token(&header, &claims(json!({})), &signing).unwrap();
    let jwk = serde_json::to_value(JsonWebKey::from(signing.verifying_key())).unwrap();
    assert!(check(
        &[Key::from_jwk(Some("k".into()), Alg::ES256, &jwk).unwrap()],
        &token
    )
    .is_ok());
    // EdDSA
    let (secret, public) = Ed25519::generate(&mut rand::thread_rng());
    let token = Ed25519.token(&header, &claims(json!({})), &secret).unwrap();
    let jwk = serde_json::to_value(JsonWebKey::from(&public)).unwrap();
    assert!(check(
        &[Key::from_jwk(Some("k".into()), Alg::EdDSA, &jwk).unwrap()],
        &token
    )
    .is_ok());
}

#[cfg(feature = "asymmetric-jwt")]
fn b64(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

#[test]
#[cfg(feature = "asymmetric-jwt")] // the algorithm-confusion case needs an RSA key
fn attacks_are_refused() {
    let hs = hs_key();
    let (_, rsa_jwk) = rsa();
    let rs = Key::from_jwk(Some("rs".into()), Alg::RS256, rsa_jwk).unwrap();
    let payload = b64(
        &json!({"iss": "https://auth.example.com/", "aud": "api", "sub": "mallory", "exp": NOW / 1000 + 600}),
    );
    let good = hs_token(&kid("hs"), json!({}));
    let sig = good.rsplit('.').next().unwrap();

    // alg: none, with and without a signature
    let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "kid": "hs"})));
    // algorithm confusion: HS256 signed with the RSA public key's bytes, against an RS256 key
    let n = rsa_jwk["n"].as_str().unwrap().as_bytes();
    let confused = Hs256
        .token(&kid("rs"), &claims(json!({})), &Hs256Key::new(n))
        .unwrap();
    // crit header
    let mut crit_fields = Map::new();
    crit_fields.insert("crit".into(), json!(["exp"]));
    let crit = hs_token(&Header::new(crit_fields).with_key_id("hs"), json!({}));
    // a signature from another token
    let spliced = format!("{}.{payload}.{sig}", good.split('.').next().unwrap());

    let rows: Vec<(&str, String, Result<(), TokenError>)> = vec![
        (
            "alg none",
            none,
            Err(TokenError::Invalid("token algorithm is not accepted")),
        ),
        ("alg confusion", confused, Err(TokenError::UnknownKid)),
        (
            "crit",
            crit,
            Err(TokenError::Invalid(
                "critical header extensions are not supported",
            )),
        ),
        (
            "spliced signature",
            spliced,
            Err(TokenError::Invalid("signature is invalid")),
        ),
        (
            "garbage",
            "not.a.token".into(),
            Err(TokenError::Invalid("malformed token")),
        ),
        (
            "two segments",
            "abc.def".into(),
            Err(TokenError::Invalid("malformed token")),
        ),
        (
            "empty",
            String::new(),
            Err(TokenError::Invalid("malformed token")),
        ),
        (
            "unknown kid",
            hs_token(&kid("other"), json!({})),
            Err(TokenError::UnknownKid),
        ),
        (
            "expired",
            hs_token(&kid("hs"), json!({"exp": NOW / 1000 - 61})),
            Err(TokenError::Invalid("token expired")),
        ),
        (
            "expired within leeway",
            hs_token(&kid("hs"), json!({"exp": NOW / 1000 - 30})),
            Ok(()),
        ),
        (
            "no exp",
            hs_token(&kid("hs"), json!({"exp": null})),
            Err(TokenError::Invalid("token has no expiry")),
        ),
        (
            "not yet valid",
            hs_token(&kid("hs"), json!({"nbf": NOW / 1000 + 120})),
            Err(TokenError::Invalid("token is not valid yet")),
        ),
        (
            "nbf within leeway",
            hs_token(&kid("hs"), json!({"nbf": NOW / 1000 + 30})),
            Ok(()),
        ),
        (
            "wrong issuer",
            hs_token(&kid("hs"), json!({"iss": "https://evil/"})),
            Err(TokenError::Invalid("wrong issuer")),
        ),
        (
            "no issuer",
            hs_token(&kid("hs"), json!({"iss": null})),
            Err(TokenError::Invalid("wrong issuer")),
        ),
        (
            "wrong audience",
            hs_token(&kid("hs"), json!({"aud": "web"})),
            Err(TokenError::Invalid("wrong audience")),
        ),
        (
            "audience array",
            hs_token(&kid("hs"), json!({"aud": ["web", "api"]})),
            Ok(()),
        ),
        (
            "audience array without ours",
            hs_token(&kid("hs"), json!({"aud": ["web"]})),
            Err(TokenError::Invalid("wrong audience")),
        ),
        (
            "no kid tries keys of the alg",
            hs_token(&Header::new(Map::new()), json!({})),
            Ok(()),
        ),
    ];
    for (name, token, want) in rows {
        let got = check(&[hs.clone(), rs.clone()], &token).map(|_| ());
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn injected_keys_in_headers_are_ignored() {
    // the attacker signs with their own key and points jku / jwk / x5u at it
    let attacker = Hs256Key::new(b"attacker-secret-attacker-secret-!");
    let mut fields = Map::new();
    fields.insert(
        "jwk".into(),
        json!({"kty": "oct", "k": B64.encode(b"attacker-secret-attacker-secret-!")}),
    );
    let header = Header::new(fields)
        .with_key_id("hs")
        .with_key_set_url("https://evil.example/jwks.json")
        .with_certificate_url("https://evil.example/cert");
    let token = Hs256.token(&header, &claims(json!({})), &attacker).unwrap();
    assert_eq!(
        check(&[hs_key()], &token).map(|_| ()),
        Err(TokenError::Invalid("signature is invalid"))
    );
    // and the same headers on an honestly signed token change nothing
    let honest = hs_token(&header, json!({}));
    assert!(check(&[hs_key()], &honest).is_ok());
}

#[test]
#[cfg(feature = "asymmetric-jwt")]
fn key_checks() {
    let (_, jwk) = rsa();
    let small = {
        let k = Rsa::generate(&mut rand::thread_rng(), ModulusBits::TwoKibibytes)
            .unwrap()
            .0
            .into_inner();
        let mut v = serde_json::to_value(JsonWebKey::from(&RsaPublicKey::from(&k))).unwrap();
        // cut the modulus to 1024 bits
        let n = B64.decode(v["n"].as_str().unwrap()).unwrap();
        v["n"] = json!(B64.encode(&n[..128]));
        v
    };
    let rows = [
        (Alg::RS256, jwk.clone(), Ok(())),
        (Alg::ES256, jwk.clone(), Err("algorithm ES256 does not fit a key of type RSA".to_string())),
        (Alg::EdDSA, jwk.clone(), Err("algorithm EdDSA does not fit a key of type RSA".to_string())),
        (Alg::RS256, small, Err("RSA keys must have at least 2048 bits, this one has 1024".to_string())),
        (Alg::RS256, json!({"kty": "nope"}), Err("not a usable JWK: unknown variant `nope`, expected one of `RSA`, `EC`, `oct`, `OKP`".to_string())),
    ];
    for (alg, jwk, want) in rows {
        assert_eq!(jwk_outcome(alg, &jwk), want, "{alg:?}");
    }
    assert_eq!(
        Key::hmac(None, Alg::HS256, b"short").map(|_| ()),
        Err("HS256 secrets must be at least 32 bytes, this one has 5".into())
    );
    assert_eq!(
        Key::hmac(None, Alg::RS256, SECRET).map(|_| ()),
        Err("RS256 needs a `jwk`, not a secret".into())
    );
}

#[test]
fn oct_jwks_make_hmac_keys_in_every_build() {
    let k = B64.encode([7u8; 32]);
    let key = Key::from_jwk(Some("k".into()), Alg::HS256, &json!({"kty": "oct", "k": k})).unwrap();
    assert_eq!((key.kid.as_deref(), key.alg), (Some("k"), Alg::HS256));
    for (alg, jwk, want) in [
        (
            Alg::HS256,
            json!({"kty": "oct", "k": B64.encode([7u8; 5])}),
            "HS256 secrets must be at least 32 bytes, this one has 5",
        ),
        (
            Alg::HS256,
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
            "algorithm HS256 does not fit a key of type RSA",
        ),
    ] {
        assert_eq!(jwk_outcome(alg, &jwk), Err(want.to_string()), "{jwk}");
    }
}

/// Without `asymmetric-jwt` a JWK is read by hand (jwt-compact's JWK parser is not linked).
#[test]
#[cfg(not(feature = "asymmetric-jwt"))]
fn jwks_without_the_asymmetric_algorithms() {
    for (alg, jwk, want) in [
        (
            Alg::RS256,
            json!({"kty": "oct", "k": B64.encode([7u8; 32])}),
            "RS256 is not verified by this build (cargo feature `asymmetric-jwt` is off)",
        ),
        (
            Alg::HS256,
            json!({"k": "abc"}),
            "not a usable JWK: no \"kty\"",
        ),
        (
            Alg::HS256,
            json!({"kty": "oct"}),
            "not a usable JWK: \"k\" is not base64url",
        ),
        (
            Alg::HS256,
            json!({"kty": "oct", "k": "not base64!"}),
            "not a usable JWK: \"k\" is not base64url",
        ),
    ] {
        assert_eq!(jwk_outcome(alg, &jwk), Err(want.to_string()), "{jwk}");
    }
}

#[test]
#[cfg(feature = "asymmetric-jwt")]
fn jwks_parsing() {
    let (_, rsa_jwk) = rsa();
    let mut with_alg = rsa_jwk.clone();
    with_alg["kid"] = json!("a");
    with_alg["alg"] = json!("PS256");
    let mut no_alg = rsa_jwk.clone();
    no_alg["kid"] = json!("b");
    let mut enc = rsa_jwk.clone();
    enc["use"] = json!("enc");
    let doc = json!({"keys": [with_alg, no_alg, enc, {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}, {"kty": "weird"}]});
    let keys = parse_jwks(&serde_json::to_vec(&doc).unwrap()).unwrap();
    let got: Vec<(Option<String>, Alg)> = keys.iter().map(|k| (k.kid.clone(), k.alg)).collect();
    assert_eq!(
        got,
        vec![
            (Some("a".into()), Alg::PS256),
            (Some("b".into()), Alg::RS256)
        ]
    );
    assert_eq!(
        parse_jwks(b"{}").map(|_| ()),
        Err("JWKS has no \"keys\" array".into())
    );
    assert!(parse_jwks(b"<html>").is_err());
}

#[test]
fn jwks_ttl_follows_cache_control_within_bounds() {
    let h = |v: &str| {
        let mut m = HeaderMap::new();
        m.insert("cache-control", v.parse().unwrap());
        m
    };
    assert_eq!(jwks_ttl_s(&h("public, max-age=300"), 60, 3600), 300);
    assert_eq!(jwks_ttl_s(&h("max-age=5"), 60, 3600), 60);
    assert_eq!(jwks_ttl_s(&h("max-age=999999"), 60, 3600), 3600);
    assert_eq!(jwks_ttl_s(&HeaderMap::new(), 60, 3600), 60);
}

#[test]
fn token_cache_is_bounded_and_expires() {
    let v = |until| Verified {
        consumer: Rc::default(),
        valid_until_ms: until,
    };
    let mut c = TokenCache::new(4);
    for i in 0..4 {
        c.put(0, &format!("t{i}"), v(NOW + 1000 * (i + 1)), NOW);
    }
    assert!(c.get(0, "t0", NOW).is_some());
    assert!(
        c.get(1, "t0", NOW).is_none(),
        "another provider's verdict is not reused"
    );
    assert!(
        c.get(0, "t0", NOW + 1000).is_none(),
        "expired with its token"
    );
    c.put(0, "t9", v(NOW + 9000), NOW);
    // full of live tokens: the half that expires soonest (up to the median, +3000) went
    assert_eq!(c.len(), 2);
    assert!(c.get(0, "t9", NOW).is_some());
    assert!(c.get(0, "t3", NOW).is_some());
    assert!(c.get(0, "t2", NOW).is_none());
}

#[test]
fn token_cache_compares_whole_tokens_not_just_the_hashed_tail() {
    let tail = "s".repeat(40);
    let mut c = TokenCache::new(8);
    c.put(
        0,
        &format!("header.claims-a.{tail}"),
        Verified {
            consumer: Rc::default(),
            valid_until_ms: NOW + 1000,
        },
        NOW,
    );
    assert!(c.get(0, &format!("header.claims-a.{tail}"), NOW).is_some());
    assert!(c.get(0, &format!("header.claims-b.{tail}"), NOW).is_none());
    assert!(c.get(0, &tail, NOW).is_none());
}

#[test]
fn api_keys_and_authorization() {
    let mut by_hash = HashMap::new();
    by_hash.insert(
        <[u8; 32]>::from(Sha256::digest(b"k-123")),
        KeyHolder {
            consumer: "acme".to_string(),
            scopes: vec!["read".to_string()],
            plan: None,
        },
    );
    let set = ApiKeySet {
        name: "partners".into(),
        label: "api_key:partners".into(),
        header: Some(HeaderName::from_static("x-api-key")),
        query: Some("api_key".into()),
        by_hash,
    };
    let mut h = HeaderMap::new();
    assert_eq!(
        presented_api_key(&set, &h, Some("a=1&api_key=k-123")),
        Some("k-123".into())
    );
    h.insert("x-api-key", "k-123".parse().unwrap());
    assert_eq!(
        check_api_key(&set, &presented_api_key(&set, &h, None).unwrap())
            .map(|c| c.consumer.as_str()),
        Some("acme")
    );
    assert_eq!(check_api_key(&set, "k-124"), None);

    let claims: Map<String, Value> = json!({"sub": "alice", "scope": "users:read users:write", "tier": "gold", "groups": ["a", "b"]}).as_object().unwrap().clone();
    let c = Consumer::from_claims(Rc::new(claims), None);
    assert_eq!((&*c.id, c.scopes.len()), ("alice", 2));
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let rows = [
        (s(&["users:read"]), vec![], Ok(())),
        (
            s(&["users:admin"]),
            vec![],
            Err(Reject::Forbidden("missing scope \"users:admin\"".into())),
        ),
        (
            s(&[]),
            vec![("tier".to_string(), json!(["gold", "silver"]))],
            Ok(()),
        ),
        (
            s(&[]),
            vec![("tier".to_string(), json!("silver"))],
            Err(Reject::Forbidden(
                "claim \"tier\" does not allow this".into(),
            )),
        ),
        (s(&[]), vec![("groups".to_string(), json!("b"))], Ok(())),
        (
            s(&[]),
            vec![("missing".to_string(), json!("x"))],
            Err(Reject::Forbidden(
                "claim \"missing\" does not allow this".into(),
            )),
        ),
    ];
    for (scopes, claims, want) in rows {
        assert_eq!(
            authorize(&scopes, &claims, &c),
            want,
            "{scopes:?} {claims:?}"
        );
    }
    let mut bearer_h = HeaderMap::new();
    bearer_h.insert("authorization", "bearer abc".parse().unwrap());
    assert_eq!(bearer(&bearer_h, &http::header::AUTHORIZATION), Some("abc"));
    bearer_h.insert("authorization", "Basic abc".parse().unwrap());
    assert_eq!(bearer(&bearer_h, &http::header::AUTHORIZATION), None);
}

/// A token with none of `sub`, `client_id` and `azp` names no consumer; a provider may name
/// the claim that does.
#[test]
fn tokens_without_an_identity_have_no_consumer() {
    let anonymous = hs_token(&kid_less(), json!({"sub": null}));
    let v = check(&[hs_key()], &anonymous).unwrap();
    assert_eq!((&*v.consumer.id, v.consumer.identified()), ("", None));
    let named = hs_token(&kid_less(), json!({"sub": null, "tenant_user": "t-9"}));
    let p = JwtProvider {
        consumer_claim: Some("tenant_user".into()),
        keys: vec![hs_key()],
        ..provider()
    };
    let v = verify_token(&p, &[&hs_key()], &named, NOW).unwrap();
    assert_eq!(v.consumer.identified(), Some("t-9"));
    // the named claim replaces the defaults: `sub` alone no longer names anyone
    let with_sub = hs_token(&kid_less(), json!({}));
    let v = verify_token(&p, &[&hs_key()], &with_sub, NOW).unwrap();
    assert_eq!(v.consumer.identified(), None);
}

/// A provider's `plan_claim` names the consumer's plan; a token without it, or naming a plan
/// the config does not have, has none.
#[test]
fn a_tokens_plan_claim_names_its_plan() {
    let p = JwtProvider {
        plan_claim: Some("tier".into()),
        plan_names: Rc::from(["free".to_string(), "gold".to_string()]),
        keys: vec![hs_key()],
        ..provider()
    };
    let plan = |extra: Value| {
        let token = hs_token(&kid_less(), extra);
        let v = verify_token(&p, &[&hs_key()], &token, NOW).unwrap();
        v.consumer.plan.map(|id| id.index())
    };
    assert_eq!(plan(json!({"tier": "gold"})), Some(1));
    assert_eq!(plan(json!({"tier": "free"})), Some(0));
    assert_eq!(plan(json!({"tier": "platinum"})), None);
    assert_eq!(plan(json!({"tier": 1})), None);
    assert_eq!(plan(json!({})), None);
}

/// A validly signed token over the provider's limit is refused before it is parsed.
#[test]
fn long_tokens_are_refused() {
    let padding = "x".repeat(16 * 1024);
    let long = hs_token(&kid_less(), json!({"pad": padding}));
    assert!(long.len() > 16 * 1024);
    assert_eq!(
        check(&[hs_key()], &long).map(|_| ()),
        Err(TokenError::Invalid("token is too long"))
    );
    let p = JwtProvider {
        max_token_bytes: 64 * 1024,
        ..provider()
    };
    assert!(verify_token(&p, &[&hs_key()], &long, NOW).is_ok());
}

/// An empty or blank API key is no credential at all.
#[test]
fn empty_api_keys_are_not_presented() {
    let set = ApiKeySet {
        name: "k".into(),
        label: "api_key:k".into(),
        header: Some(http::HeaderName::from_static("x-api-key")),
        query: Some("api_key".into()),
        by_hash: Default::default(),
    };
    for (header, query) in [
        (Some(""), None),
        (Some("   "), None),
        (None, Some("api_key=")),
        (None, Some("api_key=%20%20")),
        (Some(" "), Some("api_key=")),
    ] {
        let mut h = HeaderMap::new();
        if let Some(v) = header {
            h.insert("x-api-key", v.parse().unwrap());
        }
        assert_eq!(
            presented_api_key(&set, &h, query),
            None,
            "{header:?} {query:?}"
        );
    }
}

fn kid_less() -> Header<Map<String, Value>> {
    Header::new(Map::new())
}
