"""`GET /v1/models` through the official openai SDK against `switchyard
serve` in `keys` mode: a key sees only the routes in its scope, and no key
(or a wrong one) gets the SDK's AuthenticationError, never the route list."""

import json
import os
import pathlib
import re
import subprocess
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import BIN

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "models-test-secret"


@pytest.fixture
def keyed(demo, tmp_path):
    """A `switchyard serve` in keys mode on the demo's simulator, with a
    key scoped to `gpt` and `frontier`; yields (base URL, key)."""
    sim = demo.sim.removeprefix("http://")
    table = (ROOT / "src" / "demo_routes.toml").read_text()
    table = (table.replace("{sim}", sim)
             .replace("127.0.0.1:8080", "127.0.0.1:0")
             .replace("127.0.0.1:9901", "127.0.0.1:0")
             .replace('mode = "any_key"',
                      f'mode = "keys"\nkeys_file = "{tmp_path / "keys.json"}"'))
    routes = tmp_path / "routes.toml"
    routes.write_text(table)
    env = {**os.environ, "SWITCHYARD_KEY_SECRET": SECRET, "SWITCHYARD_ADMIN_TOKEN": "t",
           "SIM_ANTHROPIC_KEY": "sim-key", "SIM_OPENAI_KEY": "sim-key",
           "SIM_GEMINI_KEY": "sim-key", "RUST_LOG": "info"}
    created = subprocess.run(
        [BIN, "keys", "create", "scoped", "--routes", "gpt,frontier", "--config", str(routes)],
        env=env, capture_output=True, text=True, timeout=30, check=True)
    key = created.stdout.strip()
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([BIN, "serve", "--config", str(routes)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    base = None
    deadline = time.time() + 30
    while base is None and time.time() < deadline and proc.poll() is None:
        if m := re.search(r"gateway listening addr=(\S+)", log.read_text()):
            base = f"http://{m.group(1)}"
        else:
            time.sleep(0.05)
    if base is None:
        proc.kill()
        pytest.fail(f"switchyard serve did not start: {log.read_text()}")
    yield base, key
    proc.terminate()
    proc.wait(timeout=30)


def test_a_key_lists_only_its_routes(keyed):
    base, key = keyed
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    assert sorted(m.id for m in client.models.list()) == ["frontier", "gpt"]


def test_listing_models_without_a_valid_key_is_refused(keyed):
    base, _ = keyed
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="sy-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.models.list()
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"
    assert "frontier" not in refused.value.response.text
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/v1/models", timeout=10)
    assert missing.value.code == 401
    body = json.loads(missing.value.read())
    assert body["error"]["type"] == "invalid_request_error" and "data" not in body
