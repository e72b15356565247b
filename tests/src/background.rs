//! A tokio runtime for what outlives one test: a cluster shared by a test binary and the server registered with it.
//!
//! Each `#[tokio::test]` has its own runtime, which ends with the test, and with it every task spawned on it (an
//! in-process server included) and every kube-rs client created on it. What the tests of a binary share is
//! therefore started here, on a runtime of its own on a thread that lives until the binary exits; processes
//! started from its threads keep their parent-death signal ([`crate::process`]) until then.

use std::future::Future;
use std::sync::OnceLock;

fn handle() -> &'static tokio::runtime::Handle {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("shared-cluster".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("shared-cluster-worker")
                    .enable_all()
                    .build()
                    .expect("build the background runtime");
                tx.send(runtime.handle().clone()).expect("hand over the runtime");
                runtime.block_on(std::future::pending::<()>());
            })
            .expect("start the background runtime's thread");
        rx.recv().expect("the background runtime started")
    })
}

/// Run `future` on the background runtime and wait for its result (from any runtime).
pub async fn run<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    match handle().spawn(future).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("background task failed: {e}"),
    }
}
