//! Routing by document type: which pattern each input runs with.
//!
//! [`Routes`] holds, in order of precedence:
//!
//! 1. glob rules (`--route GLOB=PATTERN_ID`), tried in the order given, the first match
//!    winning. A glob is matched against the input's [route name](crate::RoutedInput):
//!    its path relative to the directory argument it was found under, the file name of a
//!    file argument, the path of a URL. `*` and `?` stay inside one path component, `**`
//!    crosses them (`**/invoice*` matches `invoice-1.jpg` and `2024/invoice-2.jpg`);
//!    matching is case-sensitive;
//! 2. classification (`--classify PATTERN_ID --class-field FIELD --route-class
//!    VALUE=PATTERN_ID`): a classification pattern reads the image first, the string at
//!    `FIELD` of its manifest (a top-level field or a dotted path, `doc.type`) is the
//!    input's class, and the class picks the extraction pattern;
//! 3. the fallback pattern (`--pattern`).
//!
//! An input that none of them routes fails with code [`NO_ROUTE`], naming the input (and
//! its class, when it has one).

use globset::{GlobBuilder, GlobMatcher};
use imggo_core::Error;
use serde_json::Value;

/// The error code of an input that no route, class or fallback pattern takes.
pub const NO_ROUTE: &str = "NO_ROUTE";

/// The classification stage: the pattern that reads the class, where the class is in its
/// manifest, and the extraction pattern of each class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassifySpec {
    /// The classification pattern.
    pub pattern_id: String,
    /// Where the class is in the classification manifest: a top-level field, or a dotted
    /// path (`document.type`).
    pub field: String,
    /// `(class, extraction pattern)`, in the order given; the first entry of a class wins.
    pub classes: Vec<(String, String)>,
}

/// One `--route GLOB=PATTERN_ID`.
#[derive(Debug, Clone)]
struct Rule {
    glob: String,
    matcher: GlobMatcher,
    pattern_id: String,
}

/// Where an input goes, as far as its name tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Run it with this pattern.
    Pattern(String),
    /// Classify it first (see [`Routes::for_class`]).
    Classify,
    /// Nothing takes it: a failed line [`NO_ROUTE`].
    NoRoute,
}

/// The routing table of a run (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    rules: Vec<Rule>,
    fallback: Option<String>,
    classify: Option<ClassifySpec>,
}

impl Routes {
    /// Every input runs with `pattern_id`.
    pub fn single(pattern_id: impl Into<String>) -> Self {
        Self {
            fallback: Some(pattern_id.into()).filter(|p: &String| !p.is_empty()),
            ..Self::default()
        }
    }

    /// The table of `rules` (`(glob, pattern)` in order), the optional classification
    /// stage and the fallback pattern (empty or `None`: no fallback). A glob that does
    /// not parse, an empty pattern id, or a classification without a field or classes is
    /// a [`Error::Config`] naming it.
    pub fn new(
        rules: &[(String, String)],
        classify: Option<ClassifySpec>,
        fallback: Option<String>,
    ) -> Result<Self, Error> {
        let mut out = Vec::with_capacity(rules.len());
        for (glob, pattern_id) in rules {
            let matcher = GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::Config(format!("--route {glob}={pattern_id}: {e}")))?
                .compile_matcher();
            if pattern_id.trim().is_empty() {
                return Err(Error::Config(format!("--route {glob}=: no pattern id")));
            }
            out.push(Rule {
                glob: glob.clone(),
                matcher,
                pattern_id: pattern_id.clone(),
            });
        }
        if let Some(c) = &classify {
            if c.pattern_id.trim().is_empty() {
                return Err(Error::Config("--classify: no pattern id".into()));
            }
            if c.field.trim().is_empty() {
                return Err(Error::Config("--classify needs --class-field".into()));
            }
            if let Some((class, _)) = c.classes.iter().find(|(_, p)| p.trim().is_empty()) {
                return Err(Error::Config(format!(
                    "--route-class {class}=: no pattern id"
                )));
            }
        }
        Ok(Self {
            rules: out,
            fallback: fallback.filter(|p| !p.is_empty()),
            classify,
        })
    }

    /// The same table with `pattern_id` as its fallback (empty: none).
    pub fn with_fallback(mut self, pattern_id: impl Into<String>) -> Self {
        self.fallback = Some(pattern_id.into()).filter(|p: &String| !p.is_empty());
        self
    }

    /// The fallback pattern, if any.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The classification stage, if any.
    pub fn classify(&self) -> Option<&ClassifySpec> {
        self.classify.as_ref()
    }

    /// Whether anything but the fallback routes (globs or classification).
    pub fn is_routing(&self) -> bool {
        !self.rules.is_empty() || self.classify.is_some()
    }

    /// Whether the table can route anything at all.
    pub fn is_empty(&self) -> bool {
        !self.is_routing() && self.fallback.is_none()
    }

    /// Where an input with route name `name` goes: the first glob that matches, else
    /// classification, else the fallback.
    pub fn route(&self, name: &str) -> Route {
        if let Some(r) = self.rules.iter().find(|r| r.matcher.is_match(name)) {
            return Route::Pattern(r.pattern_id.clone());
        }
        if self.classify.is_some() {
            return Route::Classify;
        }
        match &self.fallback {
            Some(p) => Route::Pattern(p.clone()),
            None => Route::NoRoute,
        }
    }

    /// The extraction pattern of `class`: its `--route-class`, else the fallback.
    pub fn for_class(&self, class: &str) -> Option<&str> {
        self.classify
            .as_ref()
            .and_then(|c| c.classes.iter().find(|(v, _)| v == class))
            .map(|(_, p)| p.as_str())
            .or(self.fallback.as_deref())
    }

    /// Every pattern the table may use, each once, in a stable order.
    pub fn patterns(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let mut add = |p: &str| {
            if !all.iter().any(|a| a == p) {
                all.push(p.to_owned());
            }
        };
        if let Some(f) = &self.fallback {
            add(f);
        }
        for r in &self.rules {
            add(&r.pattern_id);
        }
        if let Some(c) = &self.classify {
            add(&c.pattern_id);
            for (_, p) in &c.classes {
                add(p);
            }
        }
        all
    }

    /// The globs in order (for logs).
    pub fn globs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules
            .iter()
            .map(|r| (r.glob.as_str(), r.pattern_id.as_str()))
    }
}

/// The class in a classification manifest: the value at `field` (a top-level key, or
/// a dotted path when no top-level key has that name) as text. A string is taken as is, a
/// number or a boolean as written; anything else (absent, null, an object) is no class.
pub fn class_of(manifest: &Value, field: &str) -> Option<String> {
    let at = manifest
        .get(field)
        .or_else(|| field.split('.').try_fold(manifest, |v, part| v.get(part)))?;
    match at {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Splits a `KEY=PATTERN_ID` flag value at its last `=` (a glob may hold `=`, a pattern
/// id does not). `flag` names the flag in the error.
pub fn split_assignment(flag: &str, value: &str) -> Result<(String, String), Error> {
    match value.rsplit_once('=') {
        Some((k, p)) if !k.is_empty() && !p.trim().is_empty() => {
            Ok((k.to_owned(), p.trim().to_owned()))
        }
        _ => Err(Error::Config(format!(
            "{flag} {value:?}: want KEY=PATTERN_ID"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(r: &[(&str, &str)]) -> Vec<(String, String)> {
        r.iter()
            .map(|(g, p)| (g.to_string(), p.to_string()))
            .collect()
    }

    #[test]
    fn first_match_wins_then_fallback() {
        let r = Routes::new(
            &rules(&[("invoices/**", "inv"), ("**/*.png", "png"), ("*", "any")]),
            None,
            Some("fb".into()),
        )
        .unwrap();
        assert_eq!(r.route("invoices/a.png"), Route::Pattern("inv".into()));
        assert_eq!(r.route("scans/b.png"), Route::Pattern("png".into()));
        assert_eq!(r.route("c.jpg"), Route::Pattern("any".into()));
        assert_eq!(r.route("d/c.jpg"), Route::Pattern("fb".into()));
        let none = Routes::new(&rules(&[("*.png", "png")]), None, None).unwrap();
        assert_eq!(none.route("a.jpg"), Route::NoRoute);
        assert_eq!(r.patterns(), vec!["fb", "inv", "png", "any"]);
    }

    #[test]
    fn bad_globs_and_flags_are_named() {
        let e = Routes::new(&rules(&[("a[", "p")]), None, None).unwrap_err();
        assert!(e.to_string().contains("--route a[=p"), "{e}");
        assert!(split_assignment("--route", "x").is_err());
        assert!(split_assignment("--route", "=p").is_err());
        assert_eq!(
            split_assignment("--route", "a=b=p").unwrap(),
            ("a=b".into(), "p".into())
        );
    }

    #[test]
    fn classes_and_fields() {
        let c = ClassifySpec {
            pattern_id: "cls".into(),
            field: "type".into(),
            classes: rules(&[("invoice", "inv"), ("receipt", "rec")]),
        };
        let r = Routes::new(&[], Some(c.clone()), None).unwrap();
        assert_eq!(r.route("x.jpg"), Route::Classify);
        assert_eq!(r.for_class("receipt"), Some("rec"));
        assert_eq!(r.for_class("menu"), None);
        let r = Routes::new(&[], Some(c), Some("fb".into())).unwrap();
        assert_eq!(r.for_class("menu"), Some("fb"));
        let m = json!({"type": " invoice ", "doc": {"kind": "receipt"}, "n": 3, "o": {}});
        assert_eq!(class_of(&m, "type").as_deref(), Some("invoice"));
        assert_eq!(class_of(&m, "doc.kind").as_deref(), Some("receipt"));
        assert_eq!(class_of(&m, "n").as_deref(), Some("3"));
        assert_eq!(class_of(&m, "o"), None);
        assert_eq!(class_of(&m, "missing"), None);
        let bad = ClassifySpec {
            field: String::new(),
            ..ClassifySpec::default()
        };
        assert!(Routes::new(&[], Some(bad), None).is_err());
    }
}
