//! The `[abuse]` policy as the live detector applies it.

use std::num::NonZeroU32;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::abuse::Settings;

/// What the gateway does about abuse (`[abuse] mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Nothing is recorded.
    Off,
    /// Flags are raised; no key is touched.
    #[default]
    Observe,
    /// Flags are raised and the flagged key is quarantined.
    Enforce,
}

/// What `enforce` does to a flagged key (`[abuse] action`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Requests per minute cut to `throttle_rpm`.
    #[default]
    Throttle,
    /// Every request refused (403).
    Suspend,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Throttle => "throttle",
            Action::Suspend => "suspend",
        }
    }
}

/// Which keys a flag quarantines (`[abuse] scope`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The flagged key only.
    #[default]
    Key,
    /// The flagged key and, for a key farm, the sibling keys the detector
    /// counted as the same campaign (never every key sharing a client).
    Cluster,
}

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
