//! IDX files whose header lies about their size: a small gzip file that claims a
//! billion images, or a stream that decompresses to far more than its claim, or a plain
//! file shorter than its header says. Each must fail with a clear error naming the file
//! and the sizes, and the loader's memory must follow the data, never the claim.
//!
//! Its own test binary with a single test: the memory check reads this process's
//! high-water mark (VmHWM in /proc/self/status, Linux), which any other test running
//! beside it would move.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use cuttle::data::{load, DataSpec};

mod common;
use common::TempDir;

/// This process's peak resident memory in KiB, None where /proc is not there.
fn peak_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn header(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// One gzip member holding `bytes`.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A gzip member of `zeros` zero bytes, compressed as it is made (never whole in memory).
fn gzip_zeros(path: &Path, zeros: usize) {
    let mut enc = flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..zeros / chunk.len() {
        enc.write_all(&chunk).unwrap();
    }
    enc.finish().unwrap();
}

/// The four MNIST files in `dir`, with `images` as the training images and `labels`
/// training labels: the labels and the test split are valid, so any error is the
/// training images' (or the count's, where `labels` disagrees with their header).
fn write_split(dir: &Path, images_name: &str, images: &[u8], labels: u32) {
    for stale in ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"] {
        let _ = fs::remove_file(dir.join(stale));
    }
    fs::write(dir.join(images_name), images).unwrap();
    fs::write(dir.join("train-labels-idx1-ubyte"), [header(&[0x801, labels]), vec![3; labels as usize]].concat())
        .unwrap();
    fs::write(dir.join("t10k-images-idx3-ubyte"), [header(&[0x803, 1, 2, 2]), vec![9; 4]].concat()).unwrap();
    fs::write(dir.join("t10k-labels-idx1-ubyte"), [header(&[0x801, 1]), vec![4]].concat()).unwrap();
}

/// Loads `dir` as MNIST, which must fail with every part in its message without raising
/// this process's peak memory by `LIMIT_KIB` or more (where /proc tells).
fn fails_within_memory(dir: &Path, parts: &[&str]) {
    let before = peak_kib();
    let msg = match load(&DataSpec::Mnist(dir.into())) {
        Ok(s) => panic!("loading {} succeeded ({} training images), expected an error", dir.display(), s.train.n),
        Err(e) => e.to_string(),
    };
    if let (Some(before), Some(after)) = (before, peak_kib()) {
        let grew = after.saturating_sub(before);
        eprintln!("{msg}\n  (peak memory grew {grew} KiB)");
        assert!(grew < LIMIT_KIB, "peak memory grew {grew} KiB on a lying header (error: {msg})");
    }
    for part in parts {
        assert!(msg.contains(part), "error {msg:?} does not mention {part:?}");
    }
}

/// Most that one failed load may add to the peak. The data sets here hold at most 47 MB
/// that is real; the lies claim up to 784 GB.
const LIMIT_KIB: u64 = 300 << 10;

#[test]
fn lying_headers_fail_without_allocating_the_claim() {
    let tmp = TempDir::new("bomb");
    let dir = tmp.0.as_path();
    // 512 MiB of zeros, about half a megabyte compressed. Written as its own gzip member
    // after the header's (the reader takes concatenated members as one stream), so the
    // cases below share it.
    let zeros_path = dir.join("zeros.gz");
    gzip_zeros(&zeros_path, 512 << 20);
    let zeros = fs::read(&zeros_path).unwrap();
    fs::remove_file(&zeros_path).unwrap();
    assert!(zeros.len() < 1 << 20, "512 MiB of zeros compressed to {} bytes", zeros.len());

    // A billion images of 28x28 claimed, 512 MiB there: refused before reading.
    let bomb = [gzip(&header(&[0x803, 1_000_000_000, 28, 28])), zeros.clone()].concat();
    write_split(dir, "train-images-idx3-ubyte.gz", &bomb, 1);
    fails_within_memory(
        dir,
        &["train-images-idx3-ubyte.gz", "1000000000 images of 28x28", "784000000000 bytes", "gzip", "1032"],
    );

    // A plausible claim (60,000 images of 28x28, 47 MB) over the same 512 MiB: the
    // stream is read only to the claim and one byte more.
    let over = [gzip(&header(&[0x803, 60_000, 28, 28])), zeros.clone()].concat();
    write_split(dir, "train-images-idx3-ubyte.gz", &over, 60_000);
    fails_within_memory(dir, &["train-images-idx3-ubyte.gz", "trailing bytes", "60000 images of 28x28"]);

    // A true header (524,288 images of 32x32: the 512 MiB there) beside a file of one
    // label: refuted by the labels' header before a pixel is read.
    let true_claim = [gzip(&header(&[0x803, 524_288, 32, 32])), zeros.clone()].concat();
    write_split(dir, "train-images-idx3-ubyte.gz", &true_claim, 1);
    fails_within_memory(dir, &["train-labels-idx1-ubyte", "count mismatch: 1 labels here but 524288 images"]);

    // A claim the compressed size allows but the stream does not hold (noise, so that
    // the gzip file is as large as its data).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..5000)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect();
    let short = gzip(&[header(&[0x803, 1000, 28, 28]), noise].concat());
    write_split(dir, "train-images-idx3-ubyte.gz", &short, 1000);
    fails_within_memory(dir, &["train-images-idx3-ubyte.gz", "truncated", "1000 images of 28x28", "only 5000 bytes"]);

    // A plain file that claims a gigabyte and holds 100 bytes: refused from its length,
    // before any of it is read.
    write_split(dir, "train-images-idx3-ubyte", &[header(&[0x803, 1000, 1000, 1000]), vec![0; 100]].concat(), 1);
    fails_within_memory(
        dir,
        &[
            "train-images-idx3-ubyte",
            "1000 images of 1000x1000 (1000000000 bytes of pixels)",
            "only 100 bytes after its 16-byte header",
        ],
    );
    // The largest claim a header can make (u32::MAX three times) on a plain file.
    write_split(dir, "train-images-idx3-ubyte", &header(&[0x803, u32::MAX, u32::MAX, u32::MAX]), 1);
    fails_within_memory(dir, &["train-images-idx3-ubyte", "4294967295"]);
}
