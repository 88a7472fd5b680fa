//! The OTel side of the metrics fan-out: a `metrics` recorder that records
//! into OpenTelemetry instruments built once from [`super::METRICS`], so the
//! OTLP export carries the very numbers `/metrics` shows; and [`Cached`],
//! which keeps the fanned-out handle of each metric key, so a recording
//! costs one map lookup instead of a registration in both recorders.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName};
use metrics::{Metadata, Recorder, SharedString, Unit};
use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;

use super::{attributes, Kind, METRICS};

enum Instrument {
    Counter(opentelemetry::metrics::Counter<u64>),
    Gauge(opentelemetry::metrics::Gauge<f64>),
    Histogram(opentelemetry::metrics::Histogram<f64>),
}

/// Maps each Prometheus metric name to its OTel instrument.
pub(super) struct OtelRecorder {
    instruments: HashMap<&'static str, Instrument>,
}

impl OtelRecorder {
    pub(super) fn new(meter: &Meter) -> OtelRecorder {
        let instruments = METRICS
            .iter()
            .map(|m| {
                let inst = match m.kind {
                    Kind::Counter => Instrument::Counter(
                        meter
                            .u64_counter(m.otel)
                            .with_unit(m.unit)
                            .with_description(m.help)
                            .build(),
                    ),
                    Kind::Gauge => Instrument::Gauge(
                        meter
                            .f64_gauge(m.otel)
                            .with_unit(m.unit)
                            .with_description(m.help)
                            .build(),
                    ),
                    Kind::Histogram => Instrument::Histogram(
                        meter
                            .f64_histogram(m.otel)
                            .with_unit(m.unit)
                            .with_description(m.help)
                            .with_boundaries(m.buckets.to_vec())
                            .build(),
                    ),
                };
                (m.prometheus, inst)
            })
            .collect();
        OtelRecorder { instruments }
    }
}

/// Label keys that are not OTel attribute names already (`route`,
/// `target`...) go under our namespace.
fn attributes_of(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|l| {
            let name = if l.key().contains('.') {
                l.key().to_string()
            } else {
                format!("{}{}", attributes::NAMESPACE, l.key())
            };
            KeyValue::new(name, l.value().to_string())
        })
        .collect()
}

struct Bound<I> {
    instrument: I,
    attributes: Vec<KeyValue>,
}

impl CounterFn for Bound<opentelemetry::metrics::Counter<u64>> {
    fn increment(&self, value: u64) {
        self.instrument.add(value, &self.attributes);
    }

    /// OTel counters only add; the gateway never sets a counter outright.
    fn absolute(&self, _value: u64) {}
}

impl GaugeFn for Bound<opentelemetry::metrics::Gauge<f64>> {
    /// The gateway only ever sets its gauges (from live state).
    fn increment(&self, _value: f64) {}

    fn decrement(&self, _value: f64) {}

    fn set(&self, value: f64) {
        self.instrument.record(value, &self.attributes);
    }
}

impl HistogramFn for Bound<opentelemetry::metrics::Histogram<f64>> {
    fn record(&self, value: f64) {
        self.instrument.record(value, &self.attributes);
    }
}

impl Recorder for OtelRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.instruments.get(key.name()) {
            Some(Instrument::Counter(c)) => Counter::from_arc(Arc::new(Bound {
                instrument: c.clone(),
                attributes: attributes_of(key),
            })),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.instruments.get(key.name()) {
            Some(Instrument::Gauge(g)) => Gauge::from_arc(Arc::new(Bound {
                instrument: g.clone(),
                attributes: attributes_of(key),
            })),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.instruments.get(key.name()) {
            Some(Instrument::Histogram(h)) => Histogram::from_arc(Arc::new(Bound {
                instrument: h.clone(),
                attributes: attributes_of(key),
            })),
            _ => Histogram::noop(),
        }
    }
}

/// Remembers the handle `inner` gave for each key. The map's lock is taken
/// for writing only the first time a key (a label set from the config or an
/// enum) is seen; neither a reload nor an ops action ever holds it.
pub(super) struct Cached<R> {
    inner: R,
    counters: RwLock<HashMap<Key, Counter>>,
    gauges: RwLock<HashMap<Key, Gauge>>,
    histograms: RwLock<HashMap<Key, Histogram>>,
}

impl<R> Cached<R> {
    pub(super) fn new(inner: R) -> Cached<R> {
        Cached {
            inner,
            counters: RwLock::default(),
            gauges: RwLock::default(),
            histograms: RwLock::default(),
        }
    }
}

fn cached<H: Clone>(map: &RwLock<HashMap<Key, H>>, key: &Key, make: impl FnOnce() -> H) -> H {
    if let Some(h) = map.read().unwrap_or_else(PoisonError::into_inner).get(key) {
        return h.clone();
    }
    let h = make();
    map.write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key.clone())
        .or_insert(h)
        .clone()
}

impl<R: Recorder> Recorder for Cached<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.inner.describe_counter(key, unit, help);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.inner.describe_gauge(key, unit, help);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        self.inner.describe_histogram(key, unit, help);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        cached(&self.counters, key, || {
            self.inner.register_counter(key, metadata)
        })
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        cached(&self.gauges, key, || {
            self.inner.register_gauge(key, metadata)
        })
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        cached(&self.histograms, key, || {
            self.inner.register_histogram(key, metadata)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_an_instrument_and_bare_labels_get_the_namespace() {
        let meter = opentelemetry::global::meter("test");
        let r = OtelRecorder::new(&meter);
        assert_eq!(r.instruments.len(), METRICS.len());
        let key = Key::from_parts(
            super::super::FAILOVERS,
            vec![
                metrics::Label::new("route", "frontier"),
                metrics::Label::new("gen_ai.provider.name", "anthropic"),
            ],
        );
        let attrs = attributes_of(&key);
        assert_eq!(attrs[0].key.as_str(), "switchyard.route");
        assert_eq!(attrs[0].value.as_str(), "frontier");
        assert_eq!(attrs[1].key.as_str(), "gen_ai.provider.name");
    }

    #[test]
    fn a_key_is_registered_once_and_its_handle_reused() {
        let inner = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = inner.snapshotter();
        let cached = Cached::new(inner);
        let key = Key::from_parts("c", vec![metrics::Label::new("route", "a")]);
        let meta = metrics::Metadata::new("t", metrics::Level::INFO, None);
        cached.register_counter(&key, &meta).increment(2);
        cached.register_counter(&key, &meta).increment(3);
        assert_eq!(cached.counters.read().unwrap().len(), 1);
        let values: Vec<_> = snapshotter.snapshot().into_vec();
        assert!(matches!(
            values[0].3,
            metrics_util::debugging::DebugValue::Counter(5)
        ));
    }
}
