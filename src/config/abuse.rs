//! `[abuse]`: live abuse detection (contract §9) — what the detector may
//! do to a key it flags, and the opt-in traffic log.

use std::num::NonZeroU32;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

/// The `[abuse]` keys a reload applies; the others (queue sizes and files)
/// are read once at start, and a reload that changes them is refused.
pub const RELOADABLE_ABUSE_KEYS: &[&str] = &["mode", "action", "throttle_rpm", "scope"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseConfig {
    /// `off`: nothing is recorded; `observe`: flags are raised (event,
    /// metric, admin API) and nothing else; `enforce`: a flagged key is
    /// also quarantined with `action`.
    pub mode: Mode,
    /// What `enforce` does to a flagged key: `throttle` (to `throttle_rpm`)
    /// or `suspend` (every request refused with 403).
    pub action: Action,
    /// Requests per minute a throttled key keeps.
    pub throttle_rpm: NonZeroU32,
    /// `key`: only the flagged key; `cluster`: also the keys the detector
    /// counted as the same campaign when it flagged a key farm.
    pub scope: Scope,
    /// Records waiting for the detector; a full queue drops the record and
    /// counts it (`switchyard_abuse_records_dropped_total`), never waits.
    pub queue: usize,
    /// Recent flags kept for `GET /admin/abuse` (oldest dropped first).
    pub max_flags: usize,
    /// Where quarantines are kept across restarts; none: in memory only.
    pub quarantine_file: Option<PathBuf>,
    /// Record the traffic log (contract §9 lines) to this file; none: off.
    pub log: Option<PathBuf>,
    /// Put the request bodies in the log as the apps sent them. Off: every
    /// text value of the body is written as `""` (the structure, roles and
    /// types stay), so no prompt text reaches the disk.
    pub log_bodies: bool,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        AbuseConfig {
            mode: Mode::Observe,
            action: Action::Throttle,
            throttle_rpm: NonZeroU32::new(6).expect("6 is not zero"),
            scope: Scope::Key,
            queue: 4096,
            max_flags: 200,
            quarantine_file: None,
            log: None,
            log_bodies: false,
        }
    }
}

/// Largest `queue` and `max_flags`: beyond it a value is a typo, and the
/// memory it would take is not bounded by anything sensible.
const MAX_QUEUE: usize = 1_000_000;

pub(super) fn validate(a: &AbuseConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if a.queue == 0 || a.queue > MAX_QUEUE {
        out.push((
            "abuse.queue".into(),
            format!("must be between 1 and {MAX_QUEUE}"),
        ));
    }
    if a.max_flags == 0 || a.max_flags > MAX_QUEUE {
        out.push((
            "abuse.max_flags".into(),
            format!("must be between 1 and {MAX_QUEUE}"),
        ));
    }
    if a.log_bodies && a.log.is_none() {
        out.push((
            "abuse.log_bodies".into(),
            "needs `log = \"path\"`: bodies go to the traffic log".into(),
        ));
    }
    for (key, path) in [("log", &a.log), ("quarantine_file", &a.quarantine_file)] {
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            out.push((format!("abuse.{key}"), "must not be empty".into()));
        }
    }
    if a.log.is_some() && a.log == a.quarantine_file {
        out.push((
            "abuse.quarantine_file".into(),
            "must not be the traffic log's file".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::load_str;

    use super::super::tests::GOOD as BASE;

    #[test]
    fn defaults_observe_and_keys_parse() {
        let cfg = load_str("r.toml", BASE, Vec::new()).unwrap();
        assert_eq!(cfg.abuse.mode, super::Mode::Observe);
        let text = format!(
            "{BASE}\n[abuse]\nmode = \"enforce\"\naction = \"suspend\"\nscope = \"cluster\"\nthrottle_rpm = 2\nlog = \"t.jsonl\"\nlog_bodies = true\n"
        );
        let cfg = load_str("r.toml", &text, Vec::new()).unwrap();
        assert_eq!(cfg.abuse.mode, super::Mode::Enforce);
        assert_eq!(cfg.abuse.action, super::Action::Suspend);
        assert_eq!(cfg.abuse.scope, super::Scope::Cluster);
        assert_eq!(cfg.abuse.throttle_rpm.get(), 2);
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let text = format!("{BASE}\n[abuse]\nqueue = 0\nlog_bodies = true\n");
        let err = load_str("r.toml", &text, Vec::new()).unwrap_err();
        let lines = err.problems();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("r.toml:18:1: abuse.queue: must be between 1")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("r.toml:19:1: abuse.log_bodies: needs `log")),
            "{lines:#?}"
        );
        for (bad, what) in [
            ("mode = \"block\"", "unknown variant `block`"),
            ("throttle_rpm = 0", "expected a nonzero"),
            ("scope = \"world\"", "unknown variant `world`"),
            ("colour = 1", "colour"),
        ] {
            let text = format!("{BASE}\n[abuse]\n{bad}\n");
            let err = load_str("r.toml", &text, Vec::new()).unwrap_err();
            let first = &err.problems()[0];
            assert!(
                first.starts_with("r.toml:18:") && first.contains(what),
                "{bad}: {first}"
            );
        }
    }
}
