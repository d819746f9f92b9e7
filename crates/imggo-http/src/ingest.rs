//! Ingest: an image (multipart) or an image URL (JSON) into a pattern, with an
//! idempotency key in the body and in the `Idempotency-Key` header.

use bytes::Bytes;
use http::Method;
use imggo_core::format::ImageFormat;
use imggo_core::{ContentHash, Error, IdempotencyKey, IngestRequest, IngestResponse};

use crate::client::{Call, Client, RetryMode};
use crate::multipart::MultipartBuilder;
use crate::transport::{decode, segment};

/// The largest upload the ingest route accepts (10 MiB).
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

/// Options of an ingest.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// The key to send; derived from pattern, content and extras when `None`.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Caller metadata kept on the job (a JSON object).
    pub extras: Option<serde_json::Value>,
    /// The content hash of the original input, when the caller already has it: the key is
    /// derived from it (no rehash), so an optimised upload keeps its original's key.
    pub content_hash: Option<ContentHash>,
    /// The upload's file name; its stem is kept, the extension follows the sniffed format.
    pub file_name: Option<String>,
    /// Send once and return the first failure, 429s included, instead of retrying
    /// through the client's [`RetryPolicy`](imggo_core::RetryPolicy): for callers that run
    /// their own loop and pass a limiter before every attempt (the batch pipeline does).
    pub single_attempt: bool,
}

/// An accepted ingest: a 202 (new job) or a 200 (the key's existing job, maybe terminal).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The server's answer.
    pub response: IngestResponse,
    /// Attempts it took (1 = no retry).
    pub attempts: u32,
    /// 202 for a new job, 200 for an existing one.
    pub http_status: u16,
    /// The key that was sent.
    pub idempotency_key: IdempotencyKey,
    /// The answer's `X-Request-ID`, when it had one (for logs and support tickets).
    pub request_id: Option<String>,
}

impl Accepted {
    /// True when the server answered with an existing job (a repeated key).
    pub fn is_duplicate(&self) -> bool {
        self.http_status == 200
    }
}

impl Client {
    /// Uploads `image` to `pattern_id` as `multipart/form-data` (field `image`, file name
    /// and MIME from the sniffed format, plus `idempotency_key` and `extras` fields).
    ///
    /// The body is built once, so every retry sends identical bytes with the same key:
    /// a retried upload finds the job the first attempt created instead of making a second.
    ///
    /// Errors: [`Error::InvalidInput`] for an empty pattern id, bytes that are not a
    /// JPEG/PNG/WebP/GIF/BMP, more than [`MAX_UPLOAD_BYTES`], or extras that are not an
    /// object; otherwise what the server or the transport said.
    pub async fn ingest_bytes(
        &self,
        pattern_id: &str,
        image: Bytes,
        opts: IngestOptions,
    ) -> Result<Accepted, Error> {
        let path = ingest_path(pattern_id)?;
        let input = || {
            opts.file_name
                .clone()
                .unwrap_or_else(|| "image bytes".to_owned())
        };
        let format = ImageFormat::sniff(&image).ok_or_else(|| Error::InvalidInput {
            input: input(),
            reason: "not a JPEG, PNG, WebP, GIF or BMP image (checked by content)".into(),
        })?;
        if image.len() > MAX_UPLOAD_BYTES {
            return Err(Error::InvalidInput {
                input: input(),
                reason: format!(
                    "{} bytes is over the {MAX_UPLOAD_BYTES}-byte upload limit",
                    image.len()
                ),
            });
        }
        check_extras(opts.extras.as_ref())?;
        let hash = opts.content_hash.unwrap_or_else(|| ContentHash::of(&image));
        let key = opts
            .idempotency_key
            .clone()
            .unwrap_or_else(|| IdempotencyKey::derive(pattern_id, &hash, opts.extras.as_ref()));
        let file_name = upload_file_name(opts.file_name.as_deref(), format);

        let mut form = MultipartBuilder::new(hash.as_u128(), image.len())
            .text("idempotency_key", key.as_str());
        if let Some(extras) = &opts.extras {
            form = form.text("extras", &extras.to_string());
        }
        let form = form
            .file("image", &file_name, format.mime(), &image)
            .finish();

        let mut call = Call::new(Method::POST, self.request_path(&path));
        call.body = Some((form.body, &form.content_type));
        self.submit(call, &key, opts.single_attempt).await
    }

    /// Submits `image_url` to `pattern_id` as JSON `{image_url, idempotency_key, extras}`:
    /// the service fetches the URL itself, nothing is downloaded here.
    ///
    /// Without a key or content hash in `opts`, the key is derived from the URL text.
    pub async fn ingest_url(
        &self,
        pattern_id: &str,
        image_url: &str,
        opts: IngestOptions,
    ) -> Result<Accepted, Error> {
        let path = ingest_path(pattern_id)?;
        let url = imggo_core::url::HttpUrl::parse(image_url).map_err(|e| Error::InvalidInput {
            input: format!("image URL {image_url:?}"),
            reason: format!("{e}: it must be an absolute http:// or https:// URL"),
        })?;
        let url = url.as_str();
        check_extras(opts.extras.as_ref())?;
        let hash = opts
            .content_hash
            .unwrap_or_else(|| ContentHash::of(url.as_bytes()));
        let key = opts
            .idempotency_key
            .clone()
            .unwrap_or_else(|| IdempotencyKey::derive(pattern_id, &hash, opts.extras.as_ref()));
        let body = serde_json::to_vec(&IngestRequest {
            image_url: url.to_owned(),
            extras: opts.extras.clone(),
            idempotency_key: Some(key.as_str().to_owned()),
        })
        .map_err(|e| Error::InvalidInput {
            input: "ingest extras".into(),
            reason: e.to_string(),
        })?;

        let call = Call::new(Method::POST, self.request_path(&path)).json(body.into());
        self.submit(call, &key, opts.single_attempt).await
    }

    /// Sends an ingest call with its `Idempotency-Key` header; retried (the key makes that
    /// safe) unless `single_attempt`.
    async fn submit<'a>(
        &self,
        mut call: Call<'a>,
        key: &'a IdempotencyKey,
        single_attempt: bool,
    ) -> Result<Accepted, Error> {
        call.idempotency_key = Some(key.as_str());
        call.retry = if single_attempt {
            RetryMode::Never
        } else {
            RetryMode::Idempotent
        };
        let reply = self.execute(call).await?;
        let response: IngestResponse = decode(&reply.body, "ingest response")?;
        Ok(Accepted {
            response,
            attempts: reply.attempts,
            http_status: reply.status,
            idempotency_key: key.clone(),
            request_id: reply.header("x-request-id").map(str::to_owned),
        })
    }
}

fn ingest_path(pattern_id: &str) -> Result<String, Error> {
    Ok(format!(
        "/patterns/{}/ingest",
        segment("pattern id", pattern_id)?
    ))
}

fn check_extras(extras: Option<&serde_json::Value>) -> Result<(), Error> {
    match extras {
        None | Some(serde_json::Value::Object(_)) => Ok(()),
        Some(other) => Err(Error::InvalidInput {
            input: "ingest extras".into(),
            reason: format!("must be a JSON object, got {other}"),
        }),
    }
}

/// `stem.ext` with the sniffed extension: `prescription1.jpg` holding a PNG is sent as
/// `prescription1.png`. Directories are dropped.
fn upload_file_name(given: Option<&str>, format: ImageFormat) -> String {
    let base = given
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .filter(|n| !n.is_empty())
        .unwrap_or("image");
    let stem = match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => base,
    };
    format!("{stem}.{}", format.extension())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_content() {
        assert_eq!(
            upload_file_name(Some("prescription1.jpg"), ImageFormat::Png),
            "prescription1.png"
        );
        assert_eq!(
            upload_file_name(Some("/a/b/photo.JPEG"), ImageFormat::Jpeg),
            "photo.jpg"
        );
        assert_eq!(
            upload_file_name(Some(r"C:\x\scan"), ImageFormat::Gif),
            "scan.gif"
        );
        assert_eq!(
            upload_file_name(Some(".hidden"), ImageFormat::Bmp),
            ".hidden.bmp"
        );
        assert_eq!(upload_file_name(None, ImageFormat::Webp), "image.webp");
        assert_eq!(
            upload_file_name(Some("dir/"), ImageFormat::Jpeg),
            "image.jpg"
        );
    }

    #[test]
    fn corpus_png_named_jpg_is_png() {
        let bytes = std::fs::read(imggo_testkit::corpus_file("prescription1.jpg")).unwrap();
        assert_eq!(ImageFormat::sniff(&bytes), Some(ImageFormat::Png));
        for path in imggo_testkit::corpus_files() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(ImageFormat::sniff(&bytes).is_some(), "{}", path.display());
        }
    }

    #[test]
    fn extras_must_be_an_object() {
        assert!(check_extras(None).is_ok());
        assert!(check_extras(Some(&serde_json::json!({"a": 1}))).is_ok());
        assert!(matches!(
            check_extras(Some(&serde_json::json!([1]))),
            Err(Error::InvalidInput { .. })
        ));
    }
}
