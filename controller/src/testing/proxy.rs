//! A throttling TCP proxy for tests: makes a backup slow enough to kill the controller in the middle of it, and
//! counts the connections open through it (the most at once, too).
//!
//! Tests → harness → **proxy (this file)** → database.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Listens on a free loopback port; each connection is forwarded to `target`, answers at about the set rate.
pub struct Proxy {
    pub url: String,
    rate: Arc<AtomicUsize>,
    connections: Arc<Connections>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Connections {
    open: AtomicUsize,
    most: AtomicUsize,
    total: AtomicUsize,
}

/// Counts a connection while it lives.
struct Open(Arc<Connections>);

impl Open {
    fn new(connections: Arc<Connections>) -> Open {
        let open = connections.open.fetch_add(1, Ordering::SeqCst) + 1;
        connections.most.fetch_max(open, Ordering::SeqCst);
        connections.total.fetch_add(1, Ordering::SeqCst);
        Open(connections)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Proxy {
    pub async fn start(target: u16, bytes_per_sec: usize) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let rate = Arc::new(AtomicUsize::new(bytes_per_sec));
        let connections = Arc::new(Connections::default());
        let (shared, counted) = (rate.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(forward(client, target, shared.clone(), Open::new(counted.clone())));
            }
        });
        Proxy { url: format!("http://127.0.0.1:{port}"), rate, connections, task }
    }

    /// Changes the rate of the answers, for connections open and new.
    pub fn set_rate(&self, bytes_per_sec: usize) {
        self.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// The most connections that were open at once.
    pub fn most_connections(&self) -> usize {
        self.connections.most.load(Ordering::SeqCst)
    }

    /// Connections opened so far.
    pub fn total_connections(&self) -> usize {
        self.connections.total.load(Ordering::SeqCst)
    }
}

async fn forward(client: TcpStream, target: u16, rate: Arc<AtomicUsize>, _open: Open) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else { return };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Both ways at the rate: an answer (a backup's export) and a request (a restore's writes).
    let upstream = tokio::spawn(throttled(client_read, server_write, rate.clone()));
    throttled(server_read, client_write, rate).await;
    upstream.abort();
}

/// Copies `from` to `to` at about the set rate (in 50 ms slices).
async fn throttled(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, rate: Arc<AtomicUsize>) {
    let mut buf = vec![0; 1 << 20];
    loop {
        let slice = (rate.load(Ordering::Relaxed) / 20).clamp(1, buf.len());
        let Ok(n) = from.read(&mut buf[..slice]).await else { break };
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
