//! A stand-in for Prometheus in the benchmarks: scrapes `/metrics` at a
//! steady rate (far more often than a real scrape interval, to make any
//! cost visible) until stopped.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;

pub(crate) struct Scraper {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<usize>,
}

/// How often the benchmarks scrape (Prometheus' default is every 15 s).
pub(crate) const EVERY: Duration = Duration::from_millis(100);

impl Scraper {
    pub(crate) fn start(addr: SocketAddr) -> Scraper {
        let stop = CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
            let uri: hyper::Uri = format!("http://{addr}/metrics").parse().expect("a URI");
            let mut scrapes = 0;
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = until.cancelled() => return scrapes,
                    _ = tick.tick() => {}
                }
                if let Ok(r) = client.get(uri.clone()).await
                    && r.into_body().collect().await.is_ok()
                {
                    scrapes += 1;
                }
            }
        });
        Scraper { stop, task }
    }

    /// Stops and says how many scrapes were answered.
    pub(crate) async fn stop(self) -> usize {
        self.stop.cancel();
        self.task.await.unwrap_or(0)
    }
}
