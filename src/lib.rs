//! Switchyard: a multi-model routing gateway.
//!
//! Apps keep the SDK they use (OpenAI, Anthropic, Gemini) and point its base
//! URL here; each request is served by the first eligible backend of its
//! route and answered in the app's own dialect.
//!
//! Module map, in dependency order (each imports only those above it):
//! - [`clock`]: wall-clock seconds for TTLs and display.
//! - [`model`]: the canonical request, response and stream-event types.
//! - [`dialect`]: one module per wire format, converting to and from `model`;
//!   the vendor-error taxonomy.
//! - [`error`]: failure classes, the one class → decision table, gateway errors.
//! - [`conversation`]: the Responses API's turn store.
//! - [`config`]: `routes.toml` mirror, validation with positions, loading.
//! - [`telemetry`]: metric names and recording helpers, spans, `/metrics`.
//! - [`abuse`]: distillation and key-farm detection over request records
//!   (offline scan, synthetic traffic, and the live detector with its
//!   quarantines and traffic log, on threads of its own; no network I/O).
//! - [`provider`]: outbound HTTP to one vendor endpoint; secrets; quirks;
//!   chaos faults at that boundary.
//! - [`policy`]: the compiled routing table; pure target selection.
//! - [`health`]: per-target state (suspension, ejection, probes) and retry budgets.
//! - [`events`]: the audit trail. [`keys`]: app keys and their limits.
//! - [`state`]: the live snapshot behind an `ArcSwap`; suspend, resume, reload.
//! - [`failover`]: the decision function, its executor and the one recorder.
//! - [`fleet`]: fleet mode: ops changes shared and acknowledged through Redis.
//! - [`reload`]: file watching.
//! - [`http`]: data-plane ingress handlers, one per dialect.
//! - [`admin`]: the control plane (health, reload, ops).
//! - [`sim`]: the vendor simulator used by `demo`, tests and benchmarks.
//! - [`demo`]: the embedded default table; [`app`]: wiring for `serve`.
//! - [`drill`]: chaos drills; [`fuzzing`]: the fuzz targets' entry points.

pub mod abuse;
pub mod admin;
pub mod app;
pub mod clock;
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
