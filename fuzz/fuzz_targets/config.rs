//! TOML text → compiled config → gateway. Whatever the text, loading returns a config or a
//! listing of errors, never a panic; a config that loads builds a gateway.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::{Config, Gateway};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(config) => drop(Gateway::new(config)),
        Err(errors) => {
            let listing = errors.render("fuzz.toml");
            assert!(!listing.is_empty(), "an error listing is never empty");
        }
    }
});
