//! The native driver's HTTP listeners: hyper serves HTTP/1.1 and HTTP/2 (cleartext, prior
//! knowledge) to clients and forwards each request, balanced per request, to a member over
//! HTTP/1.1 through a pooled client, so keep-alive clients spread over members as they do through
//! HAProxy.
use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, RwLock, atomic::Ordering},
    task::{Context, Poll},
};

use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Active, Counters, Route, balance};

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The client every HTTP listener forwards through (connections to members are pooled).
pub type Upstream = Client<HttpConnector, Incoming>;

pub fn upstream() -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(super::DEFAULT_CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new()).build(connector)
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

/// Serves one client connection until it closes; each request reads the listener's current route.
pub async fn serve(
    client: tokio::net::TcpStream,
    peer: SocketAddr,
    route: Arc<RwLock<Route>>,
    counters: Arc<Counters>,
    upstream: Upstream,
) {
    let io = TokioIo::new(Counted {
        inner: client,
        counters: counters.clone(),
    });
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let route = route.read().unwrap_or_else(|p| p.into_inner()).clone();
        let upstream = upstream.clone();
        async move { Ok::<_, std::convert::Infallible>(forward(request, peer, route, upstream).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

async fn forward(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    route: Route,
    upstream: Upstream,
) -> Response<Body> {
    let counters = route.counters.clone();
    let Some(pool) = route.pool else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "no pool\n");
    };
    let Some(member) = balance::pick(&pool, peer.ip(), None) else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "no member is available\n");
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(uri) = format!("http://{}{path}", member.addr).parse::<hyper::Uri>() else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return plain(StatusCode::BAD_REQUEST, "bad request target\n");
    };
    *request.uri_mut() = uri;
    // Members speak HTTP/1.1 whatever the client spoke; HTTP/2 has no Host, so name one.
    *request.version_mut() = hyper::Version::HTTP_11;
    if !request.headers().contains_key(hyper::header::HOST)
        && let Ok(host) = member.addr.to_string().parse()
    {
        request.headers_mut().insert(hyper::header::HOST, host);
    }
    member.state.active.fetch_add(1, Ordering::Relaxed);
    let _active = Active(member.state.clone());
    match tokio::time::timeout(
        route.connect_timeout + route.data_timeout,
        upstream.request(request),
    )
    .await
    {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            // Hop-by-hop: the client's connection is not the member's.
            parts.headers.remove(hyper::header::CONNECTION);
            Response::from_parts(parts, body.map_err(Into::into).boxed())
        }
        Ok(Err(e)) => {
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

/// A client connection that counts the bytes it carries.
struct Counted {
    inner: tokio::net::TcpStream,
    counters: Arc<Counters>,
}

impl AsyncRead for Counted {
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

impl AsyncWrite for Counted {
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
