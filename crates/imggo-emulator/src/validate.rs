//! Request validation in the manner of the server's zod schemas: a JSON object whose known
//! fields are checked for type, nullability, length, pattern, enum and format, and whose
//! unknown keys are dropped. A failure is one 400 `VALIDATION_ERROR` naming every issue.

use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::reply::{error, Reply};
use crate::state::State;

/// What a field must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string, with [`Rule`]s.
    Str,
    /// A whole number (a JSON number without a fraction).
    Int,
    /// `true` or `false`.
    Bool,
    /// Any JSON value.
    Any,
    /// An array of strings, each checked by the field's [`Rule`]s.
    StrArray,
}

/// A string format the API's schemas use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `8-4-4-4-12` hexadecimal digits.
    Uuid,
    /// An absolute URI (RFC 3986): a scheme, `:` and the rest.
    Uri,
    /// An RFC 3339 date-time.
    DateTime,
}

/// A check of a string's characters, and what it asks for (for the error message).
pub(crate) type CharRule = (fn(&str) -> bool, &'static str);

/// One field of a request body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// Its key.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether it must be present.
    pub required: bool,
    /// Whether `null` is allowed.
    pub nullable: bool,
    /// Least length of a string (in characters), least items of an array, or least value of
    /// a number.
    pub min: Option<i64>,
    /// Greatest length of a string (in characters) or greatest value of a number.
    pub max: Option<i64>,
    /// The values a string may take (empty: any).
    pub one_of: &'static [&'static str],
    /// A format a string must have.
    pub format: Option<Format>,
    /// A check of the characters of a string (the schema's `pattern`), and its description.
    pub chars: Option<CharRule>,
}

impl Field {
    /// An optional, non-nullable field of `kind` with no further rules.
    pub(crate) const fn new(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            required: false,
            nullable: false,
            min: None,
            max: None,
            one_of: &[],
            format: None,
            chars: None,
        }
    }
    /// Must be present.
    pub(crate) const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// May be `null`.
    pub(crate) const fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
    /// Least length, items or value.
    pub(crate) const fn min(mut self, n: i64) -> Self {
        self.min = Some(n);
        self
    }
    /// Greatest length or value.
    pub(crate) const fn max(mut self, n: i64) -> Self {
        self.max = Some(n);
        self
    }
    /// One of these strings.
    pub(crate) const fn one_of(mut self, values: &'static [&'static str]) -> Self {
        self.one_of = values;
        self
    }
    /// Has this format.
    pub(crate) const fn format(mut self, f: Format) -> Self {
        self.format = Some(f);
        self
    }
    /// Its characters pass `check` (described by `what`).
    pub(crate) const fn chars(mut self, check: fn(&str) -> bool, what: &'static str) -> Self {
        self.chars = Some((check, what));
        self
    }
}

/// One reason a body is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    /// The field (empty: the body itself).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Checks `body` (raw JSON bytes) against `fields`. Returns the object holding only the
/// known fields, or the 400 to answer.
pub(crate) fn object(
    state: &State,
    body: &[u8],
    fields: &[Field],
) -> Result<Map<String, Value>, Box<Reply>> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            state.dialect(),
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("Request body is not valid JSON: {e}"),
            None,
        ))
    })?;
    check(&v, fields).map_err(|issues| Box::new(reject(state, &issues)))
}

/// The zod-like check of a parsed body.
pub(crate) fn check(v: &Value, fields: &[Field]) -> Result<Map<String, Value>, Vec<Issue>> {
    let Value::Object(m) = v else {
        return Err(vec![Issue {
            field: String::new(),
            message: "Expected an object".into(),
        }]);
    };
    let mut out = Map::new();
    let mut issues = Vec::new();
    for f in fields {
        match m.get(f.name) {
            None if f.required => issues.push(issue(f, "Required")),
            None => {}
            Some(Value::Null) if f.nullable => {
                out.insert(f.name.into(), Value::Null);
            }
            Some(Value::Null) => issues.push(issue(f, "Expected a value, got null")),
            Some(val) => match check_value(f, val) {
                Ok(()) => {
                    out.insert(f.name.into(), val.clone());
                }
                Err(msg) => issues.push(issue(f, &msg)),
            },
        }
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

fn issue(f: &Field, message: &str) -> Issue {
    Issue {
        field: f.name.into(),
        message: message.into(),
    }
}

/// The server's 400 for invalid input: `VALIDATION_ERROR` with the first field in `details`
/// and every issue listed.
pub(crate) fn reject(state: &State, issues: &[Issue]) -> Reply {
    let first = issues.first();
    let message = first.map_or_else(
        || "Invalid request body".to_owned(),
        |i| {
            if i.field.is_empty() {
                format!("Invalid request body: {}", i.message)
            } else {
                format!("Invalid request body: {}: {}", i.field, i.message)
            }
        },
    );
    let list: Vec<Value> = issues
        .iter()
        .map(|i| json!({"path": [i.field], "message": i.message}))
        .collect();
    error(
        state.dialect(),
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        message,
        Some(json!({
            "field": first.map_or("", |i| i.field.as_str()),
            "issues": list,
        })),
    )
}

fn check_value(f: &Field, v: &Value) -> Result<(), String> {
    match f.kind {
        Kind::Any => Ok(()),
        Kind::Bool => v
            .is_boolean()
            .then_some(())
            .ok_or_else(|| "Expected a boolean".into()),
        Kind::Int => {
            let n = whole(v).ok_or("Expected an integer")?;
            if f.min.is_some_and(|m| n < i128::from(m)) {
                return Err(format!("Must be at least {}", f.min.unwrap_or(0)));
            }
            if f.max.is_some_and(|m| n > i128::from(m)) {
                return Err(format!("Must be at most {}", f.max.unwrap_or(0)));
            }
            Ok(())
        }
        Kind::Str => {
            let s = v.as_str().ok_or("Expected a string")?;
            check_str(f, s)
        }
        Kind::StrArray => {
            let a = v.as_array().ok_or("Expected an array")?;
            if f.min.is_some_and(|m| (a.len() as i64) < m) {
                return Err(format!(
                    "Array must contain at least {} item(s)",
                    f.min.unwrap_or(0)
                ));
            }
            for (i, item) in a.iter().enumerate() {
                let s = item
                    .as_str()
                    .ok_or_else(|| format!("Item {i}: expected a string"))?;
                let item_rules = Field { min: None, ..*f };
                check_str(&item_rules, s).map_err(|e| format!("Item {i}: {e}"))?;
            }
            Ok(())
        }
    }
}

/// A JSON number without a fractional part (`2.0` counts, like JSON Schema's `integer`).
fn whole(v: &Value) -> Option<i128> {
    if let Some(i) = v.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = v.as_u64() {
        return Some(i128::from(u));
    }
    let f = v.as_f64()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1e30).then_some(f as i128)
}

fn check_str(f: &Field, s: &str) -> Result<(), String> {
    let n = s.chars().count() as i64;
    if let Some(m) = f.min {
        if n < m {
            return Err(format!("String must contain at least {m} character(s)"));
        }
    }
    if let Some(m) = f.max {
        if n > m {
            return Err(format!("String must contain at most {m} character(s)"));
        }
    }
    if !f.one_of.is_empty() && !f.one_of.contains(&s) {
        return Err(format!("Expected one of {}", f.one_of.join(", ")));
    }
    if let Some((ok, what)) = f.chars {
        if !ok(s) {
            return Err(format!("Must be {what}"));
        }
    }
    match f.format {
        Some(Format::Uuid) if !is_uuid(s) => Err("Invalid uuid".into()),
        Some(Format::Uri) if !is_uri(s) => Err("Invalid url".into()),
        Some(Format::DateTime) if !is_date_time(s) => Err("Invalid datetime".into()),
        _ => Ok(()),
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hexadecimal digits (either case).
pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// An absolute URI: `scheme ":" rest`, the scheme a letter followed by letters, digits,
/// `+ - .`, and the rest made of URI characters (percent escapes well formed).
pub(crate) fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut sc = scheme.chars();
    if !sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !sc.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return false;
    }
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = c.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&c);
        if !ok {
            return false;
        }
        i += 1;
    }
    // An authority, when there is one, must not hold a second `[`/`]` pair out of place
    // or a port that is not a number.
    if let Some(after) = rest.strip_prefix("//") {
        let authority = after.split(['/', '?', '#']).next().unwrap_or("");
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let port = if let Some(v6) = hostport.strip_prefix('[') {
            let Some((_, p)) = v6.split_once(']') else {
                return false;
            };
            if p.is_empty() {
                None
            } else {
                match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return false,
                }
            }
        } else {
            if hostport.contains(['[', ']']) {
                return false;
            }
            hostport.split_once(':').map(|(_, p)| p)
        };
        if port.is_some_and(|p| !p.bytes().all(|c| c.is_ascii_digit())) {
            return false;
        }
    }
    true
}

/// An RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)`, with real
/// calendar days (leap years included).
pub(crate) fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return false;
    }
    if b[13] != b':' || b[16] != b':' {
        return false;
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if d == 0 || d > days || h > 23 || mi > 59 || se > 60 {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len()
                && b[i + 3] == b':'
                && digits(i + 1..i + 3).is_some_and(|oh| oh <= 23)
                && digits(i + 4..i + 6).is_some_and(|om| om <= 59)
        }
        _ => false,
    }
}

/// The characters of a pattern name (`^[a-zA-Z0-9\s\-_()]+$`). `\s` is taken as Unicode
/// white space, as the regular expressions of the schema's tools read it.
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c.is_whitespace()
                || ('\u{1c}'..='\u{1f}').contains(&c)
                || "-_()".contains(c)
        })
}

/// The characters of an upload path (`^[a-zA-Z0-9/_\-\.]+$`).
pub(crate) fn is_storage_path(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/_-.".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[Field] = &[
        Field::new("name", Kind::Str).required().min(1).max(5),
        Field::new("id", Kind::Str).nullable().format(Format::Uuid),
        Field::new("n", Kind::Int).min(0),
        Field::new("kind", Kind::Str).one_of(&["a", "b"]),
        Field::new("tags", Kind::StrArray).min(1),
    ];

    #[test]
    fn drops_unknown_keys_and_keeps_known_ones() {
        let m = check(&json!({"name": "abc", "extra": 1, "id": null}), FIELDS).unwrap();
        assert_eq!(Value::Object(m), json!({"name": "abc", "id": null}));
    }

    #[test]
    fn rejects_each_rule() {
        let bad = [
            json!({}),
            json!({"name": ""}),
            json!({"name": "toolong"}),
            json!({"name": 1}),
            json!({"name": "a", "id": "AAA"}),
            json!({"name": "a", "n": -1}),
            json!({"name": "a", "n": 1.5}),
            json!({"name": "a", "n": null}),
            json!({"name": "a", "kind": "c"}),
            json!({"name": "a", "tags": []}),
            json!({"name": "a", "tags": [1]}),
            json!([]),
        ];
        for b in bad {
            assert!(check(&b, FIELDS).is_err(), "{b} must be rejected");
        }
        assert!(check(&json!({"name": "a", "n": 2.0, "tags": ["x"]}), FIELDS).is_ok());
    }

    #[test]
    fn formats() {
        assert!(is_uuid("550e8400-e29b-41d4-a716-446655440000"));
        assert!(is_uuid("550E8400-E29B-41D4-A716-446655440000"));
        assert!(!is_uuid("AAA"));
        assert!(!is_uuid("550e8400e29b41d4a716446655440000"));
        assert!(is_uri("https://example.com/a.jpg"));
        assert!(is_uri("a:b"));
        assert!(is_uri("http://[::1]:80/x"));
        assert!(!is_uri("example.com/a.jpg"));
        assert!(!is_uri("http://exa mple.com"));
        assert!(!is_uri("http://h:port/"));
        assert!(!is_uri("1http://h"));
        assert!(is_date_time("2026-12-31T23:59:59Z"));
        assert!(is_date_time("2024-02-29T00:00:00.5+01:00"));
        assert!(!is_date_time("2025-02-29T00:00:00Z"));
        assert!(!is_date_time("2026-12-31"));
        assert!(!is_date_time("2026-12-31 23:59:59Z"));
        assert!(is_name("Receipts (v2)_x-y"));
        assert!(!is_name("a/b"));
        assert!(is_storage_path("uploads/a-b_c.jpg"));
        assert!(!is_storage_path("a b"));
    }
}
