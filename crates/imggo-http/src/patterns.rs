//! Patterns: list (paged or as an auto-paginating stream), get, create, update, delete.

use std::collections::VecDeque;

use futures_core::Stream;
use http::Method;
use imggo_core::{
    CreatePattern, Error, ListPatterns, MessageResponse, Page, Pattern, UpdatePattern,
};

use crate::client::{Call, Client};
use crate::transport::{decode, json_body};

impl Client {
    /// One page of `GET /api/patterns`.
    pub async fn list_patterns_page(&self, query: &ListPatterns) -> Result<Page<Pattern>, Error> {
        if query.per_page.is_some_and(|n| !(1..=100).contains(&n)) || query.page == Some(0) {
            return Err(Error::InvalidInput {
                input: format!("pattern list query {query:?}"),
                reason: "page starts at 1 and per_page is 1 to 100".into(),
            });
        }
        let q = query.to_query();
        let path = if q.is_empty() {
            "/patterns".to_owned()
        } else {
            format!("/patterns?{q}")
        };
        let reply = self
            .execute(Call::new(Method::GET, self.request_path(&path)))
            .await?;
        decode(&reply.body, "pattern list")
    }

    /// Every pattern from `query.page` (default 1) on, fetching pages as the stream is
    /// read. An error is yielded once and ends the stream.
    pub fn list_patterns(
        &self,
        query: ListPatterns,
    ) -> impl Stream<Item = Result<Pattern, Error>> + Send + 'static {
        struct State {
            client: Client,
            query: ListPatterns,
            next_page: Option<u32>,
            buffered: VecDeque<Pattern>,
        }
        let state = State {
            client: self.clone(),
            next_page: Some(query.page.unwrap_or(1)),
            query,
            buffered: VecDeque::new(),
        };
        futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(p) = st.buffered.pop_front() {
                    return Some((Ok(p), st));
                }
                let page = st.next_page?;
                let q = ListPatterns {
                    page: Some(page),
                    ..st.query
                };
                match st.client.list_patterns_page(&q).await {
                    Ok(pg) => {
                        // An empty page ends the walk even if the totals claim more.
                        st.next_page =
                            (pg.pagination.has_next() && !pg.data.is_empty()).then(|| page + 1);
                        st.buffered.extend(pg.data);
                    }
                    Err(e) => {
                        st.next_page = None;
                        return Some((Err(e), st));
                    }
                }
            }
        })
    }

    /// `GET /api/patterns/{id}`.
    pub async fn get_pattern(&self, id: &str) -> Result<Pattern, Error> {
        let path = self.item_path("/patterns", "pattern id", id)?;
        let reply = self.execute(Call::new(Method::GET, path)).await?;
        decode(&reply.body, "pattern")
    }

    /// `POST /api/patterns`. Not retried after the request may have reached the server
    /// (it would create a second pattern); connection refusals and 429s are retried.
    pub async fn create_pattern(&self, body: &CreatePattern) -> Result<Pattern, Error> {
        let call = Call::new(Method::POST, self.request_path("/patterns"))
            .json(json_body("pattern", body)?);
        let reply = self.execute(call).await?;
        decode(&reply.body, "created pattern")
    }

    /// `PATCH /api/patterns/{id}`: only the fields that are set change.
    pub async fn update_pattern(&self, id: &str, body: &UpdatePattern) -> Result<Pattern, Error> {
        let path = self.item_path("/patterns", "pattern id", id)?;
        let call = Call::new(Method::PATCH, path).json(json_body("pattern update", body)?);
        let reply = self.execute(call).await?;
        decode(&reply.body, "updated pattern")
    }

    /// `DELETE /api/patterns/{id}` (the real service may answer 403: deletion is
    /// dashboard-only there).
    pub async fn delete_pattern(&self, id: &str) -> Result<MessageResponse, Error> {
        let path = self.item_path("/patterns", "pattern id", id)?;
        let reply = self.execute(Call::new(Method::DELETE, path)).await?;
        decode(&reply.body, "pattern deletion")
    }
}
