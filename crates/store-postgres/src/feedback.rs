//! Feedback on runs: a human's note and rating, promoted to a workspace issue on request.

use floom_store_records::feedback::*;

use super::PostgresStore;

impl PostgresStore {
    pub async fn insert_feedback(&self, f: &Feedback) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO run_feedback (id, run_id, content, rating, author_id, created_at, issue_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            f.id,
            f.run_id,
            f.content,
            f.rating,
            f.author_id,
            f.created_at,
            f.issue_id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn feedback_of_run(&self, run_id: &str) -> sqlx::Result<Vec<Feedback>> {
        sqlx::query_as!(
            Feedback,
            "SELECT id, run_id, content, rating, author_id, created_at, issue_id
             FROM run_feedback WHERE run_id = $1 ORDER BY seq",
            run_id
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn feedback(&self, id: &str) -> sqlx::Result<Option<Feedback>> {
        sqlx::query_as!(
            Feedback,
            "SELECT id, run_id, content, rating, author_id, created_at, issue_id
             FROM run_feedback WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn set_feedback_issue(&self, id: &str, issue_id: &str) -> sqlx::Result<()> {
        sqlx::query!(
            "UPDATE run_feedback SET issue_id = $1 WHERE id = $2",
            issue_id,
            id
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
