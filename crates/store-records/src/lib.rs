//! The records of floom's operational store: what its callers read and write, shared
//! by both halves of the store (SQLite in the main crate, PostgreSQL in
//! `floom-store-postgres`), so the two cannot disagree on a shape.

pub mod approvals;
pub mod connections;
pub mod feedback;
pub mod runs;
pub mod secrets;
pub mod tokens;
pub mod tools;
pub mod users;
