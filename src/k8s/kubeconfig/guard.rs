//! Which addresses a tenant's API server may have, checked on every
//! connection the tenant's client opens.
//!
//! A kubeconfig's `server` is untrusted: left alone it would make Kiln send
//! the tenant's credentials to, and report on, anything Kiln can reach —
//! its own loopback services, the cloud metadata endpoint, the private
//! network. So the client's connector resolves the host itself, refuses
//! forbidden addresses ([`forbidden`]) and connects to the address it
//! checked (no second lookup a rebinding DNS server could answer
//! differently). The check runs per connection, not once per kubeconfig,
//! because clients are cached and live for as long as the kubeconfig does.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use kube::client::ConfigExt;
use tokio::net::TcpStream;
use tower::{BoxError, ServiceBuilder};

use super::CONNECT_TIMEOUT;

/// What the operator allows a tenant's API server to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiServerPolicy {
    /// `kubernetes.allow_private_api_servers`: also loopback, link-local and
    /// private addresses (a cluster on the operator's own network).
    pub allow_private: bool,
}

impl ApiServerPolicy {
    /// Anything goes: for an operator whose tenants' clusters are on the
    /// private network (and for tests against a local emulator).
    pub const ALLOW_PRIVATE: ApiServerPolicy = ApiServerPolicy {
        allow_private: true,
    };

    /// Whether Kiln may connect to `ip` for a tenant.
    pub fn permits(self, ip: IpAddr) -> bool {
        self.allow_private || !forbidden(ip)
    }
}

/// Why a connection was not made: deliberately coarse, so that errors do
/// not tell a tenant which ports or hosts exist behind Kiln.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "its address is loopback, link-local or private, which Kiln does not contact (the operator can allow it with kubernetes.allow_private_api_servers)"
    )]
    Forbidden,
    #[error("the URL has no host")]
    NoHost,
    #[error("the host name does not resolve")]
    NoAddress,
    #[error("no connection could be made")]
    Connect,
}

/// Addresses no tenant's API server may have unless the operator allows
/// private servers: loopback, link-local (cloud metadata), private,
/// unspecified, shared (CGNAT), multicast, broadcast, documentation and
/// reserved ranges, and IPv6 forms that embed such an IPv4 address.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [_, _, _, _, _, _, hi, lo] = s;
        return forbidden_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated) and ::/96
}

/// Host and port of a connection URI, brackets stripped from IPv6 literals.
fn host_and_port(uri: &Uri) -> Option<(String, u16)> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("http") => 80,
        _ => 443,
    });
    Some((host.to_string(), port))
}

/// The addresses `host` stands for (a literal is itself).
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, GuardError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| GuardError::NoAddress)?;
    Ok(found.collect())
}

/// The connector of a tenant's client: resolves, checks, then opens a TCP
/// connection to a checked address only. TLS (and its server name, taken
/// from the original URI) is layered on top by the caller.
#[derive(Clone)]
pub struct GuardedConnector {
    policy: ApiServerPolicy,
    inner: HttpConnector,
}

impl GuardedConnector {
    pub fn new(policy: ApiServerPolicy) -> Self {
        let mut inner = HttpConnector::new();
        inner.enforce_http(false);
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Self { policy, inner }
    }

    async fn connect(self, uri: Uri) -> Result<TokioIo<TcpStream>, GuardError> {
        let (host, port) = host_and_port(&uri).ok_or(GuardError::NoHost)?;
        let addrs = resolve(&host, port).await?;
        if addrs.is_empty() {
            return Err(GuardError::NoAddress);
        }
        // Every address must pass: a name that also points inside is not
        // a tenant's cluster, and refusing it whole keeps the rule simple.
        if addrs.iter().any(|a| !self.policy.permits(a.ip())) {
            return Err(GuardError::Forbidden);
        }
        let mut inner = self.inner;
        for addr in addrs {
            // Pinned: the inner connector gets the checked address, not the name.
            let Ok(pinned) = Uri::builder()
                .scheme("http")
                .authority(addr.to_string())
                .path_and_query("/")
                .build()
            else {
                continue;
            };
            if let Ok(stream) = tower::Service::call(&mut inner, pinned).await {
                return Ok(stream);
            }
        }
        Err(GuardError::Connect)
    }
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = GuardError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, GuardError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GuardError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// Whether `error` (or any error under it) is a refusal by the guard.
pub fn guard_refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a GuardError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(g) = e.downcast_ref::<GuardError>() {
            return Some(g);
        }
        current = e.source();
    }
    None
}

/// A kube client on `config` whose every connection goes through
/// [`GuardedConnector`]; otherwise the stack kube builds (TLS from the
/// config, base URI, kube's retry of throttled and unavailable answers,
/// credentials, extra headers), without a proxy.
pub fn guarded_client(
    config: kube::Config,
    policy: ApiServerPolicy,
) -> Result<kube::Client, kube::Error> {
    let https = config.rustls_https_connector_with_connector(GuardedConnector::new(policy))?;
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| {
            tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())
        }))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace.clone()).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden_and_public_ones_are_not() {
        let forbidden_ones = [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ];
        for ip in forbidden_ones {
            assert!(forbidden(ip.parse().unwrap()), "{ip} must be forbidden");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        for ip in allowed {
            assert!(!forbidden(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }

    #[test]
    fn the_operator_can_allow_private_servers() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(!ApiServerPolicy::default().permits(lo));
        assert!(ApiServerPolicy::ALLOW_PRIVATE.permits(lo));
        assert!(ApiServerPolicy::default().permits("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn hosts_and_default_ports_come_from_the_uri() {
        let hp = |s: &str| host_and_port(&s.parse().unwrap());
        assert_eq!(
            hp("https://k8s.example.com"),
            Some(("k8s.example.com".into(), 443))
        );
        assert_eq!(hp("http://10.0.0.1"), Some(("10.0.0.1".into(), 80)));
        assert_eq!(hp("https://[::1]:6443"), Some(("::1".into(), 6443)));
    }

    #[tokio::test]
    async fn literal_and_resolved_forbidden_addresses_are_refused_before_connecting() {
        let guard = GuardedConnector::new(ApiServerPolicy::default());
        for uri in [
            "http://127.0.0.1:9",
            "https://[::1]:9",
            "http://localhost:9",
        ] {
            let err = guard
                .clone()
                .connect(uri.parse().unwrap())
                .await
                .expect_err(uri);
            assert!(matches!(err, GuardError::Forbidden), "{uri}: {err:?}");
        }
    }
}
