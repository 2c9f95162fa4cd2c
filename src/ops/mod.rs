//! What an operator sees of a replica: Prometheus metrics, liveness and
//! readiness over a small HTTP listener of its own (`http.listen`, off
//! unless set), separate from SSH.
//!
//! `metrics` holds the process's metric handles (the hot paths record into
//! them without I/O); `health` decides readiness from check results (pure)
//! and runs the checks; `http` serves the three paths, and `hooks` the one
//! path that is not the operator's: Kubernetes sandboxes' agent hooks.

pub mod health;
pub mod hooks;
pub mod http;
pub mod logs;
pub mod metrics;
