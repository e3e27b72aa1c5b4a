//! The figures of a report: per route, per refusal reason and per consumer, in total and per
//! time bucket. Exact: percentiles are nearest-rank over every duration, not estimates.

use super::read::Line;
use std::collections::BTreeMap;

/// How many series a chart shows by name; the rest are summed as "other".
pub const TOP: usize = 8;

/// Bucket widths to choose from, in seconds: the smallest that gives at most [`MAX_BUCKETS`].
const WIDTHS_S: [u64; 14] = [
    1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10_800, 21_600, 43_200, 86_400, 604_800,
];
pub const MAX_BUCKETS: u64 = 60;

/// The totals of one route, reason or consumer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Cache hits (served stored, fresh or stale) and misses, of requests on cached routes.
    pub cache_hits: u64,
    pub cache_misses: u64,
}

/// One chart: values per bucket, a series per name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Series {
    pub names: Vec<String>,
    /// `values[series][bucket]`.
    pub values: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub from_ms: u64,
    pub to_ms: u64,
    pub bucket_ms: u64,
    pub buckets: usize,
    pub total: Row,
    pub routes: Vec<Row>,
    pub reasons: Vec<Row>,
    pub consumers: Vec<Row>,
    pub requests_per_route: Series,
    pub errors_per_route: Series,
    /// p50, p90 and p99 of the total duration, and p50 of the upstream's part, in ms.
    pub latency: Series,
    pub refusals_per_reason: Series,
    pub requests_per_consumer: Series,
}

/// The most buckets a chart may have when the width is given.
pub const MAX_GIVEN_BUCKETS: u64 = 10_000;

/// The bucket width for a span: the one given, else the smallest of [`WIDTHS_S`] that gives at
/// most [`MAX_BUCKETS`], else (a span of years: a clock gone wrong) one that does.
pub fn bucket_ms(span_ms: u64, given_s: Option<u64>) -> u64 {
    let width_s = given_s.unwrap_or_else(|| {
        let fits = |w: &&u64| span_ms / (*w * 1000) < MAX_BUCKETS;
        let wide = span_ms / 1000 / MAX_BUCKETS + 1;
        WIDTHS_S.iter().find(fits).copied().unwrap_or(wide)
    });
    width_s.clamp(1, u64::MAX / 1000) * 1000
}

/// The figures of `lines` (in any order), bucketed by `given_s` seconds or a width that fits.
pub fn stats(lines: &[Line], given_s: Option<u64>) -> Result<Stats, String> {
    let from_ms = lines
        .iter()
        .map(|l| l.ts_ms)
        .min()
        .ok_or("no access-log lines")?;
    let to_ms = lines.iter().map(|l| l.ts_ms).max().unwrap_or(from_ms);
    let bucket_ms = bucket_ms(to_ms - from_ms, given_s);
    let buckets = (to_ms - from_ms) / bucket_ms + 1;
    if buckets > MAX_GIVEN_BUCKETS {
        return Err(format!(
            "{buckets} buckets of {} s from {from_ms} to {to_ms} (ts_ms): give a wider --bucket",
            bucket_ms / 1000
        ));
    }
    let buckets = buckets as usize;
    let at = |l: &Line| ((l.ts_ms - from_ms) / bucket_ms) as usize;
    let route = |l: &Line| l.route.clone().unwrap_or_else(|| "(no route)".into());
    let routes = rows(lines, route);
    let reasons = rows(lines.iter().filter(|l| refused(l)), reason);
    let consumers = rows(lines.iter().filter(|l| l.consumer.is_some()), |l| {
        l.consumer.clone().unwrap_or_default()
    });
    let per =
        |rows: &[Row], key: &dyn Fn(&Line) -> Option<String>, keep: &dyn Fn(&Line) -> bool| {
            series(lines, rows, buckets, &at, key, keep)
        };
    let requests_per_route = per(&routes, &|l| Some(route(l)), &|_| true);
    let errors_per_route = per(&routes, &|l| Some(route(l)), &|l| l.status >= 500);
    let refusals_per_reason = per(&reasons, &|l| Some(reason(l)), &refused);
    let requests_per_consumer = per(&consumers, &|l| l.consumer.clone(), &|_| true);
    Ok(Stats {
        from_ms,
        to_ms,
        bucket_ms,
        buckets,
        total: row("all requests".into(), lines.iter()),
        latency: latency(lines, buckets, &at),
        routes,
        reasons,
        consumers,
        requests_per_route,
        errors_per_route,
        refusals_per_reason,
        requests_per_consumer,
    })
}

/// A request the gateway turned away with a problem of its own (4xx with a code).
fn refused(l: &Line) -> bool {
    (400..500).contains(&l.status) && l.error.is_some()
}

fn reason(l: &Line) -> String {
    format!("{} {}", l.status, l.error.as_deref().unwrap_or(""))
}

/// A row per name, the busiest first.
fn rows<'a>(lines: impl IntoIterator<Item = &'a Line>, key: impl Fn(&Line) -> String) -> Vec<Row> {
    let mut by: BTreeMap<String, Vec<&Line>> = BTreeMap::new();
    for l in lines {
        by.entry(key(l)).or_default().push(l);
    }
    let mut rows: Vec<Row> = by.into_iter().map(|(k, v)| row(k, v.into_iter())).collect();
    rows.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.name.cmp(&b.name)));
    rows
}

fn row<'a>(name: String, lines: impl Iterator<Item = &'a Line>) -> Row {
    let mut r = Row {
        name,
        ..Row::default()
    };
    let mut durations = Vec::new();
    for l in lines {
        r.requests += 1;
        r.client_errors += u64::from((400..500).contains(&l.status));
        r.server_errors += u64::from(l.status >= 500);
        match l.cache.as_deref() {
            Some("hit" | "stale") => r.cache_hits += 1,
            Some("miss") => r.cache_misses += 1,
            _ => {}
        }
        durations.push(l.duration_us);
    }
    durations.sort_unstable();
    r.p50_ms = ms(percentile(&durations, 50));
    r.p99_ms = ms(percentile(&durations, 99));
    r
}

/// Counts per bucket of the lines `keep` takes, a series per top row, the rest as "other".
fn series(
    lines: &[Line],
    rows: &[Row],
    buckets: usize,
    at: &dyn Fn(&Line) -> usize,
    key: &dyn Fn(&Line) -> Option<String>,
    keep: &dyn Fn(&Line) -> bool,
) -> Series {
    let mut names: Vec<String> = rows.iter().take(TOP).map(|r| r.name.clone()).collect();
    let other = rows.len() > TOP;
    if other {
        names.push("other".into());
    }
    let mut values = vec![vec![0.0; buckets]; names.len()];
    for l in lines.iter().filter(|l| keep(l)) {
        let Some(k) = key(l) else { continue };
        let i = match names.iter().take(TOP).position(|n| *n == k) {
            Some(i) => i,
            None if other => names.len() - 1,
            None => continue,
        };
        values[i][at(l)] += 1.0;
    }
    Series { names, values }
}

fn latency(lines: &[Line], buckets: usize, at: &dyn Fn(&Line) -> usize) -> Series {
    let mut total = vec![Vec::new(); buckets];
    let mut upstream = vec![Vec::new(); buckets];
    for l in lines {
        total[at(l)].push(l.duration_us);
        if let Some(u) = l.upstream_us {
            upstream[at(l)].push(u);
        }
    }
    let mut values = vec![vec![0.0; buckets]; 4];
    for (b, (t, u)) in total.iter_mut().zip(&mut upstream).enumerate() {
        t.sort_unstable();
        u.sort_unstable();
        values[0][b] = ms(percentile(t, 50));
        values[1][b] = ms(percentile(t, 90));
        values[2][b] = ms(percentile(t, 99));
        values[3][b] = ms(percentile(u, 50));
    }
    let names = ["p50", "p90", "p99", "upstream p50"];
    Series {
        names: names.map(String::from).to_vec(),
        values,
    }
}

/// The nearest-rank percentile of sorted values (0 for none).
pub fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1);
    sorted[(rank - 1) as usize]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts_ms: u64, route: &str, status: u16, error: Option<&str>, us: u64) -> Line {
        Line {
            ts_ms,
            route: Some(route.into()),
            status,
            error: error.map(String::from),
            consumer: None,
            duration_us: us,
            upstream_us: None,
            cache: None,
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        for (p, want) in [(50, 50), (90, 90), (99, 99), (100, 100), (1, 1), (0, 1)] {
            assert_eq!(percentile(&v, p), want, "p{p}");
        }
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[1, 2, 3, 4], 50), 2);
    }

    #[test]
    fn the_bucket_width_fits_the_span() {
        for (span_s, want_s) in [(0, 1), (59, 1), (60, 5), (3_600, 300), (86_400, 1_800)] {
            assert_eq!(bucket_ms(span_s * 1000, None), want_s * 1000, "{span_s} s");
        }
        assert_eq!(bucket_ms(10, Some(7)), 7000);
        assert_eq!(bucket_ms(10, Some(0)), 1000, "never a zero width");
        assert_eq!(bucket_ms(200 * 86_400_000, None), 604_800_000);
        // a clock gone wrong: still at most MAX_BUCKETS
        let wide = bucket_ms(u64::MAX, None);
        assert!(u64::MAX / wide < MAX_BUCKETS, "{wide}");
        assert_eq!(bucket_ms(0, Some(u64::MAX)), u64::MAX / 1000 * 1000);
    }

    #[test]
    fn routes_reasons_and_buckets() {
        let lines = [
            line(1_000, "a", 200, None, 1_000),
            line(1_500, "a", 429, Some("rate-limited"), 2_000),
            line(2_100, "b", 502, Some("upstream-failed"), 3_000),
            line(3_999, "a", 401, Some("unauthenticated"), 4_000),
            line(3_999, "b", 404, None, 5_000),
        ];
        let s = stats(&lines, None).unwrap();
        assert_eq!(
            stats(&lines, Some(0)).map(|s| s.buckets),
            Ok(3),
            "a width of 0 s is 1 s"
        );
        assert_eq!(
            stats(&[], None).err().as_deref(),
            Some("no access-log lines")
        );
        let far = [
            line(0, "a", 200, None, 1),
            line(u64::MAX, "a", 200, None, 1),
        ];
        assert!(stats(&far, Some(1))
            .unwrap_err()
            .contains("give a wider --bucket"));
        assert_eq!(
            stats(&far, None).map(|s| s.buckets as u64 <= MAX_BUCKETS),
            Ok(true)
        );
        assert_eq!(
            (s.from_ms, s.to_ms, s.bucket_ms, s.buckets),
            (1_000, 3_999, 1_000, 3)
        );
        let names = |rows: &[Row]| rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&s.routes), ["a", "b"]);
        assert_eq!(
            (
                s.routes[0].requests,
                s.routes[0].client_errors,
                s.routes[0].server_errors
            ),
            (3, 2, 0)
        );
        assert_eq!((s.routes[0].p50_ms, s.routes[0].p99_ms), (2.0, 4.0));
        // a 404 with no problem code is the upstream's answer, not a refusal
        assert_eq!(
            names(&s.reasons),
            ["401 unauthenticated", "429 rate-limited"]
        );
        assert_eq!(
            s.requests_per_route.values,
            [[2.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
        );
        assert_eq!(s.errors_per_route.values, [[0.0; 3], [0.0, 1.0, 0.0]]);
        assert_eq!(s.latency.values[0], [1.0, 3.0, 4.0]);
        assert_eq!(s.total.requests, 5);
    }

    #[test]
    fn beyond_the_top_routes_the_rest_are_other() {
        let lines: Vec<Line> = (0..TOP as u64 + 3)
            .flat_map(|i| (0..=i).map(move |_| line(0, &format!("r{i:02}"), 200, None, 1)))
            .collect();
        let s = stats(&lines, None).unwrap();
        let names = &s.requests_per_route.names;
        assert_eq!(names.len(), TOP + 1);
        assert_eq!(names[0], format!("r{:02}", TOP + 2), "the busiest first");
        assert_eq!(names[TOP], "other");
        // r00, r01 and r02 ask 1 + 2 + 3 times
        assert_eq!(s.requests_per_route.values[TOP], [6.0]);
        let sum: f64 = s.requests_per_route.values.iter().map(|v| v[0]).sum();
        assert_eq!(sum, lines.len() as f64, "nothing is lost");
    }
}
