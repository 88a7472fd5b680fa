//! Connection-level defences of a listener: a cap on connections per client
//! address, closing connections that stay idle (HTTP/1 and HTTP/2 alike),
//! and backing off when `accept` fails for want of descriptors or memory.
//! None of it is on the request path: it runs at accept and per connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Open connections per client address, capped at accept.
#[derive(Debug)]
pub struct PerIp {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; its address's count goes down on drop.
#[derive(Debug)]
pub struct Ticket {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// `cap` connections per address; 0: no cap.
    pub fn new(cap: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A ticket for one more connection from `ip`, or none over the cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Ticket> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if self.cap > 0 && *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Ticket {
            per_ip: self.clone(),
            ip,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.per_ip.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Requests in progress on one connection, and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    active: AtomicUsize,
    /// Milliseconds after `origin` at which the connection last went idle.
    idle_since: AtomicU64,
    ended: Notify,
}

/// One request in progress, until its response body is done or dropped.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            origin: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            ended: Notify::new(),
        })
    }

    pub fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Resolves once no request has been in progress for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            if self.active.load(Ordering::Acquire) > 0 {
                self.ended.notified().await;
                continue;
            }
            let since = Duration::from_millis(self.idle_since.load(Ordering::Acquire));
            let deadline = self.origin + since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = self.ended.notified() => {}
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let now = u64::try_from(a.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since.store(now, Ordering::Release);
        a.active.fetch_sub(1, Ordering::AcqRel);
        a.ended.notify_one();
    }
}

/// A response body that keeps its request counted as in progress until it
/// is finished or dropped (a stream may run long after the handler).
pub struct Tracked {
    pub inner: axum::body::Body,
    /// Held for its drop: the request ends with its body.
    pub _busy: Busy,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Longest pause between accepts after a resource error.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(5);

/// Back-off after failed accepts: out of descriptors or memory, `accept`
/// fails at once again and again, so retrying at once spins a core. Each
/// burst is logged once when it starts and once when it ends.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u64,
    delay: Duration,
}

impl Backoff {
    /// Records a failed accept; returns how long to wait before the next.
    pub fn failed(&mut self, e: &std::io::Error, listener: &'static str) -> Duration {
        let (kind, resource) = match e.raw_os_error() {
            Some(EMFILE | ENFILE) => ("out_of_fds", true),
            Some(ENOBUFS | ENOMEM) => ("out_of_memory", true),
            _ => ("other", false),
        };
        crate::telemetry::accept_error(kind);
        if !resource {
            // A connection that died before it was accepted: the next
            // accept is fine.
            return Duration::ZERO;
        }
        if self.failures == 0 {
            tracing::warn!(listener, error = %e, "accept failed: backing off until descriptors or memory come back");
        }
        self.failures += 1;
        self.delay = if self.delay.is_zero() {
            FIRST_BACKOFF
        } else {
            (self.delay * 2).min(MAX_BACKOFF)
        };
        self.delay
    }

    /// Records a good accept, ending a burst of failures.
    pub fn accepted(&mut self, listener: &'static str) {
        if self.failures > 0 {
            tracing::info!(
                listener,
                failures = self.failures,
                "accepting connections again"
            );
        }
        self.failures = 0;
        self.delay = Duration::ZERO;
    }
}

// errno values of Linux, the target platform (the `libc` crate is not a
// dependency for four constants).
const ENOMEM: i32 = 12;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
const ENOBUFS: i32 = 105;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_cap_counts_open_connections() {
        let p = PerIp::new(2);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let a = p.admit(ip).unwrap();
        let _b = p.admit(ip).unwrap();
        assert!(p.admit(ip).is_none());
        assert!(p.admit([10, 0, 0, 2].into()).is_some());
        drop(a);
        assert!(p.admit(ip).is_some());
    }

    #[test]
    fn backoff_grows_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let emfile = std::io::Error::from_raw_os_error(EMFILE);
        let delays: Vec<_> = (0..10).map(|_| b.failed(&emfile, "test")).collect();
        assert_eq!(delays[0], FIRST_BACKOFF);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap(), MAX_BACKOFF);
        b.accepted("test");
        assert_eq!(b.failed(&emfile, "test"), FIRST_BACKOFF);
        let aborted = std::io::Error::from_raw_os_error(103);
        assert_eq!(b.failed(&aborted, "test"), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_when_no_request_is_in_progress() {
        let a = Activity::new();
        let busy = a.begin();
        let idle =
            tokio::time::timeout(Duration::from_secs(60), a.idle_for(Duration::from_secs(5)));
        assert!(idle.await.is_err(), "a request in progress is not idle");
        drop(busy);
        let start = Instant::now();
        a.idle_for(Duration::from_secs(5)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
