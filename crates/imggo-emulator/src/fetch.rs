//! Fetching `image_url` ingests over plain HTTP.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use imggo_core::ContentHash;

use crate::lifecycle::facts_with_hash;
use crate::render::ImageFacts;
use crate::state::State;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches `url` and reads the image's facts. Every failure is an invalid-image message
/// naming the URL, which fails the job.
pub(crate) async fn image(state: &State, url: &str) -> Result<ImageFacts, String> {
    let bytes = match tokio::time::timeout(FETCH_TIMEOUT, get(state, url)).await {
        Ok(r) => r?,
        Err(_) => return Err(format!("Invalid image: fetching {url} timed out")),
    };
    if imggo_core::format::sniff(&bytes).is_none() {
        return Err(format!("Invalid image: {url} is not a supported image"));
    }
    let hash = ContentHash::of(&bytes);
    state.counters.ingest_received(hash.as_u128());
    facts_with_hash(&bytes, hash).map(|mut f| {
        // The last segment of the URL's path names the image, like an upload's file name.
        let path = url.split(['?', '#']).next().unwrap_or(url);
        f.file_name = path.rsplit('/').next().map(str::to_owned);
        f
    })
}

async fn get(state: &State, url: &str) -> Result<Bytes, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("Invalid image: cannot fetch {url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "Invalid image: cannot fetch {url}: only http:// URLs are fetched by the emulator"
        ));
    }
    let req = Request::get(uri)
        .header(http::header::USER_AGENT, "imggo-emulator")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("Invalid image: cannot fetch {url}: {e}"))?;
    let resp = state
        .client
        .request(req)
        .await
        .map_err(|e| format!("Invalid image: cannot fetch {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "Invalid image: fetching {url} returned HTTP {}",
            resp.status().as_u16()
        ));
    }
    let limited = Limited::new(resp.into_body(), state.config.max_image_bytes);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| format!("Invalid image: reading {url}: {e}"))
}
