//! Support for the end-to-end suites: real local servers and a blocking HTTP client ([`net`]),
//! and the runtimes the gateway runs on ([`runtime`]).

pub mod net;
pub mod runtime;
