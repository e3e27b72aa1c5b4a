//! Step 8, for traced requests (`[telemetry]`): the sampling decision when a request comes in,
//! its spans when it ends, and sending them after the answer.

use super::upstream::{send_upstream, Outbound, Tries};
use super::{Ctx, Gateway};
use crate::body::Body;
use crate::host::{BodyUse, Exchange, Host, Later, LaterWork};
use crate::telemetry::{self, Export, Finished, Then, Trace};
use http::{HeaderValue, Method};

/// The longest answer of a collector the gateway reads (and then drops).
const COLLECTOR_ANSWER_BYTES: usize = 64 * 1024;

impl Gateway {
    /// Whether the request is traced; when the gateway starts the trace and does not sample
    /// it, the `traceparent` sent on says so (flags `00`).
    pub(super) fn trace_start<H: Host>(
        &self,
        headers: &http::HeaderMap,
        traceparent: &mut [u8; 55],
        host: &H,
    ) -> Option<Trace> {
        let t = self.config.telemetry.as_ref()?;
        let incoming = headers.get(super::TRACEPARENT);
        let ours = crate::phase::transform::traceparent_text(traceparent);
        let parent = telemetry::parent(incoming, ours);
        let sampled = t.sampled(parent.as_ref(), || host.random());
        if parent.is_none() && !sampled {
            traceparent[53..].copy_from_slice(b"00");
        }
        sampled.then(|| Trace {
            parent,
            attempts: Vec::new(),
        })
    }

    /// Leaves the request's spans for after the answer: in the isolate's batch, or sent on
    /// their own ([`telemetry::finish`]).
    pub(super) fn trace_end<H: Host>(&self, start_us: u64, ctx: &mut Ctx<'_>, host: &H) {
        let (Some(t), Some(trace)) = (&self.config.telemetry, &ctx.trace) else {
            return;
        };
        let finished = Finished {
            log: &ctx.log,
            traceparent: ctx.traceparent,
            parent: trace.parent,
            start_us,
            attempts: &trace.attempts,
            route_path: ctx.route.map(|r| r.path.as_str()),
            runtime: host.runtime(),
        };
        let Ok(mut batch) = self.spans.try_borrow_mut() else {
            return; // only if a host's `random` handled another request inside this one
        };
        let then = telemetry::finish(t, &finished, &mut batch, host.shares_isolate(), || {
            host.random()
        });
        drop(batch);
        let work = match then {
            Then::Wait => return,
            Then::SendLater(waiting) => LaterWork::Flush(waiting, ctx.request_id.to_string()),
            Then::Send(export) => LaterWork::Export(Box::new(export)),
        };
        host.defer(Later(work));
    }

    /// Waits `batch_ms`, then sends the spans that gathered in the isolate meanwhile.
    pub(super) async fn flush_spans<H: Host>(
        &self,
        waiting: telemetry::Waiting,
        request_id: &str,
        host: &H,
    ) {
        let Some(t) = &self.config.telemetry else {
            return;
        };
        host.sleep(t.batch_ms).await;
        let export = self.spans.borrow_mut().take(t, host.runtime(), request_id);
        drop(waiting); // the next spans start a wait of their own
        if let Some(export) = export {
            self.export_spans(export, host).await;
        }
    }

    /// Sends a request's spans to the collector, once, within its upstream's `timeout_ms`; a
    /// failure is logged with the number of spans lost, and changes nothing else.
    pub(super) async fn export_spans<H: Host>(&self, spans: Export, host: &H) {
        let Some(t) = &self.config.telemetry else {
            return;
        };
        let upstream = &self.config.upstreams[t.upstream];
        let mut headers = t.headers.clone();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let out = Outbound {
            method: &Method::POST,
            upgrade: false,
            path_and_query: t.path.clone(),
            headers,
            body: Body::Bytes(spans.body),
        };
        let exchange = Exchange {
            timeout_ms: upstream.timeout_ms,
            idle_timeout_ms: upstream.idle_timeout_ms,
            max_response_bytes: COLLECTOR_ANSWER_BYTES,
            max_request_bytes: usize::MAX,
            body: BodyUse::Read,
            request_id: &spans.request_id,
        };
        let answer = send_upstream(upstream, out, &exchange, &mut Tries::default(), host).await;
        let failed = match &answer {
            Ok(res) if res.status().is_success() => return,
            Ok(res) => format!("status {}", res.status().as_u16()),
            Err(reject) => reject.code().to_string(),
        };
        let line = serde_json::json!({
            "request_id": spans.request_id,
            "event": "telemetry-export",
            "outcome": "failed",
            "reason": failed,
            "spans_lost": spans.spans,
        });
        host.log(&line.to_string());
    }
}
