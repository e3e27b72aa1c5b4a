//! Which optional parts of the core (cargo features) a config needs. This is the one rule:
//! `compile` checks it against the build it runs in, [`Config::embed`](super::Config::embed)
//! against the adapter being built (with each use's line and column), and the build tool
//! (`portcullis-build`) turns it into the worker's `--features`.

use super::raw::{Alg, RawConfig};

/// An optional part of the core, compiled in by the cargo feature of [`Feature::cargo_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    /// `body_schema` validation (the jsonschema crate and its regex engines).
    JsonSchema,
    /// RS*, PS256, ES256 and EdDSA tokens, and keys from a JWKS.
    AsymmetricJwt,
    /// HS384 and HS512 tokens (SHA-512).
    Hs384Hs512,
    /// Routes with `cache` and the `purge_cache` admin action (RFC 9111 rules).
    ResponseCache,
    /// `[telemetry]`: traces and metrics sent to an OpenTelemetry collector (OTLP protobuf) or
    /// written to a Workers Analytics Engine dataset.
    Telemetry,
}

impl Feature {
    /// Every optional part.
    pub const ALL: [Feature; 5] = [
        Feature::JsonSchema,
        Feature::AsymmetricJwt,
        Feature::Hs384Hs512,
        Feature::ResponseCache,
        Feature::Telemetry,
    ];

    /// The cargo feature's name, as the core and both adapters spell it.
    pub fn cargo_name(self) -> &'static str {
        match self {
            Feature::JsonSchema => "json-schema",
            Feature::AsymmetricJwt => "asymmetric-jwt",
            Feature::Hs384Hs512 => "hs384-hs512",
            Feature::ResponseCache => "response-cache",
            Feature::Telemetry => "telemetry",
        }
    }

    /// The part that verifies tokens signed with `alg`, if it is optional.
    pub fn for_alg(alg: Alg) -> Option<Feature> {
        match alg {
            Alg::HS256 => None,
            Alg::HS384 | Alg::HS512 => Some(Feature::Hs384Hs512),
            _ => Some(Feature::AsymmetricJwt),
        }
    }
}

/// One use of an optional part: the key path that uses it, and what a build without it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub feature: Feature,
    pub path: String,
    /// The error when the part is missing, e.g. "this build has no response cache (cargo
    /// feature `response-cache` is off)".
    pub missing: String,
}

/// Every use of an optional part in `raw`, in the order of the file's sections.
pub fn needs(raw: &RawConfig) -> Vec<Need> {
    let mut out = Vec::new();
    let mut need = |feature: Feature, path: String, what: String| {
        let missing = format!("{what} (cargo feature `{}` is off)", feature.cargo_name());
        out.push(Need {
            feature,
            path,
            missing,
        });
    };
    for (name, p) in &raw.auth.jwt {
        let path = format!("auth.jwt.{name}");
        if p.jwks_url.is_some() {
            // a JWKS may hold keys of any algorithm; both parts verify what it holds
            need(
                Feature::Hs384Hs512,
                format!("{path}.jwks_url"),
                "a JWKS may hold HS384 and HS512 keys, and this build does not verify them".into(),
            );
            need(
                Feature::AsymmetricJwt,
                format!("{path}.jwks_url"),
                "a JWKS may hold RSA, EC and Ed25519 keys, and this build verifies none of them"
                    .into(),
            );
        }
        for (i, k) in p.keys.iter().enumerate() {
            if let Some(feature) = Feature::for_alg(k.alg) {
                let what = format!("{} is not verified by this build", k.alg.name());
                need(feature, format!("{path}.keys[{i}].alg"), what);
            }
        }
    }
    if raw.telemetry.is_some() {
        let what = "this build sends no traces or metrics".into();
        need(Feature::Telemetry, "telemetry".into(), what);
    }
    for (i, r) in raw.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if r.validate.as_ref().is_some_and(|v| v.body_schema.is_some()) {
            let what = "this build has no JSON Schema validator".into();
            need(
                Feature::JsonSchema,
                format!("{path}.validate.body_schema"),
                what,
            );
        }
        if r.cache.is_some() {
            let what = "this build has no response cache".into();
            need(Feature::ResponseCache, format!("{path}.cache"), what);
        }
        if r.admin.is_some() {
            let what = "this build has no response cache to purge".into();
            need(Feature::ResponseCache, format!("{path}.admin"), what);
        }
    }
    out
}

/// The optional parts a build has (cargo features of `portcullis-core`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildFeatures {
    /// `json-schema`: `body_schema` validation.
    pub json_schema: bool,
    /// `asymmetric-jwt`: RS*, PS256, ES256 and EdDSA tokens, and keys from a JWKS.
    pub asymmetric_jwt: bool,
    /// `hs384-hs512`: HS384 and HS512 tokens.
    pub hs384_hs512: bool,
    /// `response-cache`: routes with `cache`, and the `purge_cache` admin action.
    pub response_cache: bool,
    /// `telemetry`: `[telemetry]`, traces and metrics.
    pub telemetry: bool,
}

impl BuildFeatures {
    /// Everything in.
    pub const ALL: BuildFeatures = BuildFeatures {
        json_schema: true,
        asymmetric_jwt: true,
        hs384_hs512: true,
        response_cache: true,
        telemetry: true,
    };

    /// Nothing optional.
    pub const NONE: BuildFeatures = BuildFeatures {
        json_schema: false,
        asymmetric_jwt: false,
        hs384_hs512: false,
        response_cache: false,
        telemetry: false,
    };

    /// What this build of the core has.
    pub const COMPILED: BuildFeatures = BuildFeatures {
        json_schema: cfg!(feature = "json-schema"),
        asymmetric_jwt: cfg!(feature = "asymmetric-jwt"),
        hs384_hs512: cfg!(feature = "hs384-hs512"),
        response_cache: cfg!(feature = "response-cache"),
        telemetry: cfg!(feature = "telemetry"),
    };

    /// Just what `raw` needs: the features to build an adapter for it with.
    pub fn needed_by(raw: &RawConfig) -> BuildFeatures {
        needs(raw)
            .iter()
            .fold(BuildFeatures::NONE, |f, n| f.with(n.feature))
    }

    /// [`BuildFeatures::needed_by`] a TOML config, parsed but not compiled: a build tool that has
    /// none of the optional parts can choose them (the adapter's build then checks the config).
    #[cfg(feature = "toml")]
    pub fn needed_by_toml(src: &str) -> Result<BuildFeatures, super::ConfigErrors> {
        let (raw, _) = super::locate::parse_toml(src).map_err(super::ConfigErrors::sorted)?;
        Ok(BuildFeatures::needed_by(&raw))
    }

    /// Whether the build has `feature`.
    pub fn has(self, feature: Feature) -> bool {
        match feature {
            Feature::JsonSchema => self.json_schema,
            Feature::AsymmetricJwt => self.asymmetric_jwt,
            Feature::Hs384Hs512 => self.hs384_hs512,
            Feature::ResponseCache => self.response_cache,
            Feature::Telemetry => self.telemetry,
        }
    }

    /// These features and `feature`.
    pub fn with(mut self, feature: Feature) -> BuildFeatures {
        match feature {
            Feature::JsonSchema => self.json_schema = true,
            Feature::AsymmetricJwt => self.asymmetric_jwt = true,
            Feature::Hs384Hs512 => self.hs384_hs512 = true,
            Feature::ResponseCache => self.response_cache = true,
            Feature::Telemetry => self.telemetry = true,
        }
        self
    }

    /// Whether the build verifies tokens signed with `alg`.
    pub fn verifies(self, alg: Alg) -> bool {
        Feature::for_alg(alg).is_none_or(|f| self.has(f))
    }

    /// The cargo feature names, comma-separated (`""` for none), for `cargo build --features`.
    pub fn cargo_list(self) -> String {
        let on = Feature::ALL.into_iter().filter(|f| self.has(*f));
        on.map(Feature::cargo_name).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "toml")]
    fn raw(src: &str) -> RawConfig {
        super::super::locate::parse_toml(src).unwrap().0
    }

    #[cfg(feature = "toml")]
    #[test]
    fn each_optional_part_is_needed_where_a_key_uses_it() {
        let src = r#"
[auth.jwt.hmac]
keys = [{ kid = "a", alg = "HS256", secret = "0123456789abcdef0123456789abcdef" }]

[auth.jwt.long]
keys = [{ kid = "b", alg = "HS512", secret = "x" }, { kid = "c", alg = "RS256", jwk = {} }]

[auth.jwt.remote]
jwks_url = "https://auth.example.com/jwks.json"

[telemetry]
upstream = "collector"

[[routes]]
name = "r"
path = "/r"
validate = { body_schema = { type = "object" } }
cache = { ttl_s = 1 }
respond = {}
"#;
        let got: Vec<(Feature, String)> = needs(&raw(src))
            .into_iter()
            .map(|n| (n.feature, n.path))
            .collect();
        let want = [
            (Feature::Hs384Hs512, "auth.jwt.long.keys[0].alg"),
            (Feature::AsymmetricJwt, "auth.jwt.long.keys[1].alg"),
            (Feature::Hs384Hs512, "auth.jwt.remote.jwks_url"),
            (Feature::AsymmetricJwt, "auth.jwt.remote.jwks_url"),
            (Feature::Telemetry, "telemetry"),
            (Feature::JsonSchema, "routes[0].validate.body_schema"),
            (Feature::ResponseCache, "routes[0].cache"),
        ];
        let want: Vec<(Feature, String)> = want.map(|(f, p)| (f, p.to_string())).into();
        assert_eq!(got, want);
        assert_eq!(BuildFeatures::needed_by(&raw(src)), BuildFeatures::ALL);
    }

    #[cfg(feature = "toml")]
    #[test]
    fn the_cargo_list_names_just_what_the_config_uses() {
        for (src, want) in [
            ("", ""),
            (
                "[auth.jwt.a]\nkeys = [{ alg = \"ES256\", jwk = {} }]",
                "asymmetric-jwt",
            ),
            (
                "[auth.jwt.a]\njwks_url = \"https://a.example/j\"",
                "asymmetric-jwt,hs384-hs512",
            ),
            (
                "[[routes]]\nname = \"p\"\npath = \"/p\"\nadmin = \"purge_cache\"",
                "response-cache",
            ),
        ] {
            assert_eq!(
                BuildFeatures::needed_by(&raw(src)).cargo_list(),
                want,
                "{src}"
            );
        }
    }

    #[test]
    fn hs256_needs_nothing_optional() {
        assert!(BuildFeatures::NONE.verifies(Alg::HS256));
        assert!(!BuildFeatures::NONE.verifies(Alg::HS384));
        assert!(!BuildFeatures::NONE
            .with(Feature::Hs384Hs512)
            .verifies(Alg::EdDSA));
        assert!(BuildFeatures::NONE
            .with(Feature::AsymmetricJwt)
            .verifies(Alg::PS256));
    }
}
