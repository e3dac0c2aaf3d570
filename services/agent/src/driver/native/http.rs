//! The native driver's HTTP listeners (and TERMINATED_HTTPS ones once TLS is off): hyper serves
//! HTTP/1.1 and HTTP/2 to clients and forwards each request, balanced per request, to a member
//! through a pooled client, so keep-alive clients spread over members as they do through HAProxy.
//! Members are spoken to over HTTP/1.1, HTTP/2 in clear text (h2c pools, as gRPC servers speak),
//! or TLS (pools with `tls_enabled`), where the member's ALPN choice decides between h2 and 1.1.
//!
//! Per request, in order: the listener's L7 policies (`l7.rs`) may reject, redirect or pick
//! another pool; the pool's persistence picks the member (source IP, the `SRV` cookie this module
//! sets, or the application's cookie learnt from member responses); the listener's
//! X-Forwarded-* headers are added; the response carries the persistence cookie when one is due.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, RwLock, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::{BodyExt as _, Empty, Full, combinators::BoxBody};
use hyper::{
    HeaderMap, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderName, HeaderValue},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use lbaas::agent::v1::ProxyProtocol;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{
    Active, Counters, Member, Pool, Route, balance, l7,
    persist::{Persistence, SRV_COOKIE},
    tls,
};

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What an HTTP or TERMINATED_HTTPS listener does to requests besides balancing them.
#[derive(Debug, Default)]
pub struct Front {
    /// The listener's port (X-Forwarded-Port).
    pub port: u16,
    pub forwarded_for: bool,
    pub forwarded_port: bool,
    pub forwarded_proto: bool,
    /// In evaluation order.
    pub policies: Vec<l7::Policy>,
    /// TERMINATED_HTTPS: the Strict-Transport-Security value every response carries.
    pub hsts: Option<HeaderValue>,
}

/// The clients every HTTP listener forwards through (connections to members are pooled): plain
/// HTTP/1.1, h2c, and TLS per set of pool TLS options. A connect timeout belongs to a hyper
/// client's connector, and each listener sets its own, so there are clients per connect timeout
/// in use; listeners with the same timeout (and pools with the same options) share pooled
/// connections.
#[derive(Clone, Default)]
pub struct Upstream {
    clients: Arc<std::sync::Mutex<HashMap<Duration, Clients>>>,
    tls: Arc<std::sync::Mutex<TlsClients>>,
}

type TlsClients = HashMap<(Duration, TlsKey), Client<tls::MemberConnector, Incoming>>;

/// A re-encrypting pool's TLS options (ALPN, versions, ciphers), as the key of its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsKey(Vec<String>, Vec<String>, String);

impl TlsKey {
    pub fn of(options: Option<&lbaas::agent::v1::TlsOptions>) -> Self {
        options.map_or_else(Self::default, |o| {
            Self(
                o.alpn_protocols.clone(),
                o.tls_versions.clone(),
                o.tls_ciphers.clone(),
            )
        })
    }
}

#[derive(Clone)]
struct Clients {
    plain: Client<HttpConnector, Incoming>,
    h2c: Client<HttpConnector, Incoming>,
}

pub fn upstream() -> Upstream {
    Upstream::default()
}

fn connector(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector
}

impl Upstream {
    fn clients(&self, connect_timeout: Duration) -> Clients {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(connect_timeout)
            .or_insert_with(|| Clients {
                plain: Client::builder(TokioExecutor::new()).build(connector(connect_timeout)),
                h2c: Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .build(connector(connect_timeout)),
            })
            .clone()
    }

    /// The client for a re-encrypting pool: h2 or HTTP/1.1 as each member chooses by ALPN.
    fn tls_client(
        &self,
        connect_timeout: Duration,
        (key, config): &(TlsKey, Arc<rustls::ClientConfig>),
    ) -> Client<tls::MemberConnector, Incoming> {
        let mut clients = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry((connect_timeout, key.clone()))
            .or_insert_with(|| {
                Client::builder(TokioExecutor::new()).build(tls::MemberConnector::new(
                    Some(config.clone()),
                    connect_timeout,
                ))
            })
            .clone()
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

fn redirect(code: StatusCode, location: HeaderValue) -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = code;
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// Serves one client connection until it closes; each request reads the listener's current route.
/// `https`: the client spoke TLS to the listener; `h2`: it chose HTTP/2 by ALPN.
pub async fn serve<I>(
    io: I,
    peer: SocketAddr,
    local: SocketAddr,
    https: bool,
    h2: bool,
    route: Arc<RwLock<Route>>,
    upstream: Upstream,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let route = route.read().unwrap_or_else(|p| p.into_inner()).clone();
        let upstream = upstream.clone();
        async move {
            let http1 = request.version() < hyper::Version::HTTP_2;
            let log = route.log.clone().map(|log| {
                let entry = super::access_log::Entry {
                    listener: route.listener_id.clone(),
                    client: Some(peer),
                    local: Some(local),
                    accepted: Some(std::time::SystemTime::now()),
                    started: Some(std::time::Instant::now()),
                    request: Some(format!(
                        "{} {} {:?}",
                        request.method(),
                        request.uri().path_and_query().map_or("/", |p| p.as_str()),
                        request.version()
                    )),
                    bytes_in: content_length(request.headers()),
                    tls: https,
                    http: true,
                    ..Default::default()
                };
                (log, entry)
            });
            let mut served = Served::default();
            let hsts = route.front.http().and_then(|f| f.hsts.clone());
            let mut response =
                forward(request, (peer, local), https, route, upstream, &mut served).await;
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
            }
            if let Some((log, mut entry)) = log {
                let status = response.status();
                entry.status = Some(status.as_u16());
                entry.bytes_out = content_length(response.headers());
                entry.response_ms = entry.started.map(|s| s.elapsed().as_millis());
                entry.termination = served.termination(status);
                (entry.pool, entry.member) = (served.pool, served.member);
                log.log(&entry);
            }
            // A draining process ends each HTTP/1 connection after its current response: the
            // client opens its next one on the successor, and no request is lost in between.
            if http1 && draining() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = drain_started(), if h2 => {}
    }
    // HTTP/2: GOAWAY, so the client sends new streams to the successor; streams in flight finish.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// Set once this process has handed its listening sockets to a successor (one data plane per
/// process, so one flag per process).
static DRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static DRAIN: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Whether this process is draining.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Starts draining: see `serve`.
pub fn start_draining() {
    DRAINING.store(true, Ordering::Relaxed);
    DRAIN.notify_waiters();
}

async fn drain_started() {
    let notified = DRAIN.notified();
    if draining() {
        return;
    }
    notified.await;
}

/// The `Content-Length` a message declares (0 when it declares none: a streamed body is not
/// counted, as the line is written when the response head is ready).
fn content_length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Who served a request, for its access log line.
#[derive(Debug, Default)]
struct Served {
    pool: Option<String>,
    member: Option<String>,
    /// The response came from the member.
    answered: bool,
}

impl Served {
    /// HAProxy's termination state (with cookie flags) for a request that ended with `status`.
    fn termination(&self, status: StatusCode) -> &'static str {
        if self.answered {
            return "----";
        }
        match status.as_u16() {
            300..=399 => "LR--",
            502 => "SH--",
            503 => "SC--",
            504 => "sH--",
            _ => "PR--",
        }
    }
}

async fn forward(
    mut request: Request<Incoming>,
    (peer, local): (SocketAddr, SocketAddr),
    https: bool,
    route: Route,
    upstream: Upstream,
    served: &mut Served,
) -> Response<Body> {
    let counters = route.counters.clone();
    let front = route.front.http().cloned().unwrap_or_default();
    let mut pool = route.pool.clone();
    if let Some(policy) = l7::decide(&front.policies, request.uri(), request.headers()) {
        tracing::trace!(policy = %policy.id, "l7 policy matched");
        match &policy.action {
            l7::Action::Reject => return plain(StatusCode::FORBIDDEN, "forbidden\n"),
            l7::Action::RedirectTo { location, code } => {
                return redirect(*code, location.clone());
            }
            l7::Action::RedirectPrefix { prefix, code } => {
                let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
                let prefix = match prefix.strip_suffix('/') {
                    Some(trimmed) if target.starts_with('/') => trimmed,
                    _ => prefix.as_str(),
                };
                return match HeaderValue::from_str(&format!("{prefix}{target}")) {
                    Ok(location) => redirect(*code, location),
                    Err(_) => plain(StatusCode::BAD_REQUEST, "bad request target\n"),
                };
            }
            l7::Action::Pool(to) => pool = to.clone(),
        }
    }
    let Some(pool) = pool else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "no pool\n");
    };
    let client = peer.ip().to_canonical();
    served.pool = Some(pool.id.clone());
    let Some((member, set_cookie)) = choose(&pool, request.headers(), client) else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "no member is available\n");
    };
    served.member = Some(member.id.clone());
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let scheme = if pool.tls { "https" } else { "http" };
    let Ok(uri) = format!("{scheme}://{}{path}", member.addr).parse::<hyper::Uri>() else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::BAD_REQUEST, "bad request target\n");
    };
    // HTTP/2 has no Host, only the authority: name it for the member.
    if !request.headers().contains_key(header::HOST) {
        let host = request
            .uri()
            .authority()
            .map_or_else(|| member.addr.to_string(), |a| a.as_str().to_owned());
        if let Ok(host) = HeaderValue::from_str(&host) {
            request.headers_mut().insert(header::HOST, host);
        }
    }
    *request.uri_mut() = uri;
    // The client's version is not the member's: the pooled client speaks what the pool says
    // (HTTP/1.1, or HTTP/2 on h2c pools and with members that chose h2).
    *request.version_mut() = hyper::Version::HTTP_11;
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    join_cookies(
        headers,
        (pool.persistence == Persistence::HttpCookie).then_some(SRV_COOKIE),
    );
    insert_headers(headers, &front, client, https);

    member.state.active.fetch_add(1, Ordering::Relaxed);
    let _active = Active(member.state.clone());
    let clients = upstream.clients(route.connect_timeout);
    let sent = async {
        // (whether the connect failed, why).
        let failed = |connect: bool, e: &dyn std::fmt::Display| (connect, e.to_string());
        if pool.proxy != ProxyProtocol::None {
            // A PROXY header names one client per connection: no pooled connection will do.
            let to = (peer, local);
            with_proxy_header(request, member.addr, pool.proxy, to, route.connect_timeout)
                .await
                .map_err(|e| failed(e.is_connect(), &e))
        } else if let Some(member_tls) = pool.member_tls.as_ref().filter(|_| pool.tls) {
            upstream
                .tls_client(route.connect_timeout, member_tls)
                .request(request)
                .await
                .map_err(|e| failed(e.is_connect(), &e))
        } else if pool.tls {
            Err((true, "no TLS client config".to_owned()))
        } else if pool.h2c {
            clients
                .h2c
                .request(request)
                .await
                .map_err(|e| failed(e.is_connect(), &e))
        } else {
            clients
                .plain
                .request(request)
                .await
                .map_err(|e| failed(e.is_connect(), &e))
        }
    };
    match tokio::time::timeout(route.connect_timeout + route.data_timeout, sent).await {
        Ok(Ok(response)) => {
            served.answered = true;
            let (mut parts, body) = response.into_parts();
            // Hop-by-hop: the client's connection is not the member's.
            parts.headers.remove(header::CONNECTION);
            parts.headers.remove("keep-alive");
            match &pool.persistence {
                Persistence::HttpCookie if set_cookie => {
                    if let Ok(cookie) =
                        HeaderValue::from_str(&format!("{SRV_COOKIE}={}; path=/", member.id))
                    {
                        parts.headers.append(header::SET_COOKIE, cookie);
                    }
                }
                Persistence::AppCookie(name) => {
                    for value in set_cookies(&parts.headers, name) {
                        pool.sticky.put(value, &member.id);
                    }
                }
                _ => {}
            }
            Response::from_parts(parts, body.map_err(Into::into).boxed())
        }
        // No connection within the connect timeout (or refused): 503, as HAProxy answers.
        Ok(Err((true, e))) => {
            tracing::debug!(member = %member.id, error = %e, "member connect failed");
            counters.errors.fetch_add(1, Ordering::Relaxed);
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "no member could be reached\n",
            )
        }
        Ok(Err((false, e))) => {
            tracing::debug!(member = %member.id, error = %e, "member request failed");
            counters.errors.fetch_add(1, Ordering::Relaxed);
            plain(StatusCode::BAD_GATEWAY, "the member did not answer\n")
        }
        Err(_) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            plain(StatusCode::GATEWAY_TIMEOUT, "the member took too long\n")
        }
    }
}

/// Sends one request to `member` over a connection of its own that begins with the PROXY
/// header for `client` -> `local`; the connection closes after the response.
async fn with_proxy_header(
    mut request: Request<Incoming>,
    member: SocketAddr,
    version: ProxyProtocol,
    (client, local): (SocketAddr, SocketAddr),
    connect_timeout: Duration,
) -> Result<Response<Incoming>, ProxiedError> {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(member))
        .await
        .map_err(|_| ProxiedError::Connect)?
        .map_err(|_| ProxiedError::Connect)?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&super::proxy_header::header(version, client, local))
        .await
        .map_err(|_| ProxiedError::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ProxiedError::Request)?;
    tokio::spawn(conn);
    // The origin form (path and query) on a connection to the member itself.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| ProxiedError::Connect)?;
    *request.uri_mut() = path;
    request
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    sender
        .send_request(request)
        .await
        .map_err(ProxiedError::Request)
}

/// Why a request through a PROXY connection failed (as the pooled client's errors tell apart).
#[derive(Debug)]
enum ProxiedError {
    Connect,
    Request(hyper::Error),
}

impl std::fmt::Display for ProxiedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect => write!(f, "connect failed"),
            Self::Request(e) => write!(f, "{e}"),
        }
    }
}

impl ProxiedError {
    fn is_connect(&self) -> bool {
        matches!(self, Self::Connect)
    }
}

/// Removes the client connection's own headers (RFC 9110 7.6.1): `Connection`, the headers it
/// names, `Keep-Alive` and `Proxy-Connection`. A client's `Connection: close` ends its own
/// connection, not the pooled one to the member, which stays open for the next request.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        // gRPC's `TE: trailers` is end-to-end in HTTP/2, where no Connection header exists.
        .filter(|name| *name != header::TE)
        .collect();
    for name in named {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// The member for a request, and whether the response must set the SRV cookie.
fn choose<'a>(pool: &'a Pool, headers: &HeaderMap, client: IpAddr) -> Option<(&'a Member, bool)> {
    match &pool.persistence {
        Persistence::HttpCookie => {
            if let Some(id) = l7::cookie(headers, SRV_COOKIE)
                && let Some(member) = balance::usable_by_id(pool, id)
            {
                return Some((member, false));
            }
            balance::pick(pool, client, None).map(|m| (m, true))
        }
        Persistence::AppCookie(name) => {
            let value = l7::cookie(headers, name).filter(|v| !v.is_empty());
            if let Some(value) = value
                && let Some(id) = pool.sticky.get(value)
                && let Some(member) = balance::usable_by_id(pool, &id)
            {
                return Some((member, false));
            }
            let member = balance::pick(pool, client, None)?;
            // A session whose member is gone (or unknown here) stays on the new one.
            if let Some(value) = value {
                pool.sticky.put(value, &member.id);
            }
            Some((member, false))
        }
        Persistence::SourceIp | Persistence::None => {
            balance::pick_persistent(pool, client, None).map(|m| (m, false))
        }
    }
}

/// Values the response sets cookie `name` to.
fn set_cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(move |v| {
            let pair = v.split(';').next()?;
            let (n, value) = pair.split_once('=')?;
            (n.trim() == name).then(|| value.trim().trim_matches('"'))
        })
        .filter(|v| !v.is_empty())
}

/// Joins the Cookie headers into one (HTTP/2 clients send one per cookie, HTTP/1.1 members expect
/// one), leaving out cookie `strip` (the load balancer's own, which the member never sees).
fn join_cookies(headers: &mut HeaderMap, strip: Option<&str>) {
    let count = headers.get_all(header::COOKIE).iter().count();
    let stripping = strip.is_some_and(|name| l7::cookie(headers, name).is_some());
    if count == 0 || (count == 1 && !stripping) {
        return;
    }
    let joined: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .flat_map(|v| {
            v.split(';')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|pair| {
            !pair.is_empty()
                && strip
                    .is_none_or(|name| pair.split_once('=').is_none_or(|(n, _)| n.trim() != name))
        })
        .collect();
    headers.remove(header::COOKIE);
    if !joined.is_empty()
        && let Ok(value) = HeaderValue::from_str(&joined.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// The X-Forwarded-* headers the listener adds.
fn insert_headers(headers: &mut HeaderMap, front: &Front, client: IpAddr, https: bool) {
    if front.forwarded_for {
        let mut chain: Vec<String> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        chain.push(client.to_string());
        if let Ok(value) = HeaderValue::from_str(&chain.join(", ")) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if front.forwarded_port {
        headers.insert(X_FORWARDED_PORT, HeaderValue::from(front.port));
    }
    if front.forwarded_proto {
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
    }
}

/// A client connection that counts the bytes it carries (before TLS, for TERMINATED_HTTPS).
pub struct Counted<T> {
    inner: T,
    counters: Arc<Counters>,
}

impl<T> Counted<T> {
    pub fn new(inner: T, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.counters
            .bytes_in
            .fetch_add(read as u64, Ordering::Relaxed);
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.counters
                .bytes_out
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_on_the_client_connection() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "close, x-private".parse().unwrap());
        headers.insert("x-private", "secret".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert(header::TE, "trailers".parse().unwrap());
        headers.insert(header::HOST, "shop.example".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["te", "host"]);
    }
}
