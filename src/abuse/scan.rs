//! The offline scan: stream a traffic log through the detector and hand
//! each flag on as it is decided. One line in memory at a time.

use std::io::BufRead;

use super::detector::{Detector, Flag, Settings};
use super::record::{LogLine, Record};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("line {line}: not a traffic log line (contract §9): {source}")]
    Line {
        line: u64,
        source: serde_json::Error,
    },
    #[error("reading the log: {0}")]
    Read(std::io::Error),
    #[error("writing flags: {0}")]
    Write(std::io::Error),
}

/// What a scan saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub keys_flagged: u64,
}

/// Read `input` to the end, calling `on_flag` for each flag in order.
/// Blank lines are skipped; any other unreadable line is an error naming it.
pub fn scan(
    mut input: impl BufRead,
    settings: Settings,
    mut on_flag: impl FnMut(&Flag) -> std::io::Result<()>,
) -> Result<Summary, ScanError> {
    let mut det = Detector::new(settings);
    let mut summary = Summary::default();
    let mut scratch = Vec::new();
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(ScanError::Read)? == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: LogLine = serde_json::from_str(&line).map_err(|source| ScanError::Line {
            line: number,
            source,
        })?;
        summary.lines += 1;
        let record = Record::from_line(&parsed, &mut scratch);
        if let Some(flag) = det.observe(&record) {
            summary.keys_flagged += 1;
            on_flag(&flag).map_err(ScanError::Write)?;
        }
    }
    Ok(summary)
}

/// Scan a log held in memory; the flags in order.
pub fn scan_str(log: &str, settings: Settings) -> Result<Vec<Flag>, ScanError> {
    let mut flags = Vec::new();
    scan(log.as_bytes(), settings, |f| {
        flags.push(f.clone());
        Ok(())
    })?;
    Ok(flags)
}
