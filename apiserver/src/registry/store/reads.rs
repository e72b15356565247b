//! Where the store reads and watches: the watch cache (`--watch-cache`, the default), or the backend itself. Both
//! hand out the same shapes — objects as [`CachedObject`]s with their selector attributes, events as
//! [`CachedEvent`]s — so the store's list and watch are written once.
//!
//! registry store (get, list, watch) → **reads** → watch cache (`backup_storage::cacher`) or storage backend.
//!
//! Writes go to the backend in either case. A write starts from the cache's copy of its object when there is one
//! ([`Reads::peek`]), else from the backend's.

use std::sync::Arc;
use std::task::{Context, Poll};

use backup_storage::cacher::{
    AttrsHook, CacheWatch, CachedEvent, CachedList, CachedObject, Cacher, Freshness, WakeGroup, WatchEnd,
};
use backup_storage::{ListOptions, Result, Revision, Storage, WatchStream};
use futures::StreamExt;

/// The store's source of reads.
#[derive(Clone)]
pub enum Reads {
    /// From the watch cache.
    Cache(Arc<Cacher>),
    /// From the backend, each object given `attrs` as the cache would.
    Backend { storage: Arc<dyn Storage>, attrs: AttrsHook },
}

/// The events of one watch.
pub enum Events {
    Cache(CacheWatch),
    Backend { stream: WatchStream, attrs: AttrsHook },
}

impl Reads {
    /// The object at `key`, as fresh as `freshness` says.
    pub async fn get(&self, key: &str, freshness: Freshness) -> Result<Option<Arc<CachedObject>>> {
        match self {
            Self::Cache(cacher) => cacher.get_cached(key, freshness).await,
            Self::Backend { storage, attrs } => {
                let kv = match freshness {
                    Freshness::Consistent => storage.get(key).await?,
                    Freshness::NotOlderThan(min) => storage.get_not_older_than(key, min).await?,
                };
                Ok(kv.map(|kv| Arc::new(CachedObject::new(kv, Some(attrs)))))
            }
        }
    }

    /// The watch cache's copy of the object at `key` as it is now, with no wait and no backend call; `None`
    /// without a cache, or when the cache cannot answer at once or does not hold the key. See [`Cacher::peek`].
    pub fn peek(&self, key: &str) -> Option<Arc<CachedObject>> {
        match self {
            Self::Cache(cacher) => cacher.peek(key),
            Self::Backend { .. } => None,
        }
    }

    /// A list of `prefix`: at `opts.revision` when set, else as fresh as `freshness` says.
    pub async fn list(&self, prefix: &str, opts: ListOptions, freshness: Freshness) -> Result<CachedList> {
        match self {
            Self::Cache(cacher) => cacher.list_cached(prefix, opts, freshness).await,
            Self::Backend { storage, attrs } => {
                let list = match freshness {
                    Freshness::Consistent => storage.list(prefix, opts).await?,
                    Freshness::NotOlderThan(min) => storage.list_not_older_than(prefix, opts, min).await?,
                };
                Ok(CachedList {
                    items: list.items.into_iter().map(|kv| Arc::new(CachedObject::new(kv, Some(attrs)))).collect(),
                    revision: list.revision,
                    more: list.more,
                    remaining: list.remaining,
                })
            }
        }
    }

    /// The events under `prefix` after `revision`, where the store's list at `revision` left off: from memory,
    /// with no backend call, when the list came from the cache (woken with `group`'s watchers).
    pub async fn watch_after_list(&self, prefix: &str, revision: Revision, group: WakeGroup) -> Result<Events> {
        match self {
            Self::Cache(cacher) => Ok(Events::Cache(cacher.watch_after_list(prefix, revision, group).await?)),
            Self::Backend { storage, attrs } => {
                Ok(Events::Backend { stream: storage.watch(prefix, revision + 1).await?, attrs: attrs.clone() })
            }
        }
    }

    /// The events under `prefix` after a resourceVersion a client gave (`Compacted` first when the backend no
    /// longer has them; from the cache, woken with `group`'s watchers).
    pub async fn watch_after(&self, prefix: &str, revision: Revision, group: WakeGroup) -> Result<Events> {
        match self {
            Self::Cache(cacher) => Ok(Events::Cache(cacher.resume_watch(prefix, revision + 1, group).await?)),
            Self::Backend { storage, attrs } => {
                Ok(Events::Backend { stream: storage.watch(prefix, revision + 1).await?, attrs: attrs.clone() })
            }
        }
    }
}

impl Events {
    /// The next event; `Err` ends the watch.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::result::Result<Arc<CachedEvent>, WatchEnd>>> {
        match self {
            Self::Cache(watch) => watch.poll_next_unpin(cx),
            Self::Backend { stream, attrs } => stream.poll_next_unpin(cx).map(|next| {
                Some(match next? {
                    Ok(event) => Ok(Arc::new(CachedEvent::detached(event, Some(attrs)))),
                    Err(e) => Err(WatchEnd::Failed(e)),
                })
            }),
        }
    }

    /// Every event up to this revision has come out of [`Self::next`], when the source knows more than the
    /// events say (the cache's progress).
    pub fn revision(&self) -> Option<Revision> {
        match self {
            Self::Cache(watch) => Some(watch.revision()),
            Self::Backend { .. } => None,
        }
    }
}
