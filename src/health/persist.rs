//! Suspensions on disk, so they survive a restart. Written atomically: a
//! temp file in the same directory, then a rename.

use std::collections::BTreeMap;
use std::path::Path;

use super::Suspension;

#[derive(Debug, thiserror::Error)]
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

/// Replaces the file with `suspensions`, atomically.
pub async fn save_suspensions(
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
    tokio::fs::write(&tmp, body).await.map_err(err)?;
    tokio::fs::rename(&tmp, path).await.map_err(err)
}
