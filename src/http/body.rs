//! Request bodies: content type and size, enforced while the body streams in.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::GatewayError;

/// A JSON API: a declared content type must be JSON. A missing one is
/// accepted, as some clients omit it.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
    match headers.get(http::header::CONTENT_TYPE) {
        None => Ok(()),
        Some(v) => {
            let v = v.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = v.split(';').next().unwrap_or("").trim();
            if essence == "application/json" || essence.ends_with("+json") {
                Ok(())
            } else {
                Err(GatewayError::UnsupportedMediaType)
            }
        }
    }
}

/// Reads the body, stopping as soon as it passes `limit` bytes or when it
/// has not all arrived within `deadline`.
pub async fn read(body: Body, limit: usize, deadline: Duration) -> Result<Bytes, GatewayError> {
    let Ok(read) = tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await else {
        return Err(GatewayError::BodyTimeout(deadline));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::BodyTooLarge(limit))
        }
        Err(_) => Err(GatewayError::BadRequest(
            crate::dialect::DialectError::Json("the request body could not be read".into()),
        )),
    }
}
