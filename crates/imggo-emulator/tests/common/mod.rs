//! Test helpers: a tiny HTTP client over loopback, multipart bodies, corpus images.
#![allow(dead_code)]

use std::io::Read;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// An answer, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// `data.job_id` of an ingest answer.
    pub fn job_id(&self) -> String {
        self.json()["data"]["job_id"].as_str().unwrap().to_owned()
    }
}

/// Starts an emulator on `config` and a client for it with the API key `key`.
pub async fn start_with_key(
    config: imggo_emulator::Config,
    key: &str,
) -> (imggo_emulator::Handle, Api) {
    let emu = imggo_emulator::Emulator::start(config)
        .await
        .expect("start");
    let api = Api::new(emu.base_url(), Some(key));
    (emu, api)
}

/// Starts an emulator on `config` and a client for it with the API key `k`.
pub async fn start(config: imggo_emulator::Config) -> (imggo_emulator::Handle, Api) {
    start_with_key(config, "k").await
}

/// A client for one emulator with one API key.
#[derive(Clone)]
pub struct Api {
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub base: String,
    pub key: Option<String>,
}

impl Api {
    pub fn new(base: String, key: Option<&str>) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base,
            key: key.map(str::to_owned),
        }
    }

    pub fn with_key(&self, key: Option<&str>) -> Self {
        Self {
            key: key.map(str::to_owned),
            ..self.clone()
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if let Some(k) = &self.key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(body)).unwrap())
            .await
            .expect("request failed");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, &[], Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, v: &Value) -> Resp {
        self.send(
            Method::POST,
            path,
            &[("Content-Type", "application/json")],
            Bytes::from(v.to_string()),
        )
        .await
    }

    pub async fn patch_json(&self, path: &str, v: &Value) -> Resp {
        self.send(
            Method::PATCH,
            path,
            &[("Content-Type", "application/json")],
            Bytes::from(v.to_string()),
        )
        .await
    }

    /// Multipart ingest of a JPEG `image` named `filename`, with no extra fields or headers.
    pub async fn ingest_jpeg(&self, pattern_id: &str, image: &[u8], filename: &str) -> Resp {
        self.ingest(pattern_id, image, filename, "image/jpeg", &[], &[])
            .await
    }

    /// JSON ingest (`image_url` and friends) of `body` for `pattern_id`.
    pub async fn ingest_json(&self, pattern_id: &str, body: &Value) -> Resp {
        self.post_json(&format!("/patterns/{pattern_id}/ingest"), body)
            .await
    }

    /// Multipart ingest of `image` (with file name and MIME) plus optional fields.
    pub async fn ingest(
        &self,
        pattern_id: &str,
        image: &[u8],
        filename: &str,
        mime: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let boundary = "----imggo-test-boundary-7d1f";
        let body = multipart(boundary, image, filename, mime, fields);
        let ct = format!("multipart/form-data; boundary={boundary}");
        let mut hs: Vec<(&str, &str)> = vec![("Content-Type", ct.as_str())];
        hs.extend_from_slice(headers);
        self.send(
            Method::POST,
            &format!("/patterns/{pattern_id}/ingest"),
            &hs,
            body,
        )
        .await
    }
}

pub fn multipart(
    boundary: &str,
    image: &[u8],
    filename: &str,
    mime: &str,
    fields: &[(&str, &str)],
) -> Bytes {
    let mut out = Vec::with_capacity(image.len() + 512);
    for (k, v) in fields {
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\nContent-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(image);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Bytes::from(out)
}

/// A corpus image's bytes.
pub fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(imggo_testkit::corpus_file(name)).expect("corpus file")
}

/// Gunzips a body.
pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

/// Polls a job until it is terminal (or panics after `limit`).
pub async fn wait_terminal(api: &Api, job_id: &str, limit: std::time::Duration) -> Value {
    let start = std::time::Instant::now();
    loop {
        let r = api.get(&format!("/jobs/{job_id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let v = r.json();
        let s = v["data"]["status"].as_str().unwrap_or("").to_owned();
        if ["succeeded", "failed", "completed"].contains(&s.as_str()) {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "job {job_id} still {s} after {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until `cond` holds (checked every 5 ms), panicking with `what` after `limit`.
pub async fn eventually(what: &str, limit: std::time::Duration, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
