//! Embeds the gateway config in the worker; see `adapters/embed-config.rs`.
include!("../embed-config.rs");
