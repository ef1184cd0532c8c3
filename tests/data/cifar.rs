//! CIFAR-10 and CIFAR-100 binary files: synthetic records with hand-checkable pixels,
//! the archive subfolder, class names, and each malformed-file error.

use super::*;

/// Pixel (channel c, flat position p) of synthetic image `id`.
fn cifar_pixel(id: usize, c: usize, p: usize) -> u8 {
    (id * 3 + c * 100 + p) as u8
}

fn cifar_pixels(id: usize) -> Vec<u8> {
    (0..3).flat_map(|c| (0..1024).map(move |p| cifar_pixel(id, c, p))).collect()
}

/// CIFAR-10 records: (label, image id).
fn cifar10_file(records: &[(u8, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(label, id) in records {
        out.push(label);
        out.extend(cifar_pixels(id));
    }
    out
}

pub(super) const CIFAR10_NAMES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Five training batches of two records (labels 0..9, image ids 0..9), a test batch of
/// three (labels 3, 1, 4; ids 100..102), and the names file.
fn write_cifar10(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for k in 0..5 {
        let recs = [((2 * k) as u8, 2 * k), ((2 * k + 1) as u8, 2 * k + 1)];
        fs::write(dir.join(format!("data_batch_{}.bin", k + 1)), cifar10_file(&recs)).unwrap();
    }
    fs::write(dir.join("test_batch.bin"), cifar10_file(&[(3, 100), (1, 101), (4, 102)])).unwrap();
    fs::write(dir.join("batches.meta.txt"), CIFAR10_NAMES.join("\n") + "\n\n").unwrap();
}

#[test]
fn cifar10_loads_records() {
    let tmp = TempDir::new("cifar10");
    write_cifar10(tmp.path());
    let s = load_ok(&DataSpec::Cifar10(tmp.path().into()));
    let (train, test) = (&s.train, &s.test);
    assert_eq!(train.name, "cifar10/train");
    assert_eq!((train.n, train.channels, train.height, train.width), (10, 3, 32, 32));
    assert_eq!(train.labels, (0..10).collect::<Vec<u32>>());
    assert_eq!(train.classes, 10);
    assert_eq!(train.class_names, CIFAR10_NAMES);
    assert_eq!(train.image_bytes(), 3072);
    assert_eq!(train.images.len(), 10 * 3072);
    for i in 0..10 {
        assert_eq!(train.image(i), cifar_pixels(i), "train image {i}");
    }
    // R plane first, then G, then B: first pixel of each plane and the last byte.
    let img = train.image(7);
    assert_eq!((img[0], img[1024], img[2048], img[3071]), (21, 121, 221, (21 + 200 + 1023) as u8));
    assert_eq!(test.n, 3);
    assert_eq!(test.labels, [3, 1, 4]);
    assert_eq!(test.image(2), cifar_pixels(102));
    train.validate().unwrap();
    test.validate().unwrap();
}

#[test]
fn cifar10_finds_archive_subfolder_and_numbers_classes_without_names_file() {
    let tmp = TempDir::new("cifar10-sub");
    let sub = tmp.path().join("cifar-10-batches-bin");
    write_cifar10(&sub);
    fs::remove_file(sub.join("batches.meta.txt")).unwrap();
    let s = load_ok(&DataSpec::Cifar10(tmp.path().into()));
    assert_eq!(s.train.n, 10);
    assert_eq!(s.train.class_names, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
}

#[test]
fn cifar10_truncated_record() {
    let tmp = TempDir::new("cifar10-trunc");
    write_cifar10(tmp.path());
    let mut bytes = cifar10_file(&[(0, 0), (1, 1)]);
    bytes.extend([1, 2, 3, 4, 5]);
    fs::write(tmp.path().join("data_batch_3.bin"), bytes).unwrap();
    load_err(
        &DataSpec::Cifar10(tmp.path().into()),
        &["data_batch_3.bin", "truncated record: 6151 bytes is not a multiple of 3073"],
    );
}

#[test]
fn cifar10_label_out_of_range() {
    let tmp = TempDir::new("cifar10-label");
    write_cifar10(tmp.path());
    fs::write(tmp.path().join("test_batch.bin"), cifar10_file(&[(3, 0), (10, 1)])).unwrap();
    load_err(&DataSpec::Cifar10(tmp.path().into()), &["test_batch.bin", "label 10 out of range 0..10 in record 1"]);
}

#[test]
fn cifar10_missing_file() {
    let tmp = TempDir::new("cifar10-missing");
    write_cifar10(tmp.path());
    fs::remove_file(tmp.path().join("data_batch_4.bin")).unwrap();
    load_err(&DataSpec::Cifar10(tmp.path().into()), &["data_batch_4.bin", "not found"]);
    load_err(&DataSpec::Cifar10(tmp.path().join("nope")), &["nope", "not a directory"]);
}

#[test]
fn cifar10_bad_names_file_and_empty_file() {
    let tmp = TempDir::new("cifar10-names");
    write_cifar10(tmp.path());
    fs::write(tmp.path().join("batches.meta.txt"), "a\nb\n").unwrap();
    load_err(&DataSpec::Cifar10(tmp.path().into()), &["batches.meta.txt", "2 class names"]);
    write_cifar10(tmp.path());
    fs::write(tmp.path().join("data_batch_1.bin"), b"").unwrap();
    load_err(&DataSpec::Cifar10(tmp.path().into()), &["data_batch_1.bin", "empty"]);
}

/// CIFAR-100 records: (coarse, fine, image id).
fn cifar100_file(records: &[(u8, u8, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(coarse, fine, id) in records {
        out.extend([coarse, fine]);
        out.extend(cifar_pixels(id));
    }
    out
}

#[test]
fn cifar100_uses_fine_labels() {
    let tmp = TempDir::new("cifar100");
    let sub = tmp.path().join("cifar-100-binary");
    fs::create_dir_all(&sub).unwrap();
    fs::write(sub.join("train.bin"), cifar100_file(&[(0, 99, 5), (19, 0, 6)])).unwrap();
    fs::write(sub.join("test.bin"), cifar100_file(&[(5, 42, 7)])).unwrap();
    let s = load_ok(&DataSpec::Cifar100(tmp.path().into()));
    assert_eq!(s.train.name, "cifar100/train");
    assert_eq!(s.train.labels, [99, 0]);
    assert_eq!(s.train.classes, 100);
    assert_eq!(s.train.class_names.len(), 100);
    assert_eq!(s.train.class_names[99], "99");
    assert_eq!(s.train.image(1), cifar_pixels(6));
    assert_eq!(s.test.labels, [42]);
    assert_eq!(s.test.image(0), cifar_pixels(7));

    let names: Vec<String> = (0..100).map(|i| format!("class{i}")).collect();
    fs::write(sub.join("fine_label_names.txt"), names.join("\n")).unwrap();
    assert_eq!(load_ok(&DataSpec::Cifar100(sub.clone())).test.class_names, names);

    fs::write(sub.join("train.bin"), cifar100_file(&[(0, 99, 5), (1, 100, 6)])).unwrap();
    load_err(&DataSpec::Cifar100(sub.clone()), &["train.bin", "label 100 out of range 0..100"]);
    fs::write(sub.join("train.bin"), cifar100_file(&[(20, 1, 5)])).unwrap();
    load_err(&DataSpec::Cifar100(sub.clone()), &["train.bin", "coarse label 20 out of range"]);
    fs::write(sub.join("train.bin"), cifar100_file(&[(0, 99, 5)])).unwrap();
    let mut short = cifar100_file(&[(0, 1, 5)]);
    short.pop();
    fs::write(sub.join("test.bin"), short).unwrap();
    load_err(&DataSpec::Cifar100(sub), &["test.bin", "3073 bytes is not a multiple of 3074"]);
}

/// Prefixes of a valid file (every 97th length) are errors, never a panic or a short
/// data set.
#[test]
fn cifar_rejects_every_truncation() {
    let tmp = TempDir::new("cifar-prefixes");
    write_cifar10(tmp.path());
    let full = fs::read(tmp.path().join("test_batch.bin")).unwrap();
    for len in (0..full.len()).step_by(97) {
        fs::write(tmp.path().join("test_batch.bin"), &full[..len]).unwrap();
        load_err(&DataSpec::Cifar10(tmp.path().into()), &["test_batch.bin"]);
    }
}
