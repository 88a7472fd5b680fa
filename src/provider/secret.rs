//! A credential that never prints: not in `Debug`, not in logs, not in
//! errors. The only way out is as a sensitive header value.

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(SecretString::from(value))
    }

    /// The raw value as a header, marked sensitive so that hyper's and
    /// reqwest's debug output redacts it.
    pub fn header_value(&self) -> HeaderValue {
        let mut v = HeaderValue::from_str(self.0.expose_secret())
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    }

    pub fn bearer_value(&self) -> HeaderValue {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0.expose_secret()))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("sk-canary-123".into());
        assert!(!format!("{s:?}").contains("canary"));
        assert!(!format!("{:?}", s.header_value()).contains("canary"));
    }
}
