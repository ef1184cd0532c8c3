"""bench/table.py: the BENCHMARKS.md table from bench/device.sh's bench.jsonl.

Reads the JSON lines of `cuttle bench` and of torch_baseline.py from one run and prints
a markdown table: each of issue 6's figures, ours, PyTorch's, the ratio and the target.
Where a figure was measured more than once in the run, ours is the lowest (conservative).

Usage: python3 bench/table.py bench.jsonl [MODEL [BATCH [VIT_BATCH]]]   (default resnet18 256 256)
"""
import json
import sys


def load(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not a JSON object ({e})")
    return rows


def main():
    if not 2 <= len(sys.argv) <= 5:
        sys.exit(__doc__.strip().splitlines()[-1])
    rows = load(sys.argv[1])
    model = sys.argv[2] if len(sys.argv) > 2 else "resnet18"
    try:
        batch = int(sys.argv[3]) if len(sys.argv) > 3 else 256
        vit_batch = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    except ValueError:
        sys.exit(f"batch {sys.argv[3:]!r} is not a whole number")
    pick = lambda **kw: [r for r in rows if all(r.get(k) == v for k, v in kw.items())]
    low = lambda rs, key: min((r[key] for r in rs if key in r), default=None)
    device = next((r["name"] for r in rows if r.get("bench") == "device"), None)
    ours_adapter = next((r["adapter"] for r in rows if "adapter" in r), "?")
    out = []
    line = lambda *c: out.append("| " + " | ".join(c) + " |")
    fmt = lambda v, d=1: "n/a" if v is None else f"{v:,.{d}f}"

    def compare(name, ours, theirs, target, higher=True, unit=""):
        ratio = None if ours is None or theirs in (None, 0) else ours / theirs
        met = "n/a" if ratio is None else ("yes" if (ratio >= target if higher else ratio <= target) else "**no**")
        want = f"≥ {target:.2f}" if higher else f"≤ {target:.2f}"
        line(name, fmt(ours) + unit, fmt(theirs) + unit, fmt(ratio, 2), want, met)

    out.append(f"Card: {device or 'unknown (no torch_baseline line)'}; our adapter: {ours_adapter}\n")
    line("figure", "cuttle", "PyTorch", "ratio", "target", "met")
    line("---", "---:", "---:", "---:", "---", "---")
    shapes = [(4096, 4096, 4096, 0.70), (8192, 4608, 128, 0.60), (8192, 128, 512, 0.60), (16384, 1152, 256, 0.60)]
    for m, k, n, target in shapes:
        ours = low(pick(bench="matmul", m=m, k=k, n=n), "gflops")
        theirs = low(pick(bench="sgemm", tf32=False, m=m, k=k, n=n), "gflops")
        tf32 = low(pick(bench="sgemm", tf32=True, m=m, k=k, n=n), "gflops")
        compare(f"matmul {m}x{k}x{n} GFLOP/s (PyTorch TF32 on: {fmt(tf32)})", ours, theirs, target)
    for m in (1024, 2048):
        ours = low(pick(bench="matmul", m=m, k=m, n=m), "gflops")
        theirs = low(pick(bench="sgemm", tf32=False, m=m, k=m, n=m), "gflops")
        line(f"matmul {m}^3 GFLOP/s", fmt(ours), fmt(theirs), fmt(None if not (ours and theirs) else ours / theirs, 2), "-", "-")
    train = {}
    for lr, label in ((None, "full-rank"), (4, "low-rank c_out/4")):
        ours = low(pick(bench="train", model=model, batch=batch, lowrank=lr), "images_per_s")
        theirs = low(pick(bench="resnet18_train", strict_fp32=True, batch=256, lowrank=lr is not None), "images_per_s")
        default = low(pick(bench="resnet18_train", strict_fp32=False, batch=256, lowrank=lr is not None), "images_per_s")
        train[lr] = ours
        compare(f"{model} {label} batch {batch} images/s (PyTorch default TF32: {fmt(default)})", ours, theirs, 0.60)
    ratio = None if not (train[None] and train[4]) else train[4] / train[None]
    line("our low-rank / our full-rank images/s", fmt(ratio, 2), "-", "-", "≥ 1.30", "n/a" if ratio is None else ("yes" if ratio >= 1.3 else "**no**"))
    full = pick(bench="train", model=model, batch=batch, lowrank=None)
    plan = max((r["plan_bytes"] for r in full), default=None)
    plan_mib = None if plan is None else plan / 2**20
    theirs = low(pick(bench="resnet18_train", strict_fp32=True, batch=256, lowrank=False), "peak_mib")
    compare(f"peak memory, {model} batch {batch}, MiB (ours: the plan)", plan_mib, theirs, 1.20, higher=False)
    smi = next((r for r in rows if r.get("bench") == "smi_memory"), None)
    if full:
        r = max(full, key=lambda r: r.get("steps", 0))
        flat = r["allocated_after_steps_bytes"] == r["plan_bytes"]
        seen = "" if not smi else f"; driver's view {smi['min_mib']}-{smi['max_mib']} MiB over {smi['samples']} samples"
        line(f"memory flat over {r['steps']} steps", f"allocated {fmt(r['allocated_after_steps_bytes'] / 2**20)} MiB after, plan {fmt(plan_mib)} MiB{seen}", "-", "-", "flat", "yes" if flat else "**no**")
    ours = low(pick(bench="train", model="deit-tiny", batch=vit_batch, lowrank=None), "images_per_s")
    theirs = low(pick(bench="deit_tiny_train", strict_fp32=True, batch=256), "per_s")
    default = low(pick(bench="deit_tiny_train", strict_fp32=False, batch=256), "per_s")
    compare(f"deit-tiny batch {vit_batch} images/s (PyTorch default TF32: {fmt(default)})", ours, theirs, 0.60)
    ours = low(pick(bench="train", model="gpt-char", batch=64, lowrank=None), "tokens_per_s")
    theirs = low(pick(bench="gpt_char_train", strict_fp32=True, batch=64), "per_s")
    default = low(pick(bench="gpt_char_train", strict_fp32=False, batch=64), "per_s")
    compare(f"gpt-char batch 64 x 256 tokens/s (PyTorch default TF32: {fmt(default)})", ours, theirs, 0.60)
    print("\n".join(out))


if __name__ == "__main__":
    main()
