//! Reload on file change: watches the routes file's **directory** (an
//! atomic temp-file + rename replaces the inode, and a watch on the file
//! itself would go deaf), keeps only events for our file name that can
//! change its content (never a read: the gateway reads the file itself),
//! waits until the file has been quiet for [`QUIET`] after the last such
//! event (a file saved in several writes is read once, whole), and re-reads
//! it off the async runtime. Unchanged bytes are a no-op in
//! [`Live::reload`], so nothing here can loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::state::{Live, LoadError, Reloaded, Trigger};

/// How long the routes file must go without a write before a file-change
/// reload reads it.
pub const QUIET: Duration = Duration::from_secs(2);

/// Keeps the watch alive; dropping it stops watching.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    path: String,
    source: notify::Error,
}

/// An explicit reload (SIGHUP, tests), refusing to drop busy routes.
pub async fn reload(live: Arc<Live>, actor: String) -> Result<u64, LoadError> {
    let trigger = Trigger::Explicit {
        allow_removals: false,
    };
    reload_with(live, actor, trigger).await.map(|r| r.version)
}

/// Runs [`Live::reload`] in the blocking pool: it reads files and builds
/// clients.
pub async fn reload_with(
    live: Arc<Live>,
    actor: String,
    trigger: Trigger,
) -> Result<Reloaded, LoadError> {
    match tokio::task::spawn_blocking(move || live.reload(&actor, trigger)).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Whether an event kind can mean new content. Opening, reading and
/// closing a file unwritten, and attribute changes, cannot.
fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(m)) => *m == MetadataKind::WriteTime,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Starts watching `path`; each change, once quiet, triggers a reload.
pub fn watch(live: Arc<Live>, path: &Path) -> Result<Watch, WatchError> {
    let file = path.file_name().map(|f| f.to_owned());
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().map(|f| f.to_owned()) == file);
        if ours && may_change_content(&event.kind) {
            let _ = tx.send(());
        }
    })
    .map_err(|source| WatchError {
        path: dir.display().to_string(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError {
            path: dir.display().to_string(),
            source,
        })?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            if !quiet(&mut rx).await {
                return;
            }
            match reload_with(live.clone(), "file-watch".into(), Trigger::FileChange).await {
                Ok(r) if r.changed => {
                    tracing::info!(version = r.version, "routes reloaded after a file change")
                }
                Ok(_) => tracing::debug!("routes file unchanged; nothing to reload"),
                Err(e) => {
                    tracing::warn!(error = %e, "reload rejected; the old table keeps serving")
                }
            }
        }
    });
    Ok(Watch { _watcher: watcher })
}

/// Waits until no event came for [`QUIET`]; `false` if the watch ended.
async fn quiet(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
    loop {
        match tokio::time::timeout(QUIET, rx.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RenameMode};

    #[test]
    fn reads_are_not_changes() {
        for read in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
        ] {
            assert!(!may_change_content(&read), "{read:?}");
        }
        for write in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(notify::event::RemoveKind::File),
        ] {
            assert!(may_change_content(&write), "{write:?}");
        }
    }

    /// Events keep pushing the read back; it happens QUIET after the last.
    #[tokio::test(start_paused = true)]
    async fn the_quiet_period_counts_from_the_last_event() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = tokio::time::Instant::now();
        let sender = tokio::spawn(async move {
            for _ in 0..3 {
                tx.send(()).unwrap();
                tokio::time::sleep(QUIET / 2).await;
            }
            // Held open past the quiet period, so only silence ends the wait.
            tokio::time::sleep(QUIET * 3).await;
            drop(tx);
        });
        assert!(quiet(&mut rx).await);
        // The last event came at QUIET (two half-periods); silence followed.
        assert_eq!(start.elapsed(), QUIET + QUIET);
        sender.await.unwrap();
    }
}
