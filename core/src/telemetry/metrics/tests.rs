use super::*;

#[test]
fn a_latency_falls_in_the_bucket_its_bounds_give() {
    let mut h = Histogram::default();
    // exactly on a bound counts in that bound's bucket; past the last, in the overflow bucket
    for us in [1_000, 1_001, 4_000, 20_000_000] {
        h.add(us);
    }
    let mut want = [0; BOUNDS_S.len() + 1];
    want[0] = 1;
    want[1] = 1;
    want[2] = 1;
    want[BOUNDS_S.len()] = 1;
    assert_eq!(h.counts, want);
    assert_eq!((h.count, h.min, h.max), (4, 0.001, 20.0));
    assert!((h.sum - 20.006001).abs() < 1e-9, "{}", h.sum);
}

#[test]
fn methods_outside_https_registry_count_as_other() {
    assert_eq!(known_method("GET"), "GET");
    assert_eq!(known_method("PATCH"), "PATCH");
    assert_eq!(known_method("get"), "_OTHER", "methods are case-sensitive");
    assert_eq!(known_method("BREW"), "_OTHER");
}

#[cfg(all(feature = "toml", feature = "memory"))]
mod through_the_gateway {
    use super::super::{BOUNDS_S, MAX_SERIES};
    use crate::memory::MemoryHost;
    use crate::{Body, Client, Config, Gateway};
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
    use prost::Message;
    use std::collections::BTreeMap;

    const CONFIG: &str = r#"
[upstreams.app]
targets = [{ url = "https://app.test" }]

[upstreams.collector]
targets = [{ url = "https://otel.test" }]

[telemetry]
upstream = "collector"
traces = false
service_version = "cfg-9"

[auth.api_keys.main]
keys = [{ consumer = "alice", sha256 = "a52782e3a2d4dd2f95f640b9abfb3b2a6b8e722c65f55be830f6e5f619f7f873" }]

[[routes]]
name = "items"
path = "/items/{id}"
upstream = "app"
auth = { api_key = "main" }
"#;
    const KEY: (&str, &str) = ("x-api-key", "demo-key-123");

    /// A request: its method, target, headers and body.
    type Request = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [u8],
    );

    /// The suite's traffic: two GETs (200, 5-byte answers), one GET without a key (401 from
    /// auth), one POST with a 3-byte body, one request no route takes (404, refused as
    /// the validate phase looks the route up).
    fn traffic(config: &str, isolate: bool) -> MemoryHost {
        let gateway = Gateway::new(Config::from_toml(config).unwrap());
        let host = MemoryHost::new(1_796_326_637_000, |_| {
            let res = http::Response::builder().header("content-length", "5");
            Ok(res.body(Bytes::from_static(b"hello")).unwrap())
        });
        host.shares_isolate.set(isolate);
        let requests: [Request; 5] = [
            ("GET", "/items/1", &[KEY], b""),
            ("GET", "/items/2", &[KEY], b""),
            ("GET", "/items/3", &[], b""),
            ("POST", "/items/4", &[KEY, ("content-length", "3")], b"abc"),
            ("GET", "/nowhere", &[], b""),
        ];
        let mut later = Vec::new();
        for (method, path, headers, body) in requests {
            let mut req = http::Request::builder().method(method).uri(path);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(Body::Bytes(Bytes::copy_from_slice(body))).unwrap();
            let client = Client::new([192, 0, 2, 1].into());
            pollster::block_on(gateway.handle(req, client, &host));
            later.extend(host.take_later());
        }
        for work in later {
            pollster::block_on(gateway.run_later(work, &host));
        }
        host
    }

    fn exports(host: &MemoryHost) -> Vec<ExportMetricsServiceRequest> {
        let sent = host.sent.borrow();
        sent.iter()
            .filter(|r| r.uri().host() == Some("otel.test"))
            .map(|r| {
                assert_eq!(r.uri().path(), "/v1/metrics");
                assert_eq!(r.headers()["content-type"], "application/x-protobuf");
                ExportMetricsServiceRequest::decode(r.body().clone()).unwrap()
            })
            .collect()
    }

    fn attrs(kv: &[KeyValue]) -> String {
        let pairs = kv.iter().map(|a| {
            let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            format!("{}={v}", a.key)
        });
        pairs.collect::<Vec<_>>().join(" ")
    }

    /// Every export's data points added up: per metric and attributes, a sum's value or a
    /// histogram's count (and, for request durations, the bucket counts' total too).
    fn totals(exports: &[ExportMetricsServiceRequest]) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for x in exports {
            for rm in &x.resource_metrics {
                for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    match m.data.as_ref().unwrap() {
                        Data::Sum(s) => {
                            assert_eq!(s.aggregation_temporality, 1, "delta");
                            assert!(s.is_monotonic);
                            for p in &s.data_points {
                                let Some(number_data_point::Value::AsInt(n)) = p.value else {
                                    panic!("{p:?}")
                                };
                                *out.entry(format!("{} {}", m.name, attrs(&p.attributes)))
                                    .or_default() += n as u64;
                            }
                        }
                        Data::Histogram(h) => {
                            assert_eq!(h.aggregation_temporality, 1, "delta");
                            for p in &h.data_points {
                                assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
                                assert_eq!(p.explicit_bounds, BOUNDS_S);
                                assert!(p.min <= p.max && p.sum.unwrap() >= 0.0);
                                *out.entry(format!("{} {}", m.name, attrs(&p.attributes)))
                                    .or_default() += p.count;
                            }
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
        out
    }

    fn want() -> BTreeMap<String, u64> {
        let items = "portcullis.route=items http.route=/items/{id}";
        [
            (format!("http.server.request.duration {items} http.request.method=GET portcullis.status_class=2xx"), 2),
            (format!("http.server.request.duration {items} http.request.method=GET portcullis.status_class=4xx"), 1),
            (format!("http.server.request.duration {items} http.request.method=POST portcullis.status_class=2xx"), 1),
            ("http.server.request.duration http.request.method=GET portcullis.status_class=4xx".into(), 1),
            (format!("portcullis.upstream.duration {items} http.request.method=GET portcullis.status_class=2xx"), 2),
            (format!("portcullis.upstream.duration {items} http.request.method=POST portcullis.status_class=2xx"), 1),
            (format!("portcullis.request.body.size {items} http.request.method=POST portcullis.status_class=2xx"), 3),
            (format!("portcullis.response.body.size {items} http.request.method=GET portcullis.status_class=2xx"), 10),
            (format!("portcullis.response.body.size {items} http.request.method=POST portcullis.status_class=2xx"), 5),
            (format!("portcullis.refusals {items} http.request.method=GET portcullis.status_class=4xx portcullis.phase=auth error.type=unauthenticated"), 1),
            ("portcullis.refusals http.request.method=GET portcullis.status_class=4xx portcullis.phase=validate error.type=not-found".into(), 1),
        ]
        .into_iter()
        .collect()
    }

    /// Problem documents have lengths of their own: the refusals' answer sizes are counted, but
    /// not compared here.
    fn without_refusal_sizes(mut t: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        t.retain(|k, _| !(k.starts_with("portcullis.response.body.size") && k.contains("4xx")));
        t
    }

    #[test]
    fn each_request_sends_its_own_counts_where_requests_do_not_share_memory() {
        let host = traffic(CONFIG, false);
        let exports = exports(&host);
        assert_eq!(exports.len(), 5, "one export per request");
        assert_eq!(without_refusal_sizes(totals(&exports)), want());
        let resource = attrs(
            &exports[0].resource_metrics[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes,
        );
        assert!(
            resource.starts_with(
                "service.name=portcullis service.version=cfg-9 portcullis.runtime=memory"
            ),
            "{resource}"
        );
    }

    #[test]
    fn in_an_isolate_counts_gather_into_one_export() {
        let host = traffic(CONFIG, true);
        let exports = exports(&host);
        assert_eq!(exports.len(), 1, "the first request's wait sends them all");
        assert_eq!(without_refusal_sizes(totals(&exports)), want());
        // a series holds one data point per metric: GET 2xx's two requests are one point
        let durations = &exports[0].resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(durations.name, "http.server.request.duration");
        assert_eq!(durations.unit, "s");
        let Some(Data::Histogram(h)) = &durations.data else {
            panic!()
        };
        assert_eq!(h.data_points.len(), 4);
        assert_eq!(h.data_points[0].count, 2);
    }

    #[test]
    fn consumer_ids_split_series_by_consumer_only_when_allowed() {
        let host = traffic(
            &CONFIG.replace("traces = false", "traces = false\nconsumer_ids = true"),
            true,
        );
        let t = totals(&exports(&host));
        let key = "http.server.request.duration portcullis.route=items http.route=/items/{id} http.request.method=GET portcullis.status_class=2xx portcullis.consumer=alice";
        assert_eq!(t.get(key), Some(&2), "{t:#?}");
    }

    #[test]
    fn an_export_holds_at_most_max_series_and_a_full_one_goes_at_once() {
        let mut config = CONFIG.replace("auth = { api_key = \"main\" }", "");
        for i in 0..=MAX_SERIES {
            config.push_str(&format!(
                "\n[[routes]]\nname = \"r{i}\"\npath = \"/r{i}\"\nrespond = {{}}\n"
            ));
        }
        let gateway = Gateway::new(Config::from_toml(&config).unwrap());
        let host = MemoryHost::new(1_796_326_637_000, |_| Ok(http::Response::new(Bytes::new())));
        host.shares_isolate.set(true);
        let mut later = Vec::new();
        for i in 0..=MAX_SERIES {
            let req = http::Request::get(format!("/r{i}"))
                .body(Body::default())
                .unwrap();
            pollster::block_on(gateway.handle(req, Client::new([192, 0, 2, 1].into()), &host));
            let work = host.take_later();
            // the first starts the wait; the one past MAX_SERIES sends the full batch
            let expected = usize::from(i == 0 || i == MAX_SERIES);
            assert_eq!(work.len(), expected, "request {i}");
            later.extend(work);
        }
        for work in later {
            pollster::block_on(gateway.run_later(work, &host));
        }
        let exports = exports(&host);
        let series = |x: &ExportMetricsServiceRequest| {
            let m = &x.resource_metrics[0].scope_metrics[0].metrics[0];
            let Some(Data::Histogram(h)) = &m.data else {
                panic!()
            };
            h.data_points.len()
        };
        // the first request's wait ran first: it found the one request after the full batch
        assert_eq!(
            exports.iter().map(series).collect::<Vec<_>>(),
            [1, MAX_SERIES]
        );
    }

    #[test]
    fn each_request_is_one_analytics_engine_data_point() {
        let config = CONFIG.replace(
            "upstream = \"collector\"",
            "analytics_engine = \"PORTCULLIS_ANALYTICS\"",
        );
        let host = traffic(&config, true);
        assert!(exports(&host).is_empty(), "no collector, no OTLP");
        let points = host.data_points.borrow();
        assert_eq!(points.len(), 5);
        assert!(points
            .iter()
            .all(|(binding, _)| binding == "PORTCULLIS_ANALYTICS"));
        let (_, refused) = &points[2];
        assert_eq!(refused.index, "items");
        assert_eq!(
            refused.blobs,
            [
                "items",
                "/items/{id}",
                "GET",
                "4xx",
                "",
                "",
                "auth",
                "unauthenticated",
                "",
                "memory"
            ]
        );
        assert_eq!(refused.doubles[0], 401.0);
        assert_eq!(refused.doubles[3], 0.0, "no upstream attempt");
        let (_, post) = &points[3];
        assert_eq!(post.blobs[2], "POST");
        assert_eq!(post.blobs[8], "app");
        assert_eq!(post.doubles[0], 200.0);
        assert_eq!(&post.doubles[3..], [1.0, 3.0, 5.0, 1.0]);
        let (_, unrouted) = &points[4];
        assert_eq!(unrouted.index, "-");
        assert_eq!(
            unrouted.blobs[6..8],
            ["validate".to_string(), "not-found".into()]
        );
    }

    #[test]
    fn the_config_is_checked() {
        let errors = |src: &str| Config::from_toml(src).err().map(|e| e.render("g.toml"));
        let neither = CONFIG.replace("upstream = \"collector\"\n", "");
        assert!(errors(&neither).unwrap().contains(
            "telemetry: name a collector (`upstream`) or a Workers Analytics Engine binding (`analytics_engine`)"
        ));
        let bad = CONFIG.replace(
            "traces = false",
            "analytics_engine = \"my-dataset\"\nmetrics_path = \"metrics\"",
        );
        let listing = errors(&bad).unwrap();
        for want in [
            "telemetry.analytics_engine: \"my-dataset\" is not a binding name (letters, digits and _)",
            "telemetry.metrics_path: \"metrics\" must be a path starting with /",
        ] {
            assert!(listing.contains(want), "{want}\n{listing}");
        }
    }
}
