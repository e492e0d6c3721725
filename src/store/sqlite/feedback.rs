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

/// The claims that file one issue per `feedback_id` among replicas.
impl SqliteStore {
    /// Claim the filing of `(run_id, key)`: true when this caller is to file it, false
    /// when it was filed, or another filer claimed it after `stale_before_us`.
    pub async fn claim_feedback_key(
        &self,
        run_id: &str,
        key: &str,
        now_us: i64,
        stale_before_us: i64,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query!(
            "INSERT INTO feedback_issues (run_id, feedback_key, claimed_ts) VALUES (?, ?, ?)
             ON CONFLICT(run_id, feedback_key) DO UPDATE SET claimed_ts = excluded.claimed_ts
             WHERE feedback_issues.issue_id IS NULL AND feedback_issues.claimed_ts < ?",
            run_id,
            key,
            now_us,
            stale_before_us
        )
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The issue filed for `(run_id, key)`, once filed.
    pub async fn feedback_key_issue(
        &self,
        run_id: &str,
        key: &str,
    ) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar!(
            r#"SELECT issue_id AS "issue_id!" FROM feedback_issues
               WHERE run_id = ? AND feedback_key = ? AND issue_id IS NOT NULL"#,
            run_id,
            key
        )
        .fetch_optional(&self.read)
        .await
    }

    /// Record the issue filed for a claimed `(run_id, key)`.
    pub async fn file_feedback_key(
        &self,
        run_id: &str,
        key: &str,
        issue_id: &str,
    ) -> sqlx::Result<()> {
        sqlx::query!(
            "UPDATE feedback_issues SET issue_id = ? WHERE run_id = ? AND feedback_key = ?",
            issue_id,
            run_id,
            key
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Give up a claim that filed nothing (the filing failed), for the next caller.
    pub async fn release_feedback_key(&self, run_id: &str, key: &str) -> sqlx::Result<()> {
        sqlx::query!(
            "DELETE FROM feedback_issues WHERE run_id = ? AND feedback_key = ? AND issue_id IS NULL",
            run_id,
            key
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
