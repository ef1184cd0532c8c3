#!/usr/bin/env python3
"""Makes the Fashion-MNIST subset that ships with cuttle (data/fashion-mnist-subset/).

Source: Debian's dataset-fashion-mnist package (MIT, Copyright 2017 Zalando SE), files in
/usr/share/datasets/fashion-mnist/. Picks a class-balanced subset in the original order
(round-robin over classes, as cuttle's Dataset::subset does): 10,000 training and 2,000
test images. Output: the same four gzipped IDX files, byte-for-byte reproducible (mtime 0).
Usage: python3 data/make-fashion-mnist-subset.py [SRC_DIR] [OUT_DIR]
"""
import gzip, struct, sys, os

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "fashion-mnist-subset")

def read(prefix):
    img = gzip.open(os.path.join(src, f"{prefix}-images-idx3-ubyte.gz")).read()
    lab = gzip.open(os.path.join(src, f"{prefix}-labels-idx1-ubyte.gz")).read()
    magic, n, h, w = struct.unpack(">IIII", img[:16])
    assert magic == 0x803 and struct.unpack(">II", lab[:8]) == (0x801, n)
    return [img[16 + i * h * w:16 + (i + 1) * h * w] for i in range(n)], list(lab[8:]), h, w

def pick(labels, count):
    per_class = {c: [i for i, l in enumerate(labels) if l == c] for c in range(10)}
    chosen, k = [], 0
    while len(chosen) < count:
        for c in range(10):
            if k < len(per_class[c]) and len(chosen) < count:
                chosen.append(per_class[c][k])
        k += 1
    return sorted(chosen)

def write(path, data):
    with open(path, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as g:
            g.write(data)

os.makedirs(out, exist_ok=True)
for prefix, count in (("train", 10000), ("t10k", 2000)):
    images, labels, h, w = read(prefix)
    idx = pick(labels, count)
    write(os.path.join(out, f"{prefix}-images-idx3-ubyte.gz"),
          struct.pack(">IIII", 0x803, len(idx), h, w) + b"".join(images[i] for i in idx))
    write(os.path.join(out, f"{prefix}-labels-idx1-ubyte.gz"),
          struct.pack(">II", 0x801, len(idx)) + bytes(labels[i] for i in idx))
