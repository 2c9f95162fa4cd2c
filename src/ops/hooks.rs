//! `POST /hooks/v1/event`: where a Kubernetes sandbox's Claude Code hooks
//! report (a local sandbox has its own socket instead). The request is
//! untrusted: the bearer token alone says which sandbox it is about (see
//! `model::hook_token`), it is checked before the body is read, the body is
//! bounded, and the console parses it as strictly as a socket report.
//!
//! `Authorization: Bearer TOKEN`, optional `X-Kiln-Session: NAME` (absent:
//! the default session), the hook's JSON as the body. 204 recorded (or an
//! event Kiln does not follow), 401 no or a wrong token, 400 a malformed
//! report, 404 the sandbox is not running, 413 too large.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::console::{Console, ConsoleError};
use crate::local::HookReport;
use crate::model::agent::MAX_PAYLOAD;
use crate::store::agents::Recorded;

pub const PATH: &str = "/hooks/v1/event";
pub const SESSION_HEADER: &str = "x-kiln-session";

pub async fn answer(console: &Console, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only POST\n");
    }
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(resource) = token.and_then(|t| console.hook_token_sandbox(t)) else {
        return text(
            StatusCode::UNAUTHORIZED,
            "a sandbox's hook token is required\n",
        );
    };
    let session = match req.headers().get(SESSION_HEADER).map(|v| v.to_str()) {
        None => String::new(),
        Some(Ok(s)) => s.to_owned(),
        Some(Err(_)) => return text(StatusCode::BAD_REQUEST, "the session name is invalid\n"),
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_PAYLOAD as u64) {
        return too_large();
    }
    let Ok(body) = Limited::new(req.into_body(), MAX_PAYLOAD).collect().await else {
        return too_large();
    };
    let report = HookReport {
        resource,
        session,
        payload: body.to_bytes().to_vec(),
    };
    match console.report_hook(&report).await {
        Ok(Recorded::NoSandbox) => text(StatusCode::NOT_FOUND, "the sandbox is not running\n"),
        Ok(_) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(ConsoleError::Invalid { reason, .. }) => {
            text(StatusCode::BAD_REQUEST, &format!("{reason}\n"))
        }
        Err(e) => {
            tracing::warn!(sandbox = %report.resource, "hook report over HTTP failed: {e}");
            text(StatusCode::SERVICE_UNAVAILABLE, "try again later\n")
        }
    }
}

fn too_large() -> Response<Full<Bytes>> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the report is larger than {MAX_PAYLOAD} bytes\n"),
    )
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
