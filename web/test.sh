#!/usr/bin/env bash
# The browser test: builds the wasm (web/build.sh), installs playwright-core from
# web/package-lock.json (node and npm needed), and runs web/test/browser.mjs on Debian's
# chromium (its SwiftShader WebGPU adapter; `apt-get install chromium`), then
# web/test/firefox.mjs on Firefox ESR where installed. Both serve web/ themselves with
# node (web/test/serve.mjs): no native build. Screenshots: web/test/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/phases.sh  # times each step below (a table at the end, or rows in CI's)
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "no chromium at ${CHROMIUM:-/usr/bin/chromium}: apt-get install chromium (or set CHROMIUM)" >&2
  exit 1
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "web/test.sh needs $tool: apt-get install nodejs npm" >&2; exit 1; }
done
phase "wasm build (web/build.sh)" bash web/build.sh
phase "npm ci (playwright-core)" bash -c 'cd web && npm ci --no-audit --no-fund --loglevel=error'
phase "chromium test (web/test/browser.mjs)" node web/test/browser.mjs
# The same page in Firefox ESR (WebGPU by prefs; driven without playwright, see the file).
if [ -x "${FIREFOX:-/usr/bin/firefox-esr}" ]; then
  phase "firefox test (web/test/firefox.mjs)" node web/test/firefox.mjs
else
  echo "skipped the Firefox test: no ${FIREFOX:-/usr/bin/firefox-esr} (apt-get install firefox-esr)"
fi
