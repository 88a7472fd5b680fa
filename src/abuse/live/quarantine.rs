//! Quarantines: what is in force for a key, and the file that keeps them
//! across restarts.

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use super::{Action, GuardError};

/// A key taken out of normal service by a flag, until ops lift it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantine {
    pub key: String,
    pub action: Action,
    /// Requests per minute left to a throttled key.
    pub rpm: Option<u32>,
    /// Unix seconds.
    pub since: u64,
    /// The flagged key that led here: this key, or its cluster's.
    pub flagged_key: String,
    pub kind: String,
    pub score: f64,
    pub cluster: Option<String>,
    pub reasons: Vec<String>,
}

/// A quarantine in force.
pub(super) struct Active {
    pub(super) quarantine: Quarantine,
    pub(super) limiter: Option<DefaultDirectRateLimiter>,
}

impl Active {
    pub(super) fn new(quarantine: Quarantine) -> Active {
        let limiter = quarantine
            .rpm
            .and_then(NonZeroU32::new)
            .filter(|_| quarantine.action == Action::Throttle)
            .map(|n| RateLimiter::direct(Quota::per_minute(n)));
        Active {
            quarantine,
            limiter,
        }
    }
}

/// Why a quarantined key's request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Suspended,
    Throttled { retry_after: Duration },
}

#[derive(Serialize, Deserialize, Default)]
pub(super) struct QuarantineFile {
    pub(super) quarantines: Vec<Quarantine>,
}

pub(super) fn load_quarantines(path: &Path) -> Result<Vec<Quarantine>, GuardError> {
    let err = |e: &dyn std::fmt::Display| GuardError::Quarantines {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(err(&e)),
        Ok(bytes) => serde_json::from_slice::<QuarantineFile>(&bytes)
            .map(|f| f.quarantines)
            .map_err(|e| err(&e)),
    }
}

/// Replaces the file atomically: a temp file in the same directory, then a
/// rename.
pub(super) fn save_quarantines(path: &Path, file: &QuarantineFile) -> std::io::Result<()> {
    use std::io::Write;
    let body = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&body)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}
