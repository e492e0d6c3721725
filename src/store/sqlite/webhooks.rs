//! Webhook delivery receipts: a delivery id seen once is ignored the second time.

use super::SqliteStore;

impl SqliteStore {
    /// Record a delivery; false when `(source, id)` was seen within `ttl_us`.
    pub async fn claim_receipt(
        &self,
        source: &str,
        delivery_id: &str,
        now_us: i64,
        ttl_us: i64,
    ) -> sqlx::Result<bool> {
        let cutoff = now_us - ttl_us;
        let mut tx = self.write.begin().await?;
        sqlx::query!("DELETE FROM webhook_receipts WHERE received_ts < ?", cutoff)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query!(
            "INSERT INTO webhook_receipts (source, delivery_id, received_ts) VALUES (?, ?, ?)
             ON CONFLICT DO NOTHING",
            source,
            delivery_id,
            now_us
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
