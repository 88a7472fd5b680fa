//! Reload on file change: watches the routes file's **directory** (an
//! atomic temp-file + rename replaces the inode, and a watch on the file
//! itself would go deaf), debounces bursts (~200 ms), keeps only events for
//! our file name, and re-reads it off the async runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};
use tokio::sync::mpsc;

use crate::state::Live;

const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops watching.
pub struct Watch {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    path: String,
    source: notify::Error,
}

/// Runs `reload` in the blocking pool: it reads a file and builds clients.
pub async fn reload(live: Arc<Live>, actor: String) -> Result<u64, crate::state::LoadError> {
    match tokio::task::spawn_blocking(move || live.reload(&actor)).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Starts watching `path`; each debounced change triggers a reload.
pub fn watch(live: Arc<Live>, path: &Path) -> Result<Watch, WatchError> {
    let file = path.file_name().map(|f| f.to_owned());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        let ours = events.iter().any(|e| {
            e.paths
                .iter()
                .any(|p| p.file_name().map(|f| f.to_owned()) == file)
        });
        if ours {
            let _ = tx.send(());
        }
    })
    .map_err(|source| WatchError {
        path: dir.display().to_string(),
        source,
    })?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError {
            path: dir.display().to_string(),
            source,
        })?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            match reload(live.clone(), "file-watch".into()).await {
                Ok(v) => tracing::info!(version = v, "routes reloaded after a file change"),
                Err(e) => {
                    tracing::warn!(error = %e, "reload rejected; the old table keeps serving")
                }
            }
        }
    });
    Ok(Watch {
        _debouncer: debouncer,
    })
}
