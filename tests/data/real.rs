//! The real data sets, where present (each test skips with a printed reason otherwise).

use super::cifar::CIFAR10_NAMES;
use super::*;

fn shared_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel)
}

#[test]
fn real_mnist() {
    let dir = shared_data("mnist");
    if !dir.join("train-images-idx3-ubyte.gz").is_file() && !dir.join("train-images-idx3-ubyte").is_file() {
        eprintln!("skipped: no MNIST at {}", dir.display());
        return;
    }
    let s = load_ok(&DataSpec::Mnist(dir));
    assert_eq!((s.train.n, s.test.n), (60000, 10000));
    assert_eq!((s.train.channels, s.train.height, s.train.width), (1, 28, 28));
    assert_eq!(s.train.labels[0], 5);
    assert_eq!(s.test.labels[0], 7);
    // The widely quoted MNIST training statistics: mean 0.1307, std 0.3081.
    let [(mean, std)] = s.train.channel_mean_std()[..] else { panic!("one channel") };
    assert!((mean - 0.1307).abs() < 1e-3 && (std - 0.3081).abs() < 1e-3, "{mean} {std}");
}

#[test]
fn real_fashion_mnist() {
    let dir = PathBuf::from("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        eprintln!("skipped: no Fashion-MNIST at {} (apt-get install dataset-fashion-mnist)", dir.display());
        return;
    }
    let s = load_ok(&DataSpec::FashionMnist(dir));
    assert_eq!((s.train.n, s.test.n), (60000, 10000));
    assert_eq!(s.train.labels[0], 9);
    assert_eq!(s.train.class_names[9], "Ankle boot");
}

/// Unpacks the CIFAR-10 JPEG archive (all of it, or only the members matching
/// `patterns`) into a temp dir, or says why not.
fn unpack_cifar10_jpeg(patterns: &[&str]) -> Result<TempDir, String> {
    let archive = shared_data("cifar10-jpeg/cifar10-jpeg.tar.xz");
    if !archive.is_file() {
        return Err(format!("no archive at {}", archive.display()));
    }
    let tmp = TempDir::new("cifar10-jpeg");
    let mut cmd = std::process::Command::new("tar");
    cmd.arg("xJf").arg(&archive).arg("-C").arg(tmp.path());
    if !patterns.is_empty() {
        cmd.arg("--wildcards").args(patterns);
    }
    match cmd.status() {
        Ok(st) if st.success() => Ok(tmp),
        Ok(st) => Err(format!("tar xJf {} failed: {st}", archive.display())),
        Err(e) => Err(format!("cannot run tar: {e}")),
    }
}

#[test]
fn real_cifar10_jpeg_sample() {
    // Ten images per class and split, to keep the suite fast; the full set is below.
    let tmp = match unpack_cifar10_jpeg(&["train/*/000?.jpg", "test/*/000?.jpg"]) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let s = load_ok(&DataSpec::Folder(tmp.path().into()));
    assert_eq!(s.train.class_names, CIFAR10_NAMES);
    assert_eq!((s.train.n, s.test.n), (100, 100));
    assert_eq!((s.train.channels, s.train.height, s.train.width), (3, 32, 32));
    for c in 0..10 {
        assert_eq!(s.train.labels.iter().filter(|&&l| l == c).count(), 10);
    }
    for (mean, std) in s.train.channel_mean_std() {
        assert!((0.3..0.6).contains(&mean) && (0.15..0.35).contains(&std), "{mean} {std}");
    }
}

#[test]
#[ignore = "unpacks and decodes all 60,000 CIFAR-10 JPEGs (several seconds)"]
fn real_cifar10_jpeg_full() {
    let tmp = match unpack_cifar10_jpeg(&[]) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let t = std::time::Instant::now();
    let s = load_ok(&DataSpec::Folder(tmp.path().into()));
    eprintln!("decoded 60,000 CIFAR-10 JPEGs in {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!((s.train.n, s.test.n), (50000, 10000));
    for c in 0..10 {
        assert_eq!(s.train.labels.iter().filter(|&&l| l == c).count(), 5000);
        assert_eq!(s.test.labels.iter().filter(|&&l| l == c).count(), 1000);
    }
    // The usual CIFAR-10 training statistics; re-encoding as JPEG moves them a little.
    let want = [(0.4914, 0.2470), (0.4822, 0.2435), (0.4465, 0.2616)];
    let stats = s.train.channel_mean_std();
    eprintln!("train channel (mean, std): {stats:?}");
    for ((mean, std), (wm, ws)) in stats.into_iter().zip(want) {
        assert!((mean - wm).abs() < 0.01 && (std - ws).abs() < 0.01, "{mean} {std}");
    }
}
