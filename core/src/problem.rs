//! Rejections: every way the gateway refuses a request, each knowing its HTTP status and its
//! stable problem code, rendered as an RFC 9457 `application/problem+json` body.
//!
//! Messages say what was wrong with the request and never name upstreams, keys or internals.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    #[error("the request path is not acceptable: {0}")]
    BadPath(&'static str),
    #[error("the request target is longer than {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("the request headers are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("a request header line is longer than {limit} bytes")]
    HeaderTooLarge { limit: usize },
    #[error("the request is framed ambiguously: {0}")]
    BadFraming(&'static str),
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("content type {0:?} is not accepted here")]
    UnsupportedMediaType(String),
    #[error("{location} parameter {name:?} {reason}")]
    InvalidParameter {
        location: &'static str,
        name: String,
        reason: String,
    },
    #[error("the request body is invalid: {0}")]
    InvalidBody(String),
    #[error("no route matches this request")]
    NotFound,
    #[error("method not allowed; allowed: {allow}")]
    MethodNotAllowed { allow: String },
    #[error("access denied: {0}")]
    Denied(String),
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    #[error("the credentials are valid but do not allow this: {0}")]
    Forbidden(String),
    #[error("rate limit exceeded; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64, policy: String },
    #[error("a service the gateway depends on is unavailable")]
    Unavailable,
    #[error("the upstream answered with an error")]
    BadGateway,
    #[error("the upstream did not answer in time")]
    GatewayTimeout,
}

impl Reject {
    /// The HTTP status of this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Reject::BadPath(_)
            | Reject::BadFraming(_)
            | Reject::InvalidParameter { .. }
            | Reject::InvalidBody(_) => StatusCode::BAD_REQUEST,
            Reject::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Reject::HeadersTooLarge { .. } | Reject::HeaderTooLarge { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Reject::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reject::NotFound => StatusCode::NOT_FOUND,
            Reject::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Reject::Denied(_) | Reject::Forbidden(_) => StatusCode::FORBIDDEN,
            Reject::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Reject::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Reject::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reject::BadGateway => StatusCode::BAD_GATEWAY,
            Reject::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable problem code: the last segment of the problem `type`, and the log's `error`.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::BadPath(_) => "bad-path",
            Reject::UriTooLong { .. } => "uri-too-long",
            Reject::HeadersTooLarge { .. } => "headers-too-large",
            Reject::HeaderTooLarge { .. } => "header-too-large",
            Reject::BadFraming(_) => "bad-framing",
            Reject::BodyTooLarge { .. } => "body-too-large",
            Reject::UnsupportedMediaType(_) => "unsupported-media-type",
            Reject::InvalidParameter { .. } => "invalid-parameter",
            Reject::InvalidBody(_) => "invalid-body",
            Reject::NotFound => "not-found",
            Reject::MethodNotAllowed { .. } => "method-not-allowed",
            Reject::Denied(_) => "access-denied",
            Reject::Unauthenticated(_) => "unauthenticated",
            Reject::Forbidden(_) => "forbidden",
            Reject::RateLimited { .. } => "rate-limited",
            Reject::Unavailable => "unavailable",
            Reject::BadGateway => "bad-gateway",
            Reject::GatewayTimeout => "gateway-timeout",
        }
    }

    /// The RFC 9457 response for this rejection.
    pub fn to_response(&self, request_id: &str) -> Response<Bytes> {
        let status = self.status();
        // written by hand, keys in the order serde_json's map would give them: a `json!` value
        // links its map and serializer into the worker for this alone
        let mut body = String::with_capacity(192);
        let mut w = crate::phase::observe::Json(&mut body);
        w.str_field("{\"detail\":", &self.to_string());
        w.str_field(",\"request_id\":", request_id);
        w.num_field(",\"status\":", u64::from(status.as_u16()));
        w.str_field(",\"title\":", status.canonical_reason().unwrap_or("Error"));
        w.raw(",\"type\":\"urn:portcullis:problem:");
        w.raw(self.code());
        w.raw("\"}");
        let mut res = Response::new(Bytes::from(body));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Reject::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    h.insert(header::ALLOW, v);
                }
            }
            Reject::Unauthenticated(reason) => {
                let v = if reason == "no credentials" {
                    "Bearer".to_string()
                } else {
                    format!(
                        "Bearer error=\"invalid_token\", error_description=\"{}\"",
                        reason.replace('"', "'")
                    )
                };
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Reject::Forbidden(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
                );
            }
            Reject::RateLimited { retry_after_s, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            _ => {}
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let rows = [
            (Reject::BadPath("x"), 400, "bad-path"),
            (Reject::UriTooLong { limit: 1 }, 414, "uri-too-long"),
            (
                Reject::HeadersTooLarge { limit: 1 },
                431,
                "headers-too-large",
            ),
            (Reject::BodyTooLarge { limit: 1 }, 413, "body-too-large"),
            (Reject::HeaderTooLarge { limit: 1 }, 431, "header-too-large"),
            (Reject::BadFraming("x"), 400, "bad-framing"),
            (
                Reject::UnsupportedMediaType("a/b".into()),
                415,
                "unsupported-media-type",
            ),
            (Reject::NotFound, 404, "not-found"),
            (
                Reject::MethodNotAllowed {
                    allow: "GET".into(),
                },
                405,
                "method-not-allowed",
            ),
            (Reject::Denied("x".into()), 403, "access-denied"),
            (Reject::Unauthenticated("x".into()), 401, "unauthenticated"),
            (Reject::Forbidden("x".into()), 403, "forbidden"),
            (
                Reject::RateLimited {
                    retry_after_s: 3,
                    policy: "p".into(),
                },
                429,
                "rate-limited",
            ),
            (Reject::Unavailable, 503, "unavailable"),
            (Reject::BadGateway, 502, "bad-gateway"),
            (Reject::GatewayTimeout, 504, "gateway-timeout"),
        ];
        for (r, status, code) in rows {
            assert_eq!((r.status().as_u16(), r.code()), (status, code), "{r:?}");
        }
    }

    #[test]
    fn problem_body_is_rfc9457() {
        let res = Reject::RateLimited {
            retry_after_s: 7,
            policy: "p".into(),
        }
        .to_response("rid-1");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert_eq!(res.headers()["retry-after"], "7");
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "urn:portcullis:problem:rate-limited",
                "title": "Too Many Requests",
                "status": 429,
                "detail": "rate limit exceeded; retry in 7 s",
                "request_id": "rid-1",
            })
        );
    }

    #[test]
    fn problem_body_is_the_bytes_serde_json_writes() {
        // details carry client text: quotes, backslashes, control and non-ASCII characters
        for r in [
            Reject::InvalidBody("at /a: \"x\\y\"\n\u{1}é is not valid".into()),
            Reject::NotFound,
            Reject::BodyTooLarge { limit: 1 << 20 },
        ] {
            let res = r.to_response("rid\"1");
            let want = serde_json::json!({
                "type": format!("urn:portcullis:problem:{}", r.code()),
                "title": r.status().canonical_reason().unwrap_or("Error"),
                "status": r.status().as_u16(),
                "detail": r.to_string(),
                "request_id": "rid\"1",
            })
            .to_string();
            assert_eq!(String::from_utf8_lossy(res.body()), want);
        }
    }

    #[test]
    fn www_authenticate_names_the_error() {
        let missing = Reject::Unauthenticated("no credentials".into()).to_response("r");
        assert_eq!(missing.headers()["www-authenticate"], "Bearer");
        let bad = Reject::Unauthenticated("token expired".into()).to_response("r");
        assert_eq!(
            bad.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\", error_description=\"token expired\""
        );
        let scope = Reject::Forbidden("missing scope".into()).to_response("r");
        assert_eq!(
            scope.headers()["www-authenticate"],
            "Bearer error=\"insufficient_scope\""
        );
    }
}
