//! Users, sessions and magic-link nonces.

use schemars::JsonSchema;
use serde::Serialize;

#[derive(Debug, Clone, sqlx::FromRow, Serialize, JsonSchema)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    /// `admin` or `member`.
    pub role: String,
    pub disabled: bool,
    pub created_at: String,
}
