//! The HTML report's structure, drawn from a generated results file: one chart each, the
//! latency percentiles marked with their values, error codes counted, hostile names
//! escaped, nothing fetched from outside, no script.

use imggo_batch::metrics::Outcome;
use imggo_batch::{ErrorInfo, HtmlReport, ResultLine};

const HOSTILE: &str = "<script>alert(1)</script>.jpg";

fn line(i: u64) -> ResultLine {
    let (status, error) = match i % 20 {
        0 => (
            Outcome::Failed,
            Some(("RATE_LIMIT_EXCEEDED", "rate limited".to_string())),
        ),
        7 => (
            Outcome::Failed,
            Some(("HTTP_502", "bad gateway".to_string())),
        ),
        3 => (Outcome::Cached, None),
        4 => (Outcome::Duplicate, None),
        _ => (Outcome::Succeeded, None),
    };
    let ms = 100 * i;
    ResultLine {
        input: format!("img-{i}.jpg"),
        content_hash: None,
        pattern_id: if i.is_multiple_of(2) {
            "pat-a"
        } else {
            "pat-<b>"
        }
        .into(),
        job_id: None,
        status,
        manifest: None,
        error: error.map(|(code, message)| ErrorInfo {
            code: code.into(),
            message,
        }),
        attempts: if i.is_multiple_of(5) { 3 } else { 1 },
        latency_ms: i,
        bytes_in: 1000,
        bytes_sent: if status == Outcome::Succeeded { 400 } else { 0 },
        pattern_version: Some(1),
        settings: None,
        idempotency_salt: None,
        finished_at: Some(format!(
            "2026-01-15T10:{:02}:{:02}.{:03}Z",
            ms / 60_000,
            ms / 1000 % 60,
            ms % 1000
        )),
        rate_limited: Some(u32::from(i.is_multiple_of(10))),
        waited_ms: Some(if i.is_multiple_of(10) { 1000 } else { 0 }),
        class: None,
        classify_job_id: None,
    }
}

/// 200 lines (latencies 1..=200 ms), one hostile, an old line without the new fields,
/// a torn line.
fn results_file() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=200 {
        let mut l = line(i);
        if i == 13 {
            l.input = HOSTILE.into();
            l.status = Outcome::Failed;
            l.error = Some(ErrorInfo {
                code: "INVALID_IMAGE".into(),
                message: format!("{HOSTILE}: <img src=x onerror=alert(2)> not an image"),
            });
        }
        out.extend(serde_json::to_vec(&l).unwrap());
        out.push(b'\n');
    }
    // A line of an older release: no finished_at, rate_limited, waited_ms. It is read and
    // counted, it is just not on the time axis.
    out.extend(br#"{"input":"old.jpg","content_hash":null,"pattern_id":"pat-a","job_id":null,"status":"succeeded","manifest":null,"error":null,"attempts":1,"latency_ms":1,"bytes_in":5,"bytes_sent":5}"#);
    out.extend(b"\n\n{\"input\":\"torn");
    out
}

#[test]
fn the_report_has_one_chart_each_and_nothing_hostile_or_external() {
    let report = HtmlReport::read("results <&>.jsonl", &results_file()[..]).unwrap();
    assert_eq!(report.lines(), 201);
    assert_eq!(report.skipped(), 1, "the torn line is skipped and counted");
    let html = report.render();

    // One <svg> per chart, each closed.
    for id in [
        "throughput",
        "latency",
        "statuses",
        "errors",
        "ratelimit",
        "bytes",
    ] {
        assert_eq!(
            html.matches(&format!("<svg class=\"chart\" id=\"chart-{id}\""))
                .count(),
            1,
            "{id}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 6);
    assert_eq!(html.matches("</svg>").count(), 6);

    // Latencies are 1..=200 ms plus the old line's 1 ms: 201 values, nearest rank.
    for (pct, ms) in [("p50", 100), ("p95", 190), ("p99", 198)] {
        assert!(
            html.contains(&format!("data-pct=\"{pct}\" data-ms=\"{ms}\"")),
            "{pct} = {ms} ms marked"
        );
        assert!(
            html.contains(&format!(">{pct} {ms} ms</text>")),
            "{pct} label"
        );
    }

    // Error codes with their counts (i % 20 == 0: 10 lines; i % 20 == 7: 10, the hostile
    // line replaces none of them since 13 % 20 == 13).
    assert!(html.contains("data-code=\"RATE_LIMIT_EXCEEDED\" data-count=\"10\""));
    assert!(html.contains("data-code=\"HTTP_502\" data-count=\"10\""));
    assert!(html.contains("data-code=\"INVALID_IMAGE\" data-count=\"1\""));
    assert!(html.contains("data-status=\"failed\" data-count=\"21\""));
    assert!(html.contains("data-status=\"cached\" data-count=\"10\""));

    // Hostile strings are escaped wherever they show.
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;.jpg"));
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(html.contains("pat-&lt;b&gt;"));
    assert!(html.contains("results &lt;&amp;&gt;.jsonl"));
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "no script element");
    assert!(!lower.contains("<img"), "no injected element");
    assert!(!lower.contains("onerror=alert(2)>"), "no live attribute");

    // Self-contained: nothing from outside.
    for outside in [
        "http://", "https://", "<link", "@import", "url(", "src=\"", "href=", "<iframe",
    ] {
        assert!(!lower.contains(outside), "{outside} in the report");
    }

    // The per-pattern table is keyed by pattern_id: pat-a has the even lines and old.jpg.
    assert!(html.contains("<table class=\"groups\" data-key=\"pattern_id\">"));
    assert!(html.contains("<tr><td>pat-a</td><td>101</td>"));
    assert!(html.contains("<tr><td>pat-&lt;b&gt;</td><td>100</td>"));

    // The old line is counted but said to be off the time axis.
    assert!(html.contains("1 lines have no <code>finished_at</code>"));
    // Bytes: 160 inputs uploaded (the hostile one too), 1000 bytes read and 400 sent
    // each, and old.jpg (5, 5).
    assert!(html.contains("data-bytes=\"160005\""));
    assert!(html.contains("data-bytes=\"64005\""));
    assert!(html.contains("(60.0 %)"));
}

#[test]
fn a_file_of_older_lines_only_says_what_it_cannot_draw() {
    let old = br#"{"input":"old.jpg","content_hash":null,"pattern_id":"p","job_id":null,"status":"failed","manifest":null,"error":{"code":"QUOTA_EXHAUSTED","message":"gone"},"attempts":0,"latency_ms":3,"bytes_in":5,"bytes_sent":0}"#;
    let report = HtmlReport::read("old", &old[..]).unwrap();
    let html = report.render();
    assert_eq!(html.matches("<svg").count(), 6);
    assert!(html.contains("throughput over time cannot be drawn"));
    assert!(html.contains("the timeline cannot be drawn"));
    assert!(html.contains("data-code=\"QUOTA_EXHAUSTED\" data-count=\"1\""));
    assert!(html.contains("data-pct=\"p99\" data-ms=\"3\""));
}

/// A results file is data from a file: the largest numbers JSON can hold for a u64 or
/// u32, and times from year 1 to year 9999, draw a report instead of overflowing.
#[test]
fn extreme_numbers_and_times_draw_a_report() {
    let mut file = Vec::new();
    for (i, (at, status)) in [
        ("0001-01-01T00:00:00Z", "succeeded"),
        ("9999-12-31T23:59:59Z", "failed"),
        ("2026-12-03T00:00:00Z", "cached"),
    ]
    .into_iter()
    .enumerate()
    {
        let error = if status == "failed" {
            r#"{"code":"X","message":"m"}"#
        } else {
            "null"
        };
        file.extend_from_slice(
            format!(
                r#"{{"input":"in{i}","content_hash":null,"pattern_id":"p","job_id":null,"status":"{status}","manifest":null,"error":{error},"attempts":{},"latency_ms":{},"bytes_in":{},"bytes_sent":{},"finished_at":"{at}","rate_limited":{},"waited_ms":{}}}"#,
                u32::MAX, u64::MAX, u64::MAX, u64::MAX, u32::MAX, u64::MAX
            )
            .as_bytes(),
        );
        file.push(b'\n');
    }
    let report = HtmlReport::read("extreme", &file[..]).unwrap();
    let html = report.render();
    assert_eq!(html.matches("<svg").count(), 6);
    assert!(html.contains("data-code=\"X\" data-count=\"1\""), "{html}");
}

#[test]
fn a_classified_run_has_a_table_per_class() {
    let mut report = HtmlReport::new("classified");
    for i in 0..30u64 {
        let mut l = line(i + 1);
        l.class = match i % 3 {
            0 => Some("invoice".into()),
            1 => Some("<receipt>".into()),
            _ => None,
        };
        report.add(&l);
    }
    let html = report.render();
    assert!(html.contains("<table class=\"groups\" data-key=\"class\">"));
    assert!(html.contains("<tr><td>invoice</td><td>10</td>"));
    assert!(html.contains("<tr><td>&lt;receipt&gt;</td><td>10</td>"));
    assert!(html.contains("<tr><td>-</td><td>10</td>"));
    // The per-pattern table stays.
    assert!(html.contains("<table class=\"groups\" data-key=\"pattern_id\">"));

    // Without classes, no class table.
    let mut plain = HtmlReport::new("plain");
    plain.add(&line(1));
    assert!(!plain.render().contains("data-key=\"class\""));
}
