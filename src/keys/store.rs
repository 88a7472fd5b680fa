//! The keys file: JSON, written atomically (temp file + rename).

use std::path::Path;

use super::KeyRecord;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read keys file {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write keys file {path}: {message}")]
    Write { path: String, message: String },
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    keys: Vec<KeyRecord>,
}

/// The stored keys; none when the file does not exist yet.
pub fn load_file(path: &Path) -> Result<Vec<KeyRecord>, KeyFileError> {
    let err = |m: String| KeyFileError::Read {
        path: path.display().to_string(),
        message: m,
    };
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(err(e.to_string())),
        Ok(bytes) => serde_json::from_slice::<KeyFile>(&bytes)
            .map(|f| f.keys)
            .map_err(|e| err(e.to_string())),
    }
}

pub fn save_file(path: &Path, keys: Vec<KeyRecord>) -> Result<(), KeyFileError> {
    let err = |e: std::io::Error| KeyFileError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let body = serde_json::to_vec_pretty(&KeyFile { keys }).expect("serialize keys");
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
