//! Wall-clock seconds, for what outlives the process or is shown to people:
//! TTLs persisted in the state file, expiry of keys and faults, `created`
//! fields on the wire, "since when" in status. Durations measured inside
//! the process (ejections, deadlines) use `tokio::time::Instant` instead,
//! so tests can pause them.

/// Seconds since the Unix epoch; 0 if the system clock is before it.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
