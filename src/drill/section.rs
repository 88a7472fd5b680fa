//! Reads a TOML table key by key, so that every problem names its key
//! (`load.rate`, `timeline[2].knobs`) and unknown keys are reported.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Collected problems, each `key: message`.
pub type Problems = Vec<String>;

/// Reads a TOML table key by key so that every error names its key, and
/// reports keys nobody asked for.
pub struct Section<'a> {
    path: String,
    table: &'a Table,
    known: BTreeSet<&'static str>,
}

impl<'a> Section<'a> {
    pub fn new(path: impl Into<String>, table: &'a Table) -> Self {
        Section {
            path: path.into(),
            table,
            known: BTreeSet::new(),
        }
    }

    pub fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    pub fn opt<T: DeserializeOwned>(&mut self, k: &'static str, p: &mut Problems) -> Option<T> {
        self.known.insert(k);
        let v = self.table.get(k)?;
        match v.clone().try_into::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                let msg = e.to_string();
                p.push(format!("{}: {}", self.key(k), msg.trim()));
                None
            }
        }
    }

    pub fn req<T: DeserializeOwned>(
        &mut self,
        k: &'static str,
        what: &str,
        p: &mut Problems,
    ) -> Option<T> {
        if !self.table.contains_key(k) {
            self.known.insert(k);
            p.push(format!("{}: missing ({what})", self.key(k)));
            return None;
        }
        self.opt(k, p)
    }

    pub fn duration(&mut self, k: &'static str, p: &mut Problems) -> Option<Duration> {
        self.known.insert(k);
        let v = self.table.get(k)?;
        let Some(s) = v.as_str() else {
            p.push(format!(
                "{}: expected a duration string such as \"10s\" or \"1m30s\", found {}",
                self.key(k),
                v.type_str()
            ));
            return None;
        };
        match humantime::parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                p.push(format!(
                    "{}: `{s}` is not a duration ({e}; try 10s, 1m30s, 500ms)",
                    self.key(k)
                ));
                None
            }
        }
    }

    pub fn req_duration(&mut self, k: &'static str, p: &mut Problems) -> Option<Duration> {
        if !self.table.contains_key(k) {
            self.known.insert(k);
            p.push(format!(
                "{}: missing (a duration such as \"30s\")",
                self.key(k)
            ));
            return None;
        }
        self.duration(k, p)
    }

    pub fn share(&mut self, k: &'static str, default: f64, p: &mut Problems) -> f64 {
        match self.opt::<f64>(k, p) {
            Some(v) if (0.0..=1.0).contains(&v) => v,
            Some(v) => {
                p.push(format!(
                    "{}: {v} is not a share between 0 and 1",
                    self.key(k)
                ));
                default
            }
            None => default,
        }
    }

    pub fn finish(self, p: &mut Problems) {
        for k in self.table.keys() {
            if !self.known.contains(k.as_str()) {
                let expected: Vec<&str> = self.known.iter().copied().collect();
                p.push(format!(
                    "{}: unknown key (expected one of: {})",
                    self.key(k),
                    expected.join(", ")
                ));
            }
        }
    }
}

/// Deep-merges `overlay` into `base` (tables merge, anything else replaces).
pub fn merge(base: &mut Table, overlay: &Table) {
    for (k, v) in overlay {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}
