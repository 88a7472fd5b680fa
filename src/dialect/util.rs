//! Small helpers shared by the dialect modules.

use serde_json::{Map, Value};

use super::DialectError;
use crate::model::{Dialect, Passthrough};

/// Parses a request body as a JSON object. serde_json's recursion limit
/// (128) turns pathological nesting into an error, not a stack overflow.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, DialectError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DialectError::Json(
            "the body must be a JSON object".to_string(),
        )),
        Err(e) => Err(DialectError::Json(e.to_string())),
    }
}

/// Keeps the top-level fields the dialect does not model, for passthrough.
pub(crate) fn passthrough(
    dialect: Dialect,
    obj: &Map<String, Value>,
    known: &[&str],
) -> Option<Passthrough> {
    let fields: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| !known.contains(&k.as_str()) && !steers_egress(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!fields.is_empty()).then_some(Passthrough { dialect, fields })
}

/// Fields a client might use to steer where the gateway sends requests.
/// Upstream hosts come from `routes.toml` only: these are never forwarded.
fn steers_egress(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    matches!(
        k.as_str(),
        "api_base"
            | "base_url"
            | "api_url"
            | "url"
            | "host"
            | "endpoint"
            | "proxy"
            | "api_key"
            | "key"
    )
}

/// Adds passthrough fields that belong to `dialect` without overwriting
/// what the encoder set.
pub(crate) fn merge_passthrough(
    dialect: Dialect,
    pass: Option<&Passthrough>,
    out: &mut Map<String, Value>,
) {
    if let Some(p) = pass.filter(|p| p.dialect == dialect) {
        for (k, v) in &p.fields {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// A fresh random identifier with a vendor-style prefix.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

pub(crate) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, DialectError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DialectError::invalid(
            format!("`{key}` must be a string"),
            key,
        )),
    }
}

pub(crate) fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, DialectError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(DialectError::invalid(
            format!("`{key}` must be a number"),
            key,
        )),
    }
}

pub(crate) fn opt_u32(obj: &Map<String, Value>, key: &str) -> Result<Option<u32>, DialectError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| {
                DialectError::invalid(format!("`{key}` must be a non-negative integer"), key)
            }),
        Some(_) => Err(DialectError::invalid(
            format!("`{key}` must be an integer"),
            key,
        )),
    }
}

pub(crate) fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, DialectError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(DialectError::invalid(
            format!("`{key}` must be a boolean"),
            key,
        )),
    }
}

/// Stop sequences given as one string or an array of strings.
pub(crate) fn stop_list(obj: &Map<String, Value>, key: &str) -> Result<Vec<String>, DialectError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| DialectError::invalid(format!("`{key}` must hold strings"), key))
            })
            .collect(),
        Some(_) => Err(DialectError::invalid(
            format!("`{key}` must be a string or an array of strings"),
            key,
        )),
    }
}

/// Splits a `data:` URL into media type and base64 payload.
pub(crate) fn split_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type.to_string(), data.to_string()))
}

/// Parses a vendor error body as JSON, if it is JSON.
pub(crate) fn error_json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

/// The message used when a vendor's error body could not be read; it never
/// echoes the body, which may be an HTML page or carry internal details.
pub(crate) fn opaque_error(status: u16) -> String {
    format!("upstream answered HTTP {status} with an unreadable error body")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_never_carries_egress_or_credential_fields() {
        let obj: Map<String, Value> = serde_json::from_str(
            r#"{"model":"m","seed":1,"api_base":"http://evil","base_url":"x","Host":"h","api-key":"k"}"#,
        )
        .unwrap();
        let p = passthrough(Dialect::OpenAi, &obj, &["model"]).unwrap();
        assert_eq!(p.fields.keys().collect::<Vec<_>>(), ["seed"]);
    }
}
