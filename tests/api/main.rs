//! Integration tests through the HTTP interface: one binary, a module per resource.

mod common;

mod auth;
mod concurrency;
mod crash;
mod issues;
mod issues_list;
mod remote;
mod system;
mod watcher;
mod yaml_compat;
