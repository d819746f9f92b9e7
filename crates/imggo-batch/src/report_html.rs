//! The HTML report: one self-contained file drawn from result lines alone (`imggo run
//! --report`, `imggo report`). No script, no network, no external font or style sheet:
//! inline CSS and inline SVG charts, one function per chart. Every string that comes from
//! the data (input names, error codes and messages, pattern ids) is escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;
use std::time::UNIX_EPOCH;

use imggo_core::Error;

use crate::journal::ResultLine;
use crate::metrics::Outcome;
use crate::report::human_bytes;

/// Chart width and height (SVG user units = CSS pixels).
const W: f64 = 960.0;
const H: f64 = 240.0;
/// Plot margins: left, right, top, bottom.
const ML: f64 = 64.0;
const MR: f64 = 64.0;
const MT: f64 = 30.0;
const MB: f64 = 36.0;
/// Failed inputs listed by name at most.
const MAX_FAILURES_LISTED: usize = 50;
/// Error codes shown at most.
const TOP_CODES: usize = 10;

/// What the report keeps of one result line (the manifest is not kept).
#[derive(Debug, Clone)]
struct Entry {
    /// Seconds since the Unix epoch, from `finished_at`.
    finished: Option<f64>,
    latency_ms: u64,
    status: Outcome,
    code: Option<String>,
    attempts: u32,
    bytes_in: u64,
    bytes_sent: u64,
    pattern_id: String,
    /// The routing class (`--classify`), when the line has one.
    class: Option<String>,
    rate_limited: Option<u32>,
    waited_ms: Option<u64>,
}

impl Entry {
    /// Met the service's rate limit or quota: counted 429s, or failed with their code.
    fn limited(&self) -> bool {
        self.rate_limited.unwrap_or(0) > 0
            || matches!(
                self.code.as_deref(),
                Some("RATE_LIMIT_EXCEEDED" | "QUOTA_EXHAUSTED")
            )
    }
}

/// A report being drawn: feed it result lines ([`HtmlReport::add`]), then
/// [`HtmlReport::render`] or [`HtmlReport::write`] it.
#[derive(Debug, Clone)]
pub struct HtmlReport {
    title: String,
    entries: Vec<Entry>,
    skipped: u64,
    /// The first failed inputs: name, code, message.
    failures: Vec<(String, String, String)>,
}

/// Nearest-rank percentile `p` (0..=100) of sorted `v`; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `s` with `& < > " '` escaped, safe in HTML text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn status_name(s: Outcome) -> &'static str {
    match s {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Cached => "cached",
        Outcome::Duplicate => "duplicate",
    }
}

const STATUSES: [Outcome; 4] = [
    Outcome::Succeeded,
    Outcome::Failed,
    Outcome::Cached,
    Outcome::Duplicate,
];

fn status_colour(s: Outcome) -> &'static str {
    match s {
        Outcome::Succeeded => "#2e7d32",
        Outcome::Failed => "#c62828",
        Outcome::Cached => "#1565c0",
        Outcome::Duplicate => "#8e24aa",
    }
}

/// True for a FIFO or a pipe (`imggo report /dev/stdin` under a shell pipe).
fn is_pipe(f: &std::fs::File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        f.metadata().is_ok_and(|m| m.file_type().is_fifo())
    }
    #[cfg(not(unix))]
    {
        let _ = f;
        false
    }
}

/// Time buckets of the timeline charts.
#[derive(Debug)]
struct Timeline {
    start: f64,
    bucket_secs: f64,
    buckets: usize,
}

impl Timeline {
    fn index(&self, t: f64) -> usize {
        (((t - self.start) / self.bucket_secs) as usize).min(self.buckets - 1)
    }
}

impl HtmlReport {
    /// An empty report titled `title` (the results file's name, say).
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            entries: Vec::new(),
            skipped: 0,
            failures: Vec::new(),
        }
    }

    /// Reads result lines from `reader`; lines that do not parse (cut by a kill, not
    /// UTF-8, not a result line) are skipped and counted ([`HtmlReport::skipped`]).
    pub fn read(title: impl Into<String>, reader: impl BufRead) -> std::io::Result<Self> {
        let mut r = Self::new(title);
        for line in crate::journal::result_lines(reader) {
            match line? {
                Some(l) => r.add(&l),
                None => r.skip(),
            }
        }
        Ok(r)
    }

    /// [`HtmlReport::read`] of the file at `path`, titled with its name.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        // A results file is read to its end: a device such as `/dev/zero` has none.
        if !f.metadata().map_err(io)?.is_file() && !is_pipe(&f) {
            return Err(Error::InvalidInput {
                input: path.display().to_string(),
                reason: "not a regular file or a pipe".into(),
            });
        }
        Self::read(path.display().to_string(), std::io::BufReader::new(f)).map_err(io)
    }

    /// Adds one result line.
    pub fn add(&mut self, l: &ResultLine) {
        let finished = l
            .finished_at
            .as_deref()
            .and_then(imggo_core::time::parse_rfc3339)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64());
        let code = l.error.as_ref().map(|e| e.code.clone());
        if l.status == Outcome::Failed && self.failures.len() < MAX_FAILURES_LISTED {
            let (code, message) = l
                .error
                .as_ref()
                .map(|e| (e.code.clone(), e.message.chars().take(300).collect()))
                .unwrap_or_default();
            self.failures.push((l.input.clone(), code, message));
        }
        self.entries.push(Entry {
            finished,
            latency_ms: l.latency_ms,
            status: l.status,
            code,
            attempts: l.attempts,
            bytes_in: l.bytes_in,
            bytes_sent: l.bytes_sent,
            pattern_id: l.pattern_id.clone(),
            class: l.class.clone(),
            rate_limited: l.rate_limited,
            waited_ms: l.waited_ms,
        });
    }

    /// Counts a line that could not be read.
    pub fn skip(&mut self) {
        self.skipped += 1;
    }

    /// Result lines added.
    pub fn lines(&self) -> usize {
        self.entries.len()
    }

    /// Lines skipped as unreadable.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Writes [`HtmlReport::render`] to `path`.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.render()).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// The whole HTML document.
    pub fn render(&self) -> String {
        let mut h = String::with_capacity(64 * 1024);
        let title = escape(&self.title);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>imggo report: {title}</title><style>{CSS}</style></head><body>\n\
             <h1>imggo report</h1><p class=\"source\">{title}</p>\n"
        );
        h.push_str(&self.summary());
        for chart in [
            self.throughput_chart(),
            self.latency_chart(),
            self.status_chart(),
            self.error_chart(),
            self.rate_limit_chart(),
            self.bytes_chart(),
        ] {
            h.push_str(&chart);
        }
        // A classified run is read by class first (each class's pattern is in the next
        // table); lines that were not classified are the class `-`.
        if self.entries.iter().any(|e| e.class.is_some()) {
            h.push_str(&self.group_table("Per class", "class", |e| e.class.as_deref()));
        }
        h.push_str(&self.group_table("Per pattern", "pattern_id", |e| Some(e.pattern_id.as_str())));
        h.push_str(&self.failure_table());
        h.push_str("</body></html>\n");
        h
    }

    fn sorted_latencies(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.entries.iter().map(|e| e.latency_ms).collect();
        v.sort_unstable();
        v
    }

    fn summary(&self) -> String {
        let mut counts = [0u64; 4];
        for e in &self.entries {
            counts[STATUSES.iter().position(|s| *s == e.status).unwrap_or(0)] += 1;
        }
        let span = self.timeline().map(|t| {
            let times = self.entries.iter().filter_map(|e| e.finished);
            let end = times.fold(f64::MIN, f64::max);
            (
                imggo_core::time::format_rfc3339(
                    UNIX_EPOCH + std::time::Duration::from_secs_f64(t.start.max(0.0)),
                ),
                end - t.start,
            )
        });
        let mut s = String::from("<table class=\"summary\">");
        let mut row = |k: &str, v: String| {
            let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), v);
        };
        row("result lines", self.entries.len().to_string());
        row("unreadable lines skipped", self.skipped.to_string());
        for (i, st) in STATUSES.iter().enumerate() {
            row(status_name(*st), counts[i].to_string());
        }
        match span {
            Some((start, secs)) => {
                row("first result", escape(&start));
                row("span of results", format!("{secs:.1} s"));
            }
            None => row(
                "span of results",
                "unknown (no line has finished_at)".into(),
            ),
        }
        s.push_str("</table>\n");
        s
    }

    /// Buckets over the `finished_at` span: at most 60, of 1, 2, 5, 10, ... seconds.
    fn timeline(&self) -> Option<Timeline> {
        let mut times = self.entries.iter().filter_map(|e| e.finished);
        let first = times.next()?;
        let (start, end) = times.fold((first, first), |(a, b), t| (a.min(t), b.max(t)));
        let start = start.floor();
        let span = end - start;
        const STEPS: [f64; 12] = [
            1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
        ];
        let bucket_secs = STEPS
            .iter()
            .copied()
            .find(|b| span / b < 60.0)
            .unwrap_or_else(|| (span / 60.0 / 3600.0).ceil() * 3600.0);
        let buckets = (span / bucket_secs) as usize + 1;
        Some(Timeline {
            start,
            bucket_secs,
            buckets,
        })
    }

    fn untimed_note(&self) -> String {
        let untimed = self.entries.iter().filter(|e| e.finished.is_none()).count();
        if untimed == 0 {
            String::new()
        } else {
            format!(
                " {untimed} lines have no <code>finished_at</code> (written by an older \
                 release) and are not on the time axis."
            )
        }
    }

    /// Inputs finished per second, per time bucket.
    fn throughput_chart(&self) -> String {
        let mut svg = Svg::new("throughput", "Inputs finished per second over time");
        let caption = if let Some(t) = self.timeline() {
            let mut counts = vec![0u64; t.buckets];
            for f in self.entries.iter().filter_map(|e| e.finished) {
                counts[t.index(f)] += 1;
            }
            let rates: Vec<f64> = counts.iter().map(|&c| c as f64 / t.bucket_secs).collect();
            let top = nice_max(rates.iter().copied().fold(0.0, f64::max));
            svg.y_axis(top, "inputs/s", false);
            svg.time_axis(&t);
            let bw = plot_w() / t.buckets as f64;
            for (i, r) in rates.iter().enumerate() {
                let hgt = r / top * plot_h();
                svg.rect(
                    ML + i as f64 * bw + bw * 0.1,
                    MT + plot_h() - hgt,
                    bw * 0.8,
                    hgt,
                    "#1565c0",
                    &format!("{:.2} inputs/s", r),
                );
            }
            format!(
                "Inputs whose result was ready, per second, in buckets of {} s (from \
                 <code>finished_at</code>).{}",
                t.bucket_secs,
                self.untimed_note()
            )
        } else {
            svg.note("no line has finished_at: nothing to draw");
            "No line has <code>finished_at</code> (results written by an older release): \
             throughput over time cannot be drawn."
                .into()
        };
        figure("Throughput", svg, &caption)
    }

    /// Latency histogram with p50, p95 and p99 marked.
    fn latency_chart(&self) -> String {
        let mut svg = Svg::new("latency", "Latency histogram");
        let v = self.sorted_latencies();
        let caption = if v.is_empty() {
            svg.note("no result lines");
            "No result lines.".to_string()
        } else {
            let max = (*v.last().unwrap_or(&1)).max(1) as f64;
            let bins = 40usize;
            let width = (max / bins as f64).max(1.0);
            let bins = ((max / width) as usize + 1).min(bins + 1);
            let mut counts = vec![0u64; bins];
            for &l in &v {
                counts[((l as f64 / width) as usize).min(bins - 1)] += 1;
            }
            let range = width * bins as f64;
            let top = nice_max(counts.iter().copied().max().unwrap_or(0) as f64);
            svg.y_axis(top, "inputs", false);
            let bw = plot_w() / bins as f64;
            for (i, &c) in counts.iter().enumerate() {
                let hgt = c as f64 / top * plot_h();
                svg.rect(
                    ML + i as f64 * bw + 1.0,
                    MT + plot_h() - hgt,
                    (bw - 2.0).max(1.0),
                    hgt,
                    "#607d8b",
                    &format!(
                        "{c} inputs, {:.0}-{:.0} ms",
                        i as f64 * width,
                        (i + 1) as f64 * width
                    ),
                );
            }
            for k in 0..=4 {
                let ms = range * k as f64 / 4.0;
                svg.x_label(ML + plot_w() * k as f64 / 4.0, &format!("{ms:.0} ms"));
            }
            let marks = [
                ("p50", percentile(&v, 50.0), "#2e7d32"),
                ("p95", percentile(&v, 95.0), "#ef6c00"),
                ("p99", percentile(&v, 99.0), "#c62828"),
            ];
            for (i, (name, ms, colour)) in marks.iter().enumerate() {
                let x = ML + (*ms as f64 / range) * plot_w();
                // Labels near the right edge go left of their line; a white halo keeps
                // them readable over the bars.
                let (tx, anchor) = if x > W - MR - 110.0 {
                    (x - 5.0, "end")
                } else {
                    (x + 5.0, "start")
                };
                let _ = write!(
                    svg.body,
                    "<line class=\"marker\" data-pct=\"{name}\" data-ms=\"{ms}\" x1=\"{x:.1}\" \
                     y1=\"{MT}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" \
                     stroke-width=\"2\" stroke-dasharray=\"5 3\"/>\
                     <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"{colour}\" \
                     font-size=\"13\" font-weight=\"bold\" paint-order=\"stroke\" \
                     stroke=\"#fff\" stroke-width=\"4\">{name} {ms} ms</text>",
                    MT + plot_h(),
                    MT + 14.0 + 17.0 * i as f64,
                );
            }
            format!(
                "<code>latency_ms</code> of {} lines (whole input: read, optimise, upload, \
                 wait); p50 {} ms, p95 {} ms, p99 {} ms (nearest rank).",
                v.len(),
                marks[0].1,
                marks[1].1,
                marks[2].1
            )
        };
        figure("Latency", svg, &caption)
    }

    /// Horizontal bars with a label and a count each.
    fn hbars(svg: &mut Svg, rows: &[(String, u64, &str)], data: &str) {
        let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
        let n = rows.len().max(1) as f64;
        let rh = ((plot_h() + MB - 8.0) / n).min(44.0);
        let left = 230.0;
        let width = W - left - 90.0;
        for (i, (label, count, colour)) in rows.iter().enumerate() {
            let y = MT + i as f64 * rh;
            let bh = (rh * 0.7).min(26.0);
            let bw = *count as f64 / max * width;
            let label = escape(label);
            let _ = write!(
                svg.body,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"13\">{label}</text>\
                 <rect class=\"bar\" {data}=\"{label}\" data-count=\"{count}\" x=\"{left}\" \
                 y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{colour}\">\
                 <title>{label}: {count}</title></rect>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\">{count}</text>",
                left - 8.0,
                y + bh * 0.75,
                left + bw + 6.0,
                y + bh * 0.75,
            );
        }
    }

    /// Inputs per status.
    fn status_chart(&self) -> String {
        let mut svg = Svg::new("statuses", "Inputs per status");
        let rows: Vec<(String, u64, &str)> = STATUSES
            .iter()
            .map(|s| {
                let n = self.entries.iter().filter(|e| e.status == *s).count() as u64;
                (status_name(*s).to_string(), n, status_colour(*s))
            })
            .collect();
        Self::hbars(&mut svg, &rows, "data-status");
        figure(
            "Statuses",
            svg,
            "The last line's <code>status</code> of each result line: succeeded, failed, \
             cached (from the result cache), duplicate (an identical input of the batch).",
        )
    }

    /// The most frequent error codes.
    fn error_chart(&self) -> String {
        let mut svg = Svg::new("errors", "Top error codes");
        let mut codes: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &self.entries {
            if let Some(c) = &e.code {
                *codes.entry(c.as_str()).or_default() += 1;
            }
        }
        let mut codes: Vec<(&str, u64)> = codes.into_iter().collect();
        codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let distinct = codes.len();
        codes.truncate(TOP_CODES);
        let caption = if codes.is_empty() {
            svg.note("no errors");
            "No line has an error.".to_string()
        } else {
            let rows: Vec<(String, u64, &str)> = codes
                .iter()
                .map(|(c, n)| (c.to_string(), *n, "#c62828"))
                .collect();
            Self::hbars(&mut svg, &rows, "data-code");
            format!(
                "<code>error.code</code> of failed lines, the {} most frequent of {distinct}.",
                codes.len()
            )
        };
        figure("Top error codes", svg, &caption)
    }

    /// Retries, 429s and waiting over time.
    fn rate_limit_chart(&self) -> String {
        let mut svg = Svg::new("ratelimit", "429s, retries and waiting over time");
        let Some(t) = self.timeline() else {
            svg.note("no line has finished_at: nothing to draw");
            return figure(
                "Rate limit, retries and waiting",
                svg,
                "No line has <code>finished_at</code>: the timeline cannot be drawn.",
            );
        };
        let mut retried = vec![0u64; t.buckets];
        let mut limited = vec![0u64; t.buckets];
        let mut waited = vec![0f64; t.buckets];
        let mut counted_429 = 0u64;
        let mut no_wait_field = 0usize;
        for e in &self.entries {
            let Some(f) = e.finished else { continue };
            let i = t.index(f);
            if e.attempts > 1 {
                retried[i] += 1;
            }
            if e.limited() {
                limited[i] += 1;
            }
            counted_429 = counted_429.saturating_add(u64::from(e.rate_limited.unwrap_or(0)));
            match e.waited_ms {
                Some(w) => waited[i] += w as f64 / 1000.0,
                None => no_wait_field += 1,
            }
        }
        let top = nice_max(retried.iter().chain(&limited).copied().max().unwrap_or(0) as f64);
        let wtop = nice_max(waited.iter().copied().fold(0.0, f64::max));
        svg.y_axis(top, "inputs", false);
        svg.y_axis(wtop, "waited s", true);
        svg.time_axis(&t);
        let bw = plot_w() / t.buckets as f64;
        for i in 0..t.buckets {
            let x = ML + i as f64 * bw;
            for (j, (v, colour, what)) in [
                (retried[i], "#ef6c00", "retried (attempts > 1)"),
                (limited[i], "#c62828", "met a 429"),
            ]
            .into_iter()
            .enumerate()
            {
                let hgt = v as f64 / top * plot_h();
                svg.rect(
                    x + bw * (0.1 + 0.4 * j as f64),
                    MT + plot_h() - hgt,
                    bw * 0.4,
                    hgt,
                    colour,
                    &format!("{v} inputs {what}"),
                );
            }
        }
        let points: Vec<String> = waited
            .iter()
            .enumerate()
            .map(|(i, w)| {
                format!(
                    "{:.1},{:.1}",
                    ML + (i as f64 + 0.5) * bw,
                    MT + plot_h() - w / wtop * plot_h()
                )
            })
            .collect();
        let _ = write!(
            svg.body,
            "<polyline class=\"waited\" points=\"{}\" fill=\"none\" stroke=\"#1565c0\" \
             stroke-width=\"2\"/>",
            points.join(" ")
        );
        svg.legend(&[
            ("#ef6c00", "inputs retried (attempts > 1)"),
            ("#c62828", "inputs that met a 429 / quota"),
            ("#1565c0", "seconds waited (line, right axis)"),
        ]);
        let mut caption = format!(
            "Per bucket of {} s, by when each input finished (the lines do not record when \
             each attempt was made): inputs with <code>attempts</code> &gt; 1; inputs that \
             met the rate limit (<code>rate_limited</code> &gt; 0, or failed with \
             RATE_LIMIT_EXCEEDED / QUOTA_EXHAUSTED); seconds waited for the limiters and \
             429 <code>Retry-After</code> (<code>waited_ms</code>). 429 answers counted \
             in all: {counted_429}.",
            t.bucket_secs
        );
        if no_wait_field > 0 {
            let _ = write!(
                caption,
                " {no_wait_field} lines (older release) have no <code>waited_ms</code> or \
                 <code>rate_limited</code>: their waits and 429s are unknown, not zero."
            );
        }
        caption.push_str(&self.untimed_note());
        figure("Rate limit, retries and waiting", svg, &caption)
    }

    /// Bytes read vs bytes sent.
    fn bytes_chart(&self) -> String {
        let mut svg = Svg::new("bytes", "Bytes saved by optimisation");
        let uploaded = self.entries.iter().filter(|e| e.bytes_sent > 0);
        let (before, after) = uploaded.fold((0u64, 0u64), |(a, b), e| {
            // Sums of numbers read from a file: saturate, never overflow.
            (a.saturating_add(e.bytes_in), b.saturating_add(e.bytes_sent))
        });
        let not_sent: u64 = self
            .entries
            .iter()
            .filter(|e| e.bytes_sent == 0)
            .fold(0, |a, e| a.saturating_add(e.bytes_in));
        let saved = before.saturating_sub(after);
        let pct = if before > 0 {
            100.0 * saved as f64 / before as f64
        } else {
            0.0
        };
        let rows = [
            ("input bytes of uploaded inputs", before, "#90a4ae"),
            ("bytes sent", after, "#1565c0"),
            ("saved", saved, "#2e7d32"),
        ];
        let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
        let left = 230.0;
        let width = W - left - 130.0;
        for (i, (label, n, colour)) in rows.iter().enumerate() {
            let y = MT + i as f64 * 60.0;
            let bw = *n as f64 / max * width;
            let _ = write!(
                svg.body,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"13\">{label}</text>\
                 <rect class=\"bar\" data-bytes=\"{n}\" x=\"{left}\" y=\"{y:.1}\" \
                 width=\"{bw:.1}\" height=\"34\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\">{}</text>",
                left - 8.0,
                y + 22.0,
                left + bw + 6.0,
                y + 22.0,
                human_bytes(*n)
            );
        }
        let caption = format!(
            "Sum of <code>bytes_in</code> and <code>bytes_sent</code> over the inputs \
             uploaded: {} saved of {} ({pct:.1} %). Inputs not uploaded (cached, duplicate, \
             failed before upload) read {} more.",
            human_bytes(saved),
            human_bytes(before),
            human_bytes(not_sent)
        );
        figure("Bytes saved by optimisation", svg, &caption)
    }

    /// A table of the lines grouped by `key` (the pattern, or the routing class):
    /// count, statuses, p50/p95 latency. Lines without a key are grouped under `-`.
    fn group_table<'a>(
        &'a self,
        heading: &str,
        column: &str,
        key: impl Fn(&'a Entry) -> Option<&'a str>,
    ) -> String {
        let mut groups: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for e in &self.entries {
            groups.entry(key(e).unwrap_or("-")).or_default().push(e);
        }
        let mut s = format!(
            "<section><h2>{}</h2><table class=\"groups\" data-key=\"{}\"><thead><tr>\
             <th>{}</th><th>count</th><th>succeeded</th><th>failed</th><th>cached</th>\
             <th>duplicate</th><th>p50 ms</th><th>p95 ms</th></tr></thead><tbody>",
            escape(heading),
            escape(column),
            escape(column)
        );
        for (k, es) in groups {
            let n = |st: Outcome| es.iter().filter(|e| e.status == st).count();
            let mut lat: Vec<u64> = es.iter().map(|e| e.latency_ms).collect();
            lat.sort_unstable();
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                escape(k),
                es.len(),
                n(Outcome::Succeeded),
                n(Outcome::Failed),
                n(Outcome::Cached),
                n(Outcome::Duplicate),
                percentile(&lat, 50.0),
                percentile(&lat, 95.0)
            );
        }
        s.push_str("</tbody></table></section>\n");
        s
    }

    /// The first failed inputs, by name.
    fn failure_table(&self) -> String {
        let failed = self
            .entries
            .iter()
            .filter(|e| e.status == Outcome::Failed)
            .count();
        let mut s = format!(
            "<section><h2>Failed inputs</h2><p>{failed} failed{}.</p>",
            if failed > self.failures.len() {
                format!(", the first {} listed", self.failures.len())
            } else {
                String::new()
            }
        );
        if !self.failures.is_empty() {
            s.push_str(
                "<table class=\"failures\"><thead><tr><th>input</th><th>code</th>\
                 <th>message</th></tr></thead><tbody>",
            );
            for (input, code, message) in &self.failures {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td class=\"code\">{}</td><td>{}</td></tr>",
                    escape(input),
                    escape(code),
                    escape(message)
                );
            }
            s.push_str("</tbody></table>");
        }
        s.push_str("</section>\n");
        s
    }
}

fn plot_w() -> f64 {
    W - ML - MR
}

fn plot_h() -> f64 {
    H - MT - MB
}

/// A round number at least `v` (and at least 1) for the top of an axis.
fn nice_max(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

/// An axis value without needless decimals.
fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// One chart being drawn.
#[derive(Debug)]
struct Svg {
    id: &'static str,
    label: &'static str,
    body: String,
}

impl Svg {
    fn new(id: &'static str, label: &'static str) -> Self {
        Self {
            id,
            label,
            body: String::new(),
        }
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, title: &str) {
        let _ = write!(
            self.body,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
             fill=\"{fill}\"><title>{}</title></rect>",
            escape(title)
        );
    }

    fn note(&mut self, text: &str) {
        let _ = write!(
            self.body,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"15\" \
             fill=\"#777\">{}</text>",
            W / 2.0,
            H / 2.0,
            escape(text)
        );
    }

    /// Grid lines and values for `0..=top`, on the left or the right.
    fn y_axis(&mut self, top: f64, unit: &str, right: bool) {
        let x = if right { W - MR } else { ML };
        let _ = write!(
            self.body,
            "<line x1=\"{x}\" y1=\"{MT}\" x2=\"{x}\" y2=\"{:.1}\" stroke=\"#444\"/>",
            MT + plot_h()
        );
        for k in 0..=4 {
            let y = MT + plot_h() * (1.0 - k as f64 / 4.0);
            if !right {
                let _ = write!(
                    self.body,
                    "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" \
                     stroke=\"#ddd\"/>",
                    W - MR
                );
            }
            let (tx, anchor) = if right {
                (x + 6.0, "start")
            } else {
                (x - 6.0, "end")
            };
            let _ = write!(
                self.body,
                "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" font-size=\"11\">{}</text>",
                y + 4.0,
                num(top * k as f64 / 4.0)
            );
        }
        let (tx, anchor) = if right {
            (W - 4.0, "end")
        } else {
            (4.0, "start")
        };
        let _ = write!(
            self.body,
            "<text x=\"{tx}\" y=\"12\" text-anchor=\"{anchor}\" font-size=\"11\" \
             fill=\"#555\">{}</text>",
            escape(unit)
        );
    }

    fn x_label(&mut self, x: f64, text: &str) {
        let _ = write!(
            self.body,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
            MT + plot_h() + 16.0,
            escape(text)
        );
    }

    /// The x axis: seconds since the first bucket.
    fn time_axis(&mut self, t: &Timeline) {
        let _ = write!(
            self.body,
            "<line x1=\"{ML}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#444\"/>",
            W - MR,
            y = MT + plot_h()
        );
        let span = t.bucket_secs * t.buckets as f64;
        for k in 0..=5 {
            let secs = span * k as f64 / 5.0;
            self.x_label(
                ML + plot_w() * k as f64 / 5.0,
                &format!("+{} s", num(secs.round())),
            );
        }
    }

    /// Colour keys in the top margin, above the plot.
    fn legend(&mut self, items: &[(&str, &str)]) {
        let mut x = ML + 60.0;
        for (colour, text) in items {
            let _ = write!(
                self.body,
                "<rect x=\"{x:.1}\" y=\"6\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
                x + 16.0,
                16.0,
                escape(text)
            );
            x += 30.0 + 6.5 * text.len() as f64;
        }
    }

    fn finish(self) -> String {
        format!(
            "<svg class=\"chart\" id=\"chart-{}\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" \
             height=\"{H}\" role=\"img\" aria-label=\"{}\">{}</svg>",
            self.id, self.label, self.body
        )
    }
}

/// A chart in its `<figure>` with a heading and a caption (`caption` is HTML the report
/// wrote itself: any data in it is escaped already).
fn figure(heading: &str, svg: Svg, caption: &str) -> String {
    format!(
        "<figure><h2>{}</h2>{}<figcaption>{caption}</figcaption></figure>\n",
        escape(heading),
        svg.finish()
    )
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
margin:24px auto;max-width:1000px;color:#222;background:#fff}\
h1{margin:0 0 4px}h2{font-size:18px;margin:0 0 8px}.source{color:#555;margin:0 0 16px;\
word-break:break-all}figure{margin:0 0 28px;padding:12px;border:1px solid #ddd;\
border-radius:6px}svg.chart{display:block;max-width:100%;height:auto;\
font-family:inherit}figcaption{font-size:13px;color:#444;margin-top:6px}\
table{border-collapse:collapse;margin:0 0 24px;font-size:14px}\
th,td{border:1px solid #ddd;padding:4px 10px;text-align:left;vertical-align:top}\
td{word-break:break-word}table.groups td+td{text-align:right}\
table.summary th{background:#f5f5f5;font-weight:600}thead th{background:#f5f5f5}\
section{margin:0 0 24px}td.code{white-space:nowrap}code{background:#f3f3f3;padding:0 3px}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_percentiles() {
        assert_eq!(
            escape("<script>alert('x\"&')</script>"),
            "&lt;script&gt;alert(&#39;x&quot;&amp;&#39;)&lt;/script&gt;"
        );
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 95.0), 95);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(0.2), 1.0);
    }

    #[test]
    fn an_empty_report_renders() {
        let html = HtmlReport::new("empty").render();
        assert_eq!(html.matches("<svg").count(), 6);
        assert!(html.contains("no result lines"));
    }
}
