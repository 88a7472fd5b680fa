//! The traffic log (contract §9), recorded by a live gateway when
//! `[abuse] log` is set: one JSON line per request, the format
//! `switchyard abuse scan` reads.
//!
//! Written by one thread of its own, never on the request path: entries go
//! to a bounded queue with `try_send` (a full queue drops the entry and
//! counts it), and the thread writes them through a buffer it flushes
//! whenever the queue is idle. An entry is stamped when its answer ended;
//! concurrent answers can end out of order by a hair, so the writer never
//! lets `ts` go backwards (the log stays sorted, as the format requires).
//!
//! Bodies are the apps' data: without `log_bodies = true` every text value
//! in the body is written as `""` — roles, part types, tool and turn
//! structure stay, so the log still shows who sent what shape of request
//! and how often, but no prompt text reaches the disk.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// How long the writer waits for more entries before it flushes.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// Keys whose string values are structure, not content: kept when bodies
/// are off.
const STRUCTURE: &[&str] = &[
    "role",
    "type",
    "model",
    "tool_choice",
    "mime_type",
    "mimeType",
];

/// One line of the log.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub ts: f64,
    pub key: String,
    pub ip: String,
    pub user_agent: String,
    pub dialect: &'static str,
    pub route: String,
    pub body: Value,
    pub output_tokens: u64,
}

/// The queue to the writer thread.
pub(super) struct LogSink {
    tx: SyncSender<LogEntry>,
    /// Whether bodies are written as sent.
    pub bodies: bool,
}

impl LogSink {
    /// Opens `path` for appending and starts the writer thread, which ends
    /// when the sink is dropped (after writing what was queued).
    pub(super) fn spawn(path: &Path, queue: usize, bodies: bool) -> std::io::Result<LogSink> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = mpsc::sync_channel::<LogEntry>(queue.max(1));
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("abuse-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, file);
                let mut last = f64::MIN;
                let mut failed = false;
                loop {
                    let result = match rx.recv_timeout(FLUSH_AFTER) {
                        Ok(mut entry) => {
                            entry.ts = entry.ts.max(last);
                            last = entry.ts;
                            serde_json::to_writer(&mut out, &entry)
                                .map_err(std::io::Error::other)
                                .and_then(|()| out.write_all(b"\n"))
                        }
                        Err(RecvTimeoutError::Timeout) => out.flush(),
                        Err(RecvTimeoutError::Disconnected) => {
                            let _ = out.flush();
                            break;
                        }
                    };
                    match result {
                        Err(e) if !failed => {
                            failed = true;
                            tracing::error!(path = %shown, error = %e, "cannot write the traffic log");
                        }
                        Ok(()) => failed = false,
                        Err(_) => {}
                    }
                }
            })?;
        Ok(LogSink { tx, bodies })
    }

    /// Queues an entry without waiting.
    pub(super) fn submit(&self, entry: LogEntry) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(entry) {
            crate::telemetry::abuse_record_dropped("log");
        }
    }
}

/// Empties every text value of a body, keeping its structure.
pub fn redact(v: &mut Value) {
    match v {
        Value::String(s) => s.clear(),
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if !(v.is_string() && STRUCTURE.contains(&k.as_str())) {
                    redact(v);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_keeps_structure_and_drops_text() {
        let mut body = json!({"model": "gpt", "system": "secret system",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "secret prompt"}]}],
            "max_tokens": 5});
        redact(&mut body);
        let text = body.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["messages"][0]["content"][0]["type"], "text");
        assert_eq!(body["model"], "gpt");
        assert_eq!(body["max_tokens"], 5);
    }
}
