//! The compact record of one request that the detector keeps instead of the
//! request: who (key, address, client), when, how big, and what the prompt
//! asks for ([`text::Features`]) — never the prompt itself.
//!
//! Text is pulled from the body in any of the dialects the gateway speaks
//! (OpenAI Chat and Responses, Anthropic Messages, Gemini contents) by one
//! walker that looks at the shape rather than trusting a label: a log may
//! record a Responses body under `"openai"`.

use serde::Deserialize;
use serde_json::Value;

use super::text::{self, Features};
use crate::model::Dialect;

/// One line of the traffic log (contract §9).
#[derive(Debug, Deserialize)]
pub struct LogLine {
    pub ts: f64,
    pub key: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub user_agent: String,
    pub dialect: Option<Dialect>,
    #[serde(default)]
    pub route: String,
    #[serde(default)]
    pub body: Value,
    #[serde(default)]
    pub output_tokens: u64,
}

/// What the detector learns from one request.
#[derive(Debug, Clone)]
pub struct Record {
    pub ts: f64,
    pub key: String,
    /// Hash of the full client address.
    pub ip: u64,
    /// The client's network (/24 for IPv4, /48 for IPv6), for reasons.
    pub net: String,
    pub user_agent: String,
    pub dialect: Option<Dialect>,
    /// Characters of prompt text, system and history included.
    pub in_chars: u32,
    pub output_tokens: u32,
    /// Earlier assistant turns carried in the request.
    pub turns: u16,
    /// Tools declared, or tool calls / results in the conversation.
    pub tools: bool,
    /// The latest user message.
    pub user: Features,
    /// The system prompt (or instructions).
    pub system: Features,
}

/// Who sent a request and when: everything of a [`Record`] but the body's
/// features.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    pub ts: f64,
    pub key: &'a str,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub dialect: Option<Dialect>,
    pub output_tokens: u64,
}

impl Record {
    /// Build from a parsed log line. `scratch` is reused between calls.
    pub fn from_line(line: &LogLine, scratch: &mut Vec<u64>) -> Record {
        let meta = Meta {
            ts: line.ts,
            key: &line.key,
            ip: &line.ip,
            user_agent: &line.user_agent,
            dialect: line.dialect,
            output_tokens: line.output_tokens,
        };
        Record::from_body(meta, &line.body, scratch)
    }

    /// Build from a request body as the app sent it, in any dialect: the
    /// one feature extraction, shared by the offline scan and the live
    /// detector. The record keeps no text of the body.
    pub fn from_body(meta: Meta<'_>, body: &Value, scratch: &mut Vec<u64>) -> Record {
        let mut walk = Walk::default();
        walk.body(body);
        Record {
            ts: meta.ts,
            key: meta.key.to_string(),
            ip: text::word_hash(meta.ip.as_bytes()),
            net: network(meta.ip),
            user_agent: meta.user_agent.to_string(),
            dialect: meta.dialect,
            in_chars: u32::try_from(walk.chars).unwrap_or(u32::MAX),
            output_tokens: u32::try_from(meta.output_tokens).unwrap_or(u32::MAX),
            turns: walk.turns,
            tools: walk.tools,
            user: text::analyse(&walk.last_user, scratch),
            system: text::analyse(&walk.system, scratch),
        }
    }
}

/// The client's network prefix as text: `a.b.c.0/24` or the first three
/// IPv6 groups `/48`; anything else is kept whole.
pub fn network(ip: &str) -> String {
    if let Ok(std::net::IpAddr::V4(v4)) = ip.parse() {
        let o = v4.octets();
        return format!("{}.{}.{}.0/24", o[0], o[1], o[2]);
    }
    if let Ok(std::net::IpAddr::V6(v6)) = ip.parse() {
        let s = v6.segments();
        return format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]);
    }
    ip.to_string()
}

#[derive(Default)]
struct Walk {
    system: String,
    last_user: String,
    chars: usize,
    turns: u16,
    tools: bool,
}

impl Walk {
    fn body(&mut self, body: &Value) {
        let Some(obj) = body.as_object() else {
            return;
        };
        for k in [
            "system",
            "instructions",
            "systemInstruction",
            "system_instruction",
        ] {
            if let Some(v) = obj.get(k) {
                let mut s = String::new();
                collect_text(v, &mut s);
                self.chars += s.len();
                self.system.push_str(&s);
            }
        }
        if obj
            .get("tools")
            .or_else(|| obj.get("functions"))
            .is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty()))
        {
            self.tools = true;
        }
        if obj
            .get("previous_response_id")
            .is_some_and(Value::is_string)
        {
            self.turns = self.turns.saturating_add(1);
        }
        for k in ["messages", "contents", "input", "prompt"] {
            match obj.get(k) {
                Some(Value::Array(items)) => {
                    for item in items {
                        self.item(item);
                    }
                }
                Some(Value::String(s)) => {
                    self.chars += s.len();
                    self.last_user.clone_from(s);
                }
                _ => {}
            }
        }
    }

    fn item(&mut self, item: &Value) {
        let Some(obj) = item.as_object() else {
            return;
        };
        let role = obj.get("role").and_then(Value::as_str).unwrap_or("user");
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
        if matches!(kind, "function_call" | "function_call_output")
            || matches!(role, "tool" | "function")
        {
            self.tools = true;
        }
        let content = obj.get("content").or_else(|| obj.get("parts"));
        let mut s = String::new();
        if let Some(c) = content {
            collect_text(c, &mut s);
            if has_tool_block(c) {
                self.tools = true;
            }
        }
        self.chars += s.len();
        match role {
            "assistant" | "model" => self.turns = self.turns.saturating_add(1),
            "system" | "developer" => self.system.push_str(&s),
            "user" if kind.is_empty() || kind == "message" => self.last_user = s,
            _ => {}
        }
    }
}

/// Text of a content value: a string, a list of parts, or a part with
/// `text` (or a nested `content`, as tool results carry).
fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(s);
        }
        Value::Array(a) => a.iter().for_each(|x| collect_text(x, out)),
        Value::Object(o) => {
            if let Some(t) = o.get("text") {
                collect_text(t, out);
            } else if let Some(c) = o.get("content").or_else(|| o.get("parts")) {
                collect_text(c, out);
            }
        }
        _ => {}
    }
}

fn has_tool_block(v: &Value) -> bool {
    v.as_array().is_some_and(|a| {
        a.iter().any(|p| {
            p.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t == "tool_use" || t == "tool_result")
                || p.get("functionCall").is_some()
                || p.get("functionResponse").is_some()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(body: Value) -> Record {
        let line = LogLine {
            ts: 1.0,
            key: "k".into(),
            ip: "203.0.113.7".into(),
            user_agent: "ua".into(),
            dialect: None,
            route: "r".into(),
            body,
            output_tokens: 10,
        };
        Record::from_line(&line, &mut Vec::new())
    }

    #[test]
    fn text_comes_out_of_every_dialect() {
        let openai = rec(json!({"model":"m","messages":[
            {"role":"system","content":"You are terse."},
            {"role":"user","content":"hello"},
            {"role":"assistant","content":"hi"},
            {"role":"user","content":[{"type":"text","text":"Solve it step by step"}]}]}));
        assert!(openai.user.reasoning);
        assert_eq!(openai.turns, 1);
        let responses = rec(json!({"model":"m","instructions":"Show your work always",
            "input":[{"role":"user","content":[{"type":"input_text","text":"integral of x"}]}]}));
        assert!(responses.system.reasoning);
        assert_eq!(responses.user.areas, 1);
        let anthropic = rec(
            json!({"model":"m","system":[{"type":"text","text":"grader"}],
            "tools":[{"name":"t"}],
            "messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":"ok"}]}]}),
        );
        assert!(anthropic.tools);
        let gemini = rec(
            json!({"contents":[{"role":"user","parts":[{"text":"Write a Python function"}]},
            {"role":"model","parts":[{"text":"def f(): pass"}]},
            {"role":"user","parts":[{"text":"Now explain every step"}]}],
            "systemInstruction":{"parts":[{"text":"be kind"}]}}),
        );
        assert!(gemini.user.reasoning);
        assert_eq!(gemini.turns, 1);
        assert_eq!(openai.net, "203.0.113.0/24");
        assert_eq!(network("2001:db8:1:2::9"), "2001:db8:1::/48");
    }
}
