//! A fast path for the job JSON the server writes: [`Job::from_compact_json`].
//!
//! `GET /api/jobs/{id}` is the call a batch makes most (every poll is one), and decoding
//! its answer through serde costs about a third of the client's instructions per call.
//! This module reads the common shape by hand in one pass: the `{success, data}`
//! envelope or a bare job, keys without escapes, strings without escapes, a JSON object
//! (or null) as manifest. Anything it does not recognise makes it give up (`None`), and
//! the caller then decodes with serde, so that every body decodes to exactly what serde
//! makes of it, errors included.

use serde_json::Value;

use super::{
    number_may_overflow, Job, JobError, JobStatus, JsonManifest, Manifest, MAX_FAST_DEPTH,
};

impl Job {
    /// Decodes a job answer (`{"success":true,"data":{...}}` or a bare job object) when it
    /// has the plain shape the server writes, and returns `None` for anything else: escaped
    /// strings, line breaks or tabs, a non-object manifest, a `_raw` manifest, duplicate
    /// keys, deep nesting, invalid JSON. A `Some` is always equal to what serde decodes
    /// from the same text (as `Envelope<Job>`, or as a bare `Job` when that fails); on
    /// `None`, decode with serde to get the job or its error.
    ///
    /// ```
    /// use imggo_core::{Job, JobStatus};
    ///
    /// let job = Job::from_compact_json(
    ///     r#"{"success":true,"data":{"id":"j1","status":"succeeded","manifest":{"n":1}}}"#,
    /// )
    /// .unwrap();
    /// assert_eq!(job.status, JobStatus::Succeeded);
    /// // An escaped string is left to serde.
    /// assert!(Job::from_compact_json(r#"{"id":"j\u0031","status":"queued"}"#).is_none());
    /// ```
    pub fn from_compact_json(text: &str) -> Option<Job> {
        if !plain(text.as_bytes()) {
            return None;
        }
        let mut c = Cursor { text, at: 0 };
        const ENVELOPE: &[u8] = b"{\"success\":true,\"data\":{";
        let job = if text.as_bytes().starts_with(ENVELOPE) {
            c.at = ENVELOPE.len();
            let job = fields(&mut c, None)?;
            // The server's envelope ends after `data`; anything else there gives up.
            c.expect(b'}')?;
            job
        } else {
            c.expect(b'{')?;
            let key = c.string()?;
            if key == "success" || key == "data" {
                envelope(&mut c, key)?
            } else {
                fields(&mut c, Some(key))?
            }
        };
        c.skip_ws();
        (c.at == c.bytes().len()).then_some(job)
    }
}

/// The rest of `{success, data}` after its first key: only those two keys, once each.
fn envelope(c: &mut Cursor<'_>, first: &str) -> Option<Job> {
    let (mut success, mut job) = (false, None);
    let mut key = first;
    loop {
        c.expect(b':')?;
        match key {
            "success" if !success => {
                success = true;
                if !c.literal(b"true") {
                    c.word(b"false")?;
                }
            }
            "data" if job.is_none() => {
                c.expect(b'{')?;
                job = Some(fields(c, None)?);
            }
            _ => return None,
        }
        if !c.next_member()? {
            return job;
        }
        key = c.string()?;
    }
}

/// The fields of a job, in the order the server writes them.
#[derive(Clone, Copy)]
enum Field {
    Id,
    PatternId,
    ImageUrl,
    Status,
    Manifest,
    Error,
    Latency,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    CompletedAt,
    IdempotencyKey,
    RequestedBy,
    Extras,
}

impl Field {
    /// Its bit in the set of fields [`fields`] has seen (an alias shares it).
    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// The server's key of each [`Field`], in the same order, with quotes and colon: the
/// next expected one is matched in one comparison instead of being read as a string.
const KEYS: [(&[u8], Field); 14] = [
    (b"\"id\":", Field::Id),
    (b"\"pattern_id\":", Field::PatternId),
    (b"\"image_url\":", Field::ImageUrl),
    (b"\"status\":", Field::Status),
    (b"\"manifest\":", Field::Manifest),
    (b"\"error\":", Field::Error),
    (b"\"latency_ms\":", Field::Latency),
    (b"\"created_at\":", Field::CreatedAt),
    (b"\"updated_at\":", Field::UpdatedAt),
    (b"\"started_at\":", Field::StartedAt),
    (b"\"completed_at\":", Field::CompletedAt),
    (b"\"idempotency_key\":", Field::IdempotencyKey),
    (b"\"requested_by\":", Field::RequestedBy),
    (b"\"extras\":", Field::Extras),
];

/// The field a job key names, in either dialect: `Some(None)` for a key serde ignores,
/// `None` to give up.
fn field_of(key: &str, bare: bool) -> Option<Option<Field>> {
    Some(Some(match key {
        "id" | "job_id" => Field::Id,
        "pattern_id" => Field::PatternId,
        "image_url" => Field::ImageUrl,
        "status" => Field::Status,
        "manifest" | "result" => Field::Manifest,
        "error" => Field::Error,
        "latency_ms" | "processing_time_ms" => Field::Latency,
        "created_at" => Field::CreatedAt,
        "updated_at" => Field::UpdatedAt,
        "started_at" => Field::StartedAt,
        "completed_at" => Field::CompletedAt,
        "idempotency_key" => Field::IdempotencyKey,
        "requested_by" => Field::RequestedBy,
        "extras" => Field::Extras,
        // In a bare job serde would first try the object as an envelope.
        "data" if bare => return None,
        _ => return Some(None),
    }))
}

/// The members of a job object after its `{`, up to and with its `}`; `first` is a key
/// already read (a bare job, whose first key told it from an envelope).
fn fields(c: &mut Cursor<'_>, mut first: Option<&str>) -> Option<Job> {
    let bare = first.is_some();
    let mut job = Job::new(String::new(), JobStatus::Queued);
    let (mut seen, mut next) = (0u16, 0usize);
    if !bare && c.peek()? == b'}' {
        return None;
    }
    loop {
        let expected = KEYS
            .get(next)
            .filter(|(key, _)| first.is_none() && c.bytes()[c.at..].starts_with(key));
        let field = if let Some(&(key, field)) = expected {
            c.at += key.len();
            Some(field)
        } else {
            let key = match first.take() {
                Some(key) => key,
                None => c.string()?,
            };
            c.expect(b':')?;
            field_of(key, bare)?
        };
        if let Some(field) = field {
            if seen & field.bit() != 0 {
                return None;
            }
            seen |= field.bit();
            next = field as usize + 1;
        }
        match field {
            None => c.skip_value()?,
            Some(Field::Id) => job.id = c.string()?.to_owned(),
            Some(Field::Status) => job.status = JobStatus::parse(c.string()?),
            Some(Field::PatternId) => job.pattern_id = c.opt_string()?,
            Some(Field::ImageUrl) => job.image_url = c.opt_string()?,
            Some(Field::CreatedAt) => job.created_at = c.opt_string()?,
            Some(Field::UpdatedAt) => job.updated_at = c.opt_string()?,
            Some(Field::StartedAt) => job.started_at = c.opt_string()?,
            Some(Field::CompletedAt) => job.completed_at = c.opt_string()?,
            Some(Field::IdempotencyKey) => job.idempotency_key = c.opt_string()?,
            Some(Field::RequestedBy) => job.requested_by = c.opt_string()?,
            Some(Field::Latency) => {
                job.latency_ms = if c.literal(b"null") {
                    None
                } else {
                    Some(c.u64()?)
                }
            }
            Some(Field::Manifest) => job.manifest = c.manifest()?,
            Some(Field::Error) => job.error = c.with_serde::<JobError>()?,
            Some(Field::Extras) => job.extras = c.with_serde::<Value>()?,
        }
        if !c.next_member()? {
            break;
        }
    }
    let required = Field::Id.bit() | Field::Status.bit();
    (seen & required == required).then_some(job)
}

/// The high bit of every byte of `word` (little-endian) that is `"`, and possibly of
/// bytes above the first one.
fn quote_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = word ^ (ONES * u64::from(b'"'));
    x.wrapping_sub(ONES) & !x & (ONES << 7)
}

/// Where the first `"` in `bytes` is.
fn find_quote(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let quotes = quote_bytes(word);
        if quotes != 0 {
            // The lowest flagged byte is exact (the borrows that can flag a byte
            // falsely only run upwards from a true one).
            return Some(at + (quotes.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = chunks.remainder().iter().position(|&b| b == b'"')?;
    Some(at + tail)
}

/// True when `bytes` holds no backslash and no control byte (below 0x20): no escapes
/// to undo, no whitespace but spaces, nothing serde would reject inside a string.
fn plain(bytes: &[u8]) -> bool {
    // One fold without early exits, which the compiler vectorises.
    bytes.iter().fold(0u8, |found, &b| {
        found | u8::from(b == b'\\') | u8::from(b < 0x20)
    }) == 0
}

/// A position in the text being read.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Skips spaces, the only whitespace [`plain`] lets through.
    fn skip_ws(&mut self) {
        while let Some(b' ') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes().get(self.at).copied()
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.at += 1)
    }

    /// After a member: `true` on `,` (another member follows), `false` on `}`.
    fn next_member(&mut self) -> Option<bool> {
        let b = self.peek()?;
        self.at += 1;
        match b {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    /// Consumes `word` if it comes next.
    fn literal(&mut self, word: &[u8]) -> bool {
        self.skip_ws();
        let found = self.bytes()[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        self.literal(word).then_some(())
    }

    /// A string, without its quotes. The whole text holds no backslash and no control
    /// byte ([`plain`]), so the string ends at the next quote.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let len = find_quote(&self.bytes()[start..])?;
        self.at = start + len + 1;
        // Both ends are next to an ASCII quote, so they are character boundaries.
        self.text.get(start..start + len)
    }

    fn opt_string(&mut self) -> Option<Option<String>> {
        if self.literal(b"null") {
            Some(None)
        } else {
            self.string().map(|s| Some(s.to_owned()))
        }
    }

    /// A non-negative integer of at most 19 digits (which always fits in a `u64`); longer
    /// ones wrap while being read and are refused.
    fn u64(&mut self) -> Option<u64> {
        self.skip_ws();
        let start = self.at;
        let mut n = 0u64;
        while let Some(&d @ b'0'..=b'9') = self.bytes().get(self.at) {
            n = n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            self.at += 1;
        }
        let len = self.at - start;
        let leading_zero = len > 1 && self.bytes()[start] == b'0';
        let fraction = matches!(self.bytes().get(self.at), Some(b'.' | b'e' | b'E'));
        (len > 0 && len <= 19 && !leading_zero && !fraction).then_some(n)
    }

    /// `null`, or an object that [`Manifest`]'s serde decoding would keep as its text.
    fn manifest(&mut self) -> Option<Option<Manifest>> {
        if self.literal(b"null") {
            return Some(None);
        }
        if self.peek()? != b'{' {
            return None;
        }
        let start = self.at;
        self.skip_value()?;
        let text = &self.text[start..self.at];
        if text.contains("_raw") {
            return None;
        }
        Some(Some(Manifest::Json(JsonManifest::from_checked(text))))
    }

    /// `null`, or a value handed to serde on its own (an error object, caller extras).
    fn with_serde<T: serde::de::DeserializeOwned>(&mut self) -> Option<Option<T>> {
        if self.literal(b"null") {
            return Some(None);
        }
        let start = self.at;
        self.skip_value()?;
        serde_json::from_str(&self.text[start..self.at])
            .ok()
            .map(Some)
    }

    /// Checks one JSON value inside a job object and moves past it. Containers are
    /// tracked in a bit stack instead of by recursion; nesting deeper than
    /// [`MAX_FAST_DEPTH`] (counting the job object) gives up, well before serde_json's
    /// own limit of 128.
    fn skip_value(&mut self) -> Option<()> {
        const _: () = assert!(MAX_FAST_DEPTH <= 128);
        // Bit `d` is set when the container at depth `d` (0 = outermost) is an object.
        let (mut objects, mut depth) = (0u128, 0usize);
        loop {
            // A value starts here.
            match self.peek()? {
                b'"' => self.skip_string()?,
                open @ (b'{' | b'[') => {
                    if depth + 1 >= MAX_FAST_DEPTH {
                        return None;
                    }
                    self.at += 1;
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.at += 1;
                    } else {
                        if open == b'{' {
                            objects |= 1 << depth;
                            self.skip_key()?;
                        } else {
                            objects &= !(1 << depth);
                        }
                        depth += 1;
                        continue;
                    }
                }
                b't' => self.word(b"true")?,
                b'f' => self.word(b"false")?,
                b'n' => self.word(b"null")?,
                _ => self.number()?,
            }
            // A value ended: close containers until one goes on with another member.
            loop {
                let Some(inner) = depth.checked_sub(1) else {
                    return Some(());
                };
                let in_object = objects >> inner & 1 == 1;
                let b = self.peek()?;
                self.at += 1;
                match (b, in_object) {
                    (b',', true) => {
                        self.skip_key()?;
                        break;
                    }
                    (b',', false) => break,
                    (b'}', true) | (b']', false) => depth = inner,
                    _ => return None,
                }
            }
        }
    }

    /// A string, not looked at (the text holds no escapes).
    fn skip_string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        self.at += find_quote(&self.bytes()[self.at..])? + 1;
        Some(())
    }

    /// An object key and its colon.
    fn skip_key(&mut self) -> Option<()> {
        self.skip_string()?;
        self.expect(b':')
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; gives up on a number that
    /// might be out of `f64` range, which serde refuses.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        if self.bytes().get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match *self.bytes().get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.bytes().get(self.at) == Some(&b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes().get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes().get(self.at) {
                self.at += 1;
            }
            self.some_digits()?;
        }
        (!number_may_overflow(&self.bytes()[start..self.at])).then_some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;

    /// What serde makes of a job answer: the envelope, else a bare job.
    fn serde(text: &str) -> Option<Job> {
        serde_json::from_str::<Envelope<Job>>(text)
            .map(|e| e.data)
            .or_else(|_| serde_json::from_str::<Job>(text))
            .ok()
    }

    /// Decodes `text` both ways; a fast answer must equal serde's, manifest text included.
    fn both(text: &str) -> (Option<Job>, Option<Job>) {
        let fast = Job::from_compact_json(text);
        let slow = serde(text);
        if let Some(job) = &fast {
            assert_eq!(Some(job), slow.as_ref(), "{text}");
            let text_of = |j: &Job| match &j.manifest {
                Some(Manifest::Json(m)) => Some(m.as_str().to_owned()),
                _ => None,
            };
            assert_eq!(text_of(job), slow.as_ref().and_then(text_of), "{text}");
        }
        (fast, slow)
    }

    /// The emulator's answer to `GET /api/jobs/{id}`, byte for byte.
    const SERVER: &str = r#"{"success":true,"data":{"id":"7e13bab8-8a42-4c4d-8543-6ad018164566","pattern_id":"ad8531c7-ce55-4744-9bc9-6b71afa209cc","image_url":null,"status":"succeeded","manifest":{"_emulator":{"bytes":36178,"content_hash":"xxh3-6051f3decf69554039d9a87f5f70663e","emulated":true,"format":"jpeg","height":350,"pattern_id":"ad8531c7-ce55-4744-9bc9-6b71afa209cc","pattern_version":1,"width":460}},"error":null,"latency_ms":0,"created_at":"2026-11-27T08:06:38.480Z","updated_at":"2026-11-27T08:06:38.480Z","started_at":"2026-11-27T08:06:38.480Z","completed_at":"2026-11-27T08:06:38.480Z","idempotency_key":null,"requested_by":"00000000-0000-4000-8000-000000000001","extras":null}}"#;

    #[test]
    fn the_server_shape_takes_the_fast_path() {
        let (fast, _) = both(SERVER);
        let job = fast.expect("fast path");
        assert_eq!(job.id, "7e13bab8-8a42-4c4d-8543-6ad018164566");
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.latency_ms, Some(0));
        assert_eq!(job.image_url, None);
        assert_eq!(
            job.requested_by.as_deref(),
            Some("00000000-0000-4000-8000-000000000001")
        );
        let Some(Manifest::Json(m)) = &job.manifest else {
            panic!("no JSON manifest");
        };
        assert!(m.as_str().starts_with(r#"{"_emulator":{"bytes":36178,"#));
        assert_eq!(m.to_map()["_emulator"]["width"], 460);
    }

    #[test]
    fn other_plain_shapes_are_fast_and_equal_to_serde() {
        let fast = [
            // The docs' dialect, bare, with aliases.
            r#"{"job_id":"j","status":"completed","result":{"a":[1,-2.5e3,true,null,{}]},"processing_time_ms":12}"#,
            // Keys in another order, spaces, unknown keys of every kind.
            r#"{ "status" : "queued" , "x" : [ 1 , {"y":"z"} ] , "id" : "j" , "n" : -0.1E+2 }"#,
            r#"{"data":{"status":"running","id":"j","manifest":null},"success":false}"#,
            r#"{"success":true,"data":{"id":"j","status":"failed","error":"boom","extras":{"k":[1]}}}"#,
            r#"{"success":true,"data":{"id":"j","status":"failed","error":{"code":"x","message":"m"}}}"#,
            r#"{"id":"ünï","status":"Archived","success":1,"manifest":{}}"#,
            r#"{"id":"j","status":"done","latency_ms":18446744073709551}"#,
        ];
        for text in fast {
            assert!(both(text).0.is_some(), "not fast: {text}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        let slow = [
            // Escapes, newlines, a `_raw` manifest, non-object manifests.
            r#"{"id":"j\"k","status":"queued"}"#,
            "{\n\"id\":\"j\",\"status\":\"queued\"}",
            r#"{"id":"j","status":"done","manifest":{"_format":"csv","_raw":"a,b"}}"#,
            r#"{"id":"j","status":"done","manifest":"text"}"#,
            r#"{"id":"j","status":"done","manifest":[1]}"#,
            // Duplicates and aliases of one field, which serde rejects.
            r#"{"id":"j","job_id":"k","status":"queued"}"#,
            r#"{"success":true,"success":true,"data":{"id":"j","status":"queued"}}"#,
            // A bare job with a `data` key; an envelope with other keys.
            r#"{"id":"j","status":"queued","data":{"id":"k","status":"done"}}"#,
            r#"{"success":true,"data":{"id":"j","status":"queued"},"meta":1}"#,
            r#"{"success":true,"id":"j","status":"queued"}"#,
            // Numbers serde refuses for a u64, missing fields, invalid JSON.
            r#"{"id":"j","status":"queued","latency_ms":01}"#,
            r#"{"id":"j","status":"queued","latency_ms":1.0}"#,
            r#"{"id":"j","status":"queued","latency_ms":-1}"#,
            r#"{"id":"j","status":"queued","latency_ms":99999999999999999999}"#,
            r#"{"id":"j"}"#,
            r#"{"id":"j","status":null}"#,
            r#"{"id":"j","status":"queued","x":[1,]}"#,
            r#"{"id":"j","status":"queued","x":{"a":1]}"#,
            r#"{"id":"j","status":"queued","x":[{"a":1}}"#,
            r#"{"id":"j","status":"queued","x":{"a":1,2}}"#,
            r#"{"id":"j","status":"queued","x":{"a" 1}}"#,
            r#"{"id":"j","status":"queued","x":tru}"#,
            r#"{"id":"j","status":"queued","x":-}"#,
            r#"{"id":"j","status":"queued"} x"#,
            r#"{"id":"j","status":"queued""#,
            "",
            "{}",
        ];
        for text in slow {
            assert!(both(text).0.is_none(), "fast: {text}");
        }
        // Deep nesting goes to serde, which decides (here: accepts).
        let deep = format!(
            r#"{{"id":"j","status":"queued","x":{}1{}}}"#,
            "[".repeat(110),
            "]".repeat(110)
        );
        assert!(both(&deep).0.is_none());
        assert!(serde(&deep).is_some());
    }

    /// Random edits of valid answers: whenever the fast path answers, serde agrees.
    #[test]
    fn random_edits_never_disagree_with_serde() {
        let seeds = [
            SERVER,
            r#"{"job_id":"j","status":"completed","result":{"a":[1,-2.5e3,true,null,{"b":"c"}]},"processing_time_ms":12,"extras":{"k":"v"}}"#,
        ];
        const ALPHABET: &[u8] = b"{}[]\",:\\ \n0123456789-+.eEtrufalsn_xj";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut fast, mut total) = (0, 0);
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(bytes.len());
                let b = ALPHABET[next(ALPHABET.len())];
                match next(3) {
                    0 => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            // The seeds and the alphabet are ASCII, so every edit is UTF-8.
            let text = String::from_utf8(bytes).expect("ASCII edits");
            total += 1;
            if both(&text).0.is_some() {
                fast += 1;
            }
        }
        // Many edits (inside strings, numbers) leave a valid answer the fast path reads.
        assert!(
            fast > total / 10,
            "{fast} of {total} edits took the fast path"
        );
    }
}
