//! Prefix watches.
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::{
    pb::{
        event::EventType, watch_client::WatchClient, watch_request::RequestUnion,
        WatchCreateRequest, WatchRequest, WatchResponse,
    },
    range, Client, Error, Event, KeyValue, Result,
};

/// The changes under a prefix (see [`Client::watch_prefix`]). Dropping it cancels the watch.
pub struct WatchStream {
    client: Client,
    /// The endpoint the watch runs on (see [`Client::failed`]).
    index: usize,
    prefix: String,
    inbound: Streaming<WatchResponse>,
    /// Keeps the request half of the stream open.
    _requests: mpsc::Sender<WatchRequest>,
    ended: bool,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("prefix", &self.prefix)
            .field("ended", &self.ended)
            .finish()
    }
}

pub(crate) async fn open(
    client: &Client,
    prefix: &str,
    start_revision: i64,
) -> Result<WatchStream> {
    let (key, range_end) = range::prefix_range(prefix);
    let (tx, rx) = mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            range_end,
            start_revision: start_revision.max(0),
            ..Default::default()
        })),
    };
    let _ = tx.try_send(create);
    let timeout = Duration::from_secs(10);
    let (index, channel) = client.channel();
    let opened = tokio::time::timeout(timeout, async {
        let mut inbound = WatchClient::new(channel)
            .max_decoding_message_size(256 * 1024 * 1024)
            .watch(ReceiverStream::new(rx))
            .await?
            .into_inner();
        // The first answer confirms (or refuses) the watch.
        let first = inbound.message().await?;
        Ok::<_, tonic::Status>((inbound, first))
    })
    .await;
    let (inbound, first) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(status)) => {
            if crate::is_transport(&status) {
                client.failed(index);
            }
            return Err(client.error("watch", prefix, status));
        }
        Err(_) => {
            client.failed(index);
            return Err(Error::Unavailable(format!(
                "watch {prefix:?} at {}: no answer within {}s",
                client.endpoints(),
                timeout.as_secs()
            )));
        }
    };
    let stream = WatchStream {
        client: client.clone(),
        index,
        prefix: prefix.to_string(),
        inbound,
        _requests: tx,
        ended: false,
    };
    match first {
        None => return Err(Error::WatchClosed),
        Some(first) => {
            if first.compact_revision > 0 {
                return Err(Error::Compacted {
                    revision: first.compact_revision,
                });
            }
            if first.canceled {
                return Err(Error::Status(tonic::Status::failed_precondition(format!(
                    "watch {prefix:?}: etcd refused it: {}",
                    first.cancel_reason
                ))));
            }
            if !first.created {
                // Not expected from etcd; keep the events if there were any.
                tracing::debug!(prefix, "etcd watch answered without `created`");
            }
        }
    }
    Ok(stream)
}

impl WatchStream {
    /// The next batch of events (in revision order) with the response's header revision.
    /// `None` after the stream ended; the last item before that is an error.
    pub async fn next(&mut self) -> Option<Result<(i64, Vec<Event>)>> {
        loop {
            if self.ended {
                return None;
            }
            let response = match self.inbound.message().await {
                Ok(Some(response)) => response,
                Ok(None) => {
                    self.ended = true;
                    return Some(Err(Error::WatchClosed));
                }
                Err(status) => {
                    self.ended = true;
                    if crate::is_transport(&status) {
                        self.client.failed(self.index);
                    }
                    return Some(Err(self.client.error("watch", &self.prefix, status)));
                }
            };
            if response.compact_revision > 0 {
                self.ended = true;
                return Some(Err(Error::Compacted {
                    revision: response.compact_revision,
                }));
            }
            if response.canceled {
                self.ended = true;
                tracing::debug!(prefix = %self.prefix, reason = %response.cancel_reason, "etcd canceled the watch");
                return Some(Err(Error::WatchClosed));
            }
            if response.events.is_empty() {
                // The creation answer or a progress notification.
                continue;
            }
            let revision = response.header.map_or(0, |h| h.revision);
            let events = response
                .events
                .into_iter()
                .filter_map(|event| {
                    let kv = event.kv?;
                    Some(match EventType::try_from(event.r#type) {
                        Ok(EventType::Delete) => Event::Delete {
                            key: String::from_utf8_lossy(&kv.key).into_owned(),
                            mod_revision: kv.mod_revision,
                        },
                        _ => Event::Put(KeyValue::from(kv)),
                    })
                })
                .collect();
            return Some(Ok((revision, events)));
        }
    }
}
