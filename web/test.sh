#!/usr/bin/env bash
# The browser test: builds the wasm (web/build.sh), installs playwright-core from
# web/package-lock.json, and runs web/test/browser.mjs on Debian's chromium (its
# SwiftShader WebGPU adapter; `apt-get install chromium`). Screenshot: web/test/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "no chromium at ${CHROMIUM:-/usr/bin/chromium}: apt-get install chromium (or set CHROMIUM)" >&2
  exit 1
fi
bash web/build.sh
cargo build --bin cuttle
(cd web && npm ci --no-audit --no-fund --loglevel=error)
node web/test/browser.mjs
