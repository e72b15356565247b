//! How the etcd client reaches etcd: one HTTP/2 connection per member of `--etcd-servers`, requests on one member
//! at a time, the next member once a request to it fails in transport.
//!
//! storage ([`super::EtcdStorage`]) → etcd client → **this** → [`Gathered`] socket → TLS → TCP.
//!
//! etcd-client would build tonic's balanced channel with plain sockets; this one is built here so that each
//! connection's socket gathers its writes ([`crate::gather`]). The settings are the ones etcd-client applied. With
//! several members, requests go to one of them (chosen at random at start, so that the server's replicas spread
//! over the members) until a request fails in transport: the connection refused, reset or timed out; then to the
//! next member. A watch moves when it reconnects. An error that etcd answers (a gRPC status) moves nothing.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_client::{Channel as ClientChannel, TlsOptions};
use futures::future::BoxFuture;
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service};

use super::config::{EtcdConfig, config_error};
use crate::Result;
use crate::gather::Gathered;

/// kube-apiserver's keepalive: a ping every 30 s, dead after 10 s without an answer.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The channel to `config`'s members. Lazy: nothing connects until the first request.
pub(super) fn channel(config: &EtcdConfig) -> Result<ClientChannel> {
    let tls = config.tls()?;
    let members =
        config.servers.iter().map(|server| member(server, config, tls.as_ref())).collect::<Result<Vec<_>>>()?;
    match <[Channel; 1]>::try_from(members) {
        Ok([only]) => Ok(ClientChannel::Tonic(only)),
        Err(members) if members.is_empty() => Err(config_error("no etcd server given".into())),
        Err(members) => Ok(ClientChannel::Custom(BoxCloneSyncService::new(Failover::new(members)))),
    }
}

/// One member's connection, with etcd-client's rules for the URL: `http://` plain, `https://` TLS, no scheme
/// TLS when TLS is configured.
fn member(server: &str, config: &EtcdConfig, tls: Option<&TlsOptions>) -> Result<Channel> {
    let url = match (server.starts_with("http://") || server.starts_with("https://"), tls) {
        (true, _) => server.to_string(),
        (false, Some(_)) => format!("https://{server}"),
        (false, None) => format!("http://{server}"),
    };
    let uri: Uri = url.parse().map_err(|e| config_error(format!("etcd server {server:?}: {e}")))?;
    let https = uri.scheme_str() == Some("https");
    if tls.is_some() && !https {
        return Err(config_error(format!("TLS files are given but etcd server {server:?} is not https://")));
    }
    let mut endpoint = Channel::builder(uri)
        .connect_timeout(config.dial_timeout)
        .timeout(config.request_timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if https {
        endpoint = endpoint
            .tls_config(tls.cloned().unwrap_or_default())
            .map_err(|e| config_error(format!("etcd server {server:?}: {e}")))?;
    }
    Ok(endpoint.connect_with_connector_lazy(GatheringConnector::new()))
}

type Request = http::Request<Body>;
type Response = http::Response<Body>;

/// Requests on the current member; a transport failure makes the next member current.
#[derive(Clone)]
struct Failover {
    /// Each clone has its own handles: a handle keeps the slot its `poll_ready` reserved until `call`.
    members: Vec<Channel>,
    /// The index of the member requests go to, shared by every clone.
    current: Arc<AtomicUsize>,
    /// The member whose `poll_ready` succeeded, which the next `call` uses.
    ready: Option<usize>,
}

impl Failover {
    fn new(members: Vec<Channel>) -> Self {
        let start = RandomState::new().hash_one(members.len()) as usize % members.len();
        Self { members, current: Arc::new(AtomicUsize::new(start)), ready: None }
    }
}

/// Makes the member after `failed` current, unless another request already moved on from it.
fn move_on(current: &AtomicUsize, failed: usize, members: usize) {
    let _ = current.compare_exchange(failed, (failed + 1) % members, Ordering::Relaxed, Ordering::Relaxed);
}

impl Service<Request> for Failover {
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, std::result::Result<Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        let member = self.ready.unwrap_or_else(|| self.current.load(Ordering::Relaxed));
        match self.members[member].poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.ready = Some(member);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                self.ready = None;
                move_on(&self.current, member, self.members.len());
                Poll::Ready(Err(e.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let Some(member) = self.ready.take() else {
            return Box::pin(async { Err("the etcd channel was called before it was ready".into()) });
        };
        let response = self.members[member].call(request);
        let (current, members) = (self.current.clone(), self.members.len());
        Box::pin(async move {
            response.await.map_err(|e| {
                move_on(&current, member, members);
                e.into()
            })
        })
    }
}

/// TCP connections (no delay, as tonic's), each [`Gathered`]; tonic adds TLS over it for `https://` members.
#[derive(Clone)]
struct GatheringConnector(HttpConnector);

impl GatheringConnector {
    fn new() -> Self {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        Self(tcp)
    }
}

type Tcp = <HttpConnector as Service<Uri>>::Response;
type TcpError = <HttpConnector as Service<Uri>>::Error;

impl Service<Uri> for GatheringConnector {
    type Response = Gathered<Tcp>;
    type Error = TcpError;
    type Future = BoxFuture<'static, Result<Gathered<Tcp>, TcpError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TcpError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(Gathered::new) })
    }
}
