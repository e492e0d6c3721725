//! Feedback on runs: a human's note and rating, promoted to a workspace issue on request.

use floom_store_records::feedback::*;

use super::SqliteStore;

impl SqliteStore {
    pub async fn insert_feedback(&self, f: &Feedback) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO run_feedback (id, run_id, content, rating, author_id, created_at, issue_id)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            f.id,
            f.run_id,
            f.content,
            f.rating,
            f.author_id,
            f.created_at,
            f.issue_id
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn feedback_of_run(&self, run_id: &str) -> sqlx::Result<Vec<Feedback>> {
        sqlx::query_as!(
            Feedback,
            "SELECT id, run_id, content, rating, author_id, created_at, issue_id
             FROM run_feedback WHERE run_id = ? ORDER BY seq",
            run_id
        )
        .fetch_all(&self.read)
        .await
    }

    pub async fn feedback(&self, id: &str) -> sqlx::Result<Option<Feedback>> {
        sqlx::query_as!(
            Feedback,
            "SELECT id, run_id, content, rating, author_id, created_at, issue_id
             FROM run_feedback WHERE id = ?",
            id
        )
        .fetch_optional(&self.read)
        .await
    }

    pub async fn set_feedback_issue(&self, id: &str, issue_id: &str) -> sqlx::Result<()> {
        sqlx::query!(
            "UPDATE run_feedback SET issue_id = ? WHERE id = ?",
            issue_id,
            id
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
