#!/usr/bin/env bash
# One command for the browser demo: build the wasm, then serve web/ on 127.0.0.1
# (default port 8080; pass --port N to change it). Open the printed address in a browser
# with WebGPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash web/build.sh
exec cargo run --release -- serve "$@"
