//! The phases of a request's journey, one module each, in order:
//! validate → access → auth → ratelimit → route → forward → cache → (backend) → transform →
//! observe.

pub mod access;
pub mod auth;
pub mod cache;
pub mod forward;
pub mod observe;
pub mod ratelimit;
pub mod route;
pub mod transform;
pub mod validate;
