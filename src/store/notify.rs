//! Telling other replicas what changed: PostgreSQL's `LISTEN/NOTIFY`. With SQLite there
//! is one process and nobody to tell: notifying does nothing and nothing is heard.
//!
//! Notifications can be missed (a listener reconnecting), so every listener also polls:
//! they make changes seen at once, not seen at all.

use sqlx::postgres::PgListener;

use super::{Pool, Store, StoreError};

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// A job was queued: idle workers may claim it. Payload: the job id.
    JobQueued,
    /// A cancel was asked for: the replica running the job stops it. Payload: the job id.
    JobCancel,
    /// A job event (status, step, epoch) for event streams on every replica. Payload: JSON.
    JobEvent,
    /// A version was added or activated. Payload: `name`.
    Versions,
}

impl Channel {
    const ALL: [Channel; 4] = [Channel::JobQueued, Channel::JobCancel, Channel::JobEvent, Channel::Versions];

    fn name(self) -> &'static str {
        match self {
            Channel::JobQueued => "drsn_job_queued",
            Channel::JobCancel => "drsn_job_cancel",
            Channel::JobEvent => "drsn_job_event",
            Channel::Versions => "drsn_versions",
        }
    }
}

/// The notifications this replica hears.
pub struct Notifications {
    listener: PgListener,
}

impl Notifications {
    /// The next notification; `Err` when the connection broke (the listener reconnects
    /// on the next call; what was sent meanwhile is lost).
    pub async fn next(&mut self) -> Result<(Channel, String), StoreError> {
        loop {
            let n = self.listener.recv().await?;
            if let Some(channel) = Channel::ALL.into_iter().find(|c| c.name() == n.channel()) {
                return Ok((channel, n.payload().to_string()));
            }
        }
    }
}

impl Store {
    /// Tells every replica (this one included) about a change; nothing with SQLite.
    pub async fn notify(&self, channel: Channel, payload: &str) -> Result<(), StoreError> {
        if let Pool::Postgres(pool) = &self.pool {
            sqlx::query("SELECT pg_notify($1, $2)").bind(channel.name()).bind(payload).execute(pool).await?;
        }
        Ok(())
    }

    /// Starts listening to every channel; `None` with SQLite (nobody else writes).
    pub async fn listen(&self) -> Result<Option<Notifications>, StoreError> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(None),
            Pool::Postgres(pool) => {
                let mut listener = PgListener::connect_with(pool).await?;
                listener.listen_all(Channel::ALL.map(Channel::name)).await?;
                Ok(Some(Notifications { listener }))
            }
        }
    }
}
