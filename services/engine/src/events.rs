//! `berth events`: the services' event logs (ADR 16) merged into one filtered stream.
//!
//! The history comes first, merged by time across the services: each service's events
//! at or after `since`, read without following. Then one follower per service goes on
//! after the last sequence number it returned, so nothing published in between is lost
//! or sent twice. A follower whose service restarts (or is not up yet) subscribes again
//! after the last event it forwarded, every [`RESUBSCRIBE`]. The stream ends at `until`
//! (at once when `until` has passed), or when the client leaves.
use std::time::Duration;

use berth_common::{
    client::Traced,
    events::{now_nano, Event, Filters},
};
use berth_proto::{
    engine::v1::{EventMessage, EventsRequest},
    events::v1::{events_client::EventsClient, SubscribeRequest},
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::Status;

/// How long a follower waits before subscribing again to a service that went away.
const RESUBSCRIBE: Duration = Duration::from_millis(500);
/// How long the history read waits for one service before going on without it.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(10);

/// A service's event feed.
#[derive(Clone)]
pub struct Source {
    pub service: &'static str,
    pub client: EventsClient<Traced>,
}

/// What the client asked for, checked.
struct Window {
    /// Events at or after this time (Unix nanoseconds).
    since: i64,
    /// None: no end.
    until: Option<i64>,
    filters: Filters,
}

impl Window {
    fn new(req: &EventsRequest, now: i64) -> Result<Window, Status> {
        let filters = Filters::new(
            req.filters
                .iter()
                .map(|f| (f.key.as_str(), f.value.as_str())),
        )
        .map_err(Status::invalid_argument)?;
        let until = (req.until_time_nano > 0).then_some(req.until_time_nano);
        if let Some(until) = until {
            if req.since_time_nano > until {
                return Err(Status::invalid_argument(format!(
                    "since ({}) must be before until ({until})",
                    req.since_time_nano
                )));
            }
        }
        // Docker: without `since` only new events, unless `until` has already passed
        // (then the whole history up to it).
        let since = match (req.since_time_nano, until) {
            (s, _) if s > 0 => s,
            (_, Some(u)) if u <= now => 0,
            _ => now,
        };
        Ok(Window {
            since,
            until,
            filters,
        })
    }

    fn passes(&self, e: &Event) -> bool {
        e.time_nano >= self.since
            && self.until.is_none_or(|u| e.time_nano <= u)
            && self
                .filters
                .matches(&e.kind, &e.action, &e.actor_id, &e.attributes)
    }
}

fn to_message(e: Event) -> EventMessage {
    EventMessage {
        r#type: e.kind,
        action: e.action,
        actor_id: e.actor_id,
        attributes: e.attributes.into_iter().collect(),
        time_nano: e.time_nano,
        scope: "local".into(),
        service: e.service,
    }
}

/// The merged, filtered stream `req` asks for.
pub fn stream(
    sources: Vec<Source>,
    req: &EventsRequest,
) -> Result<ReceiverStream<Result<EventMessage, Status>>, Status> {
    let now = now_nano();
    let window = std::sync::Arc::new(Window::new(req, now)?);
    let (out, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let follow = window.until.is_none_or(|u| u > now);
        let mut history = Vec::new();
        let mut resume = Vec::new();
        for source in sources {
            let (events, after_seq) = read_history(&source, window.since).await;
            history.extend(events);
            resume.push((source, after_seq));
        }
        // Stable: one service's events keep their order at equal times.
        history.sort_by_key(|e| e.time_nano);
        for e in history.into_iter().filter(|e| window.passes(e)) {
            if out.send(Ok(to_message(e))).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        let (live_tx, mut live) = mpsc::channel::<Event>(256);
        for (source, after_seq) in resume {
            tokio::spawn(follow_source(
                source,
                window.since,
                after_seq,
                live_tx.clone(),
            ));
        }
        drop(live_tx);
        let deadline = window.until.map(|u| {
            let wait = Duration::from_nanos(u.saturating_sub(now_nano()).max(0) as u64);
            tokio::time::Instant::now() + wait
        });
        loop {
            let next = match deadline {
                Some(at) => tokio::select! {
                    e = live.recv() => e,
                    () = tokio::time::sleep_until(at) => None,
                },
                None => live.recv().await,
            };
            let Some(e) = next else { return };
            if window.until.is_some_and(|u| e.time_nano > u) {
                return;
            }
            if window.passes(&e) && out.send(Ok(to_message(e))).await.is_err() {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// `source`'s events at or after `since`, and the sequence number to follow on after
/// (0: none read; the follower then starts from `since`). A service that cannot be
/// reached adds nothing: its follower catches up once it is back.
async fn read_history(source: &Source, since: i64) -> (Vec<Event>, u64) {
    let mut client = source.client.clone();
    let read = async {
        let mut stream = client
            .subscribe(SubscribeRequest {
                since_time_nano: since,
                after_seq: 0,
                follow: false,
            })
            .await?
            .into_inner();
        let mut events = Vec::new();
        while let Some(e) = stream.next().await {
            events.push(Event::from_proto(e?));
        }
        Ok::<_, Status>(events)
    };
    match tokio::time::timeout(HISTORY_TIMEOUT, read).await {
        Ok(Ok(events)) => {
            let last = events.last().map_or(0, |e| e.seq);
            (events, last)
        }
        Ok(Err(status)) => {
            tracing::warn!(service = source.service, %status, "event history unavailable");
            (Vec::new(), 0)
        }
        Err(_) => {
            tracing::warn!(service = source.service, "event history timed out");
            (Vec::new(), 0)
        }
    }
}

/// Forwards `source`'s new events to `live` until it closes, subscribing again after
/// the last one forwarded whenever the service's stream ends.
async fn follow_source(source: Source, since: i64, mut after_seq: u64, live: mpsc::Sender<Event>) {
    let mut client = source.client.clone();
    loop {
        let subscribed = client
            .subscribe(SubscribeRequest {
                since_time_nano: since,
                after_seq,
                follow: true,
            })
            .await;
        match subscribed {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    let next = tokio::select! {
                        () = live.closed() => return,
                        next = stream.next() => next,
                    };
                    match next {
                        Some(Ok(e)) => {
                            let e = Event::from_proto(e);
                            after_seq = after_seq.max(e.seq);
                            if live.send(e).await.is_err() {
                                return;
                            }
                        }
                        Some(Err(status)) => {
                            tracing::debug!(service = source.service, %status, "event feed ended");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(status) => {
                tracing::debug!(service = source.service, %status, "event feed unavailable");
            }
        }
        tokio::select! {
            () = live.closed() => return,
            () = tokio::time::sleep(RESUBSCRIBE) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::engine::v1::EventFilter;

    fn request(since: i64, until: i64, filters: &[(&str, &str)]) -> EventsRequest {
        EventsRequest {
            since_time_nano: since,
            until_time_nano: until,
            filters: filters
                .iter()
                .map(|(k, v)| EventFilter {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn windows_follow_docker() {
        let now = 1_000;
        // No bounds: new events only.
        assert_eq!(Window::new(&request(0, 0, &[]), now).unwrap().since, now);
        // Until in the past and no since: the whole history up to it.
        let past = Window::new(&request(0, 500, &[]), now).unwrap();
        assert_eq!((past.since, past.until), (0, Some(500)));
        assert_eq!(Window::new(&request(10, 0, &[]), now).unwrap().since, 10);
        let err = Window::new(&request(900, 800, &[]), now).err().unwrap();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("900") && err.message().contains("800"));
        let err = Window::new(&request(0, 0, &[("colour", "red")]), now)
            .err()
            .unwrap();
        assert!(err.message().contains("colour"), "{}", err.message());
    }

    #[test]
    fn passes_applies_time_and_filters() {
        let w = Window::new(&request(100, 200, &[("event", "die")]), 1_000).unwrap();
        let mut e = Event::new("container", "die", "abc");
        e.time_nano = 150;
        assert!(w.passes(&e));
        e.time_nano = 250;
        assert!(!w.passes(&e));
        e.time_nano = 150;
        e.action = "start".into();
        assert!(!w.passes(&e));
    }
}
