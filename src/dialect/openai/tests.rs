use super::*;

#[test]
fn decodes_a_full_request() {
    let body = br#"{"model":"frontier","messages":[
        {"role":"system","content":"be brief"},
        {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"42"}],
        "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
        "max_tokens":9,"temperature":0.5,"stop":"END","stream":true,"seed":7}"#;
    let req = decode_request(body).unwrap();
    assert_eq!(req.system.as_deref(), Some("be brief"));
    assert_eq!(req.messages.len(), 3);
    assert!(req.has_images());
    assert!(req.uses_tools());
    assert_eq!(req.stop, vec!["END"]);
    assert_eq!(req.max_tokens, Some(9));
    assert_eq!(
        req.passthrough.as_ref().unwrap().fields.get("seed"),
        Some(&json!(7))
    );
    let out = encode_request(&req, "gpt-x", Flavor::OPENAI);
    assert_eq!(out["model"], "gpt-x");
    assert_eq!(out["seed"], 7);
    assert_eq!(out["max_completion_tokens"], 9);
    assert_eq!(out["stream_options"]["include_usage"], true);
    assert_eq!(out["messages"][3]["tool_call_id"], "c1");
}

#[test]
fn rejects_bad_requests_with_a_param() {
    for (body, param) in [
        (
            &br#"{"messages":[{"role":"user","content":"x"}]}"#[..],
            "model",
        ),
        (br#"{"model":"m","messages":[]}"#, "messages"),
        (
            br#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
            "messages[0].role",
        ),
        (
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            "temperature",
        ),
    ] {
        match decode_request(body) {
            Err(DialectError::Invalid { param: Some(p), .. }) => assert_eq!(p, param),
            other => panic!("expected an error on {param}, got {other:?}"),
        }
    }
    assert!(matches!(
        decode_request(b"{not json"),
        Err(DialectError::Json(_))
    ));
}

#[test]
fn stream_round_trip_holds_usage_until_finish() {
    let mut dec = OpenAiStreamDecoder::default();
    let mut events = Vec::new();
    for data in [
        r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":"{\"a"}}]}}]}"#,
        r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":1}"}}]}}]}"#,
        r#"{"id":"x","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
        "[DONE]",
    ] {
        events.extend(dec.decode("", data).unwrap());
    }
    assert_eq!(events.len(), 6, "{events:?}");
    let mut enc = OpenAiStreamEncoder::default();
    let mut out = Vec::new();
    for e in &events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    let finish_at = text.find("\"finish_reason\":\"tool_calls\"").unwrap();
    let usage_at = text.find("\"completion_tokens\":4").unwrap();
    assert!(finish_at < usage_at);
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[test]
fn in_band_errors_and_garbage_are_faults() {
    let mut dec = OpenAiStreamDecoder::default();
    assert!(matches!(
        dec.decode("", r#"{"error":{"message":"boom","type":"server_error"}}"#),
        Err(StreamFault::InBand { .. })
    ));
    assert!(matches!(
        dec.decode("", "{not json"),
        Err(StreamFault::Malformed(_))
    ));
}

#[test]
fn vendor_errors_never_echo_unreadable_bodies() {
    let e = decode_error(502, b"<html>secret internal host</html>");
    assert!(!e.message.contains("secret"));
    let e = decode_error(
        404,
        br#"{"error":{"message":"gone","type":"invalid_request_error","code":"model_not_found"}}"#,
    );
    assert_eq!(e.code.as_deref(), Some("model_not_found"));
}
