//! Turning jobs into bytes: the JSON answer in either dialect, the emulated manifest, and
//! the raw bodies of `?format=yaml|xml|csv|text`.

use bytes::Bytes;
use imggo_core::{Job, JobStatus, Manifest, Pattern, PatternFormat, ResultFormat};
use serde_json::{json, Map, Value};

use crate::config::Dialect;
use crate::reply::envelope_bytes;

/// What the emulator knows about a received image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageFacts {
    /// `jpeg`, `png`, ...
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    /// `xxh3-<32 hex>` of the received bytes.
    pub content_hash: String,
    /// The upload's file name (the last segment of a fetched URL's path), when known:
    /// the classification stand-in picks an `enum` value it names.
    pub file_name: Option<String>,
}

/// `{success: true, data: job}` in `dialect`.
pub(crate) fn job_envelope(job: &Job, dialect: Dialect) -> Bytes {
    match dialect {
        Dialect::Server => envelope_bytes(job),
        Dialect::Docs => envelope_bytes(&job_docs_value(job)),
    }
}

/// A job in the docs' spelling: `job_id` (instead of `id`), `completed`/`processing`, `result`,
/// `processing_time_ms`, `error: {code, message}`.
pub(crate) fn job_docs_value(job: &Job) -> Value {
    let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        if let Some(id) = m.remove("id") {
            m.insert("job_id".into(), id);
        }
        m.insert(
            "status".into(),
            Value::String(job.status.as_docs_str().to_owned()),
        );
        if let Some(manifest) = m.remove("manifest") {
            m.insert("result".into(), manifest);
        }
        if let Some(ms) = m.remove("latency_ms") {
            m.insert("processing_time_ms".into(), ms);
        }
        if let Some(e) = &job.error {
            m.insert(
                "error".into(),
                json!({"code": "processing_failed", "message": e.message}),
            );
        }
    }
    v
}

/// The status in the dialect's spelling.
pub(crate) fn status_str(status: &JobStatus, dialect: Dialect) -> &str {
    match dialect {
        Dialect::Server => status.as_str(),
        Dialect::Docs => status.as_docs_str(),
    }
}

/// The deterministic manifest of an emulated job: the image's facts under `_emulator`,
/// plus every field of the pattern's JSON schema filled with a typed placeholder. Non-JSON
/// patterns get the facts written in their format.
pub(crate) fn manifest(pattern: &Pattern, facts: &ImageFacts) -> Manifest {
    let mut emu = Map::new();
    emu.insert("emulated".into(), Value::Bool(true));
    emu.insert("format".into(), Value::from(facts.format));
    emu.insert("width".into(), Value::from(facts.width));
    emu.insert("height".into(), Value::from(facts.height));
    emu.insert("bytes".into(), Value::from(facts.bytes));
    emu.insert(
        "content_hash".into(),
        Value::String(facts.content_hash.clone()),
    );
    emu.insert("pattern_id".into(), Value::String(pattern.id.clone()));
    emu.insert("pattern_version".into(), Value::from(pattern.version));
    let format = match &pattern.format {
        PatternFormat::Json | PatternFormat::Unknown(_) => {
            let mut m = Map::new();
            m.insert("_emulator".into(), Value::Object(emu));
            if let Some(Value::Object(props)) = pattern
                .json_schema
                .as_ref()
                .and_then(|s| s.get("properties"))
            {
                for (k, schema) in props {
                    let value = match schema.get("enum") {
                        Some(Value::Array(options)) => classify(options, facts),
                        _ => placeholder(schema, 0),
                    };
                    m.insert(k.clone(), value);
                }
            }
            return Manifest::Json(m.into());
        }
        PatternFormat::Yaml => ResultFormat::Yaml,
        PatternFormat::Xml => ResultFormat::Xml,
        PatternFormat::Csv => ResultFormat::Csv,
        PatternFormat::Text => ResultFormat::Text,
    };
    let delimiter = csv_delimiter(pattern);
    Manifest::Raw {
        format: format.as_str().to_owned(),
        body: to_format(&Value::Object(emu), format, delimiter),
    }
}

fn csv_delimiter(p: &Pattern) -> char {
    match p.csv_delimiter.as_deref() {
        Some("semicolon") | Some(";") => ';',
        _ => ',',
    }
}

/// The classification stand-in, for a top-level schema property with an `enum`: the
/// value that appears in the upload's file name (case-insensitive; the longest when
/// several do), otherwise the one the content hash picks (its leading 64 bits modulo the
/// number of values). Deterministic: the same name and bytes give the same value.
fn classify(options: &[Value], facts: &ImageFacts) -> Value {
    let name = facts.file_name.as_deref().unwrap_or("").to_lowercase();
    let named = options
        .iter()
        .filter_map(|o| o.as_str().map(|s| (o, s.to_lowercase())))
        .filter(|(_, s)| !s.is_empty() && name.contains(s.as_str()))
        .max_by_key(|(_, s)| s.len())
        .map(|(o, _)| o.clone());
    if let Some(v) = named {
        return v;
    }
    if options.is_empty() {
        return Value::Null;
    }
    let hex = facts.content_hash.strip_prefix("xxh3-").unwrap_or("");
    let lead = hex
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    let i = (lead % options.len() as u64) as usize;
    options.get(i).cloned().unwrap_or(Value::Null)
}

/// A typed placeholder for a JSON-schema node.
fn placeholder(schema: &Value, depth: usize) -> Value {
    if depth > 16 {
        return Value::Null;
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        return options.first().cloned().unwrap_or(Value::Null);
    }
    let ty = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "null",
    };
    match ty {
        "string" => Value::String(
            match schema.get("format").and_then(Value::as_str) {
                Some("date") => "1970-01-01",
                Some("date-time") => "1970-01-01T00:00:00Z",
                Some("email") => "emulated@example.invalid",
                Some("uri") | Some("url") => "http://example.invalid/",
                _ => "emulated",
            }
            .to_owned(),
        ),
        "number" => json!(0.0),
        "integer" => json!(0),
        "boolean" => Value::Bool(false),
        "array" => match schema.get("items") {
            Some(items) => Value::Array(vec![placeholder(items, depth + 1)]),
            None => Value::Array(Vec::new()),
        },
        "object" => {
            let mut m = Map::new();
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (k, s) in props {
                    m.insert(k.clone(), placeholder(s, depth + 1));
                }
            }
            Value::Object(m)
        }
        _ => Value::Null,
    }
}

/// The raw body of a manifest in `format` (`?format=`), and its content type.
pub(crate) fn manifest_as(
    manifest: &Manifest,
    format: ResultFormat,
    delimiter: char,
) -> (String, &'static str) {
    let ct = content_type(format);
    match manifest {
        Manifest::Raw { format: f, body } if ResultFormat::parse(f) == Some(format) => {
            (body.clone(), ct)
        }
        Manifest::Raw { body, .. } => (
            to_format(&Value::String(body.clone()), format, delimiter),
            ct,
        ),
        Manifest::Json(m) => (to_format(&Value::Object(m.to_map()), format, delimiter), ct),
    }
}

fn content_type(format: ResultFormat) -> &'static str {
    match format {
        ResultFormat::Json => "application/json",
        ResultFormat::Yaml => "application/x-yaml; charset=utf-8",
        ResultFormat::Xml => "application/xml; charset=utf-8",
        ResultFormat::Csv => "text/csv; charset=utf-8",
        ResultFormat::Text => "text/plain; charset=utf-8",
    }
}

/// Writes a JSON value as YAML, XML, CSV (one header row of flattened keys and one data row)
/// or plain `key: value` text.
pub(crate) fn to_format(v: &Value, format: ResultFormat, delimiter: char) -> String {
    let mut out = String::new();
    match format {
        ResultFormat::Json => out = v.to_string(),
        ResultFormat::Yaml => yaml(v, 0, &mut out),
        ResultFormat::Xml => {
            out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<result>");
            xml(v, &mut out);
            out.push_str("</result>\n");
        }
        ResultFormat::Csv => {
            let mut cols = Vec::new();
            flatten("", v, &mut cols);
            let d = delimiter.to_string();
            let header: Vec<String> = cols.iter().map(|(k, _)| csv_cell(k, delimiter)).collect();
            let row: Vec<String> = cols.iter().map(|(_, v)| csv_cell(v, delimiter)).collect();
            out.push_str(&header.join(&d));
            out.push('\n');
            out.push_str(&row.join(&d));
            out.push('\n');
        }
        ResultFormat::Text => {
            let mut cols = Vec::new();
            flatten("", v, &mut cols);
            for (k, v) in cols {
                if k.is_empty() {
                    out.push_str(&v);
                } else {
                    out.push_str(&k);
                    out.push_str(": ");
                    out.push_str(&v);
                }
                out.push('\n');
            }
        }
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&key(k), v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out);
            }
        }
        other => out.push((prefix.to_owned(), scalar(other))),
    }
}

fn csv_cell(s: &str, delimiter: char) -> String {
    if s.contains(delimiter) || s.contains('"') || s.contains('\n') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                match v {
                    Value::Object(c) if !c.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yaml(v, indent + 2, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yaml(v, indent + 2, out);
                    }
                    other => out.push_str(&format!("{pad}{k}: {}\n", yaml_inline(other))),
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for v in a {
                match v {
                    Value::Object(c) if !c.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        yaml(v, indent + 2, out);
                    }
                    other => out.push_str(&format!("{pad}- {}\n", yaml_inline(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", yaml_inline(other))),
    }
}

fn yaml_inline(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => yaml_scalar(other),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_name(k: &str) -> String {
    let mut s: String = k
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        s.insert(0, '_');
    }
    s
}

fn xml(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let name = xml_name(k);
                out.push_str(&format!("<{name}>"));
                xml(v, out);
                out.push_str(&format!("</{name}>"));
            }
        }
        Value::Array(a) => {
            for v in a {
                out.push_str("<item>");
                xml(v, out);
                out.push_str("</item>");
            }
        }
        other => out.push_str(&xml_escape(&scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ImageFacts {
        ImageFacts {
            format: "jpeg",
            width: 640,
            height: 480,
            bytes: 1234,
            content_hash: "xxh3-00000000000000000000000000000001".into(),
            file_name: None,
        }
    }

    #[test]
    fn classification_stand_in() {
        let p = pattern(
            PatternFormat::Json,
            Some(json!({"type": "object", "properties": {
                "doc_type": {"type": "string", "enum": ["invoice", "receipt", "menu", "receipt_scan"]}
            }})),
        );
        let pick = |name: Option<&str>, hash: &str| {
            let mut f = facts();
            f.file_name = name.map(str::to_owned);
            f.content_hash = hash.into();
            let Manifest::Json(m) = manifest(&p, &f) else {
                panic!("json expected")
            };
            m.to_map()["doc_type"].clone()
        };
        let h0 = "xxh3-00000000000000000000000000000001";
        assert_eq!(pick(Some("Scan-INVOICE-7.jpg"), h0), json!("invoice"));
        assert_eq!(pick(Some("receipt_scan_2.png"), h0), json!("receipt_scan"));
        assert_eq!(pick(Some("car.jpg"), h0), json!("invoice"));
        let h2 = "xxh3-0000000000000002ffffffffffffffff";
        assert_eq!(pick(None, h2), json!("menu"));
        assert_eq!(pick(Some("car.jpg"), h2), pick(Some("car.jpg"), h2));
    }

    fn pattern(format: PatternFormat, schema: Option<Value>) -> Pattern {
        serde_json::from_value::<Pattern>(json!({
            "id": "p1", "name": "n", "instructions": "i", "version": 3
        }))
        .map(|mut p| {
            p.format = format;
            p.json_schema = schema;
            p
        })
        .unwrap()
    }

    #[test]
    fn json_manifest_has_facts_and_typed_placeholders() {
        let p = pattern(
            PatternFormat::Json,
            Some(json!({"type": "object", "properties": {
                "total": {"type": "number"},
                "count": {"type": "integer"},
                "vendor": {"type": "string"},
                "paid": {"type": "boolean"},
                "date": {"type": "string", "format": "date"},
                "kind": {"type": "string", "enum": ["receipt", "invoice"]},
                "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
                "maybe": {"type": ["null", "integer"]}
            }})),
        );
        let Manifest::Json(m) = manifest(&p, &facts()) else {
            panic!("json expected")
        };
        let m = m.to_map();
        assert_eq!(m["total"], json!(0.0));
        assert_eq!(m["count"], json!(0));
        assert_eq!(m["vendor"], json!("emulated"));
        assert_eq!(m["paid"], json!(false));
        assert_eq!(m["date"], json!("1970-01-01"));
        assert_eq!(m["kind"], json!("receipt"));
        assert_eq!(m["items"], json!([{"sku": "emulated"}]));
        assert_eq!(m["maybe"], json!(0));
        assert_eq!(m["_emulator"]["width"], json!(640));
        assert_eq!(m["_emulator"]["pattern_version"], json!(3));
        // Deterministic.
        assert_eq!(Manifest::Json(m.into()), manifest(&p, &facts()));
    }

    #[test]
    fn raw_formats() {
        let mut p = pattern(PatternFormat::Csv, None);
        p.csv_delimiter = Some("semicolon".into());
        let Manifest::Raw { format, body } = manifest(&p, &facts()) else {
            panic!("raw expected")
        };
        assert_eq!(format, "csv");
        let lines: Vec<Vec<&str>> = body.lines().map(|l| l.split(';').collect()).collect();
        assert_eq!(lines.len(), 2, "{body}");
        let col = |name: &str| lines[0].iter().position(|c| *c == name).unwrap();
        assert_eq!(lines[1][col("width")], "640");
        assert_eq!(lines[1][col("height")], "480");
        assert_eq!(lines[1][col("format")], "jpeg");

        let v = json!({"a": {"b": [1, "x"]}, "c": "q<&>"});
        let y = to_format(&v, ResultFormat::Yaml, ',');
        assert_eq!(y, "a:\n  b:\n    - 1\n    - \"x\"\nc: \"q<&>\"\n");
        let x = to_format(&v, ResultFormat::Xml, ',');
        assert!(x.contains("<a><b><item>1</item><item>x</item></b></a><c>q&lt;&amp;&gt;</c>"));
        let t = to_format(&v, ResultFormat::Text, ',');
        assert_eq!(t, "a.b.0: 1\na.b.1: x\nc: q<&>\n");
    }

    #[test]
    fn docs_dialect_job() {
        let job: Job = serde_json::from_value(json!({
            "id": "j", "status": "failed", "error": "boom", "latency_ms": 5
        }))
        .unwrap();
        let v = job_docs_value(&job);
        assert_eq!(v["job_id"], "j");
        assert_eq!(v["status"], "failed");
        assert_eq!(v["error"]["message"], "boom");
        assert_eq!(v["processing_time_ms"], 5);
        let back: Job = serde_json::from_value(v).unwrap();
        assert_eq!(back.status, JobStatus::Failed);
    }
}
