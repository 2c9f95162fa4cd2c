//! The operator HTTP listener: `GET /metrics`, `/livez`, `/readyz`, and
//! `POST /hooks/v1/event` for the sandboxes' agent hooks (see `hooks`).
//! Plain HTTP/1.1 on its own address (`http.listen`), meant for a
//! cluster-internal scrape, the kubelet's probes and the sandboxes' pods,
//! never for users.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::health::{Health, verdict};

/// Every path the listener serves (the deploy test checks the probes
/// against it).
pub const PATHS: [&str; 3] = ["/metrics", "/livez", "/readyz"];

/// How often the change feed is probed for its lag when nobody asks.
const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// A request that has not finished within this is dropped (a slow client
/// cannot hold a connection open forever).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for HTTP (http.listen) on {addr}"))
}

/// Serves until `stop`; also samples the change feed's lag meanwhile.
pub async fn run(listener: TcpListener, health: Arc<Health>, stop: CancellationToken) {
    let sampler = {
        let health = health.clone();
        tokio::spawn(async move {
            loop {
                let _ = health.feed.probe(&health.store, LAG_SAMPLE_EVERY).await;
                tokio::time::sleep(LAG_SAMPLE_EVERY).await;
            }
        })
    };
    loop {
        let (socket, _peer): (_, SocketAddr) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accepting an HTTP connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let health = health.clone();
                async move { Ok::<_, Infallible>(answer(&health, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service);
            if let Ok(Err(e)) = tokio::time::timeout(REQUEST_DEADLINE, conn).await {
                tracing::debug!("HTTP connection ended: {e}");
            }
        });
    }
    sampler.abort();
}

async fn answer(health: &Health, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() == super::hooks::PATH {
        let console = crate::console::Console::new(health.store.clone(), None, None);
        return super::hooks::answer(&console, req).await;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let (status, body) = verdict(&health.checks().await);
            text(StatusCode::from_u16(status).expect("200 or 503"), body)
        }
        "/metrics" => {
            health.refresh_gauges().await;
            let mut r = text(StatusCode::OK, super::metrics::metrics().encode());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /livez or /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
