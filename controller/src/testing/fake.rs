//! Stand-ins for what real databases cannot be made to do, at the HTTP level: [`FakeDatabase`] answers every request
//! the same way (a status and body, or a body that trickles in a byte at a time), and [`FaultProxy`] forwards to a
//! real database but answers chosen requests itself (a 503, a 400), counting requests by path.
//!
//! Tests → harness → **fake database, fault proxy (this file)** → database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a [`FakeDatabase`] answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `status` with `body`.
    Answer { status: u16, content_type: &'static str, body: Vec<u8> },
    /// 200, then `body` one byte every `interval`.
    Trickle { interval: Duration, body: Vec<u8> },
}

/// A database that is not one: answers every request per its [`Behaviour`], and counts them.
pub struct FakeDatabase {
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeDatabase {
    pub async fn start(behaviour: Behaviour) -> FakeDatabase {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the fake database");
        let port = listener.local_addr().expect("address").port();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let behaviour = behaviour.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Some((head, _)) = read_request(&mut socket).await else { return };
                    counter.lock().unwrap().push(head);
                    match behaviour {
                        Behaviour::Answer { status, content_type, body } => {
                            let _ = socket.write_all(&response(status, content_type, &body)).await;
                        }
                        Behaviour::Trickle { interval, body } => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            if socket.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            for byte in body {
                                if socket.write_all(&[byte]).await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(interval).await;
                            }
                        }
                    }
                });
            }
        });
        FakeDatabase { url: format!("http://127.0.0.1:{port}"), requests, task }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// The head (request line and headers) of the last request.
    pub fn last_request(&self) -> String {
        self.requests.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

impl Drop for FakeDatabase {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An answer the proxy gives instead of the database's.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Requests whose path starts with this...
    pub path: &'static str,
    /// ...numbered from 1 in this list get the answer.
    pub requests: Vec<usize>,
    pub status: u16,
    pub body: &'static str,
}

/// Forwards every request to the database on `target` (one connection per request) except the [`Fault`]s.
pub struct FaultProxy {
    pub url: String,
    counts: Arc<Mutex<HashMap<&'static str, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(target: u16, faults: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let port = listener.local_addr().expect("address").port();
        let counts: Arc<Mutex<HashMap<&'static str, usize>>> = Arc::default();
        let shared = counts.clone();
        let faults = Arc::new(faults);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (faults, counts) = (faults.clone(), shared.clone());
                tokio::spawn(async move {
                    while let Some((head, body)) = read_request(&mut socket).await {
                        let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                        let fault = faults.iter().find_map(|f| {
                            if !path.starts_with(f.path) {
                                return None;
                            }
                            let mut counts = counts.lock().unwrap();
                            let n = counts.entry(f.path).or_insert(0);
                            *n += 1;
                            f.requests.contains(n).then(|| f.clone())
                        });
                        let answer = match fault {
                            Some(f) => response(f.status, "text/plain", f.body.as_bytes()),
                            None => match forward(target, &head, &body).await {
                                Some(answer) => answer,
                                None => return,
                            },
                        };
                        if socket.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FaultProxy { url: format!("http://127.0.0.1:{port}"), counts, task }
    }

    /// Requests seen so far whose path starts with a fault's `path`.
    pub fn requests(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends one request to the database (asking it to close the connection after) and returns its whole answer, with
/// `Connection: close` so the client does not reuse the proxy's connection either.
async fn forward(target: u16, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut upstream = TcpStream::connect(("127.0.0.1", target)).await.ok()?;
    let mut request = String::new();
    for line in head.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")) {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    upstream.write_all(request.as_bytes()).await.ok()?;
    upstream.write_all(body).await.ok()?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).await.ok()?;
    Some(answer)
}

/// A request's head (without the blank line) and body (by `Content-Length`); `None` at the end of the connection.
async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0; 8192];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length = head
        .split("\r\n")
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0usize);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0; (length - body.len()).min(1 << 20)];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} Fake\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
