use crate::config::{Config, Id};

fn errors(src: &str) -> String {
    Config::from_toml(src)
        .map(|_| ())
        .unwrap_err()
        .render("gateway.toml")
}

#[test]
#[cfg(feature = "asymmetric-jwt")] // the fixture's ES256 key is checked against its type
fn every_meaning_error_is_reported_with_its_place() {
    let want = r#"gateway.toml:2:34 gateway.trusted_proxies[1]: "300.1.1.1" is not an IP address or CIDR
gateway.toml:5:20 upstreams.users.targets[0].url: 10.0.0.5 is a private address; set allow_private = true to allow it
gateway.toml:5:49 upstreams.users.targets[1].url: 169.254.169.254 is a cloud metadata address; set allow_private = true to allow it
gateway.toml:6:14 upstreams.users.timeout_ms: must be greater than 0
gateway.toml:13:30 access.office.allow_ips[1]: "2001:db8::/129" is not an IP address or CIDR
gateway.toml:14:19 access.office.deny_countries[0]: "fr" is not an ISO 3166-1 alpha-2 code (two uppercase letters) or T1
gateway.toml:19:3 auth.jwt.main.keys[0]: HS256 secrets must be at least 32 bytes, this one has 9
gateway.toml:20:3 auth.jwt.main.keys[1]: algorithm ES256 does not fit a key of type RSA
gateway.toml:25:9 rate_limits.per_user.limit: must be between 1 and 1000000000
gateway.toml:29:28 transforms.bad.set_headers.x-evil: header values must not contain CR, LF or NUL
gateway.toml:29:51 transforms.bad.set_headers.bad name: "bad name" is not a valid header name
gateway.toml:33:21 cors.web.allow_credentials: cannot be true when allow_origins has "*"
gateway.toml:40:16 routes[0].auth.jwt: unknown JWT provider "mian" (did you mean "main"?)
gateway.toml:42:11 routes[0].rewrite: {uid} is not a parameter of path "/v1/users/{id}"
gateway.toml:46:19 routes[1].methods[1]: "FETCH!" is not an HTTP method
gateway.toml:47:8 routes[1].path: conflicts with routes[0]: same host, path and method
gateway.toml:48:12 routes[1].upstream: unknown upstream "nobody"
gateway.toml:54:14 routes[2].rate_limit: policy "per_user" counts by consumer or claim, but the route has no `auth`
18 errors; nothing was loaded
"#;
    assert_eq!(
        errors(include_str!("../../../tests/fixtures/broken.toml")),
        want
    );
}

#[test]
fn every_shape_error_is_reported_not_just_the_first() {
    let src = r#"
[gatway]
x = 1

[upstreams.a]
targets = [{ url = "https://a.example.com", wieght = 2 }]

[[routes]]
name = "one"
path = "/a"
upstream = "a"
methods = "GET"

[[routes]]
name = "two"
path = "/b"
upstreem = "a"
"#;
    let want = r#"gateway.toml:2:2 gatway: unknown section (did you mean "gateway"?); expected one of gateway, defaults, upstreams, access, auth, rate_limits, plans, transforms, cors, routes, openapi, telemetry
gateway.toml:6:45 upstreams.a.targets[0].wieght: unknown field `wieght`, expected `url` or `weight`
gateway.toml:12:11 routes[0].methods: invalid type: string "GET", expected a sequence
gateway.toml:17:1 routes[1].upstreem: unknown field `upstreem`, expected one of `name`, `methods`, `host`, `path`, `upstream`, `respond`, `admin`, `rewrite`, `strip_prefix`, `websocket`, `auth`, `trusted_proxies`, `access`, `rate_limit`, `cors`, `cache`, `validate`, `request`, `response`
4 errors; nothing was loaded
"#;
    assert_eq!(errors(src), want);
}

#[test]
fn syntax_errors_have_positions() {
    let got = errors("[gateway]\nserver_timing = tru\n");
    assert!(got.starts_with("gateway.toml:2:17 TOML syntax: "), "{got}");
    assert!(got.ends_with("1 error; nothing was loaded\n"), "{got}");
}

#[test]
fn references_and_opt_outs() {
    let ok = r#"
[defaults]
access = "office"

[access.office]
deny_ips = ["203.0.113.0/24"]

[[routes]]
name = "a"
path = "/a"
respond = { body = "a" }

[[routes]]
name = "b"
path = "/b"
access = "none"
respond = { body = "b" }
"#;
    let c = Config::from_toml(ok).unwrap();
    assert_eq!(
        (c.route_at(0).access, c.route_at(1).access),
        (Some(Id::new(0)), None)
    );
    assert_eq!(
        c.summary(),
        "2 routes, 0 upstreams, 1 access lists, 0 JWT providers, 0 API-key sets, 0 rate limits, 0 plans"
    );
}

#[test]
fn json_and_toml_load_the_same_config() {
    let src = include_str!("../../../../examples/gateway.toml");
    let raw = Config::raw_from_toml(src).unwrap();
    let json = serde_json::to_string(&raw).unwrap();
    let from_json = Config::from_json(&json).unwrap();
    let from_toml = Config::from_toml(src).unwrap();
    assert_eq!(from_json.summary(), from_toml.summary());
    let bad = Config::from_json(r#"{"routes": [{"name": 1}]}"#).unwrap_err();
    assert_eq!(bad.diagnostics[0].path, "routes[0].name");
}

#[test]
fn a_cached_route_needs_a_build_with_the_response_cache() {
    let src = r#"
[upstreams.api]
targets = [{ url = "https://api.example.com" }]

[[routes]]
name = "cached"
path = "/c"
upstream = "api"
cache = { ttl_s = 5 }
"#;
    if !cfg!(feature = "response-cache") {
        assert_eq!(
            errors(src),
            "gateway.toml:9:9 routes[0].cache: this build has no response cache (cargo feature `response-cache` is off)\n1 error; nothing was loaded\n"
        );
        return;
    }
    assert!(Config::from_toml(src).is_ok());
    // an adapter's build script, checking for an adapter compiled without it
    let without = crate::config::BuildFeatures {
        response_cache: false,
        ..crate::config::BuildFeatures::ALL
    };
    assert_eq!(
        Config::embed(src, "g.toml", without).unwrap_err(),
        "g.toml:9:9 routes[0].cache: this build has no response cache (cargo feature `response-cache` is off)\n1 error; nothing was built\n"
    );
}

#[test]
fn a_purge_route_needs_a_build_with_the_response_cache() {
    let src = r#"
[auth.api_keys.ops]
keys = [{ consumer = "ops", sha256 = "f5e368bcc22b06c39f3db394d0918fd5d5d29c887810a98e99b01196323d7540" }]

[[routes]]
name = "purge"
methods = ["POST"]
path = "/purge"
admin = "purge_cache"
auth = { api_key = "ops" }
"#;
    if !cfg!(feature = "response-cache") {
        assert_eq!(
            errors(src),
            "gateway.toml:9:9 routes[0].admin: this build has no response cache to purge (cargo feature `response-cache` is off)\n1 error; nothing was loaded\n"
        );
        return;
    }
    assert!(
        Config::from_toml(src).is_ok(),
        "{:?}",
        Config::from_toml(src).err()
    );
    let without = crate::config::BuildFeatures {
        response_cache: false,
        ..crate::config::BuildFeatures::ALL
    };
    assert_eq!(
        Config::embed(src, "g.toml", without).unwrap_err(),
        "g.toml:9:9 routes[0].admin: this build has no response cache to purge (cargo feature `response-cache` is off)\n1 error; nothing was built\n"
    );
}

#[test]
fn path_checks() {
    let src = r#"
[[routes]]
name = "a"
path = "/a//b"
respond = { body = "x" }

[[routes]]
name = "b"
path = "/b/{id}"
respond = { status = 99 }
validate = { path = { uid = "int" }, query = { n = { type = "int", min = 5, max = 1 }, f = { type = "number", min = 0.5, max = 0.25 }, i = { type = "number", max = inf } } }

[[routes]]
name = "c"
path = "/c#two"
respond = { body = "x" }

[[routes]]
name = "d"
path = "/d?x=1"
respond = { body = "x" }
"#;
    let want = r#"gateway.toml:4:8 routes[0].path: "/a//b" is not in normal form (no //, . or .. segments, no needless %-encoding)
gateway.toml:10:22 routes[1].respond.status: 99 is not a final HTTP status
gateway.toml:11:29 routes[1].validate.path.uid: "uid" is not a parameter of path "/b/{id}"
gateway.toml:11:52 routes[1].validate.query.n: min 5 is greater than max 1
gateway.toml:11:92 routes[1].validate.query.f: min 0.5 is greater than max 0.25
gateway.toml:11:165 routes[1].validate.query.i.max: must be a finite number
gateway.toml:15:8 routes[2].path: "/c#two" has a query or fragment: a route matches the path alone, so no request would ever reach it
gateway.toml:20:8 routes[3].path: "/d?x=1" has a query or fragment: a route matches the path alone, so no request would ever reach it
8 errors; nothing was loaded
"#;
    assert_eq!(errors(src), want);
}

#[test]
#[cfg(feature = "json-schema")]
fn embed_checks_like_check_and_refuses_schemas_without_the_validator() {
    let schema = r#"
[[routes]]
name = "echo"
methods = ["POST"]
path = "/echo"
validate = { body_schema = { type = "object" } }
respond = { status = 202 }
"#;
    use crate::config::BuildFeatures;
    let no_schema = BuildFeatures {
        json_schema: false,
        ..BuildFeatures::ALL
    };
    let code = crate::Config::embed(schema, "g.toml", BuildFeatures::ALL).unwrap();
    assert!(
        code.contains("body_schema: Some(JsonStatic::Object("),
        "{code}"
    );
    assert_eq!(
        crate::Config::embed(schema, "g.toml", no_schema).unwrap_err(),
        "g.toml:6:28 routes[0].validate.body_schema: this build has no JSON Schema validator (cargo feature `json-schema` is off)\n1 error; nothing was built\n"
    );
    let broken =
        "[[routes]]\nname = \"x\"\nmethods = [\"GET\"]\npath = \"/x\"\nupstream = \"nope\"\n";
    let listing = crate::Config::embed(broken, "g.toml", BuildFeatures::ALL).unwrap_err();
    assert!(
        listing.starts_with("g.toml:5:12 routes[0].upstream: unknown upstream \"nope\""),
        "{listing}"
    );
    assert!(
        listing.ends_with("1 error; nothing was built\n"),
        "{listing}"
    );
}

#[test]
#[cfg(all(feature = "asymmetric-jwt", feature = "hs384-hs512"))] // a JWKS needs both
fn outbound_origins_against_a_spin_manifest() {
    let config = crate::Config::from_toml(
        r#"
[upstreams.a]
targets = [{ url = "http://127.0.0.1:8080" }, { url = "https://api.example.com/v1" }]
allow_private = true

[auth.jwt.j]
jwks_url = "https://login.example.org/jwks.json"
"#,
    )
    .unwrap_or_else(|e| panic!("{}", e.render("t.toml")));
    assert_eq!(
        config.outbound_origins(),
        [
            "http://127.0.0.1:8080",
            "https://api.example.com:443",
            "https://login.example.org:443"
        ]
    );
    let allowed = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (manifest, missing) in [
        (
            &[
                "http://127.0.0.1:8080",
                "https://api.example.com",
                "https://login.example.org:443",
            ][..],
            &[][..],
        ),
        (
            &[
                "*://127.0.0.1:*",
                "https://*.example.com",
                "https://*.example.org",
            ][..],
            &[][..],
        ),
        (
            &["http://127.0.0.1:9090", "https://api.example.com"][..],
            &["http://127.0.0.1:8080", "https://login.example.org:443"][..],
        ),
        (
            &["http://api.example.com"][..],
            &[
                "http://127.0.0.1:8080",
                "https://api.example.com:443",
                "https://login.example.org:443",
            ][..],
        ),
    ] {
        assert_eq!(
            config.outbound_origins_not_in(&allowed(manifest)),
            missing,
            "{manifest:?}"
        );
    }
}

#[test]
#[cfg(feature = "asymmetric-jwt")]
fn embed_refuses_asymmetric_jwt_configs_without_the_algorithms() {
    use crate::config::BuildFeatures;
    let hmac_only = BuildFeatures {
        asymmetric_jwt: false,
        ..BuildFeatures::ALL
    };
    let hs = r#"
[auth.jwt.main]
keys = [{ kid = "k", alg = "HS256", secret = "0123456789abcdef0123456789abcdef" }]
"#;
    let code = crate::Config::embed(hs, "g.toml", hmac_only).unwrap();
    assert!(code.contains("alg: Alg::HS256"), "{code}");
    let jwks = r#"
[auth.jwt.a]
jwks_url = "https://auth.example.com/jwks.json"

[auth.jwt.b]
keys = [
  { kid = "h", alg = "HS512", secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
  { kid = "e", alg = "EdDSA", jwk = { kty = "OKP", crv = "Ed25519", x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" } },
]
"#;
    assert!(crate::Config::embed(jwks, "g.toml", BuildFeatures::ALL).is_ok());
    assert_eq!(
        crate::Config::embed(jwks, "g.toml", hmac_only).unwrap_err(),
        "g.toml:3:12 auth.jwt.a.jwks_url: a JWKS may hold RSA, EC and Ed25519 keys, and this build verifies none of them (cargo feature `asymmetric-jwt` is off)\n\
         g.toml:8:22 auth.jwt.b.keys[1].alg: EdDSA is not verified by this build (cargo feature `asymmetric-jwt` is off)\n\
         2 errors; nothing was built\n"
    );
}

#[test]
fn only_geo_access_lists_or_geo_logging_need_the_clients_geo() {
    let base = "[[routes]]\nname = \"up\"\npath = \"/up\"\nrespond = { status = 200 }\n";
    let with = |access: &str| Config::from_toml(&format!("{access}\n{base}")).unwrap();
    assert!(!with("").needs_client_geo());
    assert!(!with("[access.office]\nallow_ips = [\"10.0.0.0/8\"]").needs_client_geo());
    for list in [
        "allow_countries = [\"DE\"]",
        "deny_countries = [\"T1\"]",
        "allow_asns = [13335]",
        "deny_asns = [64496]",
    ] {
        assert!(
            with(&format!("[access.geo]\n{list}")).needs_client_geo(),
            "{list}"
        );
    }
    assert!(with("[gateway]\nlog_client_geo = true").needs_client_geo());
    assert!(!with("[gateway]\nlog_client_geo = false").needs_client_geo());
}

#[test]
fn shards_must_each_hold_a_part_of_limit_and_burst() {
    let src = r#"
[rate_limits.none]
key = "ip"
limit = 10
period_s = 1
shards = 0

[rate_limits.many]
key = "ip"
limit = 1000
period_s = 1
shards = 65

[rate_limits.thin]
key = "ip"
limit = 10
period_s = 1
burst = 3
shards = 4

[rate_limits.fine]
key = "ip"
limit = 10
period_s = 1
burst = 4
shards = 4
"#;
    let want = r#"gateway.toml:6:10 rate_limits.none.shards: must be between 1 and 64
gateway.toml:12:10 rate_limits.many.shards: must be between 1 and 64
gateway.toml:19:10 rate_limits.thin.shards: 4 shards cannot each hold a part of limit 10 and burst 3: use at most 3
3 errors; nothing was loaded
"#;
    assert_eq!(errors(src), want);
}

#[test]
#[cfg(feature = "response-cache")] // without it every admin route is refused (the test above)
fn admin_routes_need_auth_and_state_changing_methods() {
    let src = r#"
[auth.api_keys.ops]
keys = [{ consumer = "ops", sha256 = "a52782e3a2d4dd2f95f640b9abfb3b2a6b8e722c65f55be830f6e5f619f7f873" }]

[[routes]]
name = "open"
methods = ["POST"]
path = "/a"
admin = "purge_cache"

[[routes]]
name = "by-get"
methods = ["POST", "GET"]
path = "/b"
admin = "purge_cache"
auth = { api_key = "ops" }

[[routes]]
name = "both"
methods = ["POST"]
path = "/c"
admin = "purge_cache"
respond = { body = "x" }
auth = { api_key = "ops" }

[[routes]]
name = "cached"
methods = ["POST"]
path = "/d"
admin = "purge_cache"
auth = { api_key = "ops" }
cache = { ttl_s = 5 }

[[routes]]
name = "fine"
methods = ["POST", "DELETE"]
path = "/f"
admin = "purge_cache"
auth = { api_key = "ops" }
"#;
    let want = r#"gateway.toml:9:9 routes[0].admin: an admin route needs `auth`: without it anyone could call it
gateway.toml:13:11 routes[1].methods: an admin route changes state: list only methods such as POST, never GET, HEAD, OPTIONS or TRACE
gateway.toml:18:1 routes[2]: give one of `upstream`, `respond` and `admin`, not several
gateway.toml:32:9 routes[3].cache: only `upstream` routes are cached: `respond` and `admin` routes need no cache
4 errors; nothing was loaded
"#;
    assert_eq!(errors(src), want);
    let unknown =
        "[[routes]]\nname = \"x\"\nmethods = [\"POST\"]\npath = \"/x\"\nadmin = \"reboot\"\n";
    assert_eq!(
        errors(unknown),
        "gateway.toml:5:9 routes[0].admin: unknown variant `reboot`, expected `purge_cache`\n1 error; nothing was loaded\n"
    );
}

#[test]
fn secret_env_keys_are_read_when_the_gateway_starts() {
    let src = r#"
[auth.jwt.env]
issuer = "https://issuer.test/"
audiences = ["api"]
keys = [{ kid = "a", alg = "HS256", secret_env = "JWT_SECRET" }, { kid = "b", alg = "HS256", secret = "inline-secret-0123456789abcdef-0123" }]
"#;
    let kids = |c: &Config| -> Vec<Option<String>> {
        c.jwt[Id::new(0)]
            .keys
            .iter()
            .map(|k| k.kid.clone())
            .collect()
    };
    // not read (a check, a build): the key is checked and left out
    assert_eq!(
        kids(&Config::from_toml(src).unwrap()),
        [Some("b".to_string())]
    );
    // read: in the config like an inline secret
    let env = |name: &str| (name == "JWT_SECRET").then(|| "s".repeat(32));
    let read = Config::from_toml_with_secrets(src, &env).unwrap();
    assert_eq!(kids(&read), [Some("a".to_string()), Some("b".to_string())]);
    let with = |value: &'static str| {
        Config::from_toml_with_secrets(src, &move |_| Some(value.to_string()))
            .map(|_| ())
            .unwrap_err()
            .render("g.toml")
    };
    assert_eq!(
        with(""),
        "g.toml:5:50 auth.jwt.env.keys[0].secret_env: the environment has no JWT_SECRET (on Workers: `npx wrangler secret put JWT_SECRET`; on Spin: `spin up -e JWT_SECRET=...`)\n1 error; nothing was loaded\n"
    );
    assert_eq!(
        with("short"),
        "g.toml:5:9 auth.jwt.env.keys[0]: HS256 secrets must be at least 32 bytes, this one has 5\n1 error; nothing was loaded\n"
    );
    // what can be checked without the value is checked either way
    let bad = r#"
[auth.jwt.env]
issuer = "https://issuer.test/"
audiences = ["api"]
keys = [{ alg = "HS256", secret_env = "1X" }, { alg = "ES256", secret_env = "K" }, { alg = "HS256", secret_env = "K", secret = "x" }]
"#;
    let es256 = if cfg!(feature = "asymmetric-jwt") {
        "gateway.toml:5:77 auth.jwt.env.keys[1].secret_env: holds an HMAC secret, and ES256 needs a `jwk`"
    } else {
        "gateway.toml:5:55 auth.jwt.env.keys[1].alg: ES256 is not verified by this build (cargo feature `asymmetric-jwt` is off)"
    };
    assert_eq!(
        errors(bad),
        format!(
        "gateway.toml:5:39 auth.jwt.env.keys[0].secret_env: \"1X\" is not a variable name (letters, digits and `_`, not starting with a digit)\n\
         {es256}\n\
         gateway.toml:5:84 auth.jwt.env.keys[2]: give one of `secret`, `secret_base64` and `secret_env`, not several\n\
         3 errors; nothing was loaded\n"
        )
    );
}

#[test]
fn an_upstreams_response_limit_is_between_one_byte_and_100_mib() {
    let src = r#"
[upstreams.none]
targets = [{ url = "https://a.example.com" }]
max_response_bytes = 0

[upstreams.huge]
targets = [{ url = "https://b.example.com" }]
max_response_bytes = 104857601

[upstreams.fine]
targets = [{ url = "https://c.example.com" }]
max_response_bytes = 104857600
"#;
    assert_eq!(
        errors(src),
        "gateway.toml:4:22 upstreams.none.max_response_bytes: must be between 1 and 104857600 (100 MiB: the gateway holds a response it reads whole)\n\
         gateway.toml:8:22 upstreams.huge.max_response_bytes: must be between 1 and 104857600 (100 MiB: the gateway holds a response it reads whole)\n\
         2 errors; nothing was loaded\n"
    );
    let ok = "[upstreams.d]\ntargets = [{ url = \"https://d.example.com\" }]\n";
    assert_eq!(
        Config::from_toml(ok).unwrap().upstreams[Id::new(0)].max_response_bytes,
        8 << 20
    );
}

/// Every spelling of a private, loopback, metadata or special-purpose address that a runtime's
/// `fetch` would reach is refused as an upstream (issue 16, item 16).
#[test]
fn private_addresses_in_every_spelling_are_refused() {
    for host in [
        "2852039166",
        "0251.0376.0376.0376",
        "0xa9fea9fe",
        "127.1",
        "0",
        "localhost.",
        "metadata.google.internal.",
        "foo.localhost.",
        "instance-data",
        "192.0.0.192",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a9fe:a9fe::]",
        "[::127.0.0.1]",
        "[fe80::1%25eth0]",
        "198.18.0.1",
        "224.0.0.1",
        "240.0.0.1",
    ] {
        let toml = format!(
            "[upstreams.u]\ntargets = [{{ url = \"http://{host}/\" }}]\n[[routes]]\nname = \"r\"\npath = \"/\"\nupstream = \"u\"\n"
        );
        let Err(e) = Config::from_toml(&toml) else {
            panic!("{host} was accepted as an upstream");
        };
        let listing = e.render("t.toml");
        assert!(
            listing.contains("upstreams.u.targets[0].url"),
            "{host}: {listing}"
        );
    }
    let ok = "[upstreams.u]\ntargets = [{ url = \"https://api.example.com/\" }]\n[[routes]]\nname = \"r\"\npath = \"/\"\nupstream = \"u\"\n";
    assert!(Config::from_toml(ok).is_ok());
}

#[test]
fn admin_routes_refuse_fail_open_providers_and_respond_statuses_stay_in_range() {
    let toml = r#"
[auth.jwt.idp]
issuer = "i"
audiences = ["a"]
jwks_url = "https://idp.example/jwks"
fail = "open"
[[routes]]
name = "purge"
methods = ["POST"]
path = "/purge"
admin = "purge_cache"
auth = { jwt = "idp" }
[[routes]]
name = "odd"
path = "/odd"
respond = { status = 600 }
[auth.api_keys.k]
keys = [{ consumer = "c", sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" }]
"#;
    let listing = Config::from_toml(toml).unwrap_err().render("t.toml");
    for needle in [
        "routes[0].auth.jwt: an admin route cannot use a provider with fail = \"open\"",
        "routes[1].respond.status: 600 is not a final HTTP status",
        "auth.api_keys.k.keys[0].sha256: is the SHA-256 of the empty string",
    ] {
        assert!(
            listing.contains(needle),
            "missing {needle:?} in:\n{listing}"
        );
    }
}

#[test]
fn a_spin_manifest_must_allow_every_origin_the_config_calls() {
    let config = crate::Config::from_toml(
        "[upstreams.a]\ntargets = [{ url = \"https://api.example.com/v1\" }, { url = \"http://10.0.0.5:8080\" }]\nallow_private = true\n",
    )
    .unwrap();
    let manifest = |hosts: &str| {
        format!("spin_manifest_version = 2\n[component.portcullis]\nsource = \"x.wasm\"\nallowed_outbound_hosts = {hosts}\n")
    };
    let allows_all = manifest(r#"["https://api.example.com", "http://10.0.0.5:8080"]"#);
    assert_eq!(
        config.check_spin_manifest(&allows_all, "spin.toml", "portcullis"),
        Ok(())
    );
    assert_eq!(
        config.check_spin_manifest(&manifest(r#"["https://*.example.com"]"#), "spin.toml", "portcullis"),
        Err("spin.toml: component.portcullis.allowed_outbound_hosts: add \"http://10.0.0.5:8080\" (the gateway config calls it)\n1 error; nothing was built\n".into())
    );
    assert_eq!(
        config.check_spin_manifest("[component.other]\n", "m.toml", "portcullis"),
        Err("m.toml: no [component.portcullis]".into())
    );
    assert_eq!(
        config.check_spin_manifest(&manifest("\"one\""), "m.toml", "portcullis"),
        Err("m.toml: allowed_outbound_hosts must be a list of strings".into())
    );
}

#[test]
fn methods_route_in_any_case_as_they_are_read() {
    let c = Config::from_toml(
        r#"
[[routes]]
name = "lower"
methods = ["get", "Post"]
path = "/x"
respond = { status = 204 }
"#,
    )
    .unwrap();
    for m in [http::Method::GET, http::Method::HEAD, http::Method::POST] {
        assert_eq!(c.router.find(&m, None, "/x").map(|f| f.route), Ok(0), "{m}");
    }
    assert!(c.router.find(&http::Method::PUT, None, "/x").is_err());
}

#[test]
fn an_access_log_sample_outside_0_to_1_is_refused() {
    for (share, shown) in [("1.5", "1.5"), ("-0.1", "-0.1"), ("nan", "NaN")] {
        assert_eq!(
            errors(&format!("[gateway]\naccess_log_sample = {share}\n")),
            format!(
                "gateway.toml:2:21 gateway.access_log_sample: must be from 0 to 1, not {shown}\n\
                 1 error; nothing was loaded\n"
            )
        );
    }
    for share in ["0", "0.01", "1"] {
        assert!(Config::from_toml(&format!("[gateway]\naccess_log_sample = {share}\n")).is_ok());
    }
}

#[test]
fn a_sliding_window_takes_no_burst_and_an_unknown_algorithm_is_named() {
    let policy = |algorithm: &str, more: &str| {
        format!("[rate_limits.p]\nkey = \"ip\"\nlimit = 10\nperiod_s = 60\nalgorithm = \"{algorithm}\"\n{more}")
    };
    assert_eq!(
        errors(&policy("sliding_window", "burst = 20\n")),
        "gateway.toml:6:9 rate_limits.p.burst: a sliding window admits up to `limit` at once: \
         `burst` is for `gcra`\n1 error; nothing was loaded\n"
    );
    assert_eq!(
        errors(&policy("leaky_bucket", "")),
        "gateway.toml:5:13 rate_limits.p.algorithm: unknown variant `leaky_bucket`, expected \
         `gcra` or `sliding_window`\n1 error; nothing was loaded\n"
    );
    let config = Config::from_toml(&policy("sliding_window", "")).unwrap();
    let w = config.rate_limits.iter().next().unwrap();
    let sliding = crate::config::raw::LimitAlgorithm::SlidingWindow;
    assert_eq!((w.algorithm, w.limit, w.burst), (sliding, 10, 10));
}

#[test]
fn a_route_cost_is_a_whole_number_the_policy_can_admit_at_once() {
    let config = |policy: &str, rate_limit: &str| {
        format!(
            "[upstreams.app]\ntargets = [{{ url = \"https://app.example.com\" }}]\n\
             [rate_limits.p]\nkey = \"ip\"\n{policy}\n\
             [[routes]]\nname = \"r\"\npath = \"/r\"\nupstream = \"app\"\nrate_limit = {rate_limit}\n"
        )
    };
    let plain = "limit = 10\nperiod_s = 60";
    let sharded = "limit = 20\nperiod_s = 60\nshards = 4";
    for (policy, rate_limit, want) in [
        (plain, r#"{ policy = "p", cost = 10 }"#, None),
        (plain, r#"{ policy = "p" }"#, None),
        (
            plain,
            r#"{ policy = "p", cost = 11 }"#,
            Some(r#"gateway.toml:11:37 routes[0].rate_limit.cost: must be from 1 to 10, what policy "p" admits at once"#),
        ),
        (
            plain,
            r#"{ policy = "p", cost = 0 }"#,
            Some(r#"gateway.toml:11:37 routes[0].rate_limit.cost: must be from 1 to 10, what policy "p" admits at once"#),
        ),
        (
            sharded,
            r#"{ policy = "p", cost = 6 }"#,
            Some(r#"gateway.toml:12:37 routes[0].rate_limit.cost: must be from 1 to 5, what policy "p" admits at once per shard"#),
        ),
        (
            plain,
            r#"{ policy = "q", cost = 2 }"#,
            Some(r#"gateway.toml:11:25 routes[0].rate_limit.policy: unknown rate limit "q" (did you mean "p"?)"#),
        ),
        (
            plain,
            r#"{ policy = "p", costs = 2 }"#,
            Some("gateway.toml:11:30 routes[0].rate_limit.costs: unknown field `costs`, expected `policy` or `cost`"),
        ),
        (
            plain,
            "7",
            Some("gateway.toml:11:14 routes[0].rate_limit: invalid type: integer `7`, expected a policy name, a table with `policy` and `cost`, or a list of those"),
        ),
    ] {
        let src = config(policy, rate_limit);
        match want {
            None => assert!(Config::from_toml(&src).is_ok(), "{rate_limit}"),
            Some(want) => assert_eq!(
                errors(&src),
                format!("{want}\n1 error; nothing was loaded\n"),
                "{rate_limit}"
            ),
        }
    }
    let cost = |rate_limit: &str| {
        let loaded = Config::from_toml(&config(plain, rate_limit)).unwrap();
        let charges = &loaded.route_at(0).rate_limits;
        charges.iter().map(|c| c.cost).collect::<Vec<_>>()
    };
    assert_eq!(cost(r#"{ policy = "p", cost = 3 }"#), [3]);
    assert_eq!(cost(r#""p""#), [1]);
    assert!(cost(r#""none""#).is_empty());
}

#[test]
fn a_list_of_rate_limits_names_each_policy_once_and_each_cost_is_checked() {
    let config = |rate_limit: &str| {
        format!(
            "[rate_limits.second]\nkey = \"ip\"\nlimit = 10\nperiod_s = 1\n\
             [rate_limits.day]\nkey = \"ip\"\nlimit = 1000\nperiod_s = 86400\n\
             [rate_limits.user]\nkey = \"consumer\"\nlimit = 5\nperiod_s = 1\n\
             [[routes]]\nname = \"r\"\npath = \"/r\"\nrespond = {{ status = 200 }}\n\
             rate_limit = {rate_limit}\n"
        )
    };
    for (rate_limit, want) in [
        (r#"["second", "day"]"#, None),
        (r#"["second", { policy = "day", cost = 20 }]"#, None),
        (
            r#"[]"#,
            Some(
                r#"gateway.toml:17:14 routes[0].rate_limit: an empty list applies no limit: write "none" for that"#,
            ),
        ),
        (
            r#"["second", "none"]"#,
            Some(
                r#"gateway.toml:17:25 routes[0].rate_limit[1]: "none" cannot be one of several limits"#,
            ),
        ),
        (
            r#"["second", { policy = "second" }]"#,
            Some(
                r#"gateway.toml:17:36 routes[0].rate_limit[1].policy: policy "second" is already in this list"#,
            ),
        ),
        (
            r#"["second", "dya"]"#,
            Some(
                r#"gateway.toml:17:25 routes[0].rate_limit[1]: unknown rate limit "dya" (did you mean "day"?)"#,
            ),
        ),
        (
            r#"["day", { policy = "second", cost = 11 }]"#,
            Some(
                r#"gateway.toml:17:50 routes[0].rate_limit[1].cost: must be from 1 to 10, what policy "second" admits at once"#,
            ),
        ),
        (
            r#"["second", "user"]"#,
            Some(
                r#"gateway.toml:17:25 routes[0].rate_limit[1]: policy "user" counts by consumer or claim, but the route has no `auth`"#,
            ),
        ),
        (
            r#"["second", ["day"]]"#,
            Some(
                r#"gateway.toml:17:25 routes[0].rate_limit[1]: invalid type: sequence, expected a policy name or a table with `policy` and `cost`"#,
            ),
        ),
    ] {
        let src = config(rate_limit);
        match want {
            None => assert!(
                Config::from_toml(&src).is_ok(),
                "{rate_limit}: {}",
                errors(&src)
            ),
            Some(want) => assert_eq!(
                errors(&src),
                format!("{want}\n1 error; nothing was loaded\n"),
                "{rate_limit}"
            ),
        }
    }
    let loaded =
        Config::from_toml(&config(r#"["second", { policy = "day", cost = 20 }]"#)).unwrap();
    let charges: Vec<(String, u32)> = loaded
        .route_at(0)
        .rate_limits
        .iter()
        .map(|c| (loaded.rate_limits[c.quota].name.clone(), c.cost))
        .collect();
    assert_eq!(
        charges,
        [("second".to_string(), 1), ("day".to_string(), 20)]
    );
}

#[test]
fn a_routes_trusted_proxies_are_addresses_or_cidrs() {
    let src = "[[routes]]\nname = \"r\"\npath = \"/r\"\nrespond = { body = \"r\" }\n\
               trusted_proxies = [\"192.0.2.0/24\", \"cdn\"]\n";
    assert_eq!(
        errors(src),
        "gateway.toml:5:36 routes[0].trusted_proxies[1]: \"cdn\" is not an IP address or CIDR\n\
         1 error; nothing was loaded\n"
    );
    let c = Config::from_toml(&src.replace(", \"cdn\"", "")).unwrap();
    let set = c.route_at(0).trusted_proxies.as_ref().unwrap();
    assert!(set.contains("192.0.2.9".parse().unwrap()));
    assert!(!set.contains("10.0.0.1".parse().unwrap()));
    let none = Config::from_toml(&src.replace("[\"192.0.2.0/24\", \"cdn\"]", "[]")).unwrap();
    assert!(none
        .route_at(0)
        .trusted_proxies
        .as_ref()
        .unwrap()
        .is_empty());
    let unset =
        Config::from_toml(&src.replace("trusted_proxies = [\"192.0.2.0/24\", \"cdn\"]\n", ""))
            .unwrap();
    assert!(unset.route_at(0).trusted_proxies.is_none());
}

#[test]
fn calendar_quotas_and_plans_are_checked_where_they_are_written() {
    let src = r#"
[auth.api_keys.partners]
keys = [{ consumer = "a", sha256 = "d1cf9c5cffcb718f754b7ecb1ed23efdb5a654b4b20c2fc42759db5903209f76", plan = "glod" }]

[rate_limits.both]
key = "ip"
limit = 10
period_s = 60
period = "day"

[rate_limits.neither]
key = "ip"
limit = 10

[rate_limits.monthly]
key = "consumer"
limit = 1000
period = "month"
algorithm = "sliding_window"
burst = 5

[rate_limits.split]
key = "ip"
limit = 100
period_s = 1
shards = 4

[plans.gold]
limits = { monthly = 0, split = 3, montly = 5 }
"#;
    let want = r#"gateway.toml:3:111 auth.api_keys.partners.keys[0].plan: unknown plan "glod" (did you mean "gold"?)
gateway.toml:9:10 rate_limits.both.period: give `period_s` or `period`, not both
gateway.toml:11:1 rate_limits.neither: needs `period_s` (seconds) or `period` ("day" or "month")
gateway.toml:19:13 rate_limits.monthly.algorithm: a calendar `period` counts each day or month afresh: `algorithm` is for `period_s`
gateway.toml:20:9 rate_limits.monthly.burst: a sliding window admits up to `limit` at once: `burst` is for `gcra`
gateway.toml:29:22 plans.gold.limits.monthly: must be between 1 and 1000000000
gateway.toml:29:33 plans.gold.limits.split: policy "split" is split over 4 shards: each needs a part of the limit, so it must be at least 4
gateway.toml:29:45 plans.gold.limits.montly: unknown rate limit "montly" (did you mean "monthly"?)
8 errors; nothing was loaded
"#;
    assert_eq!(errors(src), want);
    let ok = r#"
[rate_limits.daily]
key = "ip"
limit = 1000
period = "day"

[plans.gold]
limits = { daily = 5000 }
"#;
    let config = Config::from_toml(ok).unwrap();
    let gold = config.plans.iter().next().unwrap();
    let (qi, quota) = &gold.limits[0];
    assert_eq!(config.rate_limits[*qi].limit, 1000);
    assert_eq!(
        (quota.limit, quota.burst, quota.calendar),
        (5000, 5000, Some(crate::config::raw::CalendarPeriod::Day))
    );
}
