//! Many streams on one HTTP/2 connection, as kube-apiserver's aggregator sends every user's requests: each answer
//! arrives whole, in its own stream, whether small (creates, gets) or large (a list of every object), while the
//! server gathers the frames of concurrent answers into shared writes (`backup_storage::gather`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_e2e::{TestServer, backup, backups, str_at, tls_connector};
use bytes::Bytes;
use futures::future::join_all;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// One HTTP/2 connection (ALPN `h2`) to `server`.
async fn connect(server: &TestServer) -> SendRequest<Full<Bytes>> {
    let (connector, name) = tls_connector(&server.ca_pem, b"h2");
    let tcp = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let tls = connector.connect(name, tcp).await.expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the server speaks HTTP/2");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("handshake");
    tokio::spawn(connection);
    sender
}

/// Sends `method path` with `body` on the shared connection; the status and the decoded answer.
async fn send(
    mut sender: SendRequest<Full<Bytes>>,
    token: &str,
    url: String,
    method: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request =
        hyper::Request::builder().method(method).uri(url).header("authorization", format!("Bearer {token}"));
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(&body).unwrap())
        }
        None => Bytes::new(),
    };
    let answer = sender.send_request(request.body(Full::new(body)).unwrap());
    let response =
        tokio::time::timeout(Duration::from_secs(30), answer).await.expect("an answer in time").expect("an answer");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("the whole body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("a JSON answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_on_one_connection_get_their_own_answers() {
    let server = TestServer::standalone().await;
    let sender = connect(&server).await;
    let collection = format!("{}{}", server.url(), backups("default"));
    const OBJECTS: usize = 300;

    let creates = (0..OBJECTS).map(|i| {
        let mut object = backup(&format!("b-{i}"));
        // Sizes that differ, so that a mixed-up answer could not pass for the right one.
        object["metadata"]["labels"] = serde_json::json!({ "pad": "x".repeat(i % 60) });
        send(sender.clone(), &server.token, collection.clone(), "POST", Some(object))
    });
    for (i, (status, created)) in join_all(creates).await.into_iter().enumerate() {
        assert_eq!(status, 201, "{created}");
        assert_eq!(str_at(&created, "/metadata/name"), format!("b-{i}"));
    }

    // Gets and lists at once: each get has its own object, each list every object.
    let gets = (0..OBJECTS).map(|i| send(sender.clone(), &server.token, format!("{collection}/b-{i}"), "GET", None));
    let lists = (0..4).map(|_| send(sender.clone(), &server.token, collection.clone(), "GET", None));
    let (gets, lists) = futures::join!(join_all(gets), join_all(lists));
    for (i, (status, got)) in gets.into_iter().enumerate() {
        assert_eq!(status, 200, "{got}");
        assert_eq!(str_at(&got, "/metadata/name"), format!("b-{i}"));
        assert_eq!(str_at(&got, "/metadata/labels/pad").len(), i % 60);
    }
    for (status, list) in lists {
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["items"].as_array().expect("items").len(), OBJECTS);
    }
}

/// `--goaway-chance`: with upstream's largest chance (0.02), a client sending requests one after another on one
/// HTTP/2 connection is told to go away (the connection closes once its answers are sent; every request sent
/// before is answered whole); without the flag, 2,000 requests keep their connection. The chance of no GOAWAY in
/// 2,000 requests at 0.02 is 2.8e-18.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_chance_closes_connections_after_their_answers() {
    async fn answered_before_goaway(server: &TestServer, limit: usize) -> usize {
        let mut sender = connect(server).await;
        for n in 0..limit {
            if sender.ready().await.is_err() {
                return n;
            }
            let request = hyper::Request::get(format!("{}/version", server.url()))
                .header("authorization", format!("Bearer {}", server.token))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let Ok(response) = sender.send_request(request).await else { return n };
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.expect("an answer is sent whole").to_bytes();
            assert!(String::from_utf8_lossy(&body).contains("gitVersion"));
        }
        limit
    }
    let plain = TestServer::standalone().await;
    assert_eq!(answered_before_goaway(&plain, 2000).await, 2000, "no GOAWAY without the flag");
    let sent_away = TestServer::standalone_with(&["--goaway-chance=0.02"]).await;
    let answered = answered_before_goaway(&sent_away, 2000).await;
    assert!(answered < 2000, "no GOAWAY in 2,000 requests");
    // A new connection is served as before.
    let again = answered_before_goaway(&sent_away, 1).await;
    assert_eq!(again, 1);
}

/// `--goaway-chance` beyond upstream's bounds stops the server at start, with upstream's message.
#[tokio::test]
async fn goaway_chance_is_bounded() {
    use clap::Parser;
    for chance in ["--goaway-chance=0.5", "--goaway-chance=-0.1"] {
        let args = ["backup-apiserver", "--standalone", "--in-memory", "--secure-port=0", chance];
        let options = backup_apiserver::options::Options::parse_from(args);
        let error = match backup_apiserver::start(options).await {
            Ok(_) => panic!("{chance} started"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains("--goaway-chance can not be less than 0 or greater than 0.02"), "{error}");
    }
}
