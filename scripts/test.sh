#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (a Python
# venv with the official SDKs), builds, runs the Rust tests, then the SDK
# tests against a live `switchyard demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== python venv with the official SDKs"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

echo "== cargo build"
cargo build --locked --all-targets

echo "== cargo test"
cargo test --locked --all-targets

echo "== examples"
cargo run --locked --quiet --example loadbench -- --quick

echo "== SDK tests (pytest against switchyard demo)"
SWITCHYARD_BIN="$PWD/target/debug/switchyard" .venv/bin/python -m pytest -q tests/python
