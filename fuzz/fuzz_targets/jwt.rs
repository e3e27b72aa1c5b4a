//! JWT parsing and verification: any bearer string, against providers holding HMAC, P-256 and
//! Ed25519 keys, is verified or refused, never a panic; and any JWKS document is parsed or
//! refused (RSA keys among them). The first input byte chooses which.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::phase::auth::{parse_jwks, verify_token, Key};
use portcullis_core::Config;

const NOW_MS: u64 = 1_700_000_000_000;

thread_local! {
    static CONFIG: Config = Config::from_toml(include_str!("../jwt.toml"))
        .unwrap_or_else(|e| panic!("{}", e.render("fuzz/jwt.toml")));
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which & 1 == 1 {
        let _ = parse_jwks(rest);
        return;
    }
    let Ok(token) = std::str::from_utf8(rest) else {
        return;
    };
    CONFIG.with(|config| verify_all(config, token));
});

fn verify_all(config: &Config, token: &str) {
    for p in &config.jwt {
        let keys: Vec<&Key> = p.keys.iter().collect();
        if let Ok(verified) = verify_token(p, &keys, token, NOW_MS) {
            // a token that passes is not expired (leeway is 0 here)
            assert!(
                verified.valid_until_ms >= NOW_MS,
                "{token:?} verified against {} but expired: {verified:?}",
                p.name
            );
        }
    }
}
