//! The body stream the gateway passes on untouched ([`portcullis_core::Body::Stream`]): the
//! client's request body or an upstream's response body, as wasi:http@0.3 hands it over, read
//! frame by frame as the other side pulls. Two guards ride on it: an upload is cut past the
//! route's limit, and an upstream's body that sends nothing for the idle timeout is cut (with a
//! log line). A cached route's answer is copied on its way and stored when it has ended within
//! the limit, before its last frame reaches the client ([`SpinStream::teed`]).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use portcullis_core::Tee;
use spin_sdk::wasip3::http::types::ErrorCode;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

type Inner = Pin<Box<dyn Body<Data = Bytes, Error = ErrorCode>>>;
type Timer = Pin<Box<dyn Future<Output = ()>>>;

/// A body on its way through the gateway.
pub struct SpinStream {
    inner: Inner,
    /// Bytes still allowed, and the flag set when the stream passed them.
    cap: Option<(u64, Rc<Cell<bool>>)>,
    /// The idle timeout, the timer running while a frame is awaited, and the log line to write
    /// when it fires.
    idle: Option<(Duration, Option<Timer>, String)>,
    /// A copy on its way to the store, and the body so far.
    tee: Option<(Tee, bytes::BytesMut)>,
    /// While a copy is on its way, the latest frame is held back: a client that knows the
    /// length has the answer whole at its last byte, and must not ask again before it is stored.
    held: Option<Result<Frame<Bytes>, ErrorCode>>,
    /// The copy's store write, once the body has ended: the held frame waits for it.
    writing: Option<Timer>,
    /// The inner body has ended (it is not polled again).
    ended: bool,
}

impl SpinStream {
    pub fn new(body: impl Body<Data = Bytes, Error = ErrorCode> + 'static) -> SpinStream {
        SpinStream {
            inner: Box::pin(body),
            cap: None,
            idle: None,
            tee: None,
            held: None,
            writing: None,
            ended: false,
        }
    }

    /// Copied to the store on its way: see [`portcullis_core::Host::tee`].
    pub fn teed(mut self, tee: Tee) -> SpinStream {
        self.tee = Some((tee, bytes::BytesMut::new()));
        self
    }

    /// Drops the copy, with a `cache-skip` line saying why.
    fn skip(&mut self, reason: &str) {
        if let Some((tee, _)) = self.tee.take() {
            let line = serde_json::json!({
                "request_id": tee.request_id,
                "event": "cache-skip",
                "reason": reason,
                "limit": tee.limit,
            });
            println!("{line}");
        }
    }

    /// Keeps a copy of `frame`'s data while it fits the tee's limit.
    fn copy(&mut self, frame: &Frame<Bytes>) {
        let Some((tee, buf)) = &mut self.tee else {
            return;
        };
        let data = frame.data_ref().map_or(&[][..], |d| &d[..]);
        if buf.len() + data.len() > tee.limit {
            self.skip("too-large");
        } else {
            buf.extend_from_slice(data);
        }
    }

    /// The store write of a copy that ended whole.
    fn store_write(&mut self) -> Option<Timer> {
        let (tee, body) = self.tee.take()?;
        Some(Box::pin(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let mut entry = tee.head;
            entry.extend_from_slice(&body);
            let value = crate::expiry::wrap(&entry, now + u64::from(tee.ttl_s) * 1000);
            // a failed write only costs a later miss
            if let Ok(store) = spin_sdk::key_value::Store::open_default().await {
                let _ = store.set(tee.key.as_str(), value).await;
            }
        }))
    }

    /// Bytes the gateway made (a refusal, a fixed or cached answer).
    pub fn bytes(bytes: Bytes) -> SpinStream {
        let full = http_body_util::Full::new(bytes);
        SpinStream::new(full.map_err(|never| match never {}))
    }

    /// Cut past `limit` bytes; `over` is set when it was.
    pub fn capped(mut self, limit: u64, over: Rc<Cell<bool>>) -> SpinStream {
        self.cap = Some((limit, over));
        self
    }

    /// Cut when no frame comes for `idle`; `log` is the line written then.
    pub fn watched(mut self, idle: Duration, log: String) -> SpinStream {
        self.idle = Some((idle, None, log));
        self
    }
}

impl SpinStream {
    /// Passes `item` on, or holds it back while a copy is on its way (the one held before goes
    /// out instead; with none, the next frame is awaited).
    fn pass(
        &mut self,
        item: Result<Frame<Bytes>, ErrorCode>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ErrorCode>>> {
        match (self.held.take(), self.tee.is_some()) {
            (None, false) => Poll::Ready(Some(item)),
            (None, true) => {
                self.held = Some(item);
                Pin::new(self).poll_frame(cx)
            }
            (Some(before), _) => {
                self.held = Some(item);
                Poll::Ready(Some(before))
            }
        }
    }

    /// The inner body's next frame, checked against the cap and copied.
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ErrorCode>>> {
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(None) => {
                self.ended = true;
                self.writing = self.store_write();
                Pin::new(self).poll_frame(cx)
            }
            Poll::Ready(Some(Err(e))) => {
                self.skip("broken");
                self.pass(Err(e), cx)
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.copy(&frame);
                if let Some((_, timer, _)) = &mut self.idle {
                    *timer = None; // the next wait starts its own
                }
                if let Some((left, over)) = &mut self.cap {
                    let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                    if len > *left {
                        over.set(true);
                        return Poll::Ready(Some(Err(ErrorCode::HttpRequestBodySize(None))));
                    }
                    *left -= len;
                }
                self.pass(Ok(frame), cx)
            }
            Poll::Pending => self.poll_idle(cx),
        }
    }

    /// Waiting for a frame: cut when the idle timeout passes.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ErrorCode>>> {
        let Some((idle, timer, log)) = &mut self.idle else {
            return Poll::Pending;
        };
        let idle = *idle;
        let timer = timer.get_or_insert_with(|| Box::pin(spin_sdk::time::sleep(idle)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        println!("{log}");
        self.skip("broken");
        // the upstream's body is dropped, which closes its stream
        self.inner = Box::pin(http_body_util::Empty::new().map_err(|never| match never {}));
        self.idle = None;
        self.pass(Err(ErrorCode::ConnectionReadTimeout), cx)
    }
}

impl Body for SpinStream {
    type Data = Bytes;
    type Error = ErrorCode;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ErrorCode>>> {
        let this = self.get_mut();
        if let Some(write) = &mut this.writing {
            // the body has ended: its last frame goes out once the copy is stored
            if write.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.writing = None;
        }
        if this.tee.is_none() {
            if let Some(held) = this.held.take() {
                return Poll::Ready(Some(held));
            }
        }
        if this.ended {
            return Poll::Ready(None);
        }
        this.poll_inner(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none()
            && self.tee.is_none()
            && self.writing.is_none()
            && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let held = match &self.held {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        // the upper bound first: a lower bound above it would panic
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + held);
        }
        hint.set_lower(inner.lower() + held);
        hint
    }
}

/// Reads `stream` whole, but never more than one byte past `limit`.
pub async fn read_capped(
    mut stream: SpinStream,
    limit: usize,
) -> Result<Bytes, portcullis_core::ReadError> {
    use portcullis_core::ReadError;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = stream.frame().await {
        let frame = frame.map_err(|e| ReadError::Broken(format!("{e:?}")))?;
        if let Ok(chunk) = frame.into_data() {
            if buf.len() + chunk.len() > limit {
                return Err(ReadError::TooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
    }
    Ok(buf.freeze())
}
