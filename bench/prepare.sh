#!/usr/bin/env bash
# bench/prepare.sh: gathers, on this machine, what bench/device.sh needs on a GPU machine
# that has no Rust toolchain and no network, into the git-ignored folder devrun/:
#   devrun/cuttle              the release binary (built here; a wgpu binary runs there)
#   devrun/torch_baseline.py   PyTorch's side of every comparison (from ../shared/tools)
#   devrun/gl/*.deb            the Vulkan loader, unpacked there before the run
# Then carry devrun and run: bash bench/device.sh   (the command to give is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p devrun/gl
cargo build --release --bin cuttle
cp target/release/cuttle devrun/cuttle
if [ -f ../shared/tools/torch_baseline.py ]; then
    cp ../shared/tools/torch_baseline.py devrun/
else
    echo "note: ../shared/tools/torch_baseline.py is absent: the run will have no PyTorch baseline" >&2
fi
if ! ls devrun/gl/libvulkan1_*.deb >/dev/null 2>&1; then
    # amd64 packages whatever this machine is: the GPU machine is x86-64.
    lists=$(mktemp -d)
    mkdir -p "$lists/partial"
    o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
    apt-get $o update -qq
    (cd devrun/gl && apt-get $o download libvulkan1)
fi
du -sh devrun
echo "ready: run 'bash bench/device.sh' on the GPU machine with devrun carried"
