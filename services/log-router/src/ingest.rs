//! The ingest socket: shims deliver container output here (see `berth_wire`).
//!
//! Per connection: HELLO (container ID) → RESUME (next sequence number needed); then each
//! batch of LOG frames (whatever is readable at once) is written, flushed and
//! checkpointed before it is acknowledged with ACK (last sequence number written). END
//! marks the output finished (the log stops being live) and is acknowledged too.
use std::sync::Arc;

use berth_wire::{encode_into, kind, Decoder, LogRecord};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{UnixListener, UnixStream},
};

use crate::router::{ContainerLog, Router};

/// Runs `f` on the blocking pool: writing a log may wait on the disk or, in
/// `mode=blocking`, on a remote driver's full queue, and must not stall other containers.
async fn blocking<T: Send + 'static>(
    log: &Arc<ContainerLog>,
    f: impl FnOnce(&ContainerLog) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || f(&log))
        .await
        .map_err(std::io::Error::other)?
}

/// Accepts shim connections until the listener fails.
pub async fn serve(router: Arc<Router>, listener: UnixListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let router = router.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(router, stream).await {
                tracing::warn!(error = %e, "ingest connection failed");
            }
        });
    }
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Serves one shim connection.
pub async fn handle(router: Arc<Router>, stream: UnixStream) -> std::io::Result<()> {
    let (mut rd, mut wr) = stream.into_split();
    let mut dec = Decoder::default();
    let mut buf = vec![0u8; 256 * 1024];
    let hello = loop {
        if let Some(f) = dec.next_frame()? {
            break f;
        }
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        dec.push(&buf[..n]);
    };
    if hello.kind != kind::HELLO {
        return Err(invalid(format!(
            "expected HELLO, got frame kind {:#x}",
            hello.kind
        )));
    }
    let id = String::from_utf8(hello.payload).map_err(|_| invalid("container id is not UTF-8"))?;
    let log = router
        .ingest_log(&id)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    tracing::debug!(container = %id, "shim connected");
    let mut live = log.connect();
    let mut out = Vec::new();
    // The writer's lock may be held by a batch blocked on a full remote queue.
    let next_seq = blocking(&log, |log| Ok(log.next_seq())).await?;
    encode_into(&mut out, kind::RESUME, &next_seq.to_be_bytes());
    wr.write_all(&out).await?;
    let mut records = Vec::new();
    loop {
        let mut end = None;
        out.clear();
        while let Some(f) = dec.next_frame()? {
            match f.kind {
                kind::LOG => records.push(LogRecord::decode(&f.payload)?),
                kind::END => end = Some(f.as_u64()?),
                other => tracing::debug!(kind = other, "ignoring frame"),
            }
        }
        if !records.is_empty() {
            let batch = std::mem::take(&mut records);
            let (last, batch) = blocking(&log, move |log| {
                let last = log.write_batch(&batch)?;
                Ok((last, batch))
            })
            .await?;
            if let Some(last) = last {
                encode_into(&mut out, kind::ACK, &last.to_be_bytes());
            }
            // Keeps the allocation for the next batch.
            records = batch;
            records.clear();
        }
        if let Some(end) = end {
            live.end();
            encode_into(&mut out, kind::ACK, &end.to_be_bytes());
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
        }
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        dec.push(&buf[..n]);
    }
}
