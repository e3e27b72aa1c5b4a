//! A request's or response's body as the gateway holds it: bytes it has read, or the platform's
//! own stream, which it passes on without looking inside.
//!
//! A phase that needs a body (JSON Schema validation, a JSON transform, caching) has it read up to
//! its limit ([`crate::Host::read_stream`], or [`crate::BodyUse::Read`] on a fetch); every other
//! phase lets the stream go by, so an event stream, a large download or an upload goes from one
//! side to the other chunk by chunk, and the gateway's memory does not grow with it.

use bytes::Bytes;

/// A body: bytes, or the host's stream `S` (a `ReadableStream` on Workers, a wasi:http body
/// on Spin).
#[derive(Debug)]
pub enum Body<S> {
    /// Read whole (or made by the gateway: a refusal, a cached answer, a fixed response).
    Bytes(Bytes),
    /// The platform's stream, passed on untouched.
    Stream(S),
}

impl<S> Default for Body<S> {
    fn default() -> Self {
        Body::Bytes(Bytes::new())
    }
}

impl<S> From<Bytes> for Body<S> {
    fn from(bytes: Bytes) -> Self {
        Body::Bytes(bytes)
    }
}

impl<S> Body<S> {
    /// The bytes, when the body has been read.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            Body::Bytes(b) => Some(b),
            Body::Stream(_) => None,
        }
    }

    /// Whether the body is known to be empty (a stream is not known to be).
    pub fn is_empty(&self) -> bool {
        matches!(self, Body::Bytes(b) if b.is_empty())
    }
}

/// The body length a message's `Content-Length` declares, when it holds one number.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reading a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// It is longer than the reader's limit; reading stopped there.
    #[error("the body is over {limit} bytes")]
    TooLarge { limit: usize },
    /// It broke off (the peer closed or reset its connection, the runtime failed).
    #[error("the body could not be read: {0}")]
    Broken(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_bytes_are_known_empty() {
        assert!(Body::<()>::default().is_empty());
        assert!(!Body::<()>::Bytes(Bytes::from_static(b"x")).is_empty());
        assert!(!Body::Stream(()).is_empty());
        assert_eq!(Body::Stream(()).bytes(), None);
    }
}
