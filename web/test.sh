#!/usr/bin/env bash
# The browser test: builds the wasm (web/build.sh), installs playwright-core from
# web/package-lock.json, and runs web/test/browser.mjs on Debian's chromium (its
# SwiftShader WebGPU adapter; `apt-get install chromium`), then web/test/firefox.mjs on
# Firefox ESR where installed. Screenshot: web/test/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "no chromium at ${CHROMIUM:-/usr/bin/chromium}: apt-get install chromium (or set CHROMIUM)" >&2
  exit 1
fi
bash web/build.sh
# The native binary only serves the page (`cuttle serve`). `cargo test --no-run` builds it
# with the test build's features (naga's extra backends come in through the tests), so
# after `cargo test` (CI) this builds nothing; `cargo build --bin cuttle` would rebuild wgpu
# with the other feature set (minutes). CUTTLE_BIN skips the build.
if [ -z "${CUTTLE_BIN:-}" ]; then
  cargo test --no-run --quiet
  export CUTTLE_BIN=${CARGO_TARGET_DIR:-target}/debug/cuttle
fi
(cd web && npm ci --no-audit --no-fund --loglevel=error)
node web/test/browser.mjs
# The same page in Firefox ESR (WebGPU by prefs; driven without playwright, see the file).
if [ -x "${FIREFOX:-/usr/bin/firefox-esr}" ]; then
  node web/test/firefox.mjs
else
  echo "skipped the Firefox test: no ${FIREFOX:-/usr/bin/firefox-esr} (apt-get install firefox-esr)"
fi
