#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (Debian's
# chromium + chromedriver for the dashboard test, redis-server for the fleet
# tests, a Python venv with the official SDKs and, for the OTLP receiver,
# grpcio + opentelemetry-proto), builds, runs the Rust tests and the
# examples' smoke runs, then the SDK, browser and telemetry tests against
# live `switchyard demo`s (the receiver runs inside pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== system packages (chromium for the dashboard test)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi

echo "== system packages (redis-server for the fleet tests)"
if ! command -v redis-server >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends redis-server
fi

echo "== python venv with the official SDKs"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

echo "== cargo audit (the offline ../shared/data/advisory-db snapshot when present, else the default database)"
if ! command -v cargo-audit >/dev/null; then
  cargo install cargo-audit --locked --quiet
fi
if [ -d ../shared/data/advisory-db/crates ]; then
  cargo audit --db ../shared/data/advisory-db --no-fetch
elif ! audit=$(cargo audit 2>&1); then
  echo "$audit"
  # Vulnerabilities fail the run; a database that cannot be fetched (no
  # network to GitHub) cannot be audited against, and is said so loudly.
  grep -q "couldn't fetch advisory database" <<<"$audit" || exit 1
  echo "WARNING: cargo audit did not run: the advisory database could not be fetched"
else
  echo "$audit"
fi

echo "== cargo test (builds the binary the SDK tests use, too)"
cargo test --locked --all-targets

echo "== examples (smoke runs; the figures come from release runs)"
for example in loadbench translatebench policybench; do
  cargo run --locked --quiet --example "$example" -- --quick
done
cargo run --locked --quiet --example loadbench -- --quick --otlp

echo "== SDK, browser, OTLP receiver and CLI drill tests (pytest against switchyard demo)"
SWITCHYARD_BIN="$PWD/target/debug/switchyard" .venv/bin/python -m pytest -q tests/python
