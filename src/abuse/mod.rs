//! Abuse detection: distillation campaigns and key farms (contract §9).
//!
//! The vendor suspends the account that carried a campaign — ours — so the
//! gateway watches its own traffic first. Each request becomes a compact
//! [`Record`] (who, when, sizes, and what the prompt asks for, as tags and
//! template hashes, never the text); the [`Detector`] keeps bounded per-key
//! and cross-key state and returns at most one [`Flag`] per key, using only
//! what came before it. [`scan`] runs the same detector over a traffic log;
//! [`synth`] generates labelled traffic to test it on. [`live`] runs the
//! same detector inside the gateway, off the request path, and applies the
//! `[abuse]` policy (quarantines); [`log`] records the traffic log.
//!
//! This module does no network I/O and knows nothing of HTTP; its only
//! file I/O is on its own threads (the traffic log, the quarantine file).

pub mod detector;
pub mod live;
pub mod log;
pub mod record;
pub mod scan;
pub mod synth;
pub mod text;

pub use detector::{Detector, Flag, Settings};
pub use record::{LogLine, Record};
