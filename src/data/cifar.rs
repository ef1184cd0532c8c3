//! CIFAR-10 and CIFAR-100 in their "binary version" (the `*-binary.tar.gz` downloads).
//!
//! What this is: a reader for fixed-size records of label byte(s) followed by 3,072 bytes
//! of 32x32 pixels as R, G, B planes, which is already our (channels, height, width)
//! layout, so images are copied as they are. CIFAR-10: `data_batch_1.bin` ..
//! `data_batch_5.bin` and `test_batch.bin`, records of 1 label byte + 3,072. CIFAR-100:
//! `train.bin` and `test.bin`, records of a coarse label byte, a fine label byte + 3,072;
//! we use the fine label (100 classes). The files may sit in DIR itself or in the
//! folder the archive unpacks to (`cifar-10-batches-bin/`, `cifar-100-binary/`).
//!
//! What this is not: a reader for the Python (pickle) or MATLAB versions of CIFAR.

use std::fs;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Splits};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;

struct Format {
    /// Prefix of each split's name, e.g. "cifar10".
    name: &'static str,
    /// The folder the official archive unpacks to.
    subdir: &'static str,
    train_files: &'static [&'static str],
    test_file: &'static str,
    /// Label bytes before the pixels of each record; the label we use is the last of them.
    label_bytes: usize,
    classes: usize,
    /// For CIFAR-100, the classes of the coarse label byte we skip (checked all the same:
    /// a coarse label out of range means the records are not what we think they are).
    coarse_classes: Option<usize>,
    /// One class name per line, in label order.
    names_file: &'static str,
}

const CIFAR10: Format = Format {
    name: "cifar10",
    subdir: "cifar-10-batches-bin",
    train_files: &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    test_file: "test_batch.bin",
    label_bytes: 1,
    classes: 10,
    coarse_classes: None,
    names_file: "batches.meta.txt",
};

const CIFAR100: Format = Format {
    name: "cifar100",
    subdir: "cifar-100-binary",
    train_files: &["train.bin"],
    test_file: "test.bin",
    label_bytes: 2,
    classes: 100,
    coarse_classes: Some(20),
    names_file: "fine_label_names.txt",
};

pub(crate) fn load_cifar10(dir: &Path) -> Result<Splits, DataError> {
    load(dir, &CIFAR10)
}

pub(crate) fn load_cifar100(dir: &Path) -> Result<Splits, DataError> {
    load(dir, &CIFAR100)
}

fn load(dir: &Path, format: &Format) -> Result<Splits, DataError> {
    let dir = resolve_dir(dir, format)?;
    let class_names = read_class_names(&dir.join(format.names_file), format.classes)?;
    let train_paths: Vec<PathBuf> = format.train_files.iter().map(|f| dir.join(f)).collect();
    // Check every file is there before reading 150 MB, so a missing last batch fails fast.
    for path in train_paths.iter().chain([&dir.join(format.test_file)]) {
        if !path.is_file() {
            return Err(DataError::new(path, "file not found"));
        }
    }
    let train = read_split(&train_paths, format, "train", &class_names)?;
    let test = read_split(&[dir.join(format.test_file)], format, "test", &class_names)?;
    Ok(Splits { train, test })
}

/// DIR itself when it holds the first training file, else the archive's folder inside it
/// when that exists, else DIR (so the "file not found" error names DIR's file).
fn resolve_dir(dir: &Path, format: &Format) -> Result<PathBuf, DataError> {
    if !dir.is_dir() {
        return Err(DataError::new(
            dir,
            format!("not a directory (expected {} binary files here or in {}/)", format.name, format.subdir),
        ));
    }
    if dir.join(format.train_files[0]).is_file() {
        return Ok(dir.to_path_buf());
    }
    let sub = dir.join(format.subdir);
    Ok(if sub.is_dir() { sub } else { dir.to_path_buf() })
}

/// The names file when present (non-empty lines, trimmed), else "0", "1", ...
fn read_class_names(path: &Path, classes: usize) -> Result<Vec<String>, DataError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((0..classes).map(|i| i.to_string()).collect());
        }
        Err(e) => return Err(DataError::io(path, e)),
    };
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != classes {
        return Err(DataError::new(path, format!("has {} class names, expected {classes}", names.len())));
    }
    Ok(names)
}

fn read_split(paths: &[PathBuf], format: &Format, split: &str, class_names: &[String]) -> Result<Dataset, DataError> {
    let mut files = Vec::new();
    for path in paths {
        files.push((path.clone(), fs::read(path).map_err(|e| DataError::io(path, e))?));
    }
    parse_split(&files, format, split, class_names)
}

/// Records of `files` (name for errors, bytes) as one split.
fn parse_split(
    files: &[(PathBuf, Vec<u8>)],
    format: &Format,
    split: &str,
    class_names: &[String],
) -> Result<Dataset, DataError> {
    let record = format.label_bytes + PIXELS;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (path, bytes) in files {
        if bytes.is_empty() {
            return Err(DataError::new(path, "empty file"));
        }
        if bytes.len() % record != 0 {
            return Err(DataError::new(
                path,
                format!("truncated record: {} bytes is not a multiple of {record}", bytes.len()),
            ));
        }
        images.reserve(bytes.len() / record * PIXELS);
        for (r, rec) in bytes.chunks_exact(record).enumerate() {
            if let Some(coarse_classes) = format.coarse_classes {
                let coarse = rec[0];
                if coarse as usize >= coarse_classes {
                    return Err(DataError::new(
                        path,
                        format!("coarse label {coarse} out of range 0..{coarse_classes} in record {r}"),
                    ));
                }
            }
            let label = rec[format.label_bytes - 1];
            if label as usize >= format.classes {
                return Err(DataError::new(
                    path,
                    format!("label {label} out of range 0..{} in record {r}", format.classes),
                ));
            }
            labels.push(label as u32);
            images.extend_from_slice(&rec[format.label_bytes..]);
        }
    }
    Ok(Dataset {
        name: format!("{}/{split}", format.name),
        n: labels.len(),
        images,
        labels,
        channels: 3,
        height: SIDE,
        width: SIDE,
        classes: format.classes,
        class_names: class_names.to_vec(),
    })
}

/// CIFAR-10 from files already in memory (the browser's file picker): `(file name,
/// bytes)`. `test_batch.bin` is the test split, every `data_batch_*.bin` given the
/// training split; `batches.meta.txt` (class names) is optional; other names are errors.
pub fn cifar10_from_memory(files: &[(String, Vec<u8>)]) -> Result<Splits, DataError> {
    let (mut train, mut test, mut names) = (vec![], vec![], None);
    for (name, bytes) in files {
        let base = name.rsplit('/').next().unwrap_or(name);
        let entry = (PathBuf::from(name), bytes.clone());
        if base == CIFAR10.test_file {
            test.push(entry);
        } else if base.starts_with("data_batch_") && base.ends_with(".bin") {
            train.push(entry);
        } else if base == CIFAR10.names_file {
            names = Some(
                String::from_utf8_lossy(bytes)
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>(),
            );
        } else {
            return Err(DataError::new(
                Path::new(name),
                "not a CIFAR-10 binary file (expected data_batch_N.bin, test_batch.bin or batches.meta.txt)",
            ));
        }
    }
    let missing = |what: &str| DataError::new(Path::new("CIFAR-10"), format!("no {what} among the chosen files"));
    if train.is_empty() {
        return Err(missing("data_batch_N.bin"));
    }
    if test.is_empty() {
        return Err(missing("test_batch.bin"));
    }
    let class_names = match names {
        Some(n) if n.len() == CIFAR10.classes => n,
        Some(n) => {
            return Err(DataError::new(
                Path::new(CIFAR10.names_file),
                format!("has {} class names, expected 10", n.len()),
            ))
        }
        None => (0..CIFAR10.classes).map(|i| i.to_string()).collect(),
    };
    train.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Splits {
        train: parse_split(&train, &CIFAR10, "train", &class_names)?,
        test: parse_split(&test, &CIFAR10, "test", &class_names)?,
    })
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    fn records(labels: &[u8]) -> Vec<u8> {
        labels.iter().flat_map(|&l| std::iter::once(l).chain(std::iter::repeat_n(l * 10, PIXELS))).collect()
    }

    #[test]
    fn cifar10_batches_from_memory() {
        let files = vec![
            ("data_batch_2.bin".to_string(), records(&[3])),
            ("cifar-10-batches-bin/data_batch_1.bin".to_string(), records(&[1, 2])),
            ("test_batch.bin".to_string(), records(&[9])),
        ];
        let s = cifar10_from_memory(&files).unwrap();
        assert_eq!(s.train.labels, [1, 2, 3], "batches in name order");
        assert_eq!((s.test.n, s.train.class_names.len()), (1, 10));
        let mut bad = files.clone();
        bad[2].1.pop();
        assert!(cifar10_from_memory(&bad).unwrap_err().to_string().contains("truncated record"));
        let e = cifar10_from_memory(&files[..2]).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin"), "{e}");
        let e = cifar10_from_memory(&[("photo.jpg".into(), vec![0])]).unwrap_err().to_string();
        assert!(e.contains("photo.jpg") && e.contains("not a CIFAR-10 binary file"), "{e}");
        let mut labels = files.clone();
        labels[2].1[0] = 10;
        assert!(cifar10_from_memory(&labels).unwrap_err().to_string().contains("label 10 out of range"));
    }
}
