//! Replicas: the servers sharing this store, their heartbeats, and the claims that make
//! a schedule's due time fire once among them.

use floom_store_records::runs::NewRun;

use super::SqliteStore;

impl SqliteStore {
    /// Say `replica` is alive, by the database's clock (one clock for every replica, so
    /// that their own clocks' drift cannot expire a lease). Replicas silent for a day are
    /// forgotten.
    pub async fn heartbeat(&self, replica: &str, host: &str, started_at: &str) -> sqlx::Result<()> {
        sqlx::query!(
            "INSERT INTO replicas (id, host, started_at, heartbeat_ts)
             VALUES (?, ?, ?, CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))
             ON CONFLICT(id) DO UPDATE SET heartbeat_ts = excluded.heartbeat_ts",
            replica,
            host,
            started_at
        )
        .execute(&self.write)
        .await?;
        sqlx::query!(
            "DELETE FROM replicas WHERE heartbeat_ts <
                CAST((julianday('now') - 2440587.5 - 1) * 86400000000.0 AS INTEGER)"
        )
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// A replica stopped: its running runs are anyone's to recover at once.
    pub async fn forget_replica(&self, replica: &str) -> sqlx::Result<()> {
        sqlx::query!("DELETE FROM replicas WHERE id = ?", replica)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Queue `r`, the run of a schedule's due time `fire_ts`, unless a replica fired that
    /// time already (false: nothing queued). Claims older than `prune_before_ts` go.
    pub async fn insert_run_once(
        &self,
        r: &NewRun,
        fire_ts: i64,
        prune_before_ts: i64,
    ) -> sqlx::Result<bool> {
        let mut tx = self.write.begin().await?;
        sqlx::query!(
            "DELETE FROM schedule_fires WHERE fire_ts < ?",
            prune_before_ts
        )
        .execute(&mut *tx)
        .await?;
        let trigger = r.trigger_ref.as_deref().unwrap_or_default();
        let claimed = sqlx::query!(
            "INSERT INTO schedule_fires (worker_id, trigger_ref, fire_ts, run_id)
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            r.worker_id,
            trigger,
            fire_ts,
            r.id
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if claimed {
            super::runs::insert_run(&mut *tx, r).await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }
}
