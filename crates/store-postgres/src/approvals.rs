//! Approval rows: a paused run waiting for a human's decision.

use floom_store_records::approvals::*;

use super::PostgresStore;

/// A compile-checked query of whole [`ApprovalRecord`]s: `SELECT <the columns> <after>`.
macro_rules! select_approvals {
    ($after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            ApprovalRecord,
            "SELECT id, run_id, worker_id, owner_id, kind, status, label, preview, preview_type,
                preview_payload_json, decision_input_json, created_at, expires_at, expires_ts,
                decided_at, decided_by, reason, edited_output_json, annotations_json,
                follow_up_run_id "
                + $after
            $(, $arg)*
        )
    };
}

impl PostgresStore {
    pub async fn insert_approval(&self, a: &ApprovalRecord) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO approvals (id, run_id, worker_id, owner_id, kind, status, label, preview,
                preview_type, preview_payload_json, decision_input_json, created_at, expires_at,
                expires_ts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            a.id,
            a.run_id,
            a.worker_id,
            a.owner_id,
            a.kind,
            a.status,
            a.label,
            a.preview,
            a.preview_type,
            a.preview_payload_json,
            a.decision_input_json,
            a.created_at,
            a.expires_at,
            a.expires_ts
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest approval of a run.
    pub async fn approval_of_run(&self, run_id: &str) -> sqlx::Result<Option<ApprovalRecord>> {
        select_approvals!(
            "FROM approvals WHERE run_id = $1 ORDER BY created_at DESC LIMIT 1",
            run_id
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// The approved approval whose follow-up is this run: it makes the run an execute phase.
    pub async fn approval_followed_by(&self, run_id: &str) -> sqlx::Result<Option<ApprovalRecord>> {
        select_approvals!(
            "FROM approvals WHERE follow_up_run_id = $1 AND status = 'approved'",
            run_id
        )
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn approval(&self, id: &str) -> sqlx::Result<Option<ApprovalRecord>> {
        select_approvals!("FROM approvals WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Approvals with `status`, newest first.
    pub async fn approvals(&self, status: &str) -> sqlx::Result<Vec<ApprovalRecord>> {
        select_approvals!(
            "FROM approvals WHERE status = $1 ORDER BY created_at DESC, id",
            status
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn pending_approval_count(&self) -> sqlx::Result<i64> {
        sqlx::query_scalar!(r#"SELECT COUNT(*) AS "n!" FROM approvals WHERE status = 'pending'"#)
            .fetch_one(&self.pool)
            .await
    }

    /// Record a decision on a pending approval; false when it was no longer pending.
    pub async fn decide_approval(&self, id: &str, d: &Decision<'_>) -> sqlx::Result<bool> {
        let done = sqlx::query!(
            "UPDATE approvals SET status = $1, decided_at = $2, decided_by = $3, reason = $4,
                edited_output_json = $5, annotations_json = $6, follow_up_run_id = $7
             WHERE id = $8 AND status = 'pending'",
            d.status,
            d.decided_at,
            d.decided_by,
            d.reason,
            d.edited_output_json,
            d.annotations_json,
            d.follow_up_run_id,
            id
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Pending approvals past their expiry.
    pub async fn expired_approvals(&self, now_ts: i64) -> sqlx::Result<Vec<ApprovalRecord>> {
        select_approvals!(
            "FROM approvals WHERE status = 'pending' AND expires_ts <= $1",
            now_ts
        )
        .fetch_all(&self.pool)
        .await
    }
}
