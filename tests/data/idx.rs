//! MNIST-style IDX files, plain and gzipped: synthetic files with hand-checkable
//! pixels, and each malformed-file error (magic, truncation, counts, labels).

use std::io::Write;

use super::*;

fn idx_images(magic: u32, count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for w in [magic, count, rows, cols] {
        out.extend(w.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

fn idx_labels(magic: u32, count: u32, labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(magic.to_be_bytes());
    out.extend(count.to_be_bytes());
    out.extend_from_slice(labels);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Train: 3 images of 2x3 (rows x cols), image i pixel p = 10*i + p, labels 7, 0, 9.
/// Test: 2 images, pixel p = 200 + p (image 0) and 255 - p (image 1), labels 3, 3.
/// `gz` picks which of the four files are gzipped.
fn write_mnist(dir: &Path, gz: [bool; 4]) {
    let train_px: Vec<u8> = (0..3).flat_map(|i| (0..6).map(move |p| 10 * i + p)).collect();
    let test_px: Vec<u8> = (0..6).map(|p| 200 + p).chain((0..6).map(|p| 255 - p)).collect();
    let files = [
        ("train-images-idx3-ubyte", idx_images(0x803, 3, 2, 3, &train_px)),
        ("train-labels-idx1-ubyte", idx_labels(0x801, 3, &[7, 0, 9])),
        ("t10k-images-idx3-ubyte", idx_images(0x803, 2, 2, 3, &test_px)),
        ("t10k-labels-idx1-ubyte", idx_labels(0x801, 2, &[3, 3])),
    ];
    for ((name, bytes), gz) in files.into_iter().zip(gz) {
        if gz {
            fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
        } else {
            fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

fn check_synthetic_mnist(s: &Splits) {
    let (train, test) = (&s.train, &s.test);
    assert_eq!((train.n, train.channels, train.height, train.width), (3, 1, 2, 3));
    assert_eq!(train.labels, [7, 0, 9]);
    assert_eq!(train.image(0), [0, 1, 2, 3, 4, 5]);
    assert_eq!(train.image(2), [20, 21, 22, 23, 24, 25]);
    assert_eq!(train.classes, 10);
    assert_eq!((test.n, test.labels.as_slice()), (2, [3, 3].as_slice()));
    assert_eq!(test.image(1), [255, 254, 253, 252, 251, 250]);
}

#[test]
fn mnist_plain_gzipped_and_mixed() {
    for gz in [[false; 4], [true; 4], [true, false, false, true]] {
        let tmp = TempDir::new("mnist");
        write_mnist(tmp.path(), gz);
        let s = load_ok(&DataSpec::Mnist(tmp.path().into()));
        check_synthetic_mnist(&s);
        assert_eq!(s.train.name, "mnist/train");
        assert_eq!(s.test.name, "mnist/test");
        assert_eq!(s.train.class_names, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    }
}

#[test]
fn mnist_prefers_plain_file_over_gz() {
    let tmp = TempDir::new("mnist-both");
    write_mnist(tmp.path(), [false; 4]);
    // A gz beside the plain file that would fail if it were read.
    fs::write(tmp.path().join("train-labels-idx1-ubyte.gz"), b"not gzip").unwrap();
    check_synthetic_mnist(&load_ok(&DataSpec::Mnist(tmp.path().into())));
}

#[test]
fn fashion_mnist_class_names() {
    let tmp = TempDir::new("fashion");
    write_mnist(tmp.path(), [true; 4]);
    let s = load_ok(&DataSpec::FashionMnist(tmp.path().into()));
    check_synthetic_mnist(&s);
    assert_eq!(s.train.name, "fashion-mnist/train");
    assert_eq!(
        s.train.class_names,
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    );
}

#[test]
fn mnist_wrong_magic() {
    let tmp = TempDir::new("mnist-magic");
    write_mnist(tmp.path(), [false; 4]);
    // An image file where the labels belong.
    fs::write(tmp.path().join("train-labels-idx1-ubyte"), idx_images(0x803, 3, 1, 1, &[1, 2, 3])).unwrap();
    load_err(
        &DataSpec::Mnist(tmp.path().into()),
        &["train-labels-idx1-ubyte", "bad magic 0x00000803", "expected 0x00000801"],
    );
    // A gzipped file under the plain name.
    let plain = idx_images(0x803, 3, 2, 3, &[0; 18]);
    fs::write(tmp.path().join("train-labels-idx1-ubyte"), idx_labels(0x801, 3, &[7, 0, 9])).unwrap();
    fs::write(tmp.path().join("t10k-images-idx3-ubyte"), gzip(&plain)).unwrap();
    load_err(&DataSpec::Mnist(tmp.path().into()), &["t10k-images-idx3-ubyte", "bad magic 0x1f8b08", "gzip"]);
}

#[test]
fn mnist_truncated_and_trailing() {
    let tmp = TempDir::new("mnist-trunc");
    write_mnist(tmp.path(), [false; 4]);
    // Header says 3 images of 2x3 but 17 pixel bytes follow.
    fs::write(tmp.path().join("train-images-idx3-ubyte"), idx_images(0x803, 3, 2, 3, &[0; 17])).unwrap();
    load_err(
        &DataSpec::Mnist(tmp.path().into()),
        &["train-images-idx3-ubyte", "truncated", "3 images of 2x3", "only 17 bytes"],
    );
    fs::write(tmp.path().join("train-images-idx3-ubyte"), idx_images(0x803, 3, 2, 3, &[0; 19])).unwrap();
    load_err(&DataSpec::Mnist(tmp.path().into()), &["train-images-idx3-ubyte", "trailing bytes"]);
    fs::write(tmp.path().join("train-images-idx3-ubyte"), [0, 0, 8, 3, 0]).unwrap();
    load_err(&DataSpec::Mnist(tmp.path().into()), &["train-images-idx3-ubyte", "truncated header"]);
}

#[test]
fn mnist_count_mismatch() {
    let tmp = TempDir::new("mnist-count");
    write_mnist(tmp.path(), [false; 4]);
    fs::write(tmp.path().join("t10k-labels-idx1-ubyte"), idx_labels(0x801, 3, &[1, 2, 3])).unwrap();
    load_err(
        &DataSpec::Mnist(tmp.path().into()),
        &["t10k-labels-idx1-ubyte", "count mismatch", "3 labels", "2 images", "t10k-images-idx3-ubyte"],
    );
}

#[test]
fn mnist_label_out_of_range() {
    let tmp = TempDir::new("mnist-label");
    write_mnist(tmp.path(), [true; 4]);
    fs::write(tmp.path().join("train-labels-idx1-ubyte.gz"), gzip(&idx_labels(0x801, 3, &[7, 10, 9]))).unwrap();
    load_err(
        &DataSpec::Mnist(tmp.path().into()),
        &["train-labels-idx1-ubyte.gz", "label 10 out of range 0..10 at index 1"],
    );
}

#[test]
fn mnist_missing_file_and_corrupt_gzip() {
    let tmp = TempDir::new("mnist-missing");
    write_mnist(tmp.path(), [true; 4]);
    fs::remove_file(tmp.path().join("t10k-images-idx3-ubyte.gz")).unwrap();
    load_err(&DataSpec::Mnist(tmp.path().into()), &["t10k-images-idx3-ubyte", "not found"]);

    write_mnist(tmp.path(), [true; 4]);
    let path = tmp.path().join("train-images-idx3-ubyte.gz");
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes[mid + 1] ^= 0x55;
    fs::write(&path, bytes).unwrap();
    load_err(&DataSpec::Mnist(tmp.path().into()), &["train-images-idx3-ubyte.gz"]);
}

/// Every prefix of a valid file is an error, never a panic or a short data set.
#[test]
fn idx_rejects_every_truncation() {
    let tmp = TempDir::new("mnist-prefixes");
    write_mnist(tmp.path(), [false; 4]);
    let path = tmp.path().join("train-images-idx3-ubyte");
    let full = fs::read(&path).unwrap();
    for len in 0..full.len() {
        fs::write(&path, &full[..len]).unwrap();
        load_err(&DataSpec::Mnist(tmp.path().into()), &["train-images-idx3-ubyte"]);
    }
    fs::write(&path, &full).unwrap();
    let gz_path = tmp.path().join("train-labels-idx1-ubyte.gz");
    fs::remove_file(tmp.path().join("train-labels-idx1-ubyte")).unwrap();
    let gz = gzip(&idx_labels(0x801, 3, &[7, 0, 9]));
    for len in 0..gz.len() {
        fs::write(&gz_path, &gz[..len]).unwrap();
        load_err(&DataSpec::Mnist(tmp.path().into()), &["train-labels-idx1-ubyte.gz"]);
    }
}
