//! Patterns: the instructions and schema a job is run with.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The output format of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum PatternFormat {
    /// JSON (the default).
    #[default]
    Json,
    /// YAML.
    Yaml,
    /// XML.
    Xml,
    /// CSV.
    Csv,
    /// Plain text.
    Text,
    /// A format this crate does not know.
    Unknown(String),
}

impl PatternFormat {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Json => "json",
            Self::Yaml => "yaml",
            Self::Xml => "xml",
            Self::Csv => "csv",
            Self::Text => "text",
            Self::Unknown(s) => s,
        }
    }

    /// Parses any case; unknown values become [`PatternFormat::Unknown`].
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "json" => Self::Json,
            "yaml" | "yml" => Self::Yaml,
            "xml" => Self::Xml,
            "csv" => Self::Csv,
            "text" | "plain_text" | "txt" => Self::Text,
            _ => Self::Unknown(s.to_owned()),
        }
    }
}

serde_via_str!(PatternFormat);

/// A pattern as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// Opaque id (a UUID on the server).
    pub id: String,
    /// Owner.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Output format.
    #[serde(default)]
    pub format: PatternFormat,
    /// JSON schema of the manifest, for JSON patterns.
    #[serde(default)]
    pub json_schema: Option<Value>,
    /// YAML schema, for YAML patterns.
    #[serde(default)]
    pub yaml_schema: Option<String>,
    /// XML schema, for XML patterns.
    #[serde(default)]
    pub xml_schema: Option<String>,
    /// CSV header schema, for CSV patterns.
    #[serde(default)]
    pub csv_schema: Option<String>,
    /// `comma` or `semicolon`.
    #[serde(default)]
    pub csv_delimiter: Option<String>,
    /// Plain-text template, for text patterns.
    #[serde(default)]
    pub plain_text_schema: Option<String>,
    /// Instructions for the model.
    #[serde(default)]
    pub instructions: String,
    /// Model profile.
    #[serde(default)]
    pub model_profile: Option<String>,
    /// Version, bumped by updates; part of every cache key.
    #[serde(default = "one")]
    pub version: u32,
    /// Whether ingests are accepted.
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update (RFC 3339).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// The pattern this one was derived from.
    #[serde(default)]
    pub parent_pattern_id: Option<String>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// The output-format schemas of a pattern request ([`CreatePattern`], [`UpdatePattern`]):
/// top-level fields on the wire, each sent only when set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PatternSchemas {
    /// JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
    /// YAML schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yaml_schema: Option<String>,
    /// XML schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml_schema: Option<String>,
    /// CSV schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_schema: Option<String>,
    /// CSV delimiter (`comma`, `semicolon`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_delimiter: Option<String>,
    /// Plain-text schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_text_schema: Option<String>,
}

impl PatternSchemas {
    /// Only a JSON schema, the usual case.
    pub fn json(schema: Value) -> Self {
        Self {
            json_schema: Some(schema),
            ..Self::default()
        }
    }
}

/// Body of `POST /api/patterns`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CreatePattern {
    /// Display name (`^[a-zA-Z0-9\s\-_()]+$`, at most 255 chars).
    pub name: String,
    /// Instructions (at most 2000 chars).
    pub instructions: String,
    /// Output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<PatternFormat>,
    /// The schemas for the output formats, on the wire as top-level fields.
    #[serde(flatten)]
    pub schemas: PatternSchemas,
    /// Model profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_profile: Option<String>,
    /// Initial version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Active flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    /// Parent pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_pattern_id: Option<String>,
}

/// Body of `PATCH /api/patterns/{id}`: only the fields that are set are sent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdatePattern {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<PatternFormat>,
    /// New instructions (10 to 2000 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// New schemas (only those set are sent), on the wire as top-level fields.
    #[serde(flatten)]
    pub schemas: PatternSchemas,
    /// New active flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
    /// Publish as a new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_new_version: Option<bool>,
}

/// Query of `GET /api/patterns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListPatterns {
    /// 1-based page (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Page size, 1 to 100 (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
    /// Only active or only inactive patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

impl ListPatterns {
    /// The query string, without the leading `?` (empty when nothing is set).
    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = self.page {
            parts.push(format!("page={p}"));
        }
        if let Some(p) = self.per_page {
            parts.push(format!("per_page={p}"));
        }
        if let Some(a) = self.is_active {
            parts.push(format!("is_active={a}"));
        }
        parts.join("&")
    }
}
