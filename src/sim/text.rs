//! The deterministic answer generator shared by every simulated vendor.
//!
//! Each vendor module boils its request down to an [`Extract`]; [`plan`] turns
//! that into the exact words (or tool call) to send, the finish reason and the
//! usage counts, so that every dialect answers the same question the same way
//! and tests can predict the reply from the request alone.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::Vendor;

/// Filler words appended after the header words of every text answer.
const FILLER: [&str; 12] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu",
];

/// First 16 hex chars of the SHA-256 of `text`.
///
/// Replies embed it so a test can prove which prompt (or tool result) reached
/// the vendor without the simulator echoing whole prompts back.
pub fn digest(text: &str) -> String {
    let full = hex::encode(Sha256::digest(text.as_bytes()));
    full.chars().take(16).collect()
}

/// A tool the request offers, as far as the generator needs it.
#[derive(Debug, Clone)]
pub(crate) struct ToolDef {
    pub name: String,
    /// The JSON-schema `properties` object (or `Null` when absent).
    pub properties: Value,
}

/// The vendor-neutral facts of a request that decide the answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extract {
    pub last_user_text: String,
    /// `user: TEXT` / `assistant: TEXT` for every user and assistant
    /// message with text, in order (system and tool messages left out): a
    /// multi-turn answer carries a digest of it, so a test can prove the
    /// whole conversation reached the vendor.
    pub history: Vec<String>,
    pub images: usize,
    /// Text of the tool result when the last message is one.
    pub tool_result: Option<String>,
    /// The tool to call (first offered, or the one forced by tool choice).
    pub tool: Option<ToolDef>,
    pub stop: Vec<String>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub input_tokens: u64,
}

/// Why generation ended, in vendor-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    EndTurn,
    MaxTokens,
    StopSequence(String),
    ToolUse,
}

/// The single tool call of a tool answer.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub id_suffix: String,
    pub name: String,
    pub args: Value,
    /// The compact arguments JSON split into at least 3 pieces.
    pub pieces: Vec<String>,
}

/// What to send: either text pieces or one tool call.
#[derive(Debug, Clone)]
pub(crate) enum Output {
    Text(Vec<String>),
    Tool(ToolCall),
}

/// The complete, precomputed answer to one request.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub output: Output,
    pub finish: Finish,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Plan {
    /// The whole answer text (empty for a tool call).
    pub fn text(&self) -> String {
        match &self.output {
            Output::Text(p) => p.concat(),
            Output::Tool(_) => String::new(),
        }
    }

    /// Number of content units a stream sends; knobs count these as tokens.
    pub fn units(&self) -> usize {
        match &self.output {
            Output::Text(p) => p.len(),
            Output::Tool(t) => t.pieces.len(),
        }
    }
}

/// Words in `text`, the simulator's notion of tokens.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Builds the answer for `extract`, asked of `model` at `vendor`.
pub(crate) fn plan(vendor: Vendor, model: &str, ex: &Extract) -> Plan {
    if ex.tool_result.is_none() {
        if let Some(tool) = &ex.tool {
            let call = tool_call(tool, &ex.last_user_text);
            let output_tokens = call.pieces.len() as u64;
            return Plan {
                output: Output::Tool(call),
                finish: Finish::ToolUse,
                input_tokens: ex.input_tokens,
                output_tokens,
            };
        }
    }
    let mut head = vec![format!("[{}/{}]", vendor.as_str(), model)];
    match &ex.tool_result {
        Some(result) => head.push(format!("tool-result={}", digest(result))),
        None => {
            head.push(format!("digest={}", digest(&ex.last_user_text)));
            if ex.history.len() > 1 {
                head.push(format!("history={}", digest(&ex.history.join("\n"))));
            }
            if ex.images > 0 {
                head.push(format!("images={}", ex.images));
            }
        }
    }
    if let Some(t) = ex.temperature {
        head.push(format!("t={t}"));
    }
    if let Some(p) = ex.top_p {
        head.push(format!("p={p}"));
    }
    let full = head
        .into_iter()
        .chain(FILLER.iter().map(|w| (*w).to_string()))
        .collect::<Vec<_>>()
        .join(" ");

    let (mut text, mut finish) = (full.clone(), Finish::EndTurn);
    let hit = ex
        .stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| full.find(s.as_str()).map(|i| (i, s)))
        .min_by_key(|(i, _)| *i);
    if let Some((i, s)) = hit {
        text = full[..i].to_string();
        finish = Finish::StopSequence(s.clone());
    }
    let mut pieces = split_words(&text);
    if let Some(max) = ex.max_tokens {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if pieces.len() > max {
            pieces.truncate(max);
            finish = Finish::MaxTokens;
        }
    }
    let output_tokens = words(&pieces.concat());
    Plan {
        output: Output::Text(pieces),
        finish,
        input_tokens: ex.input_tokens,
        output_tokens,
    }
}

/// Splits text into stream pieces of one word each, keeping every byte: a
/// piece is the whitespace before a word plus the word; trailing whitespace
/// joins the last piece.
fn split_words(text: &str) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    for c in text.chars() {
        let ws = c.is_whitespace();
        if ws && in_word {
            pieces.push(std::mem::take(&mut cur));
            in_word = false;
        } else if !ws {
            in_word = true;
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        match pieces.last_mut() {
            Some(last) if !in_word => last.push_str(&cur),
            _ => pieces.push(cur),
        }
    }
    pieces
}

/// The arguments the simulated model passes to `tool`.
fn tool_call(tool: &ToolDef, user_text: &str) -> ToolCall {
    let mut args = Map::new();
    if let Value::Object(props) = &tool.properties {
        for (name, schema) in props {
            let value = match schema_type(schema).as_deref() {
                Some("integer") | Some("number") => Value::from(1),
                Some("boolean") => Value::Bool(true),
                _ => Value::String(format!("sim-{name}")),
            };
            args.insert(name.clone(), value);
        }
    }
    let args = Value::Object(args);
    let json = args.to_string();
    ToolCall {
        id_suffix: digest(&format!("{}\u{0}{}", tool.name, user_text)),
        name: tool.name.clone(),
        args,
        pieces: split_n(&json, 3.max(json.len().div_ceil(8))),
    }
}

/// The lower-cased JSON-schema type of a property (first non-null of a list).
fn schema_type(schema: &Value) -> Option<String> {
    match schema.get("type")? {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .find(|s| !s.eq_ignore_ascii_case("null"))
            .map(str::to_ascii_lowercase),
        _ => None,
    }
}

/// Splits `s` into exactly `n` char-boundary pieces (some may be empty).
fn split_n(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    (0..n)
        .map(|i| {
            let (a, b) = (i * chars.len() / n, (i + 1) * chars.len() / n);
            chars[a..b].iter().collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ex(text: &str) -> Extract {
        Extract {
            last_user_text: text.into(),
            input_tokens: 2,
            ..Extract::default()
        }
    }

    #[test]
    fn text_answer_is_deterministic() {
        let p = plan(Vendor::Openai, "gpt", &ex("hi"));
        let want = format!(
            "[openai/gpt] digest={} alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu",
            digest("hi")
        );
        assert_eq!(p.text(), want);
        assert_eq!(p.output_tokens, 14);
        assert_eq!(p.finish, Finish::EndTurn);
    }

    #[test]
    fn stop_and_max_tokens() {
        let mut e = ex("hi");
        e.stop = vec!["gamma".into(), "".into()];
        let p = plan(Vendor::Anthropic, "c", &e);
        assert!(p.text().ends_with("alpha beta "));
        assert_eq!(p.finish, Finish::StopSequence("gamma".into()));
        e.max_tokens = Some(3);
        let p = plan(Vendor::Anthropic, "c", &e);
        assert_eq!(p.output_tokens, 3);
        assert_eq!(p.finish, Finish::MaxTokens);
        assert!(p.text().ends_with("alpha"));
        e.max_tokens = Some(0);
        assert_eq!(plan(Vendor::Anthropic, "c", &e).text(), "");
    }

    #[test]
    fn params_and_images() {
        let mut e = ex("x");
        e.images = 2;
        e.temperature = Some(0.5);
        e.top_p = Some(1.0);
        let t = plan(Vendor::Gemini, "g", &e).text();
        assert!(t.contains(" images=2 t=0.5 p=1 alpha"), "{t}");
    }

    #[test]
    fn tool_call_pieces() {
        let mut e = ex("x");
        e.tool = Some(ToolDef {
            name: "get".into(),
            properties: json!({"city": {"type": "string"}, "n": {"type": "integer"},
                "ok": {"type": ["boolean", "null"]}}),
        });
        let p = plan(Vendor::Openai, "m", &e);
        let Output::Tool(call) = &p.output else {
            panic!("no tool")
        };
        assert_eq!(call.args, json!({"city": "sim-city", "n": 1, "ok": true}));
        assert!(call.pieces.len() >= 3);
        assert_eq!(call.pieces.concat(), call.args.to_string());
        assert_eq!(split_n("{}", 3).concat(), "{}");
        e.tool_result = Some("r".into());
        assert!(plan(Vendor::Openai, "m", &e)
            .text()
            .contains(&format!("tool-result={}", digest("r"))));
    }

    #[test]
    fn multi_turn_answers_carry_a_digest_of_the_conversation() {
        let mut e = ex("two");
        e.history = vec!["user: two".into()];
        assert!(!plan(Vendor::Openai, "m", &e).text().contains("history="));
        e.history = vec![
            "user: one".into(),
            "assistant: a".into(),
            "user: two".into(),
        ];
        let want = format!(
            "digest={} history={} alpha",
            digest("two"),
            digest("user: one\nassistant: a\nuser: two")
        );
        assert!(plan(Vendor::Openai, "m", &e).text().contains(&want));
        e.tool_result = Some("r".into());
        assert!(!plan(Vendor::Openai, "m", &e).text().contains("history="));
    }

    #[test]
    fn split_keeps_bytes() {
        assert_eq!(split_words("a  b "), vec!["a", "  b "]);
        assert!(split_words("").is_empty());
    }
}
