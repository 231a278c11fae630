//! Reading a long result as a stream of keyset pages (the CSV exports): each page is its
//! own short query, so no read transaction stays open for the whole download (that would
//! block WAL checkpoints on SQLite), and memory is two pages whatever the total.

use std::future::Future;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::{Result, StoreError};

/// Streams the pages `fetch` reads: `fetch(None)` the first, then `fetch(Some(cursor))` with
/// the cursor the previous page gave, until a page is empty or gives none. The next page
/// is fetched (on its own task) while the current one is formatted and sent.
pub(crate) fn keyset_pages<T, C, F, Fut>(fetch: F) -> BoxStream<'static, Result<Vec<T>>>
where
    T: Send + 'static,
    C: Send + 'static,
    F: Fn(Option<C>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(Vec<T>, Option<C>)>> + Send + 'static,
{
    let spawn = move |cursor: Option<C>| tokio::spawn(fetch(cursor));
    futures_util::stream::unfold(Some(spawn(None)), move |pending| {
        let spawn = spawn.clone();
        async move {
            let (rows, next) = match pending?.await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return Some((Err(e), None)),
                Err(e) => return Some((Err(StoreError::Blocking(e)), None)),
            };
            if rows.is_empty() {
                return None;
            }
            Some((Ok(rows), next.map(|n| spawn(Some(n)))))
        }
    })
    .boxed()
}
