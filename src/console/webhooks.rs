//! Users' agent webhooks: setting the URL (checked where it points before
//! it is kept), reading its last outcome, and the delivery task that POSTs
//! each queued notification, retrying with backoff.
//!
//! A webhook URL is typed by a user and called by the server, so it is
//! checked like a tenant's kubeconfig server: refused when any address it
//! resolves to is loopback, link-local or private (unless the operator
//! allows it, `agents.webhook_allow_private_hosts`), when it is saved and
//! again on every connection (`GuardedConnector`), which connects to the
//! address it checked.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use crate::k8s::kubeconfig::{ApiServerPolicy, GuardError, GuardedConnector, guard_refusal};
use crate::model::webhook::{self, Delivery as Next, UrlError, WebhookUrl};
use crate::store::notify::Change;
use crate::store::webhooks::{Delivery, WEBHOOK_URL, WebhookStatus};

use super::{Action, Console, ConsoleError, ConsoleResult, UserConsole};

/// How long a name may take to resolve when a URL is saved.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the delivery task is allowed and how it paces itself.
#[derive(Debug, Clone, Copy)]
pub struct WebhookDelivery {
    /// `agents.webhook_allow_private_hosts`.
    pub hosts: ApiServerPolicy,
    /// The first retry's delay; each next one doubles.
    pub retry_base: Duration,
    /// How often due retries are looked for (new deliveries wake it at once).
    pub poll: Duration,
    /// One POST, connection included, gives up after this.
    pub timeout: Duration,
    /// POSTs in flight at once (a slow target holds one, not the task).
    pub concurrency: usize,
}

impl Default for WebhookDelivery {
    fn default() -> Self {
        WebhookDelivery {
            hosts: ApiServerPolicy::default(),
            retry_base: Duration::from_secs(2),
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            concurrency: 16,
        }
    }
}

/// A user's webhook as their settings show it: where it points (the host,
/// never the whole URL, which may carry a token) and its last outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebhookView {
    pub host: Option<String>,
    #[serde(flatten)]
    pub status: WebhookStatus,
}

/// The host of a stored URL, for display.
pub fn host_of(url: &str) -> Option<String> {
    webhook::parse_url(url).ok().map(|u| u.host)
}

/// Checks `text` as a webhook URL: its form, then every address its host
/// resolves to against `hosts`.
pub async fn check_url(text: &str, hosts: ApiServerPolicy) -> ConsoleResult<WebhookUrl> {
    let invalid = |e: UrlError| ConsoleError::invalid("webhook", format!("webhook URL: {e}"));
    let url = webhook::parse_url(text).map_err(invalid)?;
    let addrs: Vec<std::net::IpAddr> = match url.host.parse() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let found = tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((url.host.as_str(), url.port)),
            )
            .await;
            match found {
                Ok(Ok(a)) => a.map(|a| a.ip()).collect(),
                _ => {
                    return Err(ConsoleError::invalid(
                        "webhook",
                        format!("webhook URL: the host {} does not resolve", url.host),
                    ));
                }
            }
        }
    };
    if let Some(ip) = addrs.iter().find(|ip| !hosts.permits(**ip)) {
        return Err(invalid(UrlError::Private(*ip)));
    }
    if addrs.is_empty() {
        return Err(ConsoleError::invalid(
            "webhook",
            format!("webhook URL: the host {} has no address", url.host),
        ));
    }
    Ok(url)
}

impl UserConsole {
    /// Sets the user's webhook (kept encrypted, like every secret); a URL
    /// that is malformed or points inside is refused and nothing is kept.
    /// Returns its host.
    pub async fn set_webhook(&self, url: &str) -> ConsoleResult<String> {
        self.gated(Action::SetConfig { key: WEBHOOK_URL }, async {
            let checked = check_url(url, self.console.webhook_hosts).await?;
            let (store, user) = (self.store(), self.user_id());
            store
                .set_user_config(user, WEBHOOK_URL, url.trim(), true)
                .await?;
            // Outcomes and queued deliveries were about the previous URL.
            store.reset_webhook(user).await?;
            Ok(checked.host)
        })
        .await
    }

    /// Removes the user's webhook and whatever was queued for it.
    pub async fn unset_webhook(&self) -> ConsoleResult<()> {
        self.gated(Action::UnsetConfig { key: WEBHOOK_URL }, async {
            let (store, user) = (self.store(), self.user_id());
            store.unset_user_config(user, WEBHOOK_URL).await?;
            store.reset_webhook(user).await?;
            Ok(())
        })
        .await
    }

    /// Where the user's webhook points and how its last delivery went.
    pub async fn webhook(&self) -> ConsoleResult<WebhookView> {
        self.gated(Action::ShowSettings, async {
            let (store, user) = (self.store(), self.user_id());
            let url = store
                .list_user_configs(user)
                .await?
                .into_iter()
                .find(|c| c.key == WEBHOOK_URL);
            Ok(WebhookView {
                host: url.and_then(|c| host_of(c.value.expose_str())),
                status: store.webhook_status(user).await?,
            })
        })
        .await
    }
}

impl Console {
    /// Delivers queued webhook notifications until `stop`: one task that
    /// takes due deliveries and POSTs each on its own (bounded), so a slow
    /// or dead target delays only its own deliveries.
    pub async fn run_webhook_delivery(
        self,
        cfg: WebhookDelivery,
        mut changes: Option<broadcast::Receiver<Change>>,
        stop: CancellationToken,
    ) {
        let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        // A delivery in flight is not taken again before this.
        let lease = cfg.timeout + Duration::from_secs(30);
        loop {
            let free = permits.available_permits() as i64;
            if free > 0 {
                match self.store.take_webhook_deliveries(free, lease).await {
                    Ok(batch) => {
                        for d in batch {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                return;
                            };
                            let console = self.clone();
                            tokio::spawn(async move {
                                let _permit = permit;
                                console.deliver(&d, &cfg).await;
                            });
                        }
                    }
                    Err(e) => tracing::warn!("webhook deliveries: {e}"),
                }
            }
            let woken = async {
                match changes.as_mut() {
                    Some(rx) => loop {
                        match rx.recv().await {
                            Ok(c) if c.table == "webhook_deliveries" || c.table == "*" => break,
                            Ok(_) => {}
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = woken => {}
                _ = tokio::time::sleep(cfg.poll) => {}
            }
        }
    }

    /// One attempt at one delivery, and its outcome recorded.
    async fn deliver(&self, d: &Delivery, cfg: &WebhookDelivery) {
        let url = match self.store.list_user_configs(d.user_id).await {
            Ok(configs) => configs.into_iter().find(|c| c.key == WEBHOOK_URL),
            Err(e) => {
                tracing::warn!("webhook delivery: {e}");
                return; // Taken again when its lease passes.
            }
        };
        let outcome = match url {
            None => Err((None, "the webhook was removed".to_string(), false)),
            Some(url) => post(url.value.expose_str(), &d.payload, cfg).await,
        };
        let recorded = match outcome {
            Ok(()) => self.store.webhook_delivered(d).await,
            Err((status, error, retryable)) => {
                let next = if retryable {
                    webhook::after_attempt(status, d.attempts, cfg.retry_base)
                } else {
                    Next::GiveUp
                };
                let retry_in = match next {
                    Next::Retry(delay) => Some(delay),
                    Next::GiveUp | Next::Delivered => None,
                };
                let error = match retry_in {
                    Some(_) => format!("{error} (attempt {}; retrying)", d.attempts),
                    None => format!("{error} (attempt {}; given up)", d.attempts),
                };
                self.store.webhook_failed(d, &error, retry_in).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!("webhook delivery outcome: {e}");
        }
    }
}

/// POSTs `payload` to `url`. An error carries the status (if any answer
/// came), what to show the user, and whether trying again may help.
async fn post(
    url: &str,
    payload: &serde_json::Value,
    cfg: &WebhookDelivery,
) -> Result<(), (Option<u16>, String, bool)> {
    let uri: http::Uri = webhook::parse_url(url)
        .ok()
        .and_then(|_| url.trim().parse().ok())
        .ok_or((None, "the webhook URL is not valid".to_string(), false))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| (None, format!("no TLS roots: {e}"), false))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(GuardedConnector::new(cfg.hosts));
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let body = serde_json::to_vec(payload).expect("a JSON value serialises");
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "kiln-webhook/1")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| (None, format!("cannot build the request: {e}"), false))?;
    let answer = tokio::time::timeout(cfg.timeout, async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        // Read (and drop) the body, so the connection ends cleanly.
        let _ = response.into_body().collect().await;
        Ok::<u16, hyper_util::client::legacy::Error>(status)
    })
    .await;
    match answer {
        Err(_) => Err((
            None,
            format!("no answer within {}s", cfg.timeout.as_secs()),
            true,
        )),
        Ok(Err(e)) => match guard_refusal(&e) {
            Some(GuardError::Forbidden) => Err((
                None,
                "refused: the webhook's host is a loopback, link-local or private address \
                 (the operator can allow it: agents.webhook_allow_private_hosts)"
                    .to_string(),
                false,
            )),
            Some(g) => Err((None, format!("cannot connect: {g}"), true)),
            None => Err((None, "cannot connect".to_string(), true)),
        },
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
        Ok(Ok(status)) => Err((Some(status), format!("HTTP {status}"), true)),
    }
}
