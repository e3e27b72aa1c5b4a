//! Step 8, for traced requests (`[telemetry]`): the sampling decision when a request comes in,
//! its spans when it ends, and sending them after the answer.

use super::upstream::{send_upstream, Outbound, Tries};
use super::{Ctx, Gateway};
use crate::body::Body;
use crate::host::{BodyUse, Exchange, Host, Later, LaterWork};
use crate::phase::transform::Caller;
use crate::telemetry::{self, Export, Finished, Measure, Signal, Trace};
use http::{HeaderValue, Method};

/// The longest answer of a collector the gateway reads (and then drops).
const COLLECTOR_ANSWER_BYTES: usize = 64 * 1024;

impl Gateway {
    /// Whether the request is traced; when the gateway starts the trace and does not sample
    /// it, the `traceparent` sent on says so (flags `00`).
    pub(super) fn trace_start<H: Host>(
        &self,
        caller: Option<Caller<'_>>,
        traceparent: &mut [u8; 55],
        host: &H,
    ) -> Option<Trace> {
        let t = self.config.telemetry.as_ref().filter(|t| t.traces)?;
        let parent = caller.and_then(telemetry::Parent::of);
        let sampled = t.sampled(parent.as_ref(), || host.random());
        if parent.is_none() && !sampled {
            traceparent[53..].copy_from_slice(b"00");
        }
        sampled.then(|| Trace {
            parent,
            attempts: Vec::new(),
        })
    }

    /// Counts the request (an Analytics Engine data point now; metrics and, when traced, spans
    /// left for after the answer, in the isolate's batch or sent on their own:
    /// [`telemetry::finish`]). `response_bytes`: the answer's size, when known.
    pub(super) fn telemetry_end<H: Host>(
        &self,
        start_us: u64,
        response_bytes: Option<u64>,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) {
        let Some(t) = &self.config.telemetry else {
            return;
        };
        let route_path = ctx.route.map(|r| r.path.as_str());
        let measure = (t.metrics_path.is_some() || t.analytics_engine.is_some()).then(|| {
            let bytes = (ctx.request_bytes, response_bytes);
            Measure::of(&ctx.log, route_path, t.consumer_ids, bytes)
        });
        if let (Some(dataset), Some(m)) = (&t.analytics_engine, &measure) {
            host.write_data_point(dataset, &m.data_point(host.runtime()));
        }
        let finished = Finished {
            log: &ctx.log,
            measure: measure.as_ref().filter(|_| t.metrics_path.is_some()),
            traced: ctx.trace.is_some(),
            traceparent: ctx.traceparent,
            parent: ctx.trace.as_ref().and_then(|t| t.parent),
            start_us,
            attempts: ctx.trace.as_ref().map_or(&[], |t| &t.attempts),
            route_path,
            runtime: host.runtime(),
        };
        if finished.measure.is_none() && !finished.traced {
            return;
        }
        let Ok(mut batch) = self.telemetry_batch.try_borrow_mut() else {
            return; // only if a host's `random` handled another request inside this one
        };
        let then = telemetry::finish(t, &finished, &mut batch, host.shares_isolate(), || {
            host.random()
        });
        drop(batch);
        for export in then.send {
            host.defer(Later(LaterWork::Export(Box::new(export))));
        }
        if let Some(waiting) = then.wait {
            let work = LaterWork::Flush(waiting, ctx.request_id.to_string());
            host.defer(Later(work));
        }
    }

    /// Waits `batch_ms`, then sends the spans and metrics that gathered in the isolate
    /// meanwhile.
    pub(super) async fn flush_batch<H: Host>(
        &self,
        waiting: telemetry::Waiting,
        request_id: &str,
        host: &H,
    ) {
        let Some(t) = &self.config.telemetry else {
            return;
        };
        host.sleep(t.batch_ms).await;
        let exports =
            self.telemetry_batch
                .borrow_mut()
                .take(t, host.runtime(), request_id, host.now());
        drop(waiting); // what comes next starts a wait of its own
        for export in exports {
            self.export(export, host).await;
        }
    }

    /// Sends spans or metrics to the collector, once, within its upstream's `timeout_ms`; a
    /// failure is logged with the number of spans or data points lost, and changes nothing else.
    pub(super) async fn export<H: Host>(&self, export: Export, host: &H) {
        let Some((t, upstream)) = self
            .config
            .telemetry
            .as_ref()
            .and_then(|t| Some((t, t.upstream?)))
        else {
            return;
        };
        let upstream = &self.config.upstreams[upstream];
        let path = match export.signal {
            Signal::Traces => t.path.clone(),
            Signal::Metrics => t.metrics_path.clone().unwrap_or_default(),
        };
        let mut headers = t.headers.clone();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let out = Outbound {
            method: &Method::POST,
            upgrade: false,
            path_and_query: path,
            headers,
            body: Body::Bytes(export.body),
        };
        let exchange = Exchange {
            timeout_ms: upstream.timeout_ms,
            idle_timeout_ms: upstream.idle_timeout_ms,
            max_response_bytes: COLLECTOR_ANSWER_BYTES,
            max_request_bytes: usize::MAX,
            body: BodyUse::Read,
            request_id: &export.request_id,
        };
        let answer = send_upstream(upstream, out, &exchange, &mut Tries::default(), host).await;
        let failed = match &answer {
            Ok(res) if res.status().is_success() => return,
            Ok(res) => format!("status {}", res.status().as_u16()),
            Err(reject) => reject.code().to_string(),
        };
        let lost = match export.signal {
            Signal::Traces => "spans_lost",
            Signal::Metrics => "points_lost",
        };
        let mut line = serde_json::json!({
            "request_id": export.request_id,
            "event": "telemetry-export",
            "outcome": "failed",
            "reason": failed,
        });
        line[lost] = export.items.into();
        host.log(&line.to_string());
    }
}
