#!/usr/bin/env bash
# bench/device.sh: every figure of BENCHMARKS.md in one run on a machine with an NVIDIA GPU,
# ours and PyTorch's side by side. Needs what bench/prepare.sh put in devrun/. Writes
# bench.jsonl (one JSON object per measurement), table.md (the table for BENCHMARKS.md)
# and log to $OUT (default devrun/out). About 6 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-devrun/out}
mkdir -p "$OUT"
log="$OUT/log"
jsonl="$OUT/bench.jsonl"
: >"$jsonl"
# MODEL, BATCH and LONG (steps of the memory run) shrink the run for a smoke test of this
# script on a CPU adapter: MODEL=resnet8 BATCH=8 LONG=20 bash bench/device.sh
MODEL=${MODEL:-resnet18} BATCH=${BATCH:-256} LONG=${LONG:-1000}
# The Vulkan loader, carried as a .deb where the machine has none; the NVIDIA driver
# brings its ICD.
if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
    for f in devrun/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; break; fi
done
cuttle=devrun/cuttle
{
    date -u +"date: %Y-%m-%dT%H:%MZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
    echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
} | tee -a "$log"
run() { # a command whose JSON lines go to bench.jsonl, everything to the log
    echo "+ $*" | tee -a "$log"
    "$@" 2>>"$log" | tee -a "$log" | grep '^{' >>"$jsonl"
}
if [ -f devrun/torch_baseline.py ]; then
    PYTHONUNBUFFERED=1 run timeout 300 python3 devrun/torch_baseline.py --skip-accuracy
fi
run timeout 120 $cuttle bench matmul --json
run timeout 120 $cuttle bench matmul --json --shapes 1024,4096
for lr in "" "--lowrank 4"; do
    run timeout 120 $cuttle bench train --model $MODEL --batch $BATCH --steps 30 --json $lr
done
# Memory over 1,000 steps: our plan count, and the driver's view of the process sampled
# every half second.
( while sleep 0.5; do nvidia-smi --query-compute-apps=used_memory --format=csv,noheader,nounits; done ) \
    >"$OUT/smi_mib" 2>/dev/null &
smi=$!
run timeout 300 $cuttle bench train --model $MODEL --batch $BATCH --steps $LONG --json
kill $smi
sort -n "$OUT/smi_mib" | awk 'NF { v[n++] = $1 } END { if (n) printf "{\"bench\": \"smi_memory\", \"samples\": %d, \"min_mib\": %d, \"max_mib\": %d}\n", n, v[0], v[n-1] }' \
    | tee -a "$log" >>"$jsonl"
run timeout 120 $cuttle bench train --model $MODEL --batch $BATCH --steps 5 --profile
run timeout 120 $cuttle bench train --model $MODEL --batch $BATCH --steps 5 --profile --lowrank 4
# DeiT-Tiny's step with its defaults (AdamW, label smoothing 0.1; torch_baseline.py also
# clips at norm 1, which costs us two small dispatches more: not included) beside
# PyTorch's deit_tiny_train line. VIT_BATCH shrinks it for a smoke test.
run timeout 180 $cuttle bench train --model deit-tiny --batch ${VIT_BATCH:-256} --steps 20 --json
# The character GPT (nanoGPT's Shakespeare model) with its defaults (AdamW, clipping at
# norm 1, as torch_baseline.py's gpt_char_train) at nanoGPT's batch of 64 x 256 tokens.
run timeout 180 $cuttle bench train --model gpt-char --batch 64 --steps 10 --json
python3 bench/table.py "$jsonl" $MODEL $BATCH ${VIT_BATCH:-256} | tee "$OUT/table.md"
