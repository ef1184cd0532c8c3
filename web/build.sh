#!/usr/bin/env bash
# Builds the browser demo: the cuttle library for wasm32 plus its JavaScript glue, in
# web/pkg/. Installs what is missing: the wasm32 target, and wasm-bindgen-cli at exactly
# the wasm-bindgen version in Cargo.lock (the two must match; wasm-pack is not used: it
# downloads binaryen, which fails offline).
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/phases.sh  # times each step below (a table at the end, or rows in CI's)
want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (found: ${have:-none})"
  phase "cargo install wasm-bindgen-cli" cargo install wasm-bindgen-cli --version "$want"
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
phase "cargo build --lib --release (wasm32)" cargo build --lib --release --target wasm32-unknown-unknown
phase wasm-bindgen wasm-bindgen --target web --no-typescript --out-dir web/pkg "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/cuttle.wasm"
echo "built web/pkg ($(du -h web/pkg/cuttle_bg.wasm | cut -f1) of wasm)"
