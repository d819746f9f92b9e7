//! Routing: which handler a method and path go to, and the label stats count it under.

use http::Method;

/// A known route. [`Route::label`] is the key of [`Stats::requests`](crate::Stats::requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Health,
    Stats,
    ListPatterns,
    CreatePattern,
    GetPattern(&'a str),
    PatchPattern(&'a str),
    DeletePattern(&'a str),
    Ingest(&'a str),
    ListJobs,
    GetJob(&'a str),
    ListWebhooks,
    CreateWebhook,
    DeleteWebhook(&'a str),
    Usage,
    ListApiKeys,
    CreateApiKey,
    DeleteApiKey(&'a str),
    SignedUpload,
    DemoProcess,
    DemoStatus(&'a str),
    /// A known path with a method it does not take, and the methods it takes (for `Allow`).
    MethodNotAllowed(Vec<Method>),
    /// No such path.
    NotFound,
}

impl<'a> Route<'a> {
    /// Matches `method` and `path` (which includes the `/api` prefix).
    pub(crate) fn of(method: &Method, path: &'a str) -> Self {
        let Some(rest) = path.strip_prefix("/api/") else {
            return Self::NotFound;
        };
        let rest = rest.trim_end_matches('/');
        let mut segs = rest.split('/');
        let a = segs.next().unwrap_or("");
        let b = segs.next();
        let c = segs.next();
        if segs.next().is_some() {
            return Self::NotFound;
        }
        let m = method;
        let nonempty = |s: Option<&'a str>| s.filter(|s| !s.is_empty());
        match (a, nonempty(b), nonempty(c)) {
            ("_health", None, None) => pick(m, &[(Method::GET, Self::Health)]),
            ("_emulator", Some("stats"), None) => pick(m, &[(Method::GET, Self::Stats)]),
            ("patterns", None, None) => pick(
                m,
                &[
                    (Method::GET, Self::ListPatterns),
                    (Method::POST, Self::CreatePattern),
                ],
            ),
            ("patterns", Some(id), None) => pick(
                m,
                &[
                    (Method::GET, Self::GetPattern(id)),
                    (Method::PATCH, Self::PatchPattern(id)),
                    (Method::DELETE, Self::DeletePattern(id)),
                ],
            ),
            ("patterns", Some(id), Some("ingest")) => pick(m, &[(Method::POST, Self::Ingest(id))]),
            ("jobs", None, None) => pick(m, &[(Method::GET, Self::ListJobs)]),
            ("jobs", Some(id), None) => pick(m, &[(Method::GET, Self::GetJob(id))]),
            ("webhooks", None, None) => pick(
                m,
                &[
                    (Method::GET, Self::ListWebhooks),
                    (Method::POST, Self::CreateWebhook),
                ],
            ),
            ("webhooks", Some(id), None) => pick(m, &[(Method::DELETE, Self::DeleteWebhook(id))]),
            ("user", Some("usage"), None) => pick(m, &[(Method::GET, Self::Usage)]),
            ("api-keys", None, None) => pick(
                m,
                &[
                    (Method::GET, Self::ListApiKeys),
                    (Method::POST, Self::CreateApiKey),
                ],
            ),
            ("api-keys", Some(id), None) => pick(m, &[(Method::DELETE, Self::DeleteApiKey(id))]),
            ("uploads", Some("signed-url"), None) => pick(m, &[(Method::POST, Self::SignedUpload)]),
            ("demo", Some("process"), None) => pick(m, &[(Method::POST, Self::DemoProcess)]),
            ("demo", Some("status"), Some(id)) => pick(m, &[(Method::GET, Self::DemoStatus(id))]),
            _ => Self::NotFound,
        }
    }

    /// The stats label: method and path template.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Health => "GET /api/_health",
            Self::Stats => "GET /api/_emulator/stats",
            Self::ListPatterns => "GET /api/patterns",
            Self::CreatePattern => "POST /api/patterns",
            Self::GetPattern(_) => "GET /api/patterns/{id}",
            Self::PatchPattern(_) => "PATCH /api/patterns/{id}",
            Self::DeletePattern(_) => "DELETE /api/patterns/{id}",
            Self::Ingest(_) => "POST /api/patterns/{id}/ingest",
            Self::ListJobs => "GET /api/jobs",
            Self::GetJob(_) => "GET /api/jobs/{id}",
            Self::ListWebhooks => "GET /api/webhooks",
            Self::CreateWebhook => "POST /api/webhooks",
            Self::DeleteWebhook(_) => "DELETE /api/webhooks/{id}",
            Self::Usage => "GET /api/user/usage",
            Self::ListApiKeys => "GET /api/api-keys",
            Self::CreateApiKey => "POST /api/api-keys",
            Self::DeleteApiKey(_) => "DELETE /api/api-keys/{id}",
            Self::SignedUpload => "POST /api/uploads/signed-url",
            Self::DemoProcess => "POST /api/demo/process",
            Self::DemoStatus(_) => "GET /api/demo/status/{job_id}",
            Self::MethodNotAllowed(_) | Self::NotFound => "unmatched",
        }
    }

    /// Routes that need no API key.
    pub(crate) fn is_public(&self) -> bool {
        matches!(
            self,
            Self::Health
                | Self::Stats
                | Self::DemoProcess
                | Self::DemoStatus(_)
                | Self::NotFound
                | Self::MethodNotAllowed(_)
        )
    }

    /// Routes that fault injection leaves alone (the emulator's own control routes).
    pub(crate) fn is_control(&self) -> bool {
        matches!(self, Self::Stats)
    }
}

/// The route of method `m` among a path's `options`, or [`Route::MethodNotAllowed`] with
/// the methods the path takes.
fn pick<'a>(m: &Method, options: &[(Method, Route<'a>)]) -> Route<'a> {
    options.iter().find(|(om, _)| om == m).map_or_else(
        || Route::MethodNotAllowed(options.iter().map(|(om, _)| om.clone()).collect()),
        |(_, r)| r.clone(),
    )
}

/// The value of an `Allow` header: the methods, comma-separated.
pub(crate) fn allow_header(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of query parameter `name` (no percent-decoding: the emulator's parameters
/// are plain words and numbers).
pub(crate) fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_routes() {
        assert_eq!(
            Route::of(&Method::GET, "/api/jobs/abc"),
            Route::GetJob("abc")
        );
        assert_eq!(
            Route::of(&Method::POST, "/api/patterns/p1/ingest"),
            Route::Ingest("p1")
        );
        assert_eq!(
            Route::of(&Method::GET, "/api/patterns/"),
            Route::ListPatterns
        );
        assert_eq!(
            Route::of(&Method::PUT, "/api/patterns/p1"),
            Route::MethodNotAllowed(vec![Method::GET, Method::PATCH, Method::DELETE])
        );
        assert_eq!(
            Route::of(&Method::TRACE, "/api/_health"),
            Route::MethodNotAllowed(vec![Method::GET])
        );
        assert_eq!(
            Route::of(&Method::DELETE, "/api/api-keys/k1"),
            Route::DeleteApiKey("k1")
        );
        assert_eq!(
            Route::of(&Method::GET, "/api/demo/status/j1"),
            Route::DemoStatus("j1")
        );
        assert_eq!(
            allow_header(&[Method::GET, Method::POST]),
            "GET, POST".to_owned()
        );
        assert_eq!(Route::of(&Method::GET, "/jobs/x"), Route::NotFound);
        assert_eq!(Route::of(&Method::GET, "/api/jobs/x/y/z"), Route::NotFound);
        assert_eq!(Route::of(&Method::GET, "/api/_health"), Route::Health);
    }

    #[test]
    fn query() {
        assert_eq!(query_param(Some("a=1&format=yaml"), "format"), Some("yaml"));
        assert_eq!(query_param(Some("a=1"), "format"), None);
        assert_eq!(query_param(None, "format"), None);
    }
}
