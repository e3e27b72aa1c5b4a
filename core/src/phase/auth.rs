//! Authentication and authorization: JWTs (inline keys or JWKS), API keys, required scopes and
//! claim rules → 401 / 403, and the consumer later phases see.
//!
//! The key decides the algorithm, never the token: a key verifies exactly one algorithm, and a
//! token is only tried against keys of its `alg` (and `kid`). `crit` is refused; `jku`, `x5u`
//! and `jwk` headers are ignored. Time comes in as an argument; JWKS fetching is the gateway's:
//! this module only parses key sets and decides TTLs and refetches.

use crate::config::diag::{header_name, refuse, Errs, CHECKS};
use crate::config::raw::Alg;
use crate::config::{outbound_url, raw, BuildFeatures, Id, Plan, Secrets};
use crate::host::UnixMillis;
use crate::problem::Reject;
use http::{HeaderMap, HeaderName};
#[cfg(feature = "asymmetric-jwt")]
use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaPublicKey};
use jwt_compact::alg::{Hs256, Hs256Key};
#[cfg(feature = "hs384-hs512")]
use jwt_compact::alg::{Hs384, Hs384Key, Hs512, Hs512Key};
#[cfg(feature = "asymmetric-jwt")]
use jwt_compact::jwk::JsonWebKey;
#[cfg(feature = "asymmetric-jwt")]
use jwt_compact::Algorithm;
use jwt_compact::{AlgorithmExt, UntrustedToken};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::rc::Rc;

type Claims = Map<String, Value>;

/// A key able to verify one algorithm.
#[derive(Clone)]
pub enum Verifier {
    Hs256(Hs256Key),
    #[cfg(feature = "hs384-hs512")]
    Hs384(Hs384Key),
    #[cfg(feature = "hs384-hs512")]
    Hs512(Hs512Key),
    #[cfg(feature = "asymmetric-jwt")]
    Rsa(Rsa, Box<RsaPublicKey>),
    #[cfg(feature = "asymmetric-jwt")]
    Es256(<Es256 as Algorithm>::VerifyingKey),
    #[cfg(feature = "asymmetric-jwt")]
    EdDsa(<Ed25519 as Algorithm>::VerifyingKey),
}

/// A verification key with its `kid` and the one algorithm it accepts.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Alg,
    pub verifier: Verifier,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, {})", self.kid, self.alg.name())
    }
}

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

impl Key {
    /// An HMAC key from its secret bytes.
    pub fn hmac(kid: Option<String>, alg: Alg, secret: &[u8]) -> Result<Key, String> {
        let min = match alg {
            Alg::HS256 => 32,
            Alg::HS384 => 48,
            Alg::HS512 => 64,
            other => return Err(format!("{} needs a `jwk`, not a secret", other.name())),
        };
        if secret.len() < min {
            return Err(format!(
                "{} secrets must be at least {min} bytes, this one has {}",
                alg.name(),
                secret.len()
            ));
        }
        let verifier = match alg {
            Alg::HS256 => Verifier::Hs256(Hs256Key::new(secret)),
            #[cfg(feature = "hs384-hs512")]
            Alg::HS384 => Verifier::Hs384(Hs384Key::new(secret)),
            #[cfg(feature = "hs384-hs512")]
            _ => Verifier::Hs512(Hs512Key::new(secret)),
            #[cfg(not(feature = "hs384-hs512"))]
            _ => {
                return Err(format!(
                    "{} is not verified by this build (cargo feature `hs384-hs512` is off)",
                    alg.name()
                ))
            }
        };
        Ok(Key { kid, alg, verifier })
    }

    /// A key from a JWK; the key type must fit the algorithm.
    #[cfg(feature = "asymmetric-jwt")]
    pub fn from_jwk(kid: Option<String>, alg: Alg, jwk: &Value) -> Result<Key, String> {
        let parsed: JsonWebKey<'_> =
            serde_json::from_value(jwk.clone()).map_err(|e| format!("not a usable JWK: {e}"))?;
        let kty = match &parsed {
            JsonWebKey::Rsa { .. } => "RSA",
            JsonWebKey::EllipticCurve { .. } => "EC",
            JsonWebKey::Symmetric { .. } => "oct",
            JsonWebKey::KeyPair { .. } => "OKP",
            _ => "unknown",
        };
        let mismatch = || format!("algorithm {} does not fit a key of type {kty}", alg.name());
        if alg.is_hmac() {
            let JsonWebKey::Symmetric { secret } = &parsed else {
                return Err(mismatch());
            };
            return Key::hmac(kid, alg, secret.as_ref());
        }
        let verifier = asymmetric_verifier(alg, &parsed, mismatch)?;
        Ok(Key { kid, alg, verifier })
    }

    /// A key from a JWK in a build that verifies only the HMAC algorithms: an `oct` key, read
    /// here rather than by jwt-compact's JWK parser, whose code was 13 KB of the gzipped worker
    /// (BENCHMARKS.md, "Workers: size").
    #[cfg(not(feature = "asymmetric-jwt"))]
    pub fn from_jwk(kid: Option<String>, alg: Alg, jwk: &Value) -> Result<Key, String> {
        use base64::Engine;
        let kty = jwk
            .get("kty")
            .and_then(Value::as_str)
            .ok_or("not a usable JWK: no \"kty\"")?;
        if !alg.is_hmac() {
            return Err(format!(
                "{} is not verified by this build (cargo feature `asymmetric-jwt` is off)",
                alg.name()
            ));
        }
        if kty != "oct" {
            return Err(format!(
                "algorithm {} does not fit a key of type {kty}",
                alg.name()
            ));
        }
        let secret = jwk
            .get("k")
            .and_then(Value::as_str)
            .and_then(|k| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k.trim_end_matches('='))
                    .ok()
            })
            .ok_or("not a usable JWK: \"k\" is not base64url")?;
        Key::hmac(kid, alg, &secret)
    }

    /// Checks the signature; `Ok(claims)` when it holds.
    fn verify(
        &self,
        token: &UntrustedToken<'_, Claims>,
    ) -> Option<jwt_compact::Token<Claims, Claims>> {
        match &self.verifier {
            Verifier::Hs256(k) => Hs256.validator::<Claims>(k).validate(token).ok(),
            #[cfg(feature = "hs384-hs512")]
            Verifier::Hs384(k) => Hs384.validator::<Claims>(k).validate(token).ok(),
            #[cfg(feature = "hs384-hs512")]
            Verifier::Hs512(k) => Hs512.validator::<Claims>(k).validate(token).ok(),
            #[cfg(feature = "asymmetric-jwt")]
            Verifier::Rsa(alg, k) => alg.validator::<Claims>(k).validate(token).ok(),
            #[cfg(feature = "asymmetric-jwt")]
            Verifier::Es256(k) => Es256.validator::<Claims>(k).validate(token).ok(),
            #[cfg(feature = "asymmetric-jwt")]
            Verifier::EdDsa(k) => Ed25519.validator::<Claims>(k).validate(token).ok(),
        }
    }
}

/// An RSA, P-256 or Ed25519 verifier for `alg`, when the key type fits it.
#[cfg(feature = "asymmetric-jwt")]
fn asymmetric_verifier(
    alg: Alg,
    parsed: &JsonWebKey<'_>,
    mismatch: impl Fn() -> String,
) -> Result<Verifier, String> {
    Ok(match alg {
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 => {
            let JsonWebKey::Rsa { modulus, .. } = &parsed else {
                return Err(mismatch());
            };
            let bits = modulus_bits(modulus);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA keys must have at least {MIN_RSA_BITS} bits, this one has {bits}"
                ));
            }
            let key = RsaPublicKey::try_from(parsed).map_err(|e| format!("bad RSA key: {e}"))?;
            let rsa = match alg {
                Alg::RS256 => Rsa::rs256(),
                Alg::RS384 => Rsa::rs384(),
                Alg::RS512 => Rsa::rs512(),
                _ => Rsa::ps256(),
            };
            Verifier::Rsa(rsa, Box::new(key))
        }
        Alg::ES256 => {
            if !matches!(parsed, JsonWebKey::EllipticCurve { .. }) {
                return Err(mismatch());
            }
            Verifier::Es256(TryFrom::try_from(parsed).map_err(|e| format!("bad P-256 key: {e}"))?)
        }
        Alg::EdDSA => {
            if !matches!(parsed, JsonWebKey::KeyPair { .. }) {
                return Err(mismatch());
            }
            Verifier::EdDsa(TryFrom::try_from(parsed).map_err(|e| format!("bad Ed25519 key: {e}"))?)
        }
        Alg::HS256 | Alg::HS384 | Alg::HS512 => return Err(mismatch()),
    })
}

#[cfg(feature = "asymmetric-jwt")]
fn modulus_bits(modulus: &[u8]) -> usize {
    let trimmed: &[u8] = {
        let start = modulus
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(modulus.len());
        &modulus[start..]
    };
    match trimmed.first() {
        Some(first) => (trimmed.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// A compiled JWT provider.
#[derive(Debug, Clone)]
pub struct JwtProvider {
    pub name: String,
    /// `jwt:NAME`, the auth phase's decision in the access log.
    pub label: String,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub jwks_url: Option<String>,
    pub keys: Vec<Key>,
    pub leeway_s: u64,
    pub require_exp: bool,
    pub header: HeaderName,
    pub jwks_min_ttl_s: u32,
    pub jwks_max_ttl_s: u32,
    pub jwks_cooldown_s: u32,
    pub fail_open: bool,
    /// The claim naming the consumer (`None`: `sub`, `client_id`, `azp`).
    pub consumer_claim: Option<String>,
    /// The claim naming the consumer's plan, and the plans' names (a plan's id is its position).
    pub plan_claim: Option<String>,
    pub plan_names: Rc<[String]>,
    /// The longest token accepted.
    pub max_token_bytes: usize,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// No key has the token's `kid`: the key set may have rotated.
    UnknownKid,
    /// The token is not acceptable; the text is safe to show the client.
    Invalid(&'static str),
}

/// A token that passed every check, with the consumer it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub consumer: Rc<Consumer>,
    /// When the token stops being acceptable (exp + leeway), in ms.
    pub valid_until_ms: u64,
}

/// Verifies a token against `keys` (inline keys first, then the key set) at `now`.
pub fn verify_token(
    p: &JwtProvider,
    keys: &[&Key],
    token: &str,
    now: UnixMillis,
) -> Result<Verified, TokenError> {
    if token.len() > p.max_token_bytes {
        return Err(TokenError::Invalid("token is too long"));
    }
    let untrusted = UntrustedToken::<Claims>::try_from(token)
        .map_err(|_| TokenError::Invalid("malformed token"))?;
    let header = untrusted.header();
    if header.other_fields.contains_key("crit") {
        return Err(TokenError::Invalid(
            "critical header extensions are not supported",
        ));
    }
    let alg = untrusted.algorithm();
    let kid = header.key_id.as_deref();
    let of_alg: Vec<&&Key> = keys.iter().filter(|k| k.alg.name() == alg).collect();
    if of_alg.is_empty() {
        return Err(TokenError::Invalid("token algorithm is not accepted"));
    }
    let candidates: Vec<&&Key> = match kid {
        Some(kid) => of_alg
            .into_iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .collect(),
        None => of_alg,
    };
    if candidates.is_empty() {
        return Err(TokenError::UnknownKid);
    }
    let token = candidates
        .iter()
        .find_map(|k| k.verify(&untrusted))
        .ok_or(TokenError::Invalid("signature is invalid"))?;
    let claims = token.claims();
    let now_s = (now / 1000) as i64;
    let leeway = p.leeway_s as i64;
    let valid_until_ms = match claims.expiration {
        Some(exp) => {
            if exp.timestamp() + leeway <= now_s {
                return Err(TokenError::Invalid("token expired"));
            }
            ((exp.timestamp() + leeway).max(0) as u64) * 1000
        }
        None if p.require_exp => return Err(TokenError::Invalid("token has no expiry")),
        None => now + 300_000,
    };
    if claims
        .not_before
        .is_some_and(|nbf| nbf.timestamp() - leeway > now_s)
    {
        return Err(TokenError::Invalid("token is not valid yet"));
    }
    let custom = &claims.custom;
    if let Some(iss) = &p.issuer {
        if custom.get("iss").and_then(Value::as_str) != Some(iss) {
            return Err(TokenError::Invalid("wrong issuer"));
        }
    }
    if !p.audiences.is_empty() {
        let ok = match custom.get("aud") {
            Some(Value::String(a)) => p.audiences.contains(a),
            Some(Value::Array(list)) => list.iter().any(|a| {
                a.as_str()
                    .is_some_and(|a| p.audiences.iter().any(|x| x == a))
            }),
            _ => false,
        };
        if !ok {
            return Err(TokenError::Invalid("wrong audience"));
        }
    }
    let mut consumer = Consumer::from_claims(Rc::new(custom.clone()), p.consumer_claim.as_deref());
    // a plan the config does not have is no plan: the policies' own limits apply
    consumer.plan = (p.plan_claim.as_deref())
        .and_then(|c| custom.get(c)?.as_str())
        .and_then(|name| p.plan_names.iter().position(|n| n == name))
        .and_then(|i| u32::try_from(i).ok())
        .map(Id::new);
    Ok(Verified {
        consumer: Rc::new(consumer),
        valid_until_ms,
    })
}

/// The bearer token from the provider's header.
pub fn bearer<'h>(headers: &'h HeaderMap, header: &HeaderName) -> Option<&'h str> {
    let v = headers.get(header)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Verified tokens, so a token seen before is not verified again. Bounded; entries leave when
/// their token expires.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    /// token → (provider index, verdict)
    entries: HashMap<String, (usize, Verified), TailHash>,
}

/// Hashes only the last 32 bytes of a token (keyed SipHash, as the standard map does): a JWT ends
/// in its signature, which is what differs between tokens, so the hash costs the same for long
/// tokens as for short ones. Lookups still compare whole tokens, and only verified tokens are
/// stored, so a crafted token that shares a tail finds nothing.
#[derive(Debug, Default, Clone)]
pub struct TailHash(std::collections::hash_map::RandomState);

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

pub struct TailHasher(std::collections::hash_map::DefaultHasher);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(32)..]);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: HashMap::default(),
        }
    }

    /// A still-valid entry for this provider.
    pub fn get(&self, provider: usize, token: &str, now: UnixMillis) -> Option<Verified> {
        self.entries
            .get(token)
            .filter(|(p, v)| *p == provider && v.valid_until_ms > now)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&mut self, provider: usize, token: &str, verified: Verified, now: UnixMillis) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, v)| v.valid_until_ms > now);
            if self.entries.len() >= self.capacity {
                // still full of live tokens: drop the half that expires soonest
                let mut ends: Vec<u64> = self
                    .entries
                    .values()
                    .map(|(_, v)| v.valid_until_ms)
                    .collect();
                // the median, in linear time (and a smaller routine in the wasm than a sort)
                let mid = ends.len() / 2;
                let cut = *ends.select_nth_unstable(mid).1;
                self.entries.retain(|_, (_, v)| v.valid_until_ms > cut);
            }
        }
        self.entries.insert(token.to_string(), (provider, verified));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Parses a JWKS document into keys. Keys that cannot verify (encryption keys, unknown types,
/// weak RSA) are left out; the algorithm comes from the key's `alg` or, when absent, its type.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no \"keys\" array")?;
    let mut keys = Vec::new();
    for jwk in list {
        if jwk
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let alg = match jwk.get("alg").and_then(Value::as_str) {
            Some(a) => Alg::from_name(a),
            None => match (
                jwk.get("kty").and_then(Value::as_str),
                jwk.get("crv").and_then(Value::as_str),
            ) {
                (Some("RSA"), _) => Some(Alg::RS256),
                (Some("EC"), Some("P-256")) => Some(Alg::ES256),
                (Some("OKP"), Some("Ed25519")) => Some(Alg::EdDSA),
                _ => None,
            },
        };
        let Some(alg) = alg else { continue };
        if alg.is_hmac() {
            continue; // shared secrets never come from a URL
        }
        let kid = jwk.get("kid").and_then(Value::as_str).map(String::from);
        if let Ok(key) = Key::from_jwk(kid, alg, jwk) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// How long to keep a fetched JWKS: its `Cache-Control: max-age`, clamped to the provider's bounds.
pub fn jwks_ttl_s(headers: &HeaderMap, min_s: u32, max_s: u32) -> u32 {
    let max_age = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|d| {
            d.trim()
                .strip_prefix("max-age=")?
                .trim_matches('"')
                .parse::<u32>()
                .ok()
        });
    max_age.unwrap_or(min_s).clamp(min_s, max_s.max(min_s))
}

/// A compiled API-key set.
#[derive(Debug, Clone)]
pub struct ApiKeySet {
    pub name: String,
    /// `api_key:NAME`, the auth phase's decision in the access log.
    pub label: String,
    pub header: Option<HeaderName>,
    pub query: Option<String>,
    pub by_hash: HashMap<[u8; 32], KeyHolder>,
}

/// Whom an API key belongs to: its consumer, scopes and plan.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHolder {
    pub consumer: String,
    pub scopes: Vec<String>,
    pub plan: Option<Id<Plan>>,
}

/// The API key presented in the request, if any: an empty or blank value is no key.
pub fn presented_api_key(
    set: &ApiKeySet,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<String> {
    if let Some(h) = &set.header {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
            let v = v.trim();
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    let name = set.query.as_deref()?;
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
}

/// Looks a key up by its SHA-256.
pub fn check_api_key<'a>(set: &'a ApiKeySet, key: &str) -> Option<&'a KeyHolder> {
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    set.by_hash.get(&digest)
}

/// Who made the request, once authenticated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Consumer {
    /// `sub` (JWT) or the key's consumer name; shared with the access log and rate-limit keys.
    pub id: Rc<str>,
    pub scopes: Vec<String>,
    /// JWT claims (empty for API keys).
    pub claims: Rc<Claims>,
    /// The consumer's plan: its API key's, or the one its token's `plan_claim` names.
    pub plan: Option<Id<Plan>>,
}

impl Consumer {
    /// A consumer from verified JWT claims; its id is the `id_claim` (by default the first of
    /// `sub`, `client_id` and `azp`), empty when the token has none.
    pub fn from_claims(claims: Rc<Claims>, id_claim: Option<&str>) -> Consumer {
        let id = match id_claim {
            Some(c) => claims.get(c).and_then(Value::as_str),
            None => ["sub", "client_id", "azp"]
                .iter()
                .find_map(|c| claims.get(*c).and_then(Value::as_str)),
        }
        .unwrap_or("")
        .into();
        let mut scopes: Vec<String> = Vec::new();
        for name in ["scope", "scp"] {
            match claims.get(name) {
                Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(String::from)),
                Some(Value::Array(list)) => {
                    scopes.extend(list.iter().filter_map(Value::as_str).map(String::from))
                }
                _ => {}
            }
        }
        Consumer {
            id,
            scopes,
            claims,
            plan: None,
        }
    }

    /// The consumer's id, `None` for a token that names no consumer (an empty id is no id:
    /// such tokens must not share one cache namespace or one rate-limit bucket).
    pub fn identified(&self) -> Option<&str> {
        (!self.id.is_empty()).then_some(&*self.id)
    }

    /// A claim as text, for rate-limit keys and logs.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// Checks required scopes and claim rules → 403.
pub fn authorize(
    scopes: &[String],
    claims: &[(String, Value)],
    consumer: &Consumer,
) -> Result<(), Reject> {
    if let Some(missing) = scopes.iter().find(|s| !consumer.scopes.contains(s)) {
        return Err(Reject::Forbidden(format!("missing scope {missing:?}")));
    }
    for (name, rule) in claims {
        let actual = consumer.claims.get(name);
        let accepted = |want: &Value| match actual {
            Some(Value::Array(items)) => items.contains(want),
            Some(v) => v == want,
            None => false,
        };
        let ok = match rule {
            Value::Array(options) => options.iter().any(accepted),
            one => accepted(one),
        };
        if !ok {
            return Err(Reject::Forbidden(format!(
                "claim {name:?} does not allow this"
            )));
        }
    }
    Ok(())
}

impl JwtProvider {
    /// Checks and builds JWT provider `name`, reading `secret_env` keys from `secrets`.
    pub(crate) fn compile(
        e: &mut Errs<'_>,
        name: &str,
        p: &raw::JwtProvider,
        secrets: Secrets<'_>,
        plans: &[&str],
    ) -> JwtProvider {
        let path = format!("auth.jwt.{name}");
        if p.keys.is_empty() && p.jwks_url.is_none() {
            refuse!(e, &path, "needs `keys` or `jwks_url`");
        }
        let jwks_url = p
            .jwks_url
            .as_ref()
            .and_then(|u| outbound_url(e, &format!("{path}.jwks_url"), u, p.allow_private))
            .map(|t| t.url);
        let mut keys = Vec::new();
        for (i, k) in p.keys.iter().enumerate() {
            if CHECKS && !BuildFeatures::COMPILED.verifies(k.alg) {
                continue; // refused above, with the feature it needs
            }
            let kp = format!("{path}.keys[{i}]");
            let secret = match (&k.secret, &k.secret_base64, &k.secret_env) {
                (Some(s), None, None) => Some(Ok(s.as_bytes().to_vec())),
                (None, Some(b), None) => {
                    Some(decode_base64(b).ok_or_else(|| "secret_base64 is not base64".to_string()))
                }
                (None, None, Some(var)) => {
                    match env_secret(var, k.alg, secrets) {
                        Err(m) => {
                            e.push(format!("{kp}.secret_env"), m);
                            continue;
                        }
                        Ok(_) if k.jwk.is_some() => {
                            Some(Err("give a secret or a `jwk`, not both".to_string()))
                        }
                        // checked as far as it can be without the value; the key is left out
                        Ok(None) => continue,
                        Ok(Some(bytes)) => Some(Ok(bytes)),
                    }
                }
                (None, None, None) => None,
                _ => Some(Err(
                    "give one of `secret`, `secret_base64` and `secret_env`, not several"
                        .to_string(),
                )),
            };
            let key = match (secret, &k.jwk) {
                (Some(_), Some(_)) => Err("give a secret or a `jwk`, not both".to_string()),
                (Some(Ok(bytes)), None) => Key::hmac(k.kid.clone(), k.alg, &bytes),
                (Some(Err(m)), None) => Err(m),
                (None, Some(jwk)) => Key::from_jwk(k.kid.clone(), k.alg, jwk),
                (None, None) => Err(format!(
                    "{} needs {}",
                    k.alg.name(),
                    if k.alg.is_hmac() {
                        "`secret`, `secret_base64` or `secret_env`"
                    } else {
                        "a `jwk`"
                    }
                )),
            };
            match key {
                Ok(key) => keys.push(key),
                Err(m) => e.push(kp, m),
            }
        }
        if p.jwks_min_ttl_s > p.jwks_max_ttl_s {
            refuse!(
                e,
                format!("{path}.jwks_min_ttl_s"),
                "must not be greater than jwks_max_ttl_s",
            );
        }
        let header = header_name(e, &format!("{path}.header"), &p.header);
        JwtProvider {
            name: name.to_string(),
            label: format!("jwt:{name}"),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            jwks_url,
            keys,
            leeway_s: u64::from(p.leeway_s),
            require_exp: p.require_exp,
            header: header.unwrap_or(http::header::AUTHORIZATION),
            jwks_min_ttl_s: p.jwks_min_ttl_s,
            jwks_max_ttl_s: p.jwks_max_ttl_s,
            jwks_cooldown_s: p.jwks_cooldown_s,
            fail_open: p.fail == raw::FailMode::Open,
            consumer_claim: p.consumer_claim.clone(),
            plan_claim: p.plan_claim.clone(),
            plan_names: match p.plan_claim {
                Some(_) => plans.iter().map(|n| n.to_string()).collect(),
                None => Rc::from([]),
            },
            max_token_bytes: p.max_token_bytes,
        }
    }
}

impl ApiKeySet {
    /// Checks and builds API-key set `name`.
    pub(crate) fn compile(
        e: &mut Errs<'_>,
        name: &str,
        s: &raw::ApiKeySet,
        plans: &[&str],
    ) -> ApiKeySet {
        let path = format!("auth.api_keys.{name}");
        let header = match (&s.header, &s.query) {
            (Some(h), _) => header_name(e, &format!("{path}.header"), h),
            (None, None) => Some(HeaderName::from_static("x-api-key")),
            (None, Some(_)) => None,
        };
        let mut by_hash = HashMap::new();
        for (i, k) in s.keys.iter().enumerate() {
            let kp = format!("{path}.keys[{i}].sha256");
            match hex::decode(&k.sha256)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            {
                Some(digest) if digest == EMPTY_SHA256 => refuse!(e,
                    kp,
                    "is the SHA-256 of the empty string (an unset variable?): an empty key is no credential",
                ),
                Some(digest) => {
                    let plan = k.plan.as_deref().and_then(|p| match plans.iter().position(|n| *n == p) {
                        Some(i) => u32::try_from(i).ok().map(Id::new),
                        None => {
                            let hint = crate::config::compile::did_you_mean(p, plans.iter().copied());
                            refuse!(e, format!("{path}.keys[{i}].plan"), format!("unknown plan {p:?}{hint}"));
                            None
                        }
                    });
                    let holder = KeyHolder {
                        consumer: k.consumer.clone(),
                        scopes: k.scopes.clone(),
                        plan,
                    };
                    if by_hash.insert(digest, holder).is_some() {
                        refuse!(e, kp, "the same key is listed twice");
                    }
                }
                None => refuse!(e, kp, "must be 64 hex digits (the SHA-256 of the key)"),
            }
        }
        ApiKeySet {
            name: name.to_string(),
            label: format!("api_key:{name}"),
            header,
            query: s.query.clone(),
            by_hash,
        }
    }
}

/// The SHA-256 of the empty string, what `printf %s "$UNSET" | sha256sum` gives.
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The secret a `secret_env` key names: `Ok(None)` when secrets are not read (`Deferred`).
fn env_secret(var: &str, alg: raw::Alg, secrets: Secrets<'_>) -> Result<Option<Vec<u8>>, String> {
    let valid = !var.is_empty()
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "{var:?} is not a variable name (letters, digits and `_`, not starting with a digit)"
        ));
    }
    if !alg.is_hmac() {
        return Err(format!(
            "holds an HMAC secret, and {} needs a `jwk`",
            alg.name()
        ));
    }
    match secrets {
        Secrets::Deferred => Ok(None),
        Secrets::From(read) => match read(var) {
            Some(v) if !v.is_empty() => Ok(Some(v.into_bytes())),
            _ => Err(format!(
                "the environment has no {var} (on Workers: `npx wrangler secret put {var}`; on \
                 Spin: `spin up -e {var}=...`)"
            )),
        },
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let s = s.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('='))
        })
        .ok()
}

#[cfg(test)]
mod tests;
