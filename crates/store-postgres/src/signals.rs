//! Signals between the servers sharing this database: `NOTIFY` on one channel, and a
//! `LISTEN`ing connection per server. A signal is a hint that something stored changed
//! (a run queued, a cancel asked for, a run's log grew); it may be lost when a listener
//! reconnects, so every receiver also looks at the store now and then.

use sqlx::postgres::PgListener;

use super::PostgresStore;

/// The one channel floom's servers signal each other on.
const CHANNEL: &str = "floom";

/// A server's end of the channel.
pub struct Listener(PgListener);

impl Listener {
    /// The next signal's text. Some lost connections are reconnected by the next call
    /// (what was sent meanwhile is lost); after an `Err`, start listening anew.
    pub async fn recv(&mut self) -> sqlx::Result<String> {
        Ok(self.0.recv().await?.payload().to_string())
    }
}

impl PostgresStore {
    /// Send `payload` to every listening server, this one included.
    pub async fn notify(&self, payload: &str) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Start listening, on a connection of its own.
    pub async fn listen(&self) -> sqlx::Result<Listener> {
        let mut l = PgListener::connect_with(&self.pool).await?;
        l.listen(CHANNEL).await?;
        Ok(Listener(l))
    }
}
