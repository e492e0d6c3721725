//! Feedback on runs: a human's note and rating, promoted to a workspace issue on request.

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, schemars::JsonSchema)]
pub struct Feedback {
    pub id: String,
    pub run_id: String,
    pub content: String,
    /// `up` or `down`.
    pub rating: Option<String>,
    pub author_id: String,
    pub created_at: String,
    /// The workspace issue it was promoted to.
    pub issue_id: Option<String>,
}
