"""The official anthropic SDK against `switchyard demo`, served by each of
the four simulated backend kinds.

Notes on anthropic 2.14:
- it authenticates with `Authorization: Bearer` (older SDKs sent
  `x-api-key`; both must work);
- `messages.create` no longer takes `temperature` / `top_p`, so they go in
  `extra_body`, which is exactly what an app on this SDK has to do;
- a 529 raises `OverloadedError`, a subclass of `InternalServerError`.
"""

import json

import anthropic
import pytest

from conftest import digest

# route -> (vendor prefix in the simulator, upstream model)
BACKENDS = {
    "claude": ("anthropic", "claude-sonnet-4-5"),
    "gpt": ("openai", "gpt-5"),
    "gemini": ("gemini", "gemini-2.5-pro"),
    "local": ("local", "qwen3-32b"),
}

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["location"],
    },
}

# The raw wire events of a Messages stream (the SDK's MessageStream also
# yields derived events such as `text` and `input_json`).
RAW_EVENTS = {"message_start", "content_block_start", "content_block_delta",
              "content_block_stop", "message_delta", "message_stop"}

FILLER = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"


@pytest.fixture
def client(clean):
    return anthropic.Anthropic(base_url=clean.base, api_key="demo-key", max_retries=0)


@pytest.fixture
def fresh_client(fresh):
    return anthropic.Anthropic(base_url=fresh.base, api_key="demo-key", max_retries=0)


def only_text(message) -> str:
    assert [b.type for b in message.content] == ["text"], message.content
    return message.content[0].text


@pytest.mark.parametrize("route", BACKENDS)
def test_non_stream_text_system_temperature(client, route):
    vendor, model = BACKENDS[route]
    raw = client.messages.with_raw_response.create(
        model=route, max_tokens=200, system="be brief",
        messages=[{"role": "user", "content": "hello there"}],
        extra_body={"temperature": 0.5, "top_p": 0.9},
    )
    msg = raw.parse()
    assert only_text(msg) == (
        f"[{vendor}/{model}] digest={digest('hello there')} t=0.5 p=0.9 {FILLER}")
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == model
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert raw.headers["x-switchyard-route"] == route
    assert raw.headers["x-switchyard-target"] == route
    assert raw.headers["x-switchyard-attempts"] == "1"


@pytest.mark.parametrize("route", BACKENDS)
def test_system_prompt_counts_as_input(client, route):
    bare = client.messages.create(
        model=route, max_tokens=50, messages=[{"role": "user", "content": "q"}])
    with_system = client.messages.create(
        model=route, max_tokens=50,
        system=[{"type": "text", "text": "you are a very careful assistant"},
                {"type": "text", "text": "answer in French"}],
        messages=[{"role": "user", "content": "q"}])
    # The system prompt reached the backend: the prompt got longer there.
    assert with_system.usage.input_tokens > bare.usage.input_tokens
    assert only_text(with_system).startswith(f"[{BACKENDS[route][0]}/")


@pytest.mark.parametrize("route", BACKENDS)
def test_multi_turn_answers_the_last_user_turn(client, route):
    vendor, model = BACKENDS[route]
    first = client.messages.create(
        model=route, max_tokens=200, messages=[{"role": "user", "content": "first question"}])
    msg = client.messages.create(model=route, max_tokens=200, messages=[
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": only_text(first)},
        {"role": "user", "content": [{"type": "text", "text": "second "},
                                     {"type": "text", "text": "question"}]},
    ])
    assert only_text(msg).startswith(f"[{vendor}/{model}] digest={digest('second question')} ")
    assert msg.usage.input_tokens > first.usage.input_tokens


@pytest.mark.parametrize("route", BACKENDS)
def test_stop_sequence(client, route):
    vendor, model = BACKENDS[route]
    msg = client.messages.create(
        model=route, max_tokens=200, stop_sequences=["gamma"],
        messages=[{"role": "user", "content": "stop early"}])
    assert only_text(msg) == f"[{vendor}/{model}] digest={digest('stop early')} alpha beta "
    if route == "claude":
        # Only an Anthropic backend says *why* it stopped.
        assert msg.stop_reason == "stop_sequence"
    else:
        # OpenAI `stop` and Gemini `STOP` do not tell a stop sequence from a
        # natural end, so the gateway can only say end_turn.
        assert msg.stop_reason == "end_turn"


@pytest.mark.parametrize("route", BACKENDS)
def test_max_tokens(client, route):
    msg = client.messages.create(
        model=route, max_tokens=3, messages=[{"role": "user", "content": "count"}])
    assert msg.stop_reason == "max_tokens"
    assert len(only_text(msg).split()) == 3
    assert msg.usage.output_tokens == 3


@pytest.mark.parametrize("route", BACKENDS)
def test_stream_text_event_order_and_usage(client, route):
    vendor, model = BACKENDS[route]
    with client.messages.stream(
            model=route, max_tokens=200, system="be brief",
            messages=[{"role": "user", "content": "stream me"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    text = "".join(pieces)
    assert len(pieces) > 3, "the answer must arrive in several deltas"
    assert text == f"[{vendor}/{model}] digest={digest('stream me')} {FILLER}"
    assert only_text(final) == text
    assert final.model == model
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens == 14


@pytest.mark.parametrize("route", BACKENDS)
def test_stream_raw_event_sequence(client, route):
    with client.messages.stream(
            model=route, max_tokens=200,
            messages=[{"role": "user", "content": "order"}]) as stream:
        events = [e for e in stream if e.type in RAW_EVENTS]
    types = [e.type for e in events]
    assert types[0] == "message_start"
    assert types[-2:] == ["message_delta", "message_stop"]
    body = types[1:-2]
    # Exactly one text block: start, deltas, stop.
    assert body[0] == "content_block_start" and body[-1] == "content_block_stop"
    assert set(body[1:-1]) == {"content_block_delta"} and len(body) > 4
    assert all(e.index == 0 for e in events[1:-2])
    assert events[1].content_block.type == "text"
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].usage.output_tokens == 14


@pytest.mark.parametrize("route", BACKENDS)
def test_stream_max_tokens(client, route):
    with client.messages.stream(
            model=route, max_tokens=2,
            messages=[{"role": "user", "content": "short"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) == 2
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 2


@pytest.mark.parametrize("route", BACKENDS)
def test_tool_call_streamed_then_round_trip(client, route):
    vendor, model = BACKENDS[route]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    with client.messages.stream(
            model=route, max_tokens=200, tools=[WEATHER_TOOL], messages=messages) as stream:
        events = list(stream)
        final = stream.get_final_message()
    json_deltas = [e.delta.partial_json for e in events
                   if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    # Anthropic and OpenAI-style vendors stream arguments in pieces; Gemini
    # sends a function call whole.
    assert len(json_deltas) >= (1 if route == "gemini" else 3)
    assert json.loads("".join(json_deltas)) == {"location": "sim-location", "days": 1}
    starts = [e for e in events if e.type == "content_block_start"]
    assert [s.content_block.type for s in starts] == ["tool_use"]
    assert final.stop_reason == "tool_use"
    assert len(final.content) == 1
    call = final.content[0]
    assert call.type == "tool_use" and call.name == "get_weather" and call.id
    assert call.input == {"location": "sim-location", "days": 1}

    messages += [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}]},
    ]
    answer = client.messages.create(
        model=route, max_tokens=200, tools=[WEATHER_TOOL], messages=messages)
    assert only_text(answer).startswith(f"[{vendor}/{model}] tool-result={digest('sunny, 21C')} ")
    assert answer.stop_reason == "end_turn"


@pytest.mark.parametrize("route", BACKENDS)
def test_tool_call_non_stream_and_block_results(client, route):
    vendor, model = BACKENDS[route]
    messages = [{"role": "user", "content": "weather in Oslo?"}]
    msg = client.messages.create(
        model=route, max_tokens=200, tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"}, messages=messages)
    assert msg.stop_reason == "tool_use"
    (call,) = msg.content
    assert call.type == "tool_use" and call.input == {"location": "sim-location", "days": 1}
    messages += [
        {"role": "assistant", "content": [c.model_dump(exclude_none=True) for c in msg.content]},
        # A tool_result with text blocks: the gateway joins them with "\n".
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": [
            {"type": "text", "text": "cloudy"}, {"type": "text", "text": "9C"}]}]},
    ]
    answer = client.messages.create(
        model=route, max_tokens=200, tools=[WEATHER_TOOL], messages=messages)
    assert only_text(answer).startswith(f"[{vendor}/{model}] tool-result={digest('cloudy' + chr(10) + '9C')} ")


@pytest.mark.parametrize("route", BACKENDS)
def test_image_base64(client, route):
    vendor, model = BACKENDS[route]
    msg = client.messages.create(model=route, max_tokens=200, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
    ]}])
    assert only_text(msg).startswith(
        f"[{vendor}/{model}] digest={digest('what is this')} images=1 ")


def test_x_api_key_client_like_older_sdks(clean):
    """Older SDKs send `x-api-key` and `anthropic-version: 2023-06-01`."""
    sent = []
    http = anthropic.DefaultHttpxClient(event_hooks={"request": [lambda r: sent.append(r.headers)]})
    client = anthropic.Anthropic(
        base_url=clean.base, max_retries=0, http_client=http, api_key=None,
        default_headers={"x-api-key": "demo-key", "anthropic-version": "2023-06-01"})
    msg = client.messages.create(model="claude", max_tokens=50,
                                 messages=[{"role": "user", "content": "old style"}])
    assert only_text(msg).startswith(f"[anthropic/claude-sonnet-4-5] digest={digest('old style')}")
    assert sent[-1]["x-api-key"] == "demo-key"
    assert "authorization" not in sent[-1]


def test_bearer_is_what_the_sdk_sends(clean):
    sent = []
    http = anthropic.DefaultHttpxClient(event_hooks={"request": [lambda r: sent.append(r.headers)]})
    client = anthropic.Anthropic(base_url=clean.base, api_key="demo-key", max_retries=0,
                                 http_client=http)
    client.messages.create(model="gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert sent[-1]["authorization"] == "Bearer demo-key"
    assert "x-api-key" not in sent[-1]


def test_missing_key_is_authentication_error(clean):
    client = anthropic.Anthropic(base_url=clean.base, api_key=None, max_retries=0,
                                 default_headers={"Authorization": anthropic.omit})
    with pytest.raises(anthropic.AuthenticationError) as e:
        client.messages.create(model="claude", max_tokens=5,
                               messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"


def test_unknown_route_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="nope", max_tokens=5,
                               messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    assert "unknown route `nope`" in e.value.body["error"]["message"]


@pytest.mark.parametrize("kwargs,needle", [
    (dict(messages=[]), "messages"),
    (dict(messages=[{"role": "system", "content": "x"}]), "role"),
    (dict(messages=[{"role": "user", "content": [{"type": "video", "url": "x"}]}]), "video"),
    (dict(messages=[{"role": "user", "content": "x"}], extra_body={"max_tokens": None}),
     "max_tokens"),
])
def test_invalid_request_is_bad_request(client, clean, kwargs, needle):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="claude", max_tokens=5, **kwargs)
    assert e.value.status_code == 400
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert needle in e.value.body["error"]["message"]
    # Refused at the gateway: no vendor saw it.
    assert clean.counts() == {}


def test_overloaded_529_is_overloaded_error(fresh_client, fresh):
    client = fresh_client
    fresh.knobs("anthropic", "claude-sonnet-4-5", error_status=529)
    with pytest.raises(anthropic.OverloadedError) as e:
        client.messages.create(model="claude", max_tokens=5,
                               messages=[{"role": "user", "content": "x"}])
    # In 2.14 OverloadedError is an InternalServerError with status 529.
    assert isinstance(e.value, anthropic.InternalServerError)
    assert e.value.status_code == 529
    assert e.value.body["error"]["type"] == "overloaded_error"
    assert "claude" in e.value.body["error"]["message"]
    assert "sim-key" not in str(e.value.body)


def test_rate_limited_429_keeps_retry_after(fresh_client, fresh):
    client = fresh_client
    fresh.knobs("anthropic", "claude-sonnet-4-5", error_status=429, retry_after_secs=7)
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="claude", max_tokens=5,
                               messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 429
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert e.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize("route", BACKENDS)
def test_vendor_500_is_internal_server_error(fresh_client, fresh, route):
    vendor, model = BACKENDS[route]
    fresh.knobs(vendor, model, error_status=500)
    with pytest.raises(anthropic.InternalServerError) as e:
        fresh_client.messages.create(model=route, max_tokens=5,
                                     messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    assert e.value.body["error"]["type"] == "api_error"
    # Only this route's backend was asked (a 500 may earn one retry there),
    # and the attempts header counts every request it got.
    counts = fresh.counts()
    assert list(counts) == [f"{vendor}/{model}"]
    assert e.value.response.headers["x-switchyard-attempts"] == str(counts[f"{vendor}/{model}"])


@pytest.mark.parametrize("route", BACKENDS)
def test_stream_cut_mid_answer_raises(fresh_client, fresh, route):
    client = fresh_client
    vendor, model = BACKENDS[route]
    fresh.knobs(vendor, model, reset_after_tokens=3)
    got, types = [], []
    with pytest.raises(anthropic.APIError) as e:
        with client.messages.stream(model=route, max_tokens=200,
                                    messages=[{"role": "user", "content": "cut"}]) as stream:
            for event in stream:
                types.append(event.type)
                if event.type == "text":
                    got.append(event.text)
    # The gateway's `event: error` made the SDK raise, after the 3 tokens.
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] in {"api_error", "overloaded_error"}
    assert "".join(got) == f"[{vendor}/{model}] digest={digest('cut')} alpha"
    assert "message_stop" not in types and "message_delta" not in types


def test_suspended_primary_fails_over_invisibly(fresh_client, fresh):
    client = fresh_client
    fresh.knobs("anthropic", "claude-sonnet-4-5", suspended=True)
    raw = client.messages.with_raw_response.create(
        model="frontier", max_tokens=50, messages=[{"role": "user", "content": "still there?"}])
    msg = raw.parse()
    assert raw.headers["x-switchyard-target"] == "gpt"
    assert raw.headers["x-switchyard-attempts"] == "2"
    assert msg.model == "gpt-5"
    assert only_text(msg).startswith(f"[openai/gpt-5] digest={digest('still there?')}")


def test_stream_failover_before_first_token(fresh_client, fresh):
    client = fresh_client
    fresh.knobs("anthropic", "claude-sonnet-4-5", in_band_error=True)
    with client.messages.stream(model="frontier", max_tokens=50,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("[openai/gpt-5]")
    assert final.model == "gpt-5"
    assert final.stop_reason == "end_turn"
