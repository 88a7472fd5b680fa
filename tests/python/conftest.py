"""Starts a real `switchyard demo` (gateway + simulated vendors) on free
loopback ports for the SDK tests, and gives them its URLs."""

import hashlib
import json
import os
import re
import subprocess
import time
import urllib.request

import pytest

BIN = os.environ.get("SWITCHYARD_BIN", "target/debug/switchyard")


def digest(text: str) -> str:
    """The simulator's digest of a user message: first 16 hex of SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Demo:
    def __init__(self, proc, urls):
        self.proc = proc
        self.base = urls["base"]
        self.admin = urls["admin"]
        self.sim = urls["sim"]
        self.token = urls["token"]

    def knobs(self, vendor: str, model: str, **knobs):
        body = json.dumps(knobs).encode()
        req = urllib.request.Request(
            f"{self.sim}/_sim/knobs/{vendor}/{model}", data=body, method="PUT",
            headers={"content-type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()

    def reset(self):
        req = urllib.request.Request(f"{self.sim}/_sim/reset", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=5).read()

    def upstream_headers(self, vendor: str) -> dict:
        """The headers of the vendor's last request, as the simulator saw them."""
        return json.loads(urllib.request.urlopen(f"{self.sim}/_sim/headers/{vendor}", timeout=5).read())

    def prometheus(self) -> str:
        req = urllib.request.Request(f"{self.admin}/metrics",
                                     headers={"authorization": f"Bearer {self.token}"})
        return urllib.request.urlopen(req, timeout=5).read().decode()

    def counts(self) -> dict:
        return json.loads(urllib.request.urlopen(f"{self.sim}/_sim/counts", timeout=5).read())


def start_demo(env: dict | None = None) -> Demo:
    """Starts `switchyard demo` on free loopback ports and reads its URLs;
    `env` adds variables (the OTEL_* ones, say) to its environment."""
    proc = subprocess.Popen(
        [BIN, "demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, **(env or {})})
    urls = {}
    deadline = time.time() + 30
    while time.time() < deadline and len(urls) < 4:
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.search(r"OpenAI base URL:\s+(http://\S+)/v1", line):
            urls["base"] = m.group(1)
        elif m := re.search(r"admin:\s+(http://\S+)\s+\(token: (\S+)\)", line):
            urls["admin"], urls["token"] = m.group(1), m.group(2)
        elif m := re.search(r"simulator:\s+(http://\S+)", line):
            urls["sim"] = m.group(1)
    if len(urls) < 4:
        proc.kill()
        pytest.fail(f"switchyard demo did not start (got {urls})")
    return Demo(proc, urls)


def stop_demo(d: Demo):
    d.proc.terminate()
    d.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def demo():
    d = start_demo()
    yield d
    stop_demo(d)


@pytest.fixture
def fresh():
    """A gateway (and simulator) of its own, for a test that makes a backend
    fail: failures feed the gateway's passive health, and a target ejected
    there must not leak into the tests that share the session gateway."""
    d = start_demo()
    yield d
    stop_demo(d)


@pytest.fixture
def clean(demo):
    """Clears simulator knobs and counts around a test."""
    demo.reset()
    yield demo
    demo.reset()
