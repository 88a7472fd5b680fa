//! Span export that never waits on the collector: a bound on the spans that
//! are queued or being exported, checked with one atomic on `Span::end`.
//! Over the bound a span is dropped and counted
//! (`switchyard_telemetry_spans_dropped_total`); batching and sending stay
//! with the SDK's `BatchSpanProcessor`, on its own thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

/// Spans ended but not yet through the exporter.
#[derive(Debug, Default)]
struct InFlight(AtomicUsize);

impl InFlight {
    /// Takes a slot unless `bound` are taken.
    fn try_take(&self, bound: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < bound).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

struct Slots<'a>(&'a InFlight, usize);

impl Drop for Slots<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// Frees the slots of each batch once the exporter is done with it, and
/// counts batches the collector did not take.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    in_flight: Arc<InFlight>,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // Released on drop, so a batch whose export is cancelled (timed
        // out) frees its slots too.
        let _slots = Slots(&self.in_flight, batch.len());
        let result = self.inner.export(batch).await;
        if result.is_err() {
            super::export_failure();
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The bounded front of a `BatchSpanProcessor` whose own queue is as large
/// as the bound, so it never drops on its own (and uncounted). Its batch
/// delay and export timeout are the SDK's (`OTEL_BSP_*`).
#[derive(Debug)]
pub(super) struct Bounded {
    inner: BatchSpanProcessor,
    in_flight: Arc<InFlight>,
    bound: usize,
}

impl Bounded {
    pub(super) fn new<E: SpanExporter + 'static>(exporter: E, bound: usize) -> Bounded {
        let in_flight = Arc::new(InFlight::default());
        let config = opentelemetry_sdk::trace::BatchConfigBuilder::default()
            .with_max_queue_size(bound)
            .build();
        let inner = BatchSpanProcessor::builder(Counting {
            inner: exporter,
            in_flight: in_flight.clone(),
        })
        .with_batch_config(config)
        .build();
        Bounded {
            inner,
            in_flight,
            bound,
        }
    }
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.in_flight.try_take(self.bound) {
            self.inner.on_end(span);
        } else {
            super::spans_dropped(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_released_slots_come_back() {
        let f = InFlight::default();
        assert!(f.try_take(2));
        assert!(f.try_take(2));
        assert!(!f.try_take(2), "a third span is over the bound");
        f.release(2);
        assert!(f.try_take(2));
        f.release(5);
        assert_eq!(f.0.load(Ordering::Relaxed), 0, "never below zero");
    }
}
