//! Alerts that reach someone while a run goes on: the [`Alerter`].
//!
//! The success-rate and p95 rules of [`AlertRules`] are checked on every finished input
//! over a sliding **window of the last N inputs** (`window`, default
//! [`DEFAULT_WINDOW`], never smaller than the rules' `min_samples`), once `min_samples`
//! inputs are in it. Each rule is a two-state machine: it sends one `firing` event when it
//! starts failing and one `resolved` event when it recovers, never one per input.
//!
//! An event goes, as JSON (see [`AlertEvent::payload`]), to an HTTP(S) webhook (POST,
//! retried with backoff) and/or a shell command (`sh -c CMD`, the JSON on stdin). Delivery
//! runs on its own task behind a bounded queue: a slow, failing or missing receiver never
//! delays nor stops the batch; a failure is a warning line on stderr. Neither the
//! webhook's path and query (a Slack URL is itself a secret) nor the command are ever
//! written to stderr, and an event holds no key or secret.
//!
//! ```
//! use std::time::Duration;
//! use imggo_batch::alert::{AlertState, AlertWindow};
//! use imggo_batch::{AlertRules, Outcome};
//!
//! let rules = AlertRules { min_samples: 4, min_success_rate: Some(0.75), ..AlertRules::default() };
//! let mut w = AlertWindow::new(rules, 4, "run-1");
//! let ms = Duration::from_millis(10);
//! let mut events = Vec::new();
//! for o in [Outcome::Failed, Outcome::Failed, Outcome::Succeeded, Outcome::Succeeded] {
//!     events.extend(w.push(o, ms));
//! }
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].state, AlertState::Firing);
//! for _ in 0..4 {
//!     events.extend(w.push(Outcome::Succeeded, ms));
//! }
//! assert_eq!(events.len(), 2);
//! assert_eq!(events[1].state, AlertState::Resolved);
//! ```

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use imggo_core::backoff::{random_unit, Exponential};
use imggo_core::Error;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::metrics::{Alert, AlertRules, Outcome};

/// The default window: the last 50 finished inputs.
pub const DEFAULT_WINDOW: usize = 50;

/// Whether a rule has just started failing or has just recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The rule started failing.
    Firing,
    /// The rule holds again.
    Resolved,
}

/// One state change of one rule: what is sent to the webhook and the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// `success_rate` (value and threshold as fractions, 0 to 1) or `p95_latency`
    /// (seconds).
    pub rule: String,
    /// Firing or resolved.
    pub state: AlertState,
    /// The rule's measure over the window when it changed state.
    pub value: f64,
    /// The rule's threshold.
    pub threshold: f64,
    /// What the value was measured over, e.g. `last 50 inputs`.
    pub window: String,
    /// Inputs in the window.
    pub samples: u64,
    /// The run this event belongs to.
    pub run_id: String,
}

impl AlertEvent {
    /// A one-line human summary, e.g. `imggo alert FIRING: success rate 45.0% is below
    /// 90.0% over the last 50 inputs (run run-...)`.
    pub fn summary(&self) -> String {
        let (what, value, threshold, bad, good) = match self.rule.as_str() {
            "success_rate" => (
                "success rate",
                format!("{:.1}%", self.value * 100.0),
                format!("{:.1}%", self.threshold * 100.0),
                "is below",
                "is back at or above",
            ),
            _ => (
                "p95 latency",
                format!("{:.3}s", self.value),
                format!("{:.3}s", self.threshold),
                "is above",
                "is back at or below",
            ),
        };
        let (state, verb) = match self.state {
            AlertState::Firing => ("FIRING", bad),
            AlertState::Resolved => ("RESOLVED", good),
        };
        format!(
            "imggo alert {state}: {what} {value} {verb} {threshold} over the {} (run {})",
            self.window, self.run_id
        )
    }

    /// The JSON that is sent: `{"text": summary, "alert": {...this event...}}`; Slack's
    /// incoming webhooks show `text`, other receivers read `alert`.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::json!({ "text": self.summary(), "alert": self })
    }

    /// The same finding as an [`Alert`] of the report.
    pub fn to_alert(&self) -> Alert {
        match self.rule.as_str() {
            "success_rate" => Alert::SuccessRateBelow {
                actual: self.value,
                threshold: self.threshold,
            },
            _ => Alert::P95Above {
                actual_secs: self.value,
                threshold_secs: self.threshold,
            },
        }
    }
}

/// The rules' state machines over a sliding window of the last finished inputs. Pure
/// (no I/O): [`Alerter`] feeds it and delivers what it returns.
#[derive(Debug, Clone)]
pub struct AlertWindow {
    rules: AlertRules,
    size: usize,
    /// (ended with a result, latency in µs) of the last `size` inputs, oldest first.
    recent: VecDeque<(bool, u64)>,
    ok: usize,
    /// Firing now: success rate, p95.
    firing: [bool; 2],
    run_id: String,
}

impl AlertWindow {
    /// A window of the last `size` inputs (at least `rules.min_samples`, at least 1).
    pub fn new(rules: AlertRules, size: usize, run_id: impl Into<String>) -> Self {
        let size = size.max(rules.min_samples as usize).max(1);
        Self {
            rules,
            size,
            recent: VecDeque::with_capacity(size),
            ok: 0,
            firing: [false; 2],
            run_id: run_id.into(),
        }
    }

    /// The window's length in inputs.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Adds one finished input (succeeded, cached and duplicate count as a result, like
    /// the tracker's success rate) and returns the rules that changed state.
    pub fn push(&mut self, outcome: Outcome, latency: Duration) -> Vec<AlertEvent> {
        let ok = outcome != Outcome::Failed;
        if self.recent.len() == self.size {
            if let Some((old_ok, _)) = self.recent.pop_front() {
                self.ok -= usize::from(old_ok);
            }
        }
        self.recent.push_back((ok, latency.as_micros() as u64));
        self.ok += usize::from(ok);
        let n = self.recent.len();
        if (n as u64) < self.rules.min_samples.max(1) {
            return Vec::new();
        }
        let mut events = Vec::new();
        if let Some(min) = self.rules.min_success_rate {
            let rate = self.ok as f64 / n as f64;
            self.step(0, "success_rate", rate < min, rate, min, &mut events);
        }
        if let Some(max) = self.rules.max_p95 {
            let mut l: Vec<u64> = self.recent.iter().map(|&(_, us)| us).collect();
            l.sort_unstable();
            // Nearest rank, as the histogram's `value_at_quantile`.
            let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
            let p95 = l[rank - 1] as f64 / 1e6;
            let max = max.as_secs_f64();
            self.step(1, "p95_latency", p95 > max, p95, max, &mut events);
        }
        events
    }

    fn step(
        &mut self,
        i: usize,
        rule: &str,
        failing: bool,
        value: f64,
        threshold: f64,
        events: &mut Vec<AlertEvent>,
    ) {
        if failing == self.firing[i] {
            return;
        }
        self.firing[i] = failing;
        events.push(AlertEvent {
            rule: rule.into(),
            state: if failing {
                AlertState::Firing
            } else {
                AlertState::Resolved
            },
            value,
            threshold,
            window: format!("last {} inputs", self.size),
            samples: self.recent.len() as u64,
            run_id: self.run_id.clone(),
        });
    }
}

/// Where alerts go and how they are measured; all optional.
#[derive(Clone)]
pub struct AlertSinks {
    /// POST each event's JSON here (`http://` or `https://`).
    pub webhook: Option<String>,
    /// Run this with `sh -c`, the event's JSON on stdin.
    pub command: Option<String>,
    /// Inputs in the sliding window ([`DEFAULT_WINDOW`] by default).
    pub window: usize,
    /// Names the run in every event; a fresh id when `None`.
    pub run_id: Option<String>,
    /// No stderr line per state change (delivery warnings are still written).
    pub quiet: bool,
    /// Attempts per webhook delivery (default 5), with exponential backoff between them.
    pub attempts: u32,
    /// How long [`Alerter::finish`] waits for deliveries still queued (default 10 s).
    pub drain_timeout: Duration,
}

impl Default for AlertSinks {
    fn default() -> Self {
        Self {
            webhook: None,
            command: None,
            window: DEFAULT_WINDOW,
            run_id: None,
            quiet: false,
            attempts: 5,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for AlertSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSinks")
            .field("webhook", &self.webhook.as_deref().map(origin))
            .field("command", &self.command.as_ref().map(|_| "<set>"))
            .field("window", &self.window)
            .field("run_id", &self.run_id)
            .field("quiet", &self.quiet)
            .field("attempts", &self.attempts)
            .field("drain_timeout", &self.drain_timeout)
            .finish()
    }
}

/// `scheme://host:port` of a URL, without user info, path or query (which may hold a
/// token): what a log line may show.
fn origin(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(u) => {
            format!(
                "{}://{}",
                u.scheme_str().unwrap_or("http"),
                u.host().unwrap_or("?")
            ) + &u.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
        }
        Err(_) => "<invalid URL>".into(),
    }
}

/// A fresh run id: `run-` and 12 hex digits of time and chance.
pub fn new_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let draw = (random_unit() * f64::from(u16::MAX)) as u64;
    format!("run-{:08x}{:04x}", secs & 0xffff_ffff, draw)
}

/// Continuous alerting for a run: feed it each finished input ([`observe`](Self::observe));
/// it sends the rules' state changes to the sinks from its own task.
/// [`RunSpec`](crate::RunSpec) builds one when a success-rate or p95 rule is set, and the run's
/// report then lists every rule that fired during the run (so the exit code is 3 when one
/// fired and no input failed).
pub struct Alerter {
    window: Mutex<AlertWindow>,
    fired: Mutex<Vec<Alert>>,
    tx: Mutex<Option<mpsc::Sender<AlertEvent>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    run_id: String,
    quiet: bool,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter")
            .field("run_id", &self.run_id)
            .field("fired", &*lock(&self.fired))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Events waiting for delivery at most; more are dropped with a warning.
const QUEUE: usize = 64;

impl Alerter {
    /// An alerter for `rules`, delivering to `sinks`. With a webhook or a command it
    /// spawns the delivery task, so it must be called inside a Tokio runtime.
    pub fn new(rules: AlertRules, sinks: AlertSinks) -> Result<Self, Error> {
        let run_id = sinks.run_id.clone().unwrap_or_else(new_run_id);
        let webhook = match &sinks.webhook {
            Some(url) => Some(parse_webhook(url)?),
            None => None,
        };
        let (tx, task) = if webhook.is_some() || sinks.command.is_some() {
            let (tx, rx) = mpsc::channel(QUEUE);
            let delivery = Delivery {
                webhook,
                command: sinks.command.clone(),
                attempts: sinks.attempts.max(1),
            };
            (Some(tx), Some(tokio::spawn(delivery.run(rx))))
        } else {
            (None, None)
        };
        Ok(Self {
            window: Mutex::new(AlertWindow::new(rules, sinks.window, run_id.clone())),
            fired: Mutex::new(Vec::new()),
            tx: Mutex::new(tx),
            task: Mutex::new(task),
            run_id,
            quiet: sinks.quiet,
            drain_timeout: sinks.drain_timeout,
        })
    }

    /// The id every event of this run carries.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Adds one finished input; a state change is logged and queued for delivery, never
    /// waited for.
    pub fn observe(&self, outcome: Outcome, latency: Duration) {
        let events = lock(&self.window).push(outcome, latency);
        for ev in events {
            if !self.quiet {
                eprintln!("{}", ev.summary());
            }
            if ev.state == AlertState::Firing {
                let alert = ev.to_alert();
                let mut fired = lock(&self.fired);
                if !fired
                    .iter()
                    .any(|a| std::mem::discriminant(a) == std::mem::discriminant(&alert))
                {
                    fired.push(alert);
                }
            }
            if let Some(tx) = &*lock(&self.tx) {
                if tx.try_send(ev).is_err() {
                    eprintln!("imggo: warning: alert queue full, an alert event was dropped");
                }
            }
        }
    }

    /// Each rule that fired during the run, once (with its value when it first fired).
    pub fn fired(&self) -> Vec<Alert> {
        lock(&self.fired).clone()
    }

    /// Closes the queue and waits (at most the sinks' `drain_timeout`) for the events
    /// still queued to be delivered; later [`observe`](Self::observe)s send nothing.
    pub async fn finish(&self) {
        drop(lock(&self.tx).take());
        let task = lock(&self.task).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(self.drain_timeout, &mut task)
                .await
                .is_err()
            {
                task.abort();
                eprintln!(
                    "imggo: warning: alert delivery still pending after {:?}; given up",
                    self.drain_timeout
                );
            }
        }
    }
}

fn parse_webhook(url: &str) -> Result<Uri, Error> {
    let bad = |why: &str| Error::Config(format!("--alert-webhook {}: {why}", origin(url)));
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("https") if cfg!(not(feature = "rustls")) => {
            Err(bad("https needs the `rustls` feature"))
        }
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(bad("want an http:// or https:// URL")),
    }
}

#[cfg(feature = "rustls")]
type HttpClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;
#[cfg(not(feature = "rustls"))]
type HttpClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// The delivery task's side: one event at a time, webhook then command.
struct Delivery {
    webhook: Option<Uri>,
    command: Option<String>,
    attempts: u32,
}

/// Per webhook attempt, connect and answer included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Delivery {
    async fn run(self, mut rx: mpsc::Receiver<AlertEvent>) {
        let client = match &self.webhook {
            Some(_) => match http_client() {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("imggo: warning: alert webhook disabled: {e}");
                    None
                }
            },
            None => None,
        };
        while let Some(ev) = rx.recv().await {
            let body = Bytes::from(ev.payload().to_string());
            if let (Some(url), Some(client)) = (&self.webhook, &client) {
                if let Err(e) = self.post(client, url, body.clone()).await {
                    eprintln!(
                        "imggo: warning: alert webhook {}: {} {} not delivered after {} attempts: {e}",
                        origin(&url.to_string()),
                        ev.rule,
                        match ev.state {
                            AlertState::Firing => "firing",
                            AlertState::Resolved => "resolved",
                        },
                        self.attempts
                    );
                }
            }
            if let Some(cmd) = &self.command {
                if let Err(e) = run_command(cmd, &body).await {
                    eprintln!("imggo: warning: alert command: {e}");
                }
            }
        }
    }

    /// POSTs `body`, retried with exponential backoff and full jitter on a transport
    /// error, a timeout or a non-2xx answer.
    async fn post(&self, client: &HttpClient, url: &Uri, body: Bytes) -> Result<(), String> {
        let backoff = Exponential {
            base: Duration::from_millis(250),
            cap: Duration::from_secs(5),
        };
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff.full_jitter(attempt - 1, random_unit())).await;
            }
            let req = Request::post(url.clone())
                .header("content-type", "application/json")
                .header("user-agent", concat!("imggo/", env!("CARGO_PKG_VERSION")))
                .body(Full::new(body.clone()))
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(()),
                Ok(Ok(resp)) => last = format!("answered {}", resp.status()),
                // The error's text may hold the URL: only its kind is shown.
                Ok(Err(e)) if e.is_connect() => last = "cannot connect".into(),
                Ok(Err(_)) => last = "the request failed".into(),
                Err(_) => last = format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            }
        }
        Err(last)
    }
}

/// A plain client for HTTP and HTTPS (rustls on ring with the webpki roots, as
/// imggo-http's default).
#[cfg(feature = "rustls")]
fn http_client() -> Result<HttpClient, String> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(Duration::from_secs(5)));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| format!("TLS setup: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector))
}

/// A plain client for HTTP only (without the `rustls` feature).
#[cfg(not(feature = "rustls"))]
fn http_client() -> Result<HttpClient, String> {
    let mut tcp = HttpConnector::new();
    tcp.set_connect_timeout(Some(Duration::from_secs(5)));
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(tcp))
}

/// `sh -c cmd` with `json` on stdin; a missing shell, a non-zero exit or a timeout is an
/// error (the command itself is not repeated in it: it may hold a token).
async fn run_command(cmd: &str, json: &[u8]) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is fine.
        let _ = stdin.write_all(json).await;
        let _ = stdin.write_all(b"\n").await;
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("exited with {status}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("still running after {COMMAND_TIMEOUT:?}; killed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(rate: Option<f64>, p95: Option<Duration>, min: u64) -> AlertRules {
        AlertRules {
            min_samples: min,
            min_success_rate: rate,
            max_p95: p95,
            ..AlertRules::default()
        }
    }

    fn states(events: &[AlertEvent]) -> Vec<(&str, AlertState)> {
        events.iter().map(|e| (e.rule.as_str(), e.state)).collect()
    }

    #[test]
    fn a_rule_fires_once_and_resolves_once() {
        let mut w = AlertWindow::new(rules(Some(0.9), None, 20), 20, "r");
        let ms = Duration::from_millis(1);
        let mut events = Vec::new();
        // 19 failures: below min_samples, nothing yet.
        for _ in 0..19 {
            events.extend(w.push(Outcome::Failed, ms));
        }
        assert!(events.is_empty());
        // Alternating for a long time: failing all along, fires exactly once.
        for i in 0..200 {
            let o = if i % 2 == 0 {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            };
            events.extend(w.push(o, ms));
        }
        assert_eq!(states(&events), [("success_rate", AlertState::Firing)]);
        assert_eq!(events[0].samples, 20);
        assert_eq!(events[0].window, "last 20 inputs");
        // Recovery: the window fills with results; cached and duplicate count as results.
        for i in 0..100 {
            let o = [Outcome::Succeeded, Outcome::Cached, Outcome::Duplicate][i % 3];
            events.extend(w.push(o, ms));
        }
        assert_eq!(
            states(&events),
            [
                ("success_rate", AlertState::Firing),
                ("success_rate", AlertState::Resolved)
            ]
        );
        assert!(events[1].value >= 0.9);
        // And again when it fails again.
        for _ in 0..20 {
            events.extend(w.push(Outcome::Failed, ms));
        }
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].state, AlertState::Firing);
    }

    #[test]
    fn p95_over_the_window() {
        let mut w = AlertWindow::new(rules(None, Some(Duration::from_millis(100)), 10), 10, "r");
        let mut events = Vec::new();
        for _ in 0..10 {
            events.extend(w.push(Outcome::Succeeded, Duration::from_millis(10)));
        }
        assert!(events.is_empty());
        // One slow input in ten is the p95 (nearest rank of 10 is the 10th).
        events.extend(w.push(Outcome::Succeeded, Duration::from_millis(500)));
        assert_eq!(states(&events), [("p95_latency", AlertState::Firing)]);
        assert!((events[0].value - 0.5).abs() < 1e-9);
        for _ in 0..10 {
            events.extend(w.push(Outcome::Succeeded, Duration::from_millis(10)));
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].state, AlertState::Resolved);
    }

    #[test]
    fn the_window_is_never_shorter_than_min_samples() {
        let w = AlertWindow::new(rules(Some(0.5), None, 30), 10, "r");
        assert_eq!(w.size(), 30);
    }

    #[test]
    fn payload_has_text_and_alert_and_no_secret_in_logs() {
        let ev = AlertEvent {
            rule: "success_rate".into(),
            state: AlertState::Firing,
            value: 0.45,
            threshold: 0.9,
            window: "last 50 inputs".into(),
            samples: 50,
            run_id: "run-1".into(),
        };
        let v = ev.payload();
        assert_eq!(
            v["text"],
            "imggo alert FIRING: success rate 45.0% is below 90.0% over the last 50 inputs (run run-1)"
        );
        assert_eq!(v["alert"]["state"], "firing");
        assert_eq!(v["alert"]["rule"], "success_rate");
        assert_eq!(v["alert"]["threshold"], 0.9);
        assert_eq!(
            origin("https://u:pw@hooks.slack.com/services/T0/B0/secret?x=1"),
            "https://hooks.slack.com"
        );
        assert_eq!(origin("http://127.0.0.1:9/x"), "http://127.0.0.1:9");
        let sinks = AlertSinks {
            webhook: Some("https://hooks.slack.com/services/T0/B0/secret".into()),
            command: Some("curl -H 'Authorization: token'".into()),
            ..AlertSinks::default()
        };
        let dbg = format!("{sinks:?}");
        assert!(!dbg.contains("secret") && !dbg.contains("token"), "{dbg}");
    }

    #[test]
    fn bad_webhook_urls_are_refused() {
        assert!(parse_webhook("ftp://x/").is_err());
        assert!(parse_webhook("not a url").is_err());
        assert!(parse_webhook("https://example.com/hook").is_ok());
    }
}
