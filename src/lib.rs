//! Switchyard: a multi-model routing gateway.
//!
//! Apps keep the SDK they use (OpenAI, Anthropic, Gemini) and point its base
//! URL here; each request is served by the first eligible backend of its
//! route and answered in the app's own dialect.
//!
//! Module map, in dependency order (each imports only those above it):
//! - [`model`]: the canonical request, response and stream-event types.
//! - [`dialect`]: one module per wire format, converting to and from `model`.
//! - [`abuse`]: distillation and key-farm detection over request records
//!   (offline scan, synthetic traffic, and the live detector with its
//!   quarantines and traffic log, on threads of its own; no network I/O).
//! - [`config`]: `routes.toml` mirror, validation with positions, loading.
//! - [`provider`]: outbound HTTP to one vendor endpoint; secrets; quirks.
//! - [`policy`]: the compiled routing table; pure target selection.
//! - [`failover`]: the one loop that walks a route's targets.
//! - [`health`]: per-target state (suspension, ejection, probes) and retry budgets.
//! - [`events`]: the audit trail.
//! - [`state`]: the live snapshot behind an `ArcSwap`; [`reload`]: file watching.
//! - [`fleet`]: fleet mode: ops changes shared and acknowledged through Redis.
//! - [`http`]: data-plane ingress handlers, one per dialect.
//! - [`admin`]: the control plane (health, reload).
//! - [`telemetry`]: metric names and recording helpers, `/metrics` rendering.
//! - [`sim`]: the vendor simulator used by `demo`, tests and benchmarks.
//! - [`app`]: wiring for `serve`; [`demo`]: the embedded default table.

pub mod abuse;
pub mod admin;
pub mod app;
pub mod config;
pub mod conversation;
pub mod demo;
pub mod dialect;
pub mod drill;
pub mod error;
pub mod events;
pub mod failover;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod http;
pub mod keys;
pub mod model;
pub mod policy;
pub mod provider;
pub mod reload;
pub mod sim;
pub mod state;
pub mod telemetry;
