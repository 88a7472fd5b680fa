//! Suspensions on disk, so they survive a restart. Written atomically (a
//! temp file in the same directory, flushed, then a rename) and in order, by
//! one writer task: ops actions that race each other can finish in any
//! order, but the file always ends up holding the latest live state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::watch;

use super::Suspension;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct StateFile {
    suspensions: BTreeMap<String, Suspension>,
}

/// The saved suspensions; none when the file does not exist yet.
pub fn load_suspensions(path: &Path) -> Result<BTreeMap<String, Suspension>, PersistError> {
    let err = |e: &dyn std::fmt::Display| PersistError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(err(&e)),
        Ok(bytes) => serde_json::from_slice::<StateFile>(&bytes)
            .map(|f| f.suspensions)
            .map_err(|e| err(&e)),
    }
}

/// Replaces the file with `suspensions`, atomically and durably (the data
/// is flushed before the rename, the directory after it). Blocking.
fn save_suspensions(
    path: &Path,
    suspensions: BTreeMap<String, Suspension>,
) -> Result<(), PersistError> {
    let err = |e: std::io::Error| PersistError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let body =
        serde_json::to_vec_pretty(&StateFile { suspensions }).expect("serialize suspensions");
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&body)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    // Makes the rename itself durable; not every file system allows
    // opening a directory, and the data is already in place.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// The outcome of the last write, and the generation it covered.
#[derive(Debug, Clone)]
struct Written {
    generation: u64,
    error: Option<PersistError>,
}

/// The one writer of the state file.
///
/// A caller changes the live state first, then calls [`StateWriter::persist`],
/// which bumps a generation and waits for a write that read the live state
/// after that bump. The writer task reads the state when it writes, so
/// bursts coalesce into one write and the last write always holds the
/// latest state, whatever order the callers finish in. The task outlives a
/// caller that gives up waiting, so a dropped request still gets persisted.
#[derive(Debug)]
pub struct StateWriter {
    path: PathBuf,
    requested: watch::Sender<u64>,
    written: watch::Receiver<Written>,
}

impl StateWriter {
    /// Starts the writer task for `path`; `read` gives the live suspensions.
    /// Must be called inside a tokio runtime. The task ends when the writer
    /// is dropped.
    pub fn spawn(
        path: PathBuf,
        read: impl Fn() -> BTreeMap<String, Suspension> + Send + Sync + 'static,
    ) -> StateWriter {
        let (requested, mut wanted) = watch::channel(0u64);
        let (done, written) = watch::channel(Written {
            generation: 0,
            error: None,
        });
        let (file, shown) = (path.clone(), path.display().to_string());
        let read = std::sync::Arc::new(read);
        tokio::spawn(async move {
            while wanted.changed().await.is_ok() {
                // The generation is taken before the state is read: every
                // change that bumped up to it is in what gets written.
                let generation = *wanted.borrow_and_update();
                let (file, read) = (file.clone(), read.clone());
                let result =
                    tokio::task::spawn_blocking(move || save_suspensions(&file, read())).await;
                let error = match result {
                    Ok(r) => r.err(),
                    Err(e) => Some(PersistError::Write {
                        path: shown.clone(),
                        message: format!("the writer failed: {e}"),
                    }),
                };
                done.send_replace(Written { generation, error });
            }
        });
        StateWriter {
            path,
            requested,
            written,
        }
    }

    /// Writes the live state (after the caller's change) and waits until
    /// it is on disk.
    pub async fn persist(&self) -> Result<(), PersistError> {
        let mut generation = 0;
        self.requested.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        let mut written = self.written.clone();
        let outcome = written
            .wait_for(|w| w.generation >= generation)
            .await
            .map(|w| w.error.clone());
        match outcome {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(_) => Err(PersistError::Write {
                path: self.path.display().to_string(),
                message: "the state writer stopped".into(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
