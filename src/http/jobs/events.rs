//! `GET /jobs/{id}/events`: a job's progress as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::{broadcast, watch};

use super::JobsState;
use crate::http::{ApiError, ErrorBody};
use crate::jobs::JobEvent;
use crate::store::{JobRow, Store};

/// Server-sent events: first `status` with the job's state now, then `status`, `step`
/// (a few per second at most) and `epoch` events as they happen. The stream ends after
/// the job's terminal `status` event (at once for a job that has ended).
#[utoipa::path(get, path = "/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "`text/event-stream`; each event's data is a JobEvent as JSON", body = JobEvent, content_type = "text/event-stream"),
        (status = 404, description = "No such job", body = ErrorBody),
    ))]
pub async fn stream(
    State(state): State<JobsState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribed before the state is read, so that no event falls in between.
    let events = state.runner.subscribe();
    let closed = state.runner.closed();
    let row = state.runner.store().job(&id).await?.ok_or_else(|| ApiError::NotFound(format!("no job {id}")))?;
    let first = status_event(&row);
    let store = state.runner.store().clone();
    let stream = futures::stream::unfold(
        Some(Follow { id, recheck: recheck(), first: Some(first), events, closed, store }),
        |follow| async move {
            let mut follow = follow?;
            let event = follow.next().await?;
            let done = event.is_final();
            let sse = Event::default().event(event.name()).json_data(&event).unwrap_or_default();
            Some((Ok(sse), (!done).then_some(follow)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn recheck() -> tokio::time::Interval {
    tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK)
}

fn status_event(row: &JobRow) -> JobEvent {
    JobEvent::Status {
        job_id: row.id.clone(),
        status: row.status,
        error: row.error.clone(),
        model_version: row.model_version,
    }
}

/// How often a stream reads its job's state: an event from another replica can be lost
/// (a notification missed), and the job's end must still end the stream.
const RECHECK: Duration = Duration::from_secs(5);

struct Follow {
    id: String,
    recheck: tokio::time::Interval,
    first: Option<JobEvent>,
    events: broadcast::Receiver<JobEvent>,
    closed: watch::Receiver<bool>,
    store: Store,
}

impl Follow {
    /// The next event of this job; `None` when the service shuts down.
    async fn next(&mut self) -> Option<JobEvent> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            tokio::select! {
                received = self.events.recv() => match received {
                    Ok(event) if event.job_id() == self.id => return Some(event),
                    Ok(_) => continue,
                    // Events were missed; the job may have ended among them.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(Some(row)) = self.store.job(&self.id).await {
                            if row.status.is_terminal() {
                                return Some(status_event(&row));
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.recheck.tick() => {
                    if let Ok(Some(row)) = self.store.job(&self.id).await {
                        if row.status.is_terminal() {
                            return Some(status_event(&row));
                        }
                    }
                }
                // The guard `wait_for` returns is not Send: drop it inside.
                () = async { drop(self.closed.wait_for(|closed| *closed).await) } => return None,
            }
        }
    }
}
