//! Periodic compaction of etcd's history, as kube-apiserver's `storage/etcd3/compact.go` does it.
//!
//! Every interval each replica runs `Txn(If Version(compact_rev_key) == t Then Put(compact_rev_key, rev) Else
//! Get(compact_rev_key))`, where `t` is the key's version and `rev` the store revision it saw at its previous tick.
//! Only one replica per interval wins the compare; the winner compacts to `rev`, so at least one interval of
//! history is always kept and several replicas compact once.

use std::time::Duration;

use etcd_client::proto::PbTxnOpResponse;
use etcd_client::{Compare, CompareOp, KvClient, Txn, TxnOp};
use tracing::{debug, warn};

use super::errors::{Failure, classify, map_err, map_failure};
use crate::{Result, Revision};

/// The key the replicas race on; outside any `--etcd-prefix`, as in kube-apiserver.
pub(super) const COMPACT_REV_KEY: &str = "compact_rev_key";

/// The running compaction task; stops when dropped.
pub(super) struct Handle(tokio::task::JoinHandle<()>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) fn spawn(kv: KvClient, interval: Duration) -> Handle {
    Handle(tokio::spawn(async move {
        let mut compactor = Compactor::new(kv);
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = compactor.tick().await {
                warn!(error = %e, "etcd: compaction failed");
            }
        }
    }))
}

/// One replica's compaction state: the key version it expects and the revision it saw at its previous tick.
pub(super) struct Compactor {
    kv: KvClient,
    version: i64,
    revision: Revision,
}

impl Compactor {
    pub(super) fn new(kv: KvClient) -> Self {
        Self { kv, version: 0, revision: 0 }
    }

    /// One round; returns the revision compacted to, if this replica won and compacted.
    pub(super) async fn tick(&mut self) -> Result<Option<Revision>> {
        let txn = Txn::new()
            .when([Compare::version(COMPACT_REV_KEY, CompareOp::Equal, self.version)])
            .and_then([TxnOp::put(COMPACT_REV_KEY, self.revision.to_string(), None)])
            .or_else([TxnOp::get(COMPACT_REV_KEY, None)]);
        let response = self.kv.txn(txn).await.map_err(map_err)?.0;
        let current = super::header_revision(response.header.as_ref())?;
        if !response.succeeded {
            // Another replica won this round: adopt its version, compare again next time.
            let version = match response.responses.first().and_then(|r| r.response.as_ref()) {
                Some(PbTxnOpResponse::ResponseRange(range)) => range.kvs.first().map_or(0, |kv| kv.version),
                _ => 0,
            };
            self.version = version;
            self.revision = current;
            return Ok(None);
        }
        self.version += 1;
        let previous = std::mem::replace(&mut self.revision, current);
        if previous == 0 {
            // No compaction on the first round: there is no previous revision yet.
            return Ok(None);
        }
        match self.kv.compact(previous, None).await.map_err(classify) {
            Ok(_) => {
                debug!(revision = previous, "etcd: compacted");
                Ok(Some(previous))
            }
            Err(Failure::Compacted) => Ok(None),
            Err(failure) => Err(map_failure(failure)),
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::EtcdServer;
    use crate::{Storage, StorageError};

    /// Two replicas tick alternately: each round exactly one compacts, and only to a revision it saw a round
    /// earlier.
    #[tokio::test]
    async fn replicas_compact_once_per_round() {
        let etcd = EtcdServer::start().await;
        let storage = crate::etcd::EtcdStorage::connect(&etcd.config("/registry")).await.expect("connect");
        let client = etcd_client::Client::connect([etcd.endpoint()], None).await.expect("client");
        let mut a = Compactor::new(client.kv_client());
        let mut b = Compactor::new(client.kv_client());
        let write = |round: usize| {
            let storage = storage.clone();
            async move {
                for i in 0..3 {
                    storage.create(&format!("/g/r/k{round}-{i}"), "v".into()).await.expect("create");
                }
            }
        };

        assert_eq!(a.tick().await.expect("a1"), None, "nothing to compact on the first round");
        assert_eq!(b.tick().await.expect("b1"), None, "b lost round 1");
        let seen_by_a = a.revision;
        write(2).await;
        assert_eq!(a.tick().await.expect("a2"), Some(seen_by_a), "a wins round 2, compacts to round 1's revision");
        assert_eq!(b.tick().await.expect("b2"), None, "b lost round 2 as well");
        write(3).await;
        let seen_by_b = b.revision;
        assert_eq!(b.tick().await.expect("b3"), Some(seen_by_b));
        assert_eq!(a.tick().await.expect("a3"), None);

        let opts = crate::ListOptions { revision: Some(seen_by_b - 1), ..Default::default() };
        match storage.list("/g/r/", opts).await {
            Err(StorageError::Compacted { compacted, .. }) => assert_eq!(compacted, seen_by_b),
            other => panic!("expected Compacted, got {other:?}"),
        }
        let opts = crate::ListOptions { revision: Some(seen_by_b), ..Default::default() };
        assert!(storage.list("/g/r/", opts).await.is_ok(), "the compacted revision itself is readable");
    }
}
