//! `imggo run` against a hostile server: the real binary talks to the emulator through
//! [`HostileProxy`], which spoils chosen responses the way proxies, load balancers and
//! broken servers do. Whatever the fault, every input gets exactly one line, no task
//! panics, and no input makes a second job.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{imggo_run, lines, output, stderr};
use imggo::core::Outcome;
use imggo::emulator::{Config, Emulator, LatencyModel};
use imggo::ResultLine;
use imggo_testkit::proxy::{Fault, HostileProxy, Rule};

const KEY: &str = "imggo_hostile_server_key";
const INGEST: &str = "/ingest";
const JOB: &str = "/api/jobs/";

/// What one run through the proxy left behind.
struct Ran {
    out: Output,
    lines: Vec<ResultLine>,
    inputs: usize,
    jobs_created: u64,
    proxy: HostileProxy,
}

impl Ran {
    /// One line per input, no panic, at most one job per input.
    fn assert_one_line_and_job_each(&self) {
        let err = stderr(&self.out);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(self.lines.len(), self.inputs, "{:#?}\n{err}", self.lines);
        let mut inputs: Vec<&str> = self.lines.iter().map(|l| l.input.as_str()).collect();
        inputs.sort_unstable();
        inputs.dedup();
        assert_eq!(inputs.len(), self.inputs, "an input has two lines");
        assert!(
            self.jobs_created <= self.inputs as u64,
            "{}",
            self.jobs_created
        );
    }

    /// Every input succeeded with one job each, and the run exited 0.
    fn assert_all_succeeded(&self) {
        self.assert_one_line_and_job_each();
        for l in &self.lines {
            assert_eq!(l.status, Outcome::Succeeded, "{l:?}\n{}", stderr(&self.out));
        }
        assert_eq!(self.jobs_created, self.inputs as u64);
        assert_eq!(self.out.status.code(), Some(0), "{}", stderr(&self.out));
    }

    /// Every rule spoiled at least one response: the test did meet its faults.
    fn assert_every_rule_fired(&self, rules: usize) {
        for i in 0..rules {
            assert!(self.proxy.fired(i) > 0, "rule {i} never fired");
        }
    }
}

/// Runs `inputs` distinct real images through a proxy with `rules` in front of an
/// emulator with 20 ms jobs.
async fn through(rules: Vec<Rule>, inputs: usize, extra: &[&str]) -> Ran {
    let config = Config {
        latency: LatencyModel::Fixed(Duration::from_millis(20)),
        ..Config::default()
    }
    .api_key(KEY);
    let handle = Emulator::start(config).await.unwrap();
    let pattern = handle.create_pattern("hostile server", None).id;
    let proxy = HostileProxy::start(&handle.base_url(), rules).await;
    let dir = tempfile::tempdir().unwrap();
    imggo_testkit::corpus_variants(&dir.path().join("in"), inputs, 0);
    let results = dir.path().join("results.jsonl");
    let input = dir.path().join("in").display().to_string();
    let mut flags = vec!["--no-optimize", "--quiet", "--concurrency", "4"];
    flags.extend_from_slice(extra);
    flags.push(&input);
    let out = output(imggo_run(
        &proxy.base_url(),
        &pattern,
        KEY,
        &results,
        &flags,
    ))
    .await;
    let jobs_created = handle.stats().jobs_created;
    handle.shutdown().await;
    Ran {
        out,
        lines: lines(&results),
        inputs,
        jobs_created,
        proxy,
    }
}

/// Case 1 of the hardening issue: a proxy adds `X-RateLimit-Reset: 1e20` to every ingest
/// answer. Tasks once panicked, the results file got no line and the exit code was 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_ratelimit_reset_on_every_ingest_is_ignored() {
    let rules = vec![Rule::new(
        "POST",
        INGEST,
        Fault::Headers(vec![("x-ratelimit-reset", "1e20")]),
    )];
    let ran = through(rules, 3, &[]).await;
    ran.assert_all_succeeded();
    assert_eq!(ran.proxy.fired(0), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_negative_and_non_numeric_limit_headers_are_ignored() {
    let absurd = |reset, retry_after| {
        Fault::Headers(vec![
            ("x-ratelimit-limit", "-5"),
            ("x-ratelimit-remaining", "NaN"),
            ("x-ratelimit-reset", reset),
            ("retry-after", retry_after),
        ])
    };
    let rules = vec![
        Rule::new("POST", INGEST, absurd("-1e300", "soon")).first(2),
        Rule::new("POST", INGEST, absurd("1e400", "-3")).first(2),
        Rule::new("GET", JOB, absurd("abc", "1e20")),
    ];
    let ran = through(rules, 6, &[]).await;
    ran.assert_all_succeeded();
    ran.assert_every_rule_fired(3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_an_absurd_retry_after_is_a_wait_not_a_failure() {
    let refuse = |retry_after| Fault::Respond {
        status: 429,
        headers: vec![
            ("content-type", "application/json"),
            ("retry-after", retry_after),
        ],
        body: br#"{"success":false,"error":{"code":"RATE_LIMIT_EXCEEDED","message":"slow down"}}"#
            .to_vec(),
    };
    let rules = vec![
        Rule::new("POST", INGEST, refuse("-1")).first(1),
        Rule::new("POST", INGEST, refuse("NaN")).first(1),
        Rule::new("POST", INGEST, refuse("1e400")).first(1),
        Rule::new("POST", INGEST, refuse("Wed, 99 Foo 2026 25:61:00 GMT")).first(1),
    ];
    let ran = through(rules, 4, &[]).await;
    ran.assert_all_succeeded();
    ran.assert_every_rule_fired(4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_pages_and_wrong_content_types_are_retried() {
    let page = |status, content_type: &'static str| Fault::Respond {
        status,
        headers: vec![("content-type", content_type)],
        body: b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
            .to_vec(),
    };
    let rules = vec![
        Rule::new("POST", INGEST, page(502, "text/html")).first(3),
        Rule::new("POST", INGEST, page(200, "text/html")).first(1),
        // A captive portal or a misrouted answer: 200 with a page instead of JSON.
        Rule::new("GET", JOB, page(200, "text/html; charset=utf-8")).first(2),
        // The right JSON, labelled as something else.
        Rule::new(
            "GET",
            JOB,
            Fault::Headers(vec![("content-type", "text/plain")]),
        ),
    ];
    let ran = through(rules, 4, &[]).await;
    ran.assert_all_succeeded();
    ran.assert_every_rule_fired(4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_and_resets_after_the_job_was_made_make_one_job_each() {
    let rules = vec![
        // The server made the job; the client hears half an answer, or none.
        Rule::new("POST", INGEST, Fault::Truncate).first(2),
        Rule::new("POST", INGEST, Fault::Reset).first(2),
        Rule::new("GET", JOB, Fault::Truncate).first(2),
        Rule::new("GET", JOB, Fault::Reset).first(2),
    ];
    let ran = through(rules, 5, &[]).await;
    ran.assert_all_succeeded();
    ran.assert_every_rule_fired(4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_are_cut_off_by_the_attempt_timeout() {
    let rules = vec![
        Rule::new("POST", INGEST, Fault::Trickle(Duration::from_millis(100))).first(1),
        Rule::new("GET", JOB, Fault::Trickle(Duration::from_millis(100))).first(2),
    ];
    let ran = through(rules, 3, &["--timeout", "1"]).await;
    ran.assert_all_succeeded();
    ran.assert_every_rule_fired(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_is_refused_then_retried() {
    // 33 MiB of JSON whitespace around an object: over the client's 32 MiB cap.
    let mut huge = vec![b' '; 33 << 20];
    huge.extend_from_slice(b"{}");
    let rules = vec![Rule::new("GET", JOB, Fault::Body(huge)).first(1)];
    let ran = through(rules, 2, &[]).await;
    ran.assert_all_succeeded();
    ran.assert_every_rule_fired(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_number_out_of_range_fails_its_input_with_a_typed_error() {
    let rules = vec![Rule::new(
        "GET",
        JOB,
        Fault::Replace(r#""manifest":{"#, r#""manifest":{"total":1e400,"#),
    )];
    let ran = through(rules, 3, &[]).await;
    ran.assert_one_line_and_job_each();
    assert_eq!(ran.jobs_created, 3);
    // Each wait polls past a few unreadable answers, then gives up on the job.
    let polls_per_input = imggo::http::MAX_UNREADABLE_ANSWERS as usize + 1;
    assert_eq!(ran.proxy.fired(0), 3 * polls_per_input);
    for l in &ran.lines {
        assert_eq!(l.status, Outcome::Failed, "{l:?}");
        let error = l.error.as_ref().expect("a failed line says why");
        assert!(
            error.message.contains("1e400") || error.message.contains("range"),
            "{error:?}"
        );
    }
    assert_eq!(ran.out.status.code(), Some(1), "{}", stderr(&ran.out));
}
