//! Image folders: `DIR/train/<class>/*.{jpg,jpeg,png}` and `DIR/test/<class>/...`.
//!
//! What this is: the layout torchvision's ImageFolder reads, one folder per class. The
//! classes are the sub-folder names of `train/` sorted by byte order (as Python's
//! `sorted`, so label ids agree with ImageFolder), and `test/` must have the same set.
//! Within a class, files are taken in sorted file-name order, so the output order, the
//! label ids and any error reported are the same on every run. Every image is decoded
//! to RGB (grayscale is replicated, alpha is dropped, 16-bit is scaled to 8-bit) and must
//! be the size of the first training image. Decoding runs on up to 4 threads, each
//! writing its own contiguous run of images straight into the output buffer.
//!
//! What this is not: no resizing or cropping (a size mismatch is an error, not something
//! to paper over), no formats beyond JPEG and PNG, no recursion below the class folders.
//! Hidden entries (names starting with '.') are skipped; other files that are not
//! .jpg/.jpeg/.png are skipped with a warning in the log.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{DataError, Dataset, Splits};

const CHANNELS: usize = 3;
const MAX_THREADS: usize = 4;
/// Below this many images per thread, starting threads costs more than it saves.
const MIN_PER_THREAD: usize = 256;

pub(crate) fn load_folder(dir: &Path) -> Result<Splits, DataError> {
    if !dir.is_dir() {
        return Err(DataError::new(dir, "not a directory (expected train/<class>/*.jpg and test/<class>/*.jpg in it)"));
    }
    let train_dir = dir.join("train");
    let test_dir = dir.join("test");
    for d in [&train_dir, &test_dir] {
        if !d.is_dir() {
            return Err(DataError::new(d, "directory not found (expected one folder of images per class in it)"));
        }
    }
    let classes = class_dirs(&train_dir)?;
    if classes.is_empty() {
        return Err(DataError::new(&train_dir, "no class folders"));
    }
    let test_classes = class_dirs(&test_dir)?;
    let class_names: Vec<String> = classes.iter().map(|(name, _)| name.clone()).collect();
    let test_names: Vec<String> = test_classes.iter().map(|(name, _)| name.clone()).collect();
    if test_names != class_names {
        let missing: Vec<&String> = class_names.iter().filter(|c| !test_names.contains(c)).collect();
        let extra: Vec<&String> = test_names.iter().filter(|c| !class_names.contains(c)).collect();
        return Err(DataError::new(
            &test_dir,
            format!("class folders differ from train/: missing {missing:?}, not in train/ {extra:?}"),
        ));
    }

    let base = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    let train_files = list_images(&classes)?;
    let test_files = list_images(&test_classes)?;
    let first = decode(&train_files[0].0)?;
    let size = Size { width: first.width(), height: first.height(), example: &train_files[0].0 };
    let train = decode_split(&train_files, &size, format!("{base}/train"), &class_names)?;
    let test = decode_split(&test_files, &size, format!("{base}/test"), &class_names)?;
    Ok(Splits { train, test })
}

/// The size every image must have, and the image that set it (for error messages).
struct Size<'a> {
    width: u32,
    height: u32,
    example: &'a Path,
}

/// (name, path) of each non-hidden sub-folder, sorted by name.
fn class_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let Some(name) = path.file_name() else {
            continue;
        };
        if name.as_encoded_bytes().starts_with(b".") || !path.is_dir() {
            continue;
        }
        let Some(name) = name.to_str() else {
            return Err(DataError::new(&path, "class folder name is not valid UTF-8"));
        };
        out.push((name.to_string(), path));
    }
    out.sort();
    Ok(out)
}

/// (path, label) of every image, class by class, each class's files sorted by name.
fn list_images(classes: &[(String, PathBuf)]) -> Result<Vec<(PathBuf, u32)>, DataError> {
    let mut out = Vec::new();
    for (label, (_, class_dir)) in classes.iter().enumerate() {
        let mut files = Vec::new();
        let mut skipped = 0;
        for entry in fs::read_dir(class_dir).map_err(|e| DataError::io(class_dir, e))? {
            let path = entry.map_err(|e| DataError::io(class_dir, e))?.path();
            let Some(name) = path.file_name() else {
                continue;
            };
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jpg", "jpeg", "png"].iter().any(|x| e.eq_ignore_ascii_case(x)));
            if is_image && path.is_file() {
                files.push(path);
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            log::warn!("{}: skipped {skipped} entries that are not .jpg/.jpeg/.png files", class_dir.display());
        }
        if files.is_empty() {
            return Err(DataError::new(class_dir, "empty class folder: no .jpg, .jpeg or .png files"));
        }
        files.sort();
        out.extend(files.into_iter().map(|f| (f, label as u32)));
    }
    Ok(out)
}

fn decode(path: &Path) -> Result<image::RgbImage, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_bytes(path, &bytes)
}

fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<image::RgbImage, DataError> {
    // A decoder bug on a hostile file must become an error naming the file, not take
    // down the whole process.
    let decoded = std::panic::catch_unwind(|| image::load_from_memory(bytes))
        .map_err(|_| DataError::new(path, "the image decoder panicked on this file"))?
        .map_err(|e| DataError::new(path, format!("cannot decode image: {e}")))?;
    Ok(decoded.into_rgb8())
}

fn decode_split(
    files: &[(PathBuf, u32)],
    size: &Size,
    name: String,
    class_names: &[String],
) -> Result<Dataset, DataError> {
    let (w, h) = (size.width as usize, size.height as usize);
    let image_bytes = CHANNELS * w * h;
    let mut images = vec![0u8; files.len() * image_bytes];

    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
        .min(files.len().div_ceil(MIN_PER_THREAD))
        .max(1);
    let per_thread = files.len().div_ceil(threads);
    // Index of the earliest file that failed so far; threads past it stop early, threads
    // before it go on, since an earlier file may fail too and the error we report must
    // be the first in file order whatever the timing.
    let failed_at = AtomicUsize::new(usize::MAX);
    let results: Vec<Result<(), DataError>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(per_thread)
            .zip(images.chunks_mut(per_thread * image_bytes))
            .enumerate()
            .map(|(t, (chunk, out))| {
                let failed_at = &failed_at;
                s.spawn(move || {
                    for (k, ((path, _), dst)) in chunk.iter().zip(out.chunks_exact_mut(image_bytes)).enumerate() {
                        let index = t * per_thread + k;
                        if index > failed_at.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Err(e) = decode_into(path, size, dst) {
                            failed_at.fetch_min(index, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(DataError::new(&files[0].0, "an image decoding thread panicked"))))
            .collect()
    });
    // Each thread stops at its own first error, and threads hold runs in file order, so
    // the first error in thread order is the first in file order.
    results.into_iter().collect::<Result<(), DataError>>()?;

    Ok(Dataset {
        name,
        images,
        labels: files.iter().map(|&(_, label)| label).collect(),
        n: files.len(),
        channels: CHANNELS,
        height: h,
        width: w,
        classes: class_names.len(),
        class_names: class_names.to_vec(),
    })
}

/// Decodes one file into `dst`, (3, height, width) planar.
fn decode_into(path: &Path, size: &Size, dst: &mut [u8]) -> Result<(), DataError> {
    planar_into(path, decode(path)?, size, dst)
}

fn planar_into(path: &Path, rgb: image::RgbImage, size: &Size, dst: &mut [u8]) -> Result<(), DataError> {
    if (rgb.width(), rgb.height()) != (size.width, size.height) {
        return Err(DataError::new(
            path,
            format!(
                "image is {}x{} but the first image ({}) is {}x{}; all images must be one size",
                rgb.width(),
                rgb.height(),
                size.example.display(),
                size.width,
                size.height
            ),
        ));
    }
    let plane = rgb.width() as usize * rgb.height() as usize;
    let (r, rest) = dst.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (p, px) in rgb.as_raw().chunks_exact(CHANNELS).enumerate() {
        r[p] = px[0];
        g[p] = px[1];
        b[p] = px[2];
    }
    Ok(())
}

/// An image folder already in memory (the browser's folder picker): `(relative path,
/// bytes)` with paths like `any/prefix/train/<class>/<file>.png` and `.../test/<class>/...`.
/// The same rules as on disk: classes sorted, test classes equal to train's, files sorted
/// within a class, one image size, hidden and non-image files skipped.
pub fn folder_from_memory(files: &[(String, Vec<u8>)]) -> Result<Splits, DataError> {
    let mut split_files: [Vec<(&str, &str, &[u8])>; 2] = [vec![], vec![]];
    for (name, bytes) in files {
        let parts: Vec<&str> = name.split('/').collect();
        let n = parts.len();
        let is_image = |f: &str| {
            let lower = f.to_ascii_lowercase();
            !f.starts_with('.') && [".jpg", ".jpeg", ".png"].iter().any(|x| lower.ends_with(x))
        };
        if n < 3 || !is_image(parts[n - 1]) || parts[n - 2].starts_with('.') {
            continue;
        }
        match parts[n - 3] {
            "train" => split_files[0].push((parts[n - 2], name.as_str(), bytes.as_slice())),
            "test" => split_files[1].push((parts[n - 2], name.as_str(), bytes.as_slice())),
            _ => {}
        }
    }
    let top = Path::new("the chosen folder");
    for (split, f) in ["train", "test"].iter().zip(&split_files) {
        if f.is_empty() {
            return Err(DataError::new(
                top,
                format!("no images in {split}/<class>/ (expected train/ and test/ of class folders)"),
            ));
        }
    }
    for f in split_files.iter_mut() {
        f.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    }
    let classes = |f: &[(&str, &str, &[u8])]| {
        let mut c: Vec<String> = f.iter().map(|x| x.0.to_string()).collect();
        c.dedup();
        c
    };
    let class_names = classes(&split_files[0]);
    if classes(&split_files[1]) != class_names {
        return Err(DataError::new(
            top,
            format!("test/ has classes {:?}, train/ has {class_names:?}", classes(&split_files[1])),
        ));
    }
    let first_path = Path::new(split_files[0][0].1);
    let first = decode_bytes(first_path, split_files[0][0].2)?;
    let size = Size { width: first.width(), height: first.height(), example: first_path };
    let image_bytes = CHANNELS * first.width() as usize * first.height() as usize;
    let mut out = Vec::new();
    for (split, f) in ["train", "test"].iter().zip(&split_files) {
        let mut images = vec![0u8; f.len() * image_bytes];
        for ((_, name, bytes), dst) in f.iter().zip(images.chunks_exact_mut(image_bytes)) {
            let path = Path::new(name);
            planar_into(path, decode_bytes(path, bytes)?, &size, dst)?;
        }
        out.push(Dataset {
            name: format!("folder/{split}"),
            images,
            labels: f.iter().map(|x| class_names.iter().position(|c| c == x.0).unwrap_or(0) as u32).collect(),
            n: f.len(),
            channels: CHANNELS,
            height: size.height as usize,
            width: size.width as usize,
            classes: class_names.len(),
            class_names: class_names.clone(),
        });
    }
    let test = out.pop().expect("two splits");
    let train = out.pop().expect("two splits");
    Ok(Splits { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, v: u8) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([v, v / 2, 255 - v]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn folders_in_memory_read_like_folders_on_disk() {
        let files = vec![
            ("set/train/dog/b.png".to_string(), png(4, 3, 200)),
            ("set/train/cat/a.png".to_string(), png(4, 3, 10)),
            ("set/train/cat/.hidden.png".to_string(), vec![1, 2, 3]),
            ("set/train/cat/notes.txt".to_string(), vec![1, 2, 3]),
            ("set/test/cat/c.PNG".to_string(), png(4, 3, 20)),
            ("set/test/dog/d.png".to_string(), png(4, 3, 30)),
        ];
        let s = folder_from_memory(&files).unwrap();
        assert_eq!(s.train.class_names, ["cat", "dog"]);
        assert_eq!((s.train.n, s.test.n, s.train.height, s.train.width), (2, 2, 3, 4));
        assert_eq!(s.train.labels, [0, 1]);
        assert_eq!(s.train.images[0], 10, "planar R of the first (cat) image");
        assert_eq!(s.train.images[12], 5, "planar G");

        let mut bad = files.clone();
        bad.push(("set/test/dog/e.png".into(), png(5, 3, 1)));
        let e = folder_from_memory(&bad).unwrap_err().to_string();
        assert!(e.contains("e.png") && e.contains("5x3"), "{e}");
        bad.pop();
        bad.push(("set/test/cow/f.png".into(), png(4, 3, 1)));
        assert!(folder_from_memory(&bad).unwrap_err().to_string().contains("cow"));
        bad.pop();
        bad.push(("set/train/dog/g.png".into(), b"not a png".to_vec()));
        assert!(folder_from_memory(&bad).unwrap_err().to_string().contains("g.png"));
        let only_train: Vec<_> = files.iter().filter(|f| f.0.contains("/train/")).cloned().collect();
        assert!(folder_from_memory(&only_train).unwrap_err().to_string().contains("test/"));
    }
}
