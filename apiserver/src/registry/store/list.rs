//! List (GET on a collection): selectors, pagination with continue tokens, resourceVersion semantics. Items stay
//! stored bytes (shared with the watch cache); selectors read what they need of each from its attributes
//! ([`crate::registry::attrs`]); the endpoint renders them.
//!
//! resourceVersion as upstream with the watch cache (KEP-2340): unset → the latest (a consistent read: from the
//! cache once it has the backend's current revision); "0" → any state (from memory at once); "N" → not older than
//! N (or exactly N with `resourceVersionMatch=Exact`, or with a limit and no match, as upstream's legacy rule); a
//! continue token → exactly its revision (from the cache's window, else the backend; 410 once compacted).
//!
//! endpoints/list (and watch, deletecollection) → **store list** → selectors → reads (watch cache or storage).

use std::sync::Arc;
use std::time::Duration;

use backup_storage::cacher::{CachedList, CachedObject, Freshness};
use backup_storage::{ListOptions as StorageListOptions, Revision, StorageError};
use serde_json::{Map, Value};

use super::{Reads, Store};
use crate::error::{ApiError, ApiResult};
use crate::registry::object_bytes::decode;
use crate::registry::selectors::Filter;
use crate::request::options::{ContinueToken, ListOptions, ResourceVersionMatch};

/// How long a list or watch waits for the store to reach a requested resourceVersion.
const FUTURE_RV_WAIT: Duration = Duration::from_secs(3);

/// One page of a list.
pub struct ListPage {
    /// Matching items, as stored.
    pub items: Vec<Arc<CachedObject>>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
    /// Stored objects left out because they cannot be decoded (the client sees them as warnings).
    pub warnings: Vec<String>,
}

impl ListPage {
    /// `metadata` of the list.
    pub fn list_meta(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("resourceVersion".into(), Value::String(self.revision.to_string()));
        if let Some(c) = &self.continue_token {
            m.insert("continue".into(), Value::String(c.clone()));
        }
        if let Some(r) = self.remaining {
            m.insert("remainingItemCount".into(), Value::from(r));
        }
        m
    }

    /// The items decoded one at a time (for Table renderings); one that cannot be decoded is left out with a
    /// warning.
    pub fn into_objects(self, warnings: &mut Vec<String>) -> impl Iterator<Item = ApiResult<Value>> + '_ {
        warnings.extend(self.warnings);
        self.items.into_iter().filter_map(move |object| {
            let kv = object.kv();
            match decode(&kv.value, kv.mod_revision) {
                Ok(v) => Some(Ok(v)),
                Err(e) => {
                    warnings.push(unreadable(&kv.key, &e.to_string()));
                    None
                }
            }
        })
    }
}

/// The warning for a stored object that cannot be decoded.
pub fn unreadable(key: &str, e: &str) -> String {
    format!(
        "the stored object {key:?} cannot be decoded and was left out ({e}); delete it with DeleteOptions ignoreStoreReadErrorWithClusterBreakingPotential"
    )
}

/// Wait (bounded) until the store's revision reaches `rv`; 504 with ResourceVersionTooLarge otherwise.
pub(super) async fn wait_for_revision(store: &Store, rv: i64) -> ApiResult<()> {
    let deadline = tokio::time::Instant::now() + FUTURE_RV_WAIT;
    loop {
        let current = store.storage.current_revision().await?;
        if current >= rv {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::too_large_resource_version(rv, current));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

impl Store {
    /// List `namespace` (None = all namespaces) with `opts`.
    pub async fn list(&self, namespace: Option<&str>, opts: &ListOptions) -> ApiResult<ListPage> {
        let filter = Filter::new(&self.strategy, &opts.label_selector, &opts.field_selector)?;
        list(self, namespace, opts, &filter).await
    }
}

/// One read of a list: at the exact `revision` when set, else as fresh as `freshness` says; a revision the store
/// has not reached yet (NotOlderThan) is waited for, up to [`FUTURE_RV_WAIT`].
async fn read(
    store: &Store,
    prefix: &str,
    opts: StorageListOptions,
    freshness: Freshness,
) -> backup_storage::Result<CachedList> {
    match store.reads.list(prefix, opts.clone(), freshness).await {
        Err(StorageError::FutureRevision { requested, current }) if opts.revision.is_none() => {
            match wait_for_revision(store, requested).await {
                Ok(()) => store.reads.list(prefix, opts, freshness).await,
                Err(_) => Err(StorageError::FutureRevision { requested, current }),
            }
        }
        other => other,
    }
}

/// [`Store::list`] with its filter parsed.
pub(super) async fn list(
    store: &Store,
    namespace: Option<&str>,
    opts: &ListOptions,
    filter: &Filter,
) -> ApiResult<ListPage> {
    let prefix = store.prefix(namespace);
    let mut start_key = None;
    let (mut revision, freshness): (Option<Revision>, _) =
        match (&opts.continue_token, opts.resource_version, opts.rv_match) {
            (Some(token), _, _) => {
                start_key = Some(format!("{prefix}{}", token.start));
                ((token.rv > 0).then_some(token.rv), Freshness::Consistent)
            }
            (None, None, _) => (None, Freshness::Consistent),
            (None, Some(0), _) => (None, Freshness::NotOlderThan(0)),
            (None, Some(rv), ResourceVersionMatch::Exact) => (Some(rv), Freshness::Consistent),
            (None, Some(rv), ResourceVersionMatch::Unset) if opts.limit.is_some() => (Some(rv), Freshness::Consistent),
            (None, Some(rv), _) => (None, Freshness::NotOlderThan(rv)),
        };
    // From memory a selector is cheapest applied to the whole snapshot at once; from the backend, page by page.
    let whole = matches!(store.reads, Reads::Cache(_)) && !filter.is_empty();
    let mut items = Vec::new();
    let mut warnings = Vec::new();
    // The last object examined: this when set, else the last of `items` (kept objects move there, uncloned).
    let mut last_examined: Option<Arc<CachedObject>> = None;
    let mut remaining;
    let truncated;
    loop {
        let want = opts
            .limit
            .filter(|_| !whole)
            .map(|l| l.saturating_sub(items.len()).max(if filter.is_empty() { 1 } else { 64 }));
        let req = StorageListOptions { limit: want, start_key: start_key.clone(), revision };
        let page = match read(store, &prefix, req, freshness).await {
            Err(StorageError::Compacted { .. }) if opts.continue_token.is_some() => {
                let start = opts.continue_token.as_ref().map(|t| t.start.clone()).unwrap_or_default();
                let mut e = ApiError::gone_expired(EXPIRED_CONTINUE);
                e.continue_token = Some(ContinueToken { rv: -1, start }.encode());
                return Err(e);
            }
            Err(StorageError::Compacted { requested, compacted }) => {
                return Err(ApiError::gone_expired(format!(
                    "The resourceVersion for the provided list is too old. ({requested} < {compacted})"
                )));
            }
            other => other?,
        };
        revision = Some(page.revision);
        remaining = page.remaining;
        let page_len = page.items.len();
        let mut examined = 0;
        for object in page.items {
            examined += 1;
            match filter.matches_object(&store.strategy, &object) {
                Ok(true) => {
                    items.push(object);
                    last_examined = None;
                }
                Ok(false) => last_examined = Some(object),
                Err(e) => {
                    warnings.push(unreadable(&object.kv().key, &e));
                    last_examined = Some(object);
                }
            }
            if opts.limit.is_some_and(|l| items.len() >= l) {
                break;
            }
        }
        let full = opts.limit.is_some_and(|l| items.len() >= l);
        if full || !page.more || opts.limit.is_none() {
            truncated = opts.limit.is_some() && (examined < page_len || page.more);
            break;
        }
        start_key = last_examined.as_ref().or(items.last()).map(|o| format!("{}\u{0}", o.kv().key));
    }
    let revision = revision.unwrap_or(0);
    let continue_token = match (last_examined.as_ref().or(items.last()), truncated) {
        (Some(last), true) => {
            let key = &last.kv().key;
            let start = format!("{}\u{0}", key.strip_prefix(&prefix).unwrap_or(key));
            Some(ContinueToken { rv: revision, start }.encode())
        }
        _ => None,
    };
    // The count is exact only when every key counts (no selector) and the last page was read whole.
    let remaining = (continue_token.is_some() && filter.is_empty() && remaining > 0).then_some(remaining);
    Ok(ListPage { items, revision, continue_token, remaining, warnings })
}
