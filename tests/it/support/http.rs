//! A plain HTTP/1.1 client for the tests (one request per connection over
//! real TCP) and the operator listener started on a free port.

use std::net::SocketAddr;
use std::sync::Arc;

use kiln::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// An answer: the status and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Sends one request (`headers` as `Name: value`) and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413, 401) before reading a large body.
    let _ = stream.write_all(body).await;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Answer { status, body }
}

/// The operator HTTP listener (`/metrics`, `/hooks/v1/event`, …) over
/// `store`, on a free loopback port, until the returned token is cancelled.
pub async fn ops_listener(store: &Store) -> (SocketAddr, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Arc::new(kiln::ops::health::Health {
        store: store.clone(),
        feed: Arc::new(store.listen().await.unwrap()),
        ssh: addr,
        shutdown: CancellationToken::new(),
    });
    let stop = CancellationToken::new();
    tokio::spawn(kiln::ops::http::run(listener, health, stop.clone()));
    (addr, stop)
}
