//! The report as one self-contained HTML page: the charts are inline SVG drawn here with
//! `plotters`, the style is inline, and the page runs no script. Every name on it (routes,
//! consumers, problem codes) came from a log that clients may have shaped, so all text is
//! escaped, and the page's Content-Security-Policy forbids scripts and outside resources.

use super::stats::{Row, Series, Stats};
use plotters::prelude::*;
use std::fmt::Write as _;

/// Tableau's ten colours: told apart by most readers, in print too.
const PALETTE: [RGBColor; 10] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(225, 87, 89),
    RGBColor(118, 183, 178),
    RGBColor(89, 161, 79),
    RGBColor(237, 201, 72),
    RGBColor(176, 122, 161),
    RGBColor(255, 157, 167),
    RGBColor(156, 117, 95),
    RGBColor(186, 176, 172),
];

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:960px;\
color:#222}h1{margin-bottom:0}.range{color:#555;margin-top:.3em}.cards{display:flex;gap:1em;\
flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em}.card b{display:\
block;font-size:1.5em}table{border-collapse:collapse;width:100%}th,td{padding:.25em .6em;\
border-bottom:1px solid #eee;text-align:right}th:first-child,td:first-child{text-align:left;\
word-break:break-all}svg{max-width:100%;height:auto}.none{color:#777}";

/// The page for `stats`; `source` says what was read (escaped here).
pub fn page(stats: &Stats, source: &str) -> Result<String, String> {
    let mut out = String::with_capacity(64 * 1024);
    let range = format!(
        "{} to {} (UTC)",
        datetime(stats.from_ms),
        datetime(stats.to_ms)
    );
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\
         <title>Portcullis traffic, {range}</title><style>{STYLE}</style></head><body>\
         <h1>Portcullis traffic</h1><p class=\"range\">{range}; buckets of {}; {}</p>",
        width(stats.bucket_ms),
        escape(source),
    );
    cards(&mut out, &stats.total);
    let per = format!("requests per {}", width(stats.bucket_ms));
    let charts: [(&str, &str, &Series, &str); 5] = [
        (
            "Requests per route",
            &per,
            &stats.requests_per_route,
            "no requests",
        ),
        (
            "Server errors (5xx) per route",
            &per,
            &stats.errors_per_route,
            "no routes",
        ),
        ("Latency", "ms", &stats.latency, "no requests"),
        (
            "Refusals by reason",
            &per,
            &stats.refusals_per_reason,
            "no request was refused",
        ),
        (
            "Top consumers",
            &per,
            &stats.requests_per_consumer,
            "no consumer in these lines (routes without authentication)",
        ),
    ];
    for (title, unit, series, none) in charts {
        let _ = write!(out, "<h2>{title}</h2>");
        if series.names.is_empty() {
            let _ = write!(out, "<p class=\"none\">{none}</p>");
        } else {
            out.push_str(&chart(stats, series, unit)?);
        }
    }
    table(&mut out, "Routes", &stats.routes, true);
    table(&mut out, "Refusals", &stats.reasons, false);
    table(&mut out, "Consumers", &stats.consumers, false);
    out.push_str("</body></html>\n");
    Ok(out)
}

fn cards(out: &mut String, total: &Row) {
    let share = |n: u64| format!("{:.1} %", n as f64 * 100.0 / total.requests.max(1) as f64);
    let cards = [
        ("requests", total.requests.to_string()),
        ("4xx", share(total.client_errors)),
        ("5xx", share(total.server_errors)),
        ("p50", format!("{:.2} ms", total.p50_ms)),
        ("p99", format!("{:.2} ms", total.p99_ms)),
    ];
    out.push_str("<div class=\"cards\">");
    for (name, value) in cards {
        let _ = write!(out, "<div class=\"card\"><b>{value}</b>{name}</div>");
    }
    out.push_str("</div>");
}

fn table(out: &mut String, title: &str, rows: &[Row], cache: bool) {
    let _ = write!(out, "<h2>{title}</h2>");
    if rows.is_empty() {
        out.push_str("<p class=\"none\">none</p>");
        return;
    }
    out.push_str("<table><tr><th>name</th><th>requests</th><th>4xx</th><th>5xx</th>");
    out.push_str("<th>p50 ms</th><th>p99 ms</th>");
    if cache {
        out.push_str("<th>cache hits</th><th>misses</th>");
    }
    out.push_str("</tr>");
    for r in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td>",
            escape(&r.name),
            r.requests,
            r.client_errors,
            r.server_errors,
            r.p50_ms,
            r.p99_ms
        );
        if cache {
            let _ = write!(out, "<td>{}</td><td>{}</td>", r.cache_hits, r.cache_misses);
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// A line chart over time of each series, as an `<svg>` element.
fn chart(stats: &Stats, series: &Series, unit: &str) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, stats, series, unit).map_err(|e| format!("drawing a chart: {e}"))?;
    // plotters writes a document; the page wants the element alone
    let start = svg.find("<svg").unwrap_or(0);
    Ok(svg[start..].to_string())
}

fn draw(
    svg: &mut String,
    stats: &Stats,
    series: &Series,
    unit: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (920, 300)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = series
        .values
        .iter()
        .flatten()
        .fold(0.0f64, |a, &b| a.max(b));
    let end = stats.from_ms + stats.bucket_ms * stats.buckets as u64;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(
            stats.from_ms..end,
            0.0..if top > 0.0 { top * 1.1 } else { 1.0 },
        )?;
    let span = end - stats.from_ms;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|t| tick(*t, span))
        .y_desc(unit)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    for (i, (name, values)) in series.names.iter().zip(&series.values).enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        // each value at its bucket's middle
        let at = |b: usize| stats.from_ms + stats.bucket_ms * b as u64 + stats.bucket_ms / 2;
        let points = values.iter().enumerate().map(|(b, v)| (at(b), *v));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Text for HTML, between tags or in a quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A bucket width, e.g. `10 s`, `5 min`, `1 h`.
fn width(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// An axis label: the time of day, with the date when the chart spans more than a day.
fn tick(ms: u64, span_ms: u64) -> String {
    let full = datetime(ms);
    if span_ms > 86_400_000 {
        full[5..16].to_string() // MM-DD HH:MM
    } else {
        full[11..].to_string() // HH:MM:SS
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (Howard Hinnant's days-to-civil algorithm).
pub fn datetime(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, day_s) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        day_s / 3_600,
        day_s / 60 % 60,
        day_s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc() {
        for (ms, want) in [
            (0, "1970-01-01 00:00:00"),
            (951_782_400_000, "2000-02-29 00:00:00"),
            (1_796_326_637_000, "2026-12-03 19:37:17"),
            (4_102_444_799_000, "2099-12-31 23:59:59"),
        ] {
            assert_eq!(datetime(ms), want);
        }
        assert_eq!(tick(1_796_326_637_000, 60_000), "19:37:17");
        assert_eq!(tick(1_796_326_637_000, 2 * 86_400_000), "12-03 19:37");
        assert_eq!(
            [1_000, 300_000, 7_200_000, 86_400_000].map(width),
            ["1 s", "5 min", "2 h", "1 d"]
        );
    }

    #[test]
    fn text_from_the_log_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }
}
