//! Warnings: settings that load and work but that a careful operator would not deploy on
//! purpose (a demo secret, every address trusted as a proxy, a provider that checks no issuer).
//! `portcullis check` prints them and still succeeds; errors are [`super::compile`]'s.
//!
//! Also the build-time check of upstream hosts as `fetch` reads them (WHATWG URL rules, the
//! `url` crate), which turns `2852039166`, `0xa9fea9fe` or `127.1` into the address a runtime
//! would connect to. Pure; reads nothing but the config.

use super::raw::RawConfig;
use super::Diagnostic;
#[cfg(feature = "toml")]
use std::net::IpAddr;

/// The HMAC secret `examples/gateway.toml` ships with.
const DEMO_SECRET: &str = "portcullis-demo-secret-change-me-0123456789";

/// Every warning for `raw`, in the config's own order.
pub fn warnings(raw: &RawConfig) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut warn = |path: String, message: &str| {
        out.push(Diagnostic {
            path,
            line_col: None,
            message: message.to_string(),
        })
    };
    // the gateway's trusted proxies, then each route's own
    let trusted = raw.routes.iter().enumerate().filter_map(|(r, route)| {
        let list = route.trusted_proxies.as_ref()?;
        Some((format!("routes[{r}].trusted_proxies"), list))
    });
    let trusted = std::iter::once((
        "gateway.trusted_proxies".to_string(),
        &raw.gateway.trusted_proxies,
    ))
    .chain(trusted);
    for (field, list) in trusted {
        for (i, cidr) in list.iter().enumerate() {
            let everything =
                crate::phase::access::parse_cidr(cidr).is_ok_and(|net| net.prefix_len() == 0);
            if everything {
                warn(
                    format!("{field}[{i}]"),
                    "trusts every address as a proxy: any client can name its own address in X-Forwarded-For",
                );
            }
        }
    }
    for (name, p) in &raw.auth.jwt {
        let path = format!("auth.jwt.{name}");
        if p.jwks_url.is_some() && p.issuer.is_none() {
            warn(format!("{path}.issuer"), "a JWKS provider without `issuer` accepts tokens the key set's owner issued for anyone");
        }
        if p.jwks_url.is_some() && p.audiences.is_empty() {
            warn(
                format!("{path}.audiences"),
                "a JWKS provider without `audiences` accepts tokens meant for other services",
            );
        }
        if p.leeway_s > 3600 {
            warn(
                format!("{path}.leeway_s"),
                "more than an hour of clock skew keeps expired tokens valid",
            );
        }
        if !p.require_exp {
            warn(
                format!("{path}.require_exp"),
                "tokens without `exp` are accepted: they never expire",
            );
        }
        if p.jwks_url.is_some() && p.jwks_cooldown_s == 0 {
            warn(
                format!("{path}.jwks_cooldown_s"),
                "0: every token with an unknown `kid` makes a JWKS fetch",
            );
        }
        if p.jwks_url.is_some() && p.jwks_min_ttl_s == 0 {
            warn(
                format!("{path}.jwks_min_ttl_s"),
                "0: an IdP's `max-age=0` makes every request fetch the key set",
            );
        }
        for (i, k) in p.keys.iter().enumerate() {
            if let Some(secret) = &k.secret {
                if let Some(why) = weak_secret(secret.as_bytes()) {
                    warn(format!("{path}.keys[{i}].secret"), why);
                }
            }
        }
    }
    for (name, q) in &raw.rate_limits {
        let key = q.key.to_ascii_lowercase();
        let chosen = [
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
            "true-client-ip",
        ];
        if let Some(h) = key.strip_prefix("header:").filter(|h| chosen.contains(h)) {
            warn(
                format!("rate_limits.{name}.key"),
                &format!("header:{h} is chosen by the client: each new value is a new budget (use `ip`, which reads it only behind trusted proxies)"),
            );
        }
    }
    out
}

/// Why an HMAC secret is weak: the demo secret, or too few distinct bytes.
fn weak_secret(secret: &[u8]) -> Option<&'static str> {
    if secret == DEMO_SECRET.as_bytes() {
        return Some("the documented demo secret: anyone can sign tokens with it");
    }
    let mut seen = [false; 256];
    for b in secret {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    (distinct < 10)
        .then_some("has little entropy (fewer than 10 distinct bytes): use a random secret")
}

/// The address a runtime's `fetch` would connect to for `url`'s host, when the host is an
/// address in any of the forms WHATWG URL parsing accepts (`2852039166`, `0251.0376.0376.0376`,
/// `0xa9fea9fe`, `127.1`, `[::ffff:a9fe:a9fe]`), with a zone index refused outright.
#[cfg(feature = "toml")]
pub fn fetch_address(url: &str) -> Result<Option<IpAddr>, String> {
    if url.contains('%') && url.contains('[') {
        return Err("has an IPv6 zone index, which no edge runtime can reach".into());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    Ok(match parsed.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    })
}

/// The host of `url` as `fetch` resolves names: lowercase, without a trailing dot.
#[cfg(feature = "toml")]
pub fn fetch_domain(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.host()? {
        url::Host::Domain(d) => Some(d.trim_end_matches('.').to_ascii_lowercase()),
        _ => None,
    }
}

/// Names that resolve to loopback or a cloud metadata service wherever the gateway runs.
pub fn special_name(host: &str) -> Option<&'static str> {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        Some("a loopback address")
    } else if matches!(
        h.as_str(),
        "metadata.google.internal" | "metadata" | "instance-data" | "instance-data.ec2.internal"
    ) || h.ends_with(".metadata.google.internal")
    {
        Some("a cloud metadata address")
    } else if h.ends_with(".internal") || h.ends_with(".local") {
        Some("a private name")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangerous_settings_are_warned_about() {
        // parsed, not compiled: a build without the asymmetric algorithms refuses the JWKS
        let (raw, _) = crate::config::locate::parse_toml(
            r#"
[gateway]
trusted_proxies = ["0.0.0.0/0", "10.0.0.0/8"]
[auth.jwt.idp]
jwks_url = "https://idp.example/jwks"
leeway_s = 7200
require_exp = false
jwks_cooldown_s = 0
jwks_min_ttl_s = 0
[auth.jwt.demo]
issuer = "i"
keys = [{ alg = "HS256", secret = "portcullis-demo-secret-change-me-0123456789" }, { alg = "HS256", secret = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" }]
[rate_limits.xff]
key = "header:X-Forwarded-For"
limit = 1
period_s = 1
[[routes]]
name = "r"
path = "/r"
respond = { body = "r" }
trusted_proxies = ["192.0.2.0/24", "::/0"]
"#,
        )
        .unwrap();
        let paths: Vec<String> = warnings(&raw).into_iter().map(|d| d.path).collect();
        assert_eq!(
            paths,
            [
                "gateway.trusted_proxies[0]",
                "routes[0].trusted_proxies[1]",
                "auth.jwt.demo.keys[0].secret",
                "auth.jwt.demo.keys[1].secret",
                "auth.jwt.idp.issuer",
                "auth.jwt.idp.audiences",
                "auth.jwt.idp.leeway_s",
                "auth.jwt.idp.require_exp",
                "auth.jwt.idp.jwks_cooldown_s",
                "auth.jwt.idp.jwks_min_ttl_s",
                "rate_limits.xff.key",
            ]
        );
        let (quiet, _) = crate::config::locate::parse_toml(
            "[gateway]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[auth.jwt.a]\nissuer = \"i\"\naudiences = [\"x\"]\njwks_url = \"https://idp.example/j\"\n",
        )
        .unwrap();
        assert_eq!(warnings(&quiet), []);
    }

    #[cfg(feature = "toml")]
    #[test]
    fn hosts_are_read_as_fetch_reads_them() {
        for (url, want) in [
            ("http://2852039166/", Some("169.254.169.254")),
            ("http://0251.0376.0376.0376/", Some("169.254.254.254")),
            ("http://0xa9fea9fe/", Some("169.254.169.254")),
            ("http://127.1/", Some("127.0.0.1")),
            ("http://0/", Some("0.0.0.0")),
            ("http://[::127.0.0.1]/", Some("::7f00:1")),
            ("https://api.example.com/", None),
        ] {
            let got = fetch_address(url).unwrap().map(|ip| ip.to_string());
            assert_eq!(got.as_deref(), want, "{url}");
        }
        assert!(fetch_address("http://[fe80::1%25eth0]/").is_err());
        assert_eq!(
            fetch_domain("http://Localhost./").as_deref(),
            Some("localhost")
        );
        for name in [
            "localhost.",
            "foo.localhost.",
            "metadata.google.internal.",
            "instance-data",
        ] {
            assert!(special_name(name).is_some(), "{name}");
        }
    }
}
