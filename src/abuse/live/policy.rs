//! The `[abuse]` policy as the live detector applies it.

use std::num::NonZeroU32;
use std::path::PathBuf;

use crate::abuse::Settings;
use crate::config::AbuseConfig;
pub use crate::config::{AbuseAction as Action, AbuseMode as Mode, AbuseScope as Scope};

/// What the worker does with a flag; replaced on reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub action: Action,
    pub throttle_rpm: NonZeroU32,
    pub scope: Scope,
}

/// What a guard is built from: start-only settings and the first policy.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: Policy,
    /// Records waiting for the detector.
    pub queue: usize,
    /// Recent flags kept for the admin API.
    pub max_flags: usize,
    pub quarantine_file: Option<PathBuf>,
    /// The traffic log (contract §9), when recorded.
    pub log: Option<PathBuf>,
    pub log_bodies: bool,
    pub settings: Settings,
}

impl Policy {
    /// The part of `[abuse]` a reload applies.
    pub fn of(cfg: &AbuseConfig) -> Policy {
        Policy {
            mode: cfg.mode,
            action: cfg.action,
            throttle_rpm: cfg.throttle_rpm,
            scope: cfg.scope,
        }
    }
}

impl Options {
    /// What the live detector is started with.
    pub fn of(cfg: &AbuseConfig) -> Options {
        Options {
            policy: Policy::of(cfg),
            queue: cfg.queue,
            max_flags: cfg.max_flags,
            quarantine_file: cfg.quarantine_file.clone(),
            log: cfg.log.clone(),
            log_bodies: cfg.log_bodies,
            settings: Settings::default(),
        }
    }
}
