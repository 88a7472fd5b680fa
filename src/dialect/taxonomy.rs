//! The vendor-error taxonomy: what a vendor's error answer *means*, as one
//! enum every backend dialect decodes into.
//!
//! Each dialect reads its vendor's structured fields first (OpenAI
//! `error.code`/`type`, Anthropic `error.type`, Gemini `error.status` and the
//! `google.rpc.ErrorInfo` reason) and only then falls back on the HTTP status
//! and, last, on the message text ([`fallback`]). What the gateway *does*
//! about each class is decided elsewhere, in one table
//! (`crate::error::rule`): this module only names things.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The class of a vendor's error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VendorClass {
    /// The vendor is busy for everyone (Anthropic 529, OpenAI/Gemini 503).
    Overloaded,
    /// Our rate limit: it resets soon (the reset time travels beside it).
    RateLimited,
    /// Quota or billing exhausted: it will not reset within a request's life
    /// (OpenAI `insufficient_quota`, Gemini daily quota, Anthropic credit).
    QuotaExhausted,
    /// The model does not exist (any more) at this vendor (404).
    ModelUnavailable,
    /// The model exists but this account may not use it (403).
    ModelBlocked,
    /// The vendor disabled or suspended the whole account.
    AccountDisabled,
    /// The vendor refused our credentials (bad or revoked key).
    Credentials,
    /// The vendor's safety system refused the content.
    ContentPolicy,
    /// The prompt does not fit the model's context window.
    ContextLength,
    /// The request itself is malformed for this vendor.
    InvalidRequest,
    /// The vendor failed (5xx) without saying it was overloaded.
    #[default]
    ServerError,
}

/// The class from the HTTP status and, last, the message text: used when a
/// vendor's structured fields named nothing this module knows.
pub fn fallback(status: Option<u16>, message: &str) -> VendorClass {
    let m = message.to_ascii_lowercase();
    if m.contains("context length")
        || m.contains("context window")
        || m.contains("prompt is too long")
        || m.contains("exceeds the maximum number of tokens")
    {
        return VendorClass::ContextLength;
    }
    if m.contains("has been suspended")
        || m.contains("organization has been disabled")
        || m.contains("account has been deactivated")
        || m.contains("account has been disabled")
        || m.contains("deactivated account")
    {
        return VendorClass::AccountDisabled;
    }
    if m.contains("exceeded your current quota") || m.contains("credit balance is too low") {
        return VendorClass::QuotaExhausted;
    }
    match status {
        Some(429) => VendorClass::RateLimited,
        Some(529) => VendorClass::Overloaded,
        Some(503) if m.contains("overload") => VendorClass::Overloaded,
        Some(401) => VendorClass::Credentials,
        Some(403) => VendorClass::Credentials,
        Some(404) => VendorClass::ModelUnavailable,
        Some(s) if (400..500).contains(&s) => VendorClass::InvalidRequest,
        _ => VendorClass::ServerError,
    }
}

/// The context limit a vendor states in its message, when it states one:
/// OpenAI "maximum context length is 128000 tokens", Anthropic
/// "… tokens > 200000 maximum", Gemini "maximum number of tokens allowed
/// (1048576)".
pub fn stated_context_limit(message: &str) -> Option<u32> {
    let m = message.to_ascii_lowercase();
    let after = |marker: &str| {
        m.find(marker)
            .and_then(|at| first_number(&m[at + marker.len()..]))
    };
    after("maximum context length is")
        .or_else(|| after("maximum number of tokens allowed"))
        .or_else(|| {
            let at = m.find(" maximum")?;
            let before = &m[..at];
            let start = before
                .rfind(|c: char| !c.is_ascii_digit())
                .map_or(0, |i| i + 1);
            before[start..].parse().ok()
        })
}

fn first_number(s: &str) -> Option<u32> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let digits: String = s[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Parses a Go-style duration as vendors send it in reset headers and
/// Gemini's `RetryInfo.retryDelay`: `"1s"`, `"6m0s"`, `"20ms"`,
/// `"47.5s"`, `"1h2m"`.
pub fn parse_reset(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..split].parse().ok()?;
        rest = &rest[split..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" | "" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// When a rate limit resets, from the response headers: `retry-after-ms`
/// and `retry-after` (seconds) first, then OpenAI's
/// `x-ratelimit-reset-{requests,tokens}` (durations) and Anthropic's
/// `anthropic-ratelimit-*-reset` (RFC 3339 instants). Of the per-limit
/// headers, those of an exhausted limit (`remaining` 0) win; without that
/// hint the latest reset does.
pub fn reset_from_headers(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    if let Some(secs) = text("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    let mut exhausted = None;
    let mut latest = None;
    let limits = ["requests", "tokens", "input-tokens", "output-tokens"];
    for limit in limits {
        let openai = text(&format!("x-ratelimit-reset-{limit}"))
            .and_then(parse_reset)
            .map(|d| (d, format!("x-ratelimit-remaining-{limit}")));
        let anthropic = text(&format!("anthropic-ratelimit-{limit}-reset"))
            .and_then(|v| humantime::parse_rfc3339_weak(v.trim()).ok())
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
            .map(|d| (d, format!("anthropic-ratelimit-{limit}-remaining")));
        for (reset, remaining) in openai.into_iter().chain(anthropic) {
            latest = latest.max(Some(reset));
            if text(&remaining).is_some_and(|r| r.trim() == "0") {
                exhausted = exhausted.max(Some(reset));
            }
        }
    }
    exhausted.or(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_limits_are_read_from_each_vendors_wording() {
        assert_eq!(
            stated_context_limit("This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens."),
            Some(128000)
        );
        assert_eq!(
            stated_context_limit("prompt is too long: 208310 tokens > 200000 maximum"),
            Some(200000)
        );
        assert_eq!(
            stated_context_limit("The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."),
            Some(1048576)
        );
        assert_eq!(stated_context_limit("prompt is too long"), None);
    }

    #[test]
    fn reset_durations_parse_like_the_vendors_write_them() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_reset("47.5s"), Some(Duration::from_millis(47_500)));
        assert_eq!(parse_reset("1h2m"), Some(Duration::from_secs(3720)));
        assert_eq!(parse_reset("soon"), None);
        assert_eq!(parse_reset(""), None);
    }

    #[test]
    fn reset_headers_prefer_the_exhausted_limit() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-requests", "120ms".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
        h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        assert_eq!(
            reset_from_headers(&h, now),
            Some(Duration::from_millis(120))
        );
        h.remove("x-ratelimit-remaining-requests");
        assert_eq!(reset_from_headers(&h, now), Some(Duration::from_secs(360)));
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(reset_from_headers(&h, now), Some(Duration::from_secs(7)));

        let mut a = HeaderMap::new();
        a.insert(
            "anthropic-ratelimit-requests-reset",
            "2023-11-14T22:13:50Z".parse().unwrap(),
        );
        assert_eq!(reset_from_headers(&a, now), Some(Duration::from_secs(30)));
        assert_eq!(reset_from_headers(&HeaderMap::new(), now), None);
    }

    #[test]
    fn the_fallback_reads_status_before_guessing() {
        assert_eq!(fallback(Some(429), ""), VendorClass::RateLimited);
        assert_eq!(fallback(Some(403), "nope"), VendorClass::Credentials);
        assert_eq!(
            fallback(Some(403), "Consumer 'api_key:x' has been suspended."),
            VendorClass::AccountDisabled
        );
        assert_eq!(fallback(Some(400), "bad"), VendorClass::InvalidRequest);
        assert_eq!(fallback(None, "boom"), VendorClass::ServerError);
    }
}
