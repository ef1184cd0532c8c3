#!/usr/bin/env bash
# Builds the browser demo: the cuttle library for wasm32 plus its JavaScript glue, in
# web/pkg/. The glue is wasm-bindgen's, written by web/bindgen (its library, at exactly
# the wasm-bindgen version the engine links, called from a small workspace member: no
# global wasm-bindgen-cli to install or keep in step; wasm-pack is not used: it
# downloads binaryen, which fails offline). Installs the wasm32 target if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/phases.sh  # times each step below (a table at the end, or rows in CI's)
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
phase "cargo build --lib --release (wasm32)" cargo build --lib --release --target wasm32-unknown-unknown
phase "wasm-bindgen glue (web/bindgen)" cargo run -q -p cuttle-bindgen -- \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/cuttle.wasm" web/pkg
echo "built web/pkg ($(du -h web/pkg/cuttle_bg.wasm | cut -f1) of wasm)"
