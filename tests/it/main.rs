//! Kiln's integration tests, in one binary so the crate and its heavy
//! dependencies (sqlx, kube, russh) are linked once: one module per area,
//! the shared harness in `support` (a fresh database per test, an SSH server
//! on a free port and a client that reads the screen back, the Kubernetes API
//! emulator).
//!
//! The tests of every module run concurrently in this one process, so none
//! may change process-wide state (environment variables, the current
//! directory, signal dispositions) or take a fixed port, socket or path:
//! each gets its own database, port, tmux socket and scratch directory.
//!
//! Run one area with `cargo test --test it store::`, one test by its name.

mod support;

mod admin;
mod agents;
mod agents_http;
mod agents_webhook;
mod audit;
mod cli;
mod confinement;
mod console_fronts;
mod db_outage;
mod deploy;
mod embedded_pg;
mod embedded_pg_auth;
mod exec;
mod faults;
mod idle;
mod k8s_attach;
mod k8s_emulator;
mod k8s_errors;
mod k8s_isolation;
mod k8s_kubeconfig;
mod k8s_logs;
mod k8s_objects;
mod k8s_pool;
mod k8s_repos;
mod k8s_tenant;
mod lifecycle_k8s;
mod lifecycle_local;
mod local_driver;
mod notifications;
mod ops;
mod pool;
mod quotas;
mod reconcile;
mod replicas;
mod repos;
mod ssh_attach;
mod ssh_auth;
mod ssh_dashboard;
mod ssh_exec;
mod ssh_logs;
mod ssh_openssh;
mod store;
mod team_screens;
mod teams;
mod templates;
mod user_configs;
