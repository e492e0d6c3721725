//! Integration tests through the HTTP interface: one binary, a module per resource.

mod common;

mod agents;
mod approvals;
mod auth;
mod bundles;
mod compat;
mod concurrency;
mod connections;
mod feedback;
mod guardrails;
mod issues;
mod issues_list;
mod overview;
mod pg;
mod process;
mod remote;
mod replicas;
mod replicas_pg;
mod retry_notify;
mod runs;
mod sandbox;
mod secrets;
mod sharing;
mod signin;
mod store;
mod system;
mod tokens;
mod watcher;
mod webhooks;
mod worker_authoring;
mod worker_webhooks;
mod workers;
mod yaml_compat;
