use super::*;

#[test]
fn the_callers_span_and_decision_come_from_a_valid_traceparent_only() {
    let parent = |incoming: &str| {
        let v = HeaderValue::from_str(incoming).unwrap();
        let (_, caller) = crate::phase::transform::traceparent(Some(&v), [1, 2, 3]);
        caller.and_then(Parent::of)
    };
    let cases = [
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some(Parent {
                span_id: 0x00f0_67aa_0ba9_02b7u64.to_be_bytes(),
                sampled: true,
            }),
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            Some(Parent {
                span_id: 0x00f0_67aa_0ba9_02b7u64.to_be_bytes(),
                sampled: false,
            }),
        ),
        // a later version's flags: the sampled bit is bit 0 still
        (
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-extra",
            Some(Parent {
                span_id: 0x00f0_67aa_0ba9_02b7u64.to_be_bytes(),
                sampled: true,
            }),
        ),
        // invalid: a trace id of zeros, upper case, a short parent
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902-01",
            None,
        ),
    ];
    for (incoming, want) in cases {
        assert_eq!(parent(incoming), want, "{incoming}");
    }
}

#[cfg(all(feature = "toml", feature = "memory"))]
mod through_the_gateway {
    use crate::memory::MemoryHost;
    use crate::{Body, Client, Config, Gateway};
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    const CONFIG: &str = r#"
[upstreams.app]
targets = [{ url = "https://app.test" }]
retries = 1

[upstreams.collector]
targets = [{ url = "https://otel.test/base" }]
timeout_ms = 500

[telemetry]
upstream = "collector"
sample = 0.0
service_version = "cfg-7"
metrics = false
headers = { "x-otlp-key" = { value = "k1" } }

[auth.api_keys.main]
keys = [{ consumer = "alice", sha256 = "a52782e3a2d4dd2f95f640b9abfb3b2a6b8e722c65f55be830f6e5f619f7f873" }]

[[routes]]
name = "items"
path = "/items/{id}"
upstream = "app"
auth = { api_key = "main" }
"#;
    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Runs one request (and the work it left for after its answer); the upstream answers 503
    /// once, then 200; the collector answers `collector_status`.
    fn run(
        config: &str,
        headers: &[(&str, &str)],
        collector_status: u16,
    ) -> (
        MemoryHost,
        http::Response<Body<crate::memory::MemoryStream>>,
    ) {
        let gateway = Gateway::new(Config::from_toml(config).unwrap());
        let calls = std::cell::Cell::new(0);
        let host = MemoryHost::new(1_796_326_637_000, move |req| {
            let status = if req.uri().host() == Some("otel.test") {
                collector_status
            } else {
                calls.set(calls.get() + 1);
                if calls.get() == 1 {
                    503
                } else {
                    200
                }
            };
            Ok(http::Response::builder()
                .status(status)
                .body(Bytes::new())
                .unwrap())
        });
        let mut req = http::Request::builder().uri("/items/7");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Body::Bytes(Bytes::new())).unwrap();
        let client = Client::new([192, 0, 2, 1].into());
        let res = pollster::block_on(gateway.handle(req, client, &host));
        for later in host.take_later() {
            pollster::block_on(gateway.run_later(later, &host));
        }
        (host, res)
    }

    fn text(s: &Span, key: &str) -> Option<String> {
        s.attributes.iter().find(|a| a.key == key).and_then(|a| {
            match a.value.as_ref()?.value.as_ref()? {
                Value::StringValue(v) => Some(v.clone()),
                Value::IntValue(v) => Some(v.to_string()),
                _ => None,
            }
        })
    }

    #[test]
    fn a_sampled_request_sends_its_span_tree_to_the_collector() {
        let key = ("x-api-key", "demo-key-123");
        let (host, res) = run(CONFIG, &[("traceparent", SAMPLED), key], 200);
        assert_eq!(res.status(), 200);
        let sent = host.sent.borrow();
        // the upstream twice (503, then 200), then the collector
        assert_eq!(sent.len(), 3);
        let export = &sent[2];
        assert_eq!(export.method(), "POST");
        assert_eq!(export.uri(), "https://otel.test/base/v1/traces");
        assert_eq!(export.headers()["content-type"], "application/x-protobuf");
        assert_eq!(export.headers()["x-otlp-key"], "k1");
        // the upstream got our span as its parent, sampled
        let sent_tp = sent[0].headers()["traceparent"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(sent_tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(sent_tp.ends_with("-01"));

        let req = ExportTraceServiceRequest::decode(export.body().clone()).unwrap();
        let rs = &req.resource_spans[0];
        let resource: Vec<(String, String)> = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|a| {
                let Some(Value::StringValue(v)) = a.value.as_ref().and_then(|v| v.value.clone())
                else {
                    panic!("{a:?}")
                };
                (a.key.clone(), v)
            })
            .collect();
        assert_eq!(
            resource[..3],
            [
                ("service.name".into(), "portcullis".into()),
                ("service.version".into(), "cfg-7".into()),
                ("portcullis.runtime".into(), "memory".into()),
            ]
        );
        let spans = &rs.scope_spans[0].spans;
        let server = &spans[0];
        assert_eq!(server.name, "GET /items/{id}");
        assert_eq!(server.kind, 2, "server");
        assert_eq!(hex(&server.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            hex(&server.parent_span_id),
            "00f067aa0ba902b7",
            "the caller's span"
        );
        assert_eq!(
            hex(&server.span_id),
            &sent_tp[36..52],
            "the span the upstream saw"
        );
        assert_eq!(
            text(server, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(text(server, "portcullis.route").as_deref(), Some("items"));
        assert_eq!(
            text(server, "portcullis.consumer"),
            None,
            "consumer ids are off"
        );
        assert_eq!(server.start_time_unix_nano, 1_796_326_637_000 * 1_000_000);
        // every other span is the server span's child, in the same trace
        for s in &spans[1..] {
            assert_eq!(s.parent_span_id, server.span_id, "{}", s.name);
            assert_eq!(s.trace_id, server.trace_id);
            assert!(s.start_time_unix_nano >= server.start_time_unix_nano);
            assert!(
                s.end_time_unix_nano <= server.end_time_unix_nano,
                "{}",
                s.name
            );
        }
        let names: Vec<&str> = spans[1..].iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["validate", "auth", "route", "respond", "GET", "GET"],
            "the phases, then the upstream attempts"
        );
        let attempts: Vec<_> = spans[5..]
            .iter()
            .map(|s| {
                (
                    s.kind,
                    text(s, "http.response.status_code"),
                    s.status.as_ref().map(|s| s.code),
                )
            })
            .collect();
        assert_eq!(
            attempts,
            [
                (3, Some("503".into()), Some(2)),
                (3, Some("200".into()), None),
            ]
        );
        assert_eq!(
            text(&spans[2], "portcullis.decision").as_deref(),
            Some("api_key:main")
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_callers_decision_and_the_share_decide_what_is_traced() {
        let key = ("x-api-key", "demo-key-123");
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let (host, _) = run(CONFIG, &[("traceparent", unsampled), key], 200);
        assert_eq!(host.sent.borrow().len(), 2, "no export");
        assert!(host.sent.borrow()[1].headers()["traceparent"]
            .to_str()
            .unwrap()
            .ends_with("-00"));
        // no traceparent, a share of 0: not traced, and the upstream is told so
        let (host, _) = run(CONFIG, &[key], 200);
        assert_eq!(host.sent.borrow().len(), 2, "no export");
        assert!(host.sent.borrow()[1].headers()["traceparent"]
            .to_str()
            .unwrap()
            .ends_with("-00"));
        // a share of 1: traced, with consumer ids when allowed
        let all = CONFIG.replace("sample = 0.0", "sample = 1.0\nconsumer_ids = true");
        let (host, _) = run(&all, &[key], 200);
        let sent = host.sent.borrow();
        assert_eq!(sent.len(), 3);
        assert!(sent[1].headers()["traceparent"]
            .to_str()
            .unwrap()
            .ends_with("-01"));
        let req = ExportTraceServiceRequest::decode(sent[2].body().clone()).unwrap();
        let server = &req.resource_spans[0].scope_spans[0].spans[0];
        assert!(server.parent_span_id.is_empty(), "a root span");
        assert_eq!(
            text(server, "portcullis.consumer").as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn a_refused_request_and_a_failing_collector() {
        // no key: 401, traced all the same; the collector answers 503: logged, answer unchanged
        let (host, res) = run(CONFIG, &[("traceparent", SAMPLED)], 503);
        assert_eq!(res.status(), 401);
        let sent = host.sent.borrow();
        assert_eq!(sent.len(), 1, "only the export");
        let req = ExportTraceServiceRequest::decode(sent[0].body().clone()).unwrap();
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(
            text(&spans[0], "error.type").as_deref(),
            Some("unauthenticated")
        );
        assert_eq!(spans[0].status, None, "a 4xx is not the server's error");
        let auth = spans.iter().find(|s| s.name == "auth").unwrap();
        assert_eq!(auth.status.as_ref().map(|s| s.code), Some(2));
        let logs = host.log_records();
        let failed = logs
            .iter()
            .find(|l| l["event"] == "telemetry-export")
            .unwrap();
        assert_eq!(failed["reason"], "status 503");
        assert_eq!(failed["spans_lost"], spans.len());
    }

    /// Where requests share an isolate, their spans wait `batch_ms` for each other: the first
    /// traced request's work waits and sends all of them in one export; a batch that reaches
    /// MAX_BATCH_SPANS goes at once.
    #[test]
    fn in_an_isolate_spans_of_several_requests_share_one_export() {
        let gateway = Gateway::new(Config::from_toml(CONFIG).unwrap());
        let host = MemoryHost::new(1_796_326_637_000, |_| Ok(http::Response::new(Bytes::new())));
        host.shares_isolate.set(true);
        let send = |i: u32| {
            let tp = format!("00-{:032x}-00f067aa0ba902b7-01", 1000 + i);
            let req = http::Request::builder()
                .uri("/items/7")
                .header("traceparent", tp)
                .header("x-api-key", "demo-key-123")
                .body(Body::Bytes(Bytes::new()))
                .unwrap();
            let client = Client::new([192, 0, 2, 1].into());
            pollster::block_on(gateway.handle(req, client, &host));
            host.take_later()
        };
        let exports = || {
            let sent = host.sent.borrow();
            let to_collector = sent.iter().filter(|r| r.uri().host() == Some("otel.test"));
            to_collector
                .map(|r| ExportTraceServiceRequest::decode(r.body().clone()).unwrap())
                .collect::<Vec<_>>()
        };
        let traces = |x: &ExportTraceServiceRequest| {
            let spans = x.resource_spans[0].scope_spans[0].spans.iter();
            let mut ids: Vec<Vec<u8>> = spans.map(|s| s.trace_id.clone()).collect();
            ids.dedup();
            ids.len()
        };
        let mut first = send(0);
        assert_eq!(first.len(), 1, "the first request's work waits to send");
        for i in 1..3 {
            assert!(send(i).is_empty(), "the others' spans join the batch");
        }
        assert!(exports().is_empty(), "nothing sent before the wait");
        pollster::block_on(gateway.run_later(first.remove(0), &host));
        let sent = exports();
        assert_eq!(sent.len(), 1);
        assert_eq!(traces(&sent[0]), 3, "three requests in one export");
        // the next request starts a wait of its own; a batch that fills up goes at once
        let mut waits = send(3);
        assert_eq!(waits.len(), 1);
        let mut i = 4;
        let full = loop {
            let later = send(i);
            i += 1;
            if !later.is_empty() {
                break later;
            }
        };
        for later in full {
            pollster::block_on(gateway.run_later(later, &host));
        }
        let sent = exports();
        assert_eq!(sent.len(), 2);
        let spans = sent[1].resource_spans[0].scope_spans[0].spans.len();
        assert!(
            (super::super::MAX_BATCH_SPANS - super::super::MAX_SPANS
                ..=super::super::MAX_BATCH_SPANS)
                .contains(&spans),
            "{spans}"
        );
        // the waiting work then sends the request that found the batch full
        pollster::block_on(gateway.run_later(waits.remove(0), &host));
        let sent = exports();
        assert_eq!(sent.len(), 3);
        assert_eq!(traces(&sent[2]), 1);
        // the next request starts a wait; dropped unrun, it lets the one after start another
        let dropped = send(i);
        assert_eq!(dropped.len(), 1);
        drop(dropped);
        assert_eq!(send(i + 1).len(), 1);
    }

    #[test]
    fn the_config_is_checked() {
        let errors = |src: &str| Config::from_toml(src).err().map(|e| e.render("g.toml"));
        let bad = CONFIG
            .replace("upstream = \"collector\"", "upstream = \"colector\"")
            .replace("sample = 0.0", "sample = 2.0\npath = \"v1/traces\"")
            .replace(
                "{ value = \"k1\" }",
                "{ value = \"k1\", secret_env = \"K\" }",
            );
        let listing = errors(&bad).unwrap();
        for want in [
            "telemetry.upstream: unknown upstream \"colector\" (did you mean \"collector\"?)",
            "telemetry.path: \"v1/traces\" must be a path starting with /",
            "telemetry.sample: must be from 0 to 1",
            "telemetry.headers.x-otlp-key: give one of `value` and `secret_env`",
        ] {
            assert!(listing.contains(want), "{want}\n{listing}");
        }
        // a collector at a private address needs allow_private, as any upstream
        let private = CONFIG.replace("https://otel.test/base", "http://10.0.0.5:4318");
        assert!(errors(&private)
            .unwrap()
            .contains("10.0.0.5 is a private address"));
        // a secret header is read when the gateway starts
        let secret = CONFIG.replace("{ value = \"k1\" }", "{ secret_env = \"OTLP_KEY\" }");
        let read = |name: &str| (name == "OTLP_KEY").then(|| "s3".to_string());
        let config = Config::from_toml_with_secrets(&secret, &read).unwrap();
        assert_eq!(config.telemetry.unwrap().headers["x-otlp-key"], "s3");
        let none = Config::from_toml_with_secrets(&secret, &|_| None)
            .err()
            .unwrap();
        assert!(none.render("g.toml").contains(
            "telemetry.headers.x-otlp-key.secret_env: the environment variable OTLP_KEY is not set or empty"
        ));
    }
}
