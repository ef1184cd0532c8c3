#!/usr/bin/env bash
# One command for the browser demo: build the wasm (web/build.sh), then serve web/ on
# 127.0.0.1 (default port 8080; --port N to change it). Any static file server that sends
# .wasm as application/wasm will do; this uses the first one that is there: python3's
# http.server, a cuttle binary already built (`cuttle serve`, which serves only the page's
# files), or else builds cuttle to serve it (a native release build: minutes, once).
set -euo pipefail
cd "$(dirname "$0")/.."
port=8080
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=${2:?--port needs a number}; shift 2 ;;
    --port=*) port=${1#--port=}; shift ;;
    *) echo "serve.sh: unknown argument $1 (only --port N)" >&2; exit 2 ;;
  esac
done
bash web/build.sh
target=${CARGO_TARGET_DIR:-target}
if command -v python3 >/dev/null && python3 -c 'import mimetypes, sys; sys.exit(mimetypes.guess_type("x.wasm")[0] != "application/wasm")'; then
  echo "serving web/ on http://127.0.0.1:$port/ (python3 http.server; Ctrl-C stops it)"
  exec python3 -m http.server "$port" --bind 127.0.0.1 --directory web
fi
for bin in "$target/release/cuttle" "$target/debug/cuttle"; do
  [ -x "$bin" ] && exec "$bin" serve --port "$port"
done
exec cargo run --release -- serve --port "$port"
