//! A TCP proxy a test can cut and restore: the database "goes away" for
//! the code under test (every open connection is closed, new ones are
//! dropped at once) while the shared server itself keeps running for
//! every other test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::postgres::PgConnectOptions;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;

/// Where the proxy forwards to.
#[derive(Debug, Clone)]
pub enum Upstream {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

pub struct CutProxy {
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    /// Connections turned away while cut.
    turned_away: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CutProxy {
    /// A proxy in front of the PostgreSQL server of `url`, and the same
    /// URL through the proxy.
    pub async fn to_database(url: &str) -> (CutProxy, String) {
        let options = PgConnectOptions::from_str(url).expect("a database URL");
        let host = options.get_host();
        let port = options.get_port();
        let upstream = if host.starts_with('/') {
            Upstream::Unix(PathBuf::from(format!("{host}/.s.PGSQL.{port}")))
        } else {
            Upstream::Tcp(
                tokio::net::lookup_host((host, port))
                    .await
                    .expect("resolve the database host")
                    .next()
                    .expect("an address"),
            )
        };
        let proxy = CutProxy::start(upstream).await;
        let via = format!(
            "postgres://{}@127.0.0.1:{}/{}",
            options.get_username(),
            proxy.addr.port(),
            options.get_database().expect("a database name")
        );
        (proxy, via)
    }

    /// Forwards a loopback port to `target`.
    pub async fn start(target: Upstream) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let state = cut.clone();
        let turned_away = Arc::new(AtomicUsize::new(0));
        let counted = turned_away.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *state.borrow() {
                    counted.fetch_add(1, Ordering::Relaxed);
                    drop(client);
                    continue;
                }
                let mut cut = state.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let forward = async {
                        match target {
                            Upstream::Tcp(a) => {
                                if let Ok(mut server) = TcpStream::connect(a).await {
                                    let _ = copy_bidirectional(&mut client, &mut server).await;
                                }
                            }
                            Upstream::Unix(p) => {
                                if let Ok(mut server) = UnixStream::connect(p).await {
                                    let _ = copy_bidirectional(&mut client, &mut server).await;
                                }
                            }
                        }
                    };
                    tokio::select! {
                        () = forward => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        CutProxy {
            addr,
            cut,
            turned_away,
            task,
        }
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// How many connections were turned away while cut, so far.
    pub fn turned_away(&self) -> usize {
        self.turned_away.load(Ordering::Relaxed)
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}
