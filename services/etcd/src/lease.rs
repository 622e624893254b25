//! Keeping a lease alive from a background task.
use std::time::Duration;

use tokio::{sync::mpsc, task::JoinHandle, time::sleep};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    pb::{lease_client::LeaseClient, LeaseKeepAliveRequest},
    Client,
};

/// Keeps a lease alive while it lives (see [`Client::keep_alive`]); dropping it stops the
/// keepalives (the lease then expires after its TTL unless revoked first).
#[derive(Debug)]
pub struct KeepAlive {
    id: i64,
    task: JoinHandle<()>,
    lost: tokio::sync::watch::Receiver<bool>,
}

impl KeepAlive {
    /// The lease kept alive.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Resolves when etcd says the lease is gone (expired, e.g. after an outage longer than
    /// its TTL, or revoked); at once if that already happened.
    pub async fn lost(&mut self) {
        // An error means the task ended, which it does only once the lease is lost.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn spawn(client: Client, id: i64, ttl_secs: i64) -> KeepAlive {
    let (lost_tx, lost) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        run(&client, id, ttl_secs).await;
        let _ = lost_tx.send(true);
    });
    KeepAlive { id, task, lost }
}

/// Sends keepalives until etcd says the lease is gone.
async fn run(client: &Client, id: i64, ttl_secs: i64) {
    let interval = Duration::from_millis((ttl_secs.max(1) as u64) * 1000 / 3);
    let retry = interval.min(Duration::from_secs(1));
    loop {
        let (tx, rx) = mpsc::channel(2);
        // The first keepalive goes out with the stream.
        let _ = tx.try_send(LeaseKeepAliveRequest { id });
        let (index, channel) = client.channel();
        let opened = tokio::time::timeout(
            Duration::from_secs(10),
            LeaseClient::new(channel).lease_keep_alive(ReceiverStream::new(rx)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                tracing::info!(lease = format_args!("{id:x}"), "etcd lease is gone");
                return;
            }
            Ok(Err(status)) => {
                if crate::is_transport(&status) {
                    client.failed(index);
                }
                tracing::debug!(
                    lease = format_args!("{id:x}"),
                    error = %client.error("keepalive", &format!("lease {id:x}"), status),
                    "etcd lease keepalive stream failed; retrying"
                );
                sleep(retry).await;
                continue;
            }
            Err(_) => {
                client.failed(index);
                tracing::debug!(
                    lease = format_args!("{id:x}"),
                    endpoints = client.endpoints(),
                    "etcd lease keepalive stream did not open; retrying"
                );
                continue;
            }
        };
        let mut next_send = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(response)) => {
                        if response.ttl <= 0 {
                            tracing::info!(lease = format_args!("{id:x}"), "etcd lease is gone");
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        tracing::info!(lease = format_args!("{id:x}"), "etcd lease is gone");
                        return;
                    }
                    Err(status) => {
                        if crate::is_transport(&status) {
                            client.failed(index);
                        }
                        tracing::debug!(
                            lease = format_args!("{id:x}"),
                            error = %client.error("keepalive", &format!("lease {id:x}"), status),
                            "etcd lease keepalive stream broke; re-opening"
                        );
                        break;
                    }
                },
                _ = tokio::time::sleep_until(next_send) => {
                    next_send += interval;
                    // Full: earlier keepalives are still unsent, one more adds nothing.
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        tx.try_send(LeaseKeepAliveRequest { id })
                    {
                        break;
                    }
                }
            }
        }
        sleep(retry).await;
    }
}
