//! Account-level endpoints: webhooks, usage, health, and picking the fastest region.

use std::time::{Duration, Instant};

use http::Method;
use imggo_core::{CreateWebhook, Error, Health, MessageResponse, Usage, Webhook};

use crate::builder::ClientBuilder;
use crate::client::{Call, Client, RetryMode};
use crate::transport::{decode, json_body};

/// Creates [`Client::register_webhook`] tries before it gives up.
pub const WEBHOOK_ATTEMPTS: u32 = 4;

/// Health probes per endpoint in [`Client::fastest`].
const PROBES: usize = 3;

impl Client {
    /// `POST /api/webhooks`. The answer carries the signing secret (only this once);
    /// a secret, when given, must have at least 16 characters.
    pub async fn create_webhook(&self, body: &CreateWebhook) -> Result<Webhook, Error> {
        if body
            .secret
            .as_ref()
            .is_some_and(|s| s.expose().chars().count() < 16)
        {
            return Err(Error::InvalidInput {
                input: "webhook secret".into(),
                reason: "must have at least 16 characters".into(),
            });
        }
        let call = Call::new(Method::POST, self.request_path("/webhooks"))
            .json(json_body("webhook", body)?);
        let reply = self.execute(call).await?;
        decode(&reply.body, "created webhook")
    }

    /// [`Client::create_webhook`] that survives a lost answer: a create is not repeatable
    /// (a second one makes a second registration), so after a failure where the server
    /// may have acted (a 5xx, a reset, a timeout) it looks for a registration of the same
    /// URL first, returns that one if the lost create made it, and creates again
    /// otherwise, up to [`WEBHOOK_ATTEMPTS`] creates in all, 0.2, 0.4, 0.8 s apart.
    ///
    /// The registration found carries no secret (the server shows it only at creation):
    /// it is the one in `body`.
    pub async fn register_webhook(&self, body: &CreateWebhook) -> Result<Webhook, Error> {
        let (mut pause, mut attempt) = (Duration::from_millis(200), 1);
        loop {
            match self.create_webhook(body).await {
                Err(e) if e.is_retryable() && attempt < WEBHOOK_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    if let Some(made) = self
                        .list_webhooks()
                        .await?
                        .into_iter()
                        .find(|w| w.url == body.url)
                    {
                        return Ok(made);
                    }
                }
                done => return done,
            }
        }
    }

    /// `GET /api/webhooks`.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, Error> {
        let reply = self
            .execute(Call::new(Method::GET, self.request_path("/webhooks")))
            .await?;
        decode(&reply.body, "webhook list")
    }

    /// `DELETE /api/webhooks/{id}`.
    pub async fn delete_webhook(&self, id: &str) -> Result<MessageResponse, Error> {
        let path = self.item_path("/webhooks", "webhook id", id)?;
        let reply = self.execute(Call::new(Method::DELETE, path)).await?;
        decode(&reply.body, "webhook deletion")
    }

    /// `GET /api/user/usage`: quota used and left, the minimum gap between ingests, plan
    /// limits.
    pub async fn usage(&self) -> Result<Usage, Error> {
        let reply = self
            .execute(Call::new(Method::GET, self.request_path("/user/usage")))
            .await?;
        decode(&reply.body, "usage")
    }

    /// `GET /api/_health`, one attempt. A 503 with a health body is an answer (status
    /// `degraded` or `unhealthy`), not an error.
    pub async fn health(&self) -> Result<Health, Error> {
        let mut call = Call::new(Method::GET, self.request_path("/_health"));
        call.retry = RetryMode::Never;
        call.also_ok = Some(503);
        let reply = self.execute(call).await?;
        decode(&reply.body, "health")
    }

    /// Builds a client for each of `urls` from `builder` (one shared pool), probes each
    /// one's `/_health` three times, and returns the client aimed at the endpoint with the
    /// lowest median latency among those answering `healthy`; if none is healthy, the
    /// fastest that answered at all. Fails with the last error when none answers.
    pub async fn fastest(urls: &[String], builder: ClientBuilder) -> Result<Client, Error> {
        if urls.is_empty() {
            return Err(Error::Config(
                "Client::fastest needs at least one base URL".into(),
            ));
        }
        let client = builder.base_url(urls[0].clone()).build()?;
        let mut best: Option<(bool, Duration, Client)> = None;
        let mut last_err = None;
        for url in urls {
            let candidate = client.with_base_url(url)?;
            match candidate.probe().await {
                Ok((healthy, median)) => {
                    let better = match &best {
                        None => true,
                        Some((bh, bm, _)) => {
                            (healthy, std::cmp::Reverse(median)) > (*bh, std::cmp::Reverse(*bm))
                        }
                    };
                    if better {
                        best = Some((healthy, median, candidate));
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        match best {
            Some((_, _, c)) => Ok(c),
            None => Err(last_err.unwrap_or_else(|| Error::Config("no endpoint answered".into()))),
        }
    }

    /// Median latency of [`PROBES`] health calls, and whether the last said `healthy`.
    async fn probe(&self) -> Result<(bool, Duration), Error> {
        let mut times = Vec::with_capacity(PROBES);
        let mut healthy = false;
        for _ in 0..PROBES {
            let t = Instant::now();
            let h = self.health().await?;
            times.push(t.elapsed());
            healthy = h.status.eq_ignore_ascii_case("healthy");
        }
        times.sort();
        Ok((healthy, times[PROBES / 2]))
    }
}
