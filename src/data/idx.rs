//! MNIST and Fashion-MNIST in the IDX format, plain or gzipped.
//!
//! What this is: a reader for the four files `train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (each
//! either as named or with `.gz`; the plain file wins when both exist, since it needs no
//! decompression). An IDX file is a big-endian header (magic, then one u32 per
//! dimension) followed by the data; the magic's third byte is the element type (0x08,
//! unsigned byte) and its fourth the number of dimensions, so 0x00000803 is a
//! (count, rows, cols) uint8 image file and 0x00000801 a (count,) uint8 label file. The
//! images are 1-channel, so IDX's (count, rows, cols) already is our CHW layout.
//! The header is untrusted: its sizes are checked against the file's own (`Bound`) before
//! any data is read, and memory grows only as data arrives.
//!
//! What this is not: a general IDX reader (other element types and ranks, EMNIST's
//! transposed images, or the KMNIST/QMNIST variants are refused by the magic check or
//! not handled); every label must be 0..9.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Splits};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const CLASSES: usize = 10;

/// Which data set the files hold; they differ only in name and class names.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Flavor {
    Mnist,
    FashionMnist,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Mnist => "mnist",
            Flavor::FashionMnist => "fashion-mnist",
        }
    }

    fn class_names(self) -> Vec<String> {
        match self {
            Flavor::Mnist => (0..CLASSES).map(|i| i.to_string()).collect(),
            Flavor::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

pub(crate) fn load_mnist(dir: &Path, flavor: Flavor) -> Result<Splits, DataError> {
    if !dir.is_dir() {
        return Err(DataError::new(dir, "not a directory (expected the four IDX files of MNIST here)"));
    }
    let train = read_split(dir, "train", flavor, "train")?;
    let test = read_split(dir, "t10k", flavor, "test")?;
    Ok(Splits { train, test })
}

fn read_split(dir: &Path, prefix: &str, flavor: Flavor, split: &str) -> Result<Dataset, DataError> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (images, image_bound) = open(&images_path)?;
    let (labels, label_bound) = open(&labels_path)?;
    parse_split((&images_path, images, image_bound), (&labels_path, labels, label_bound), flavor, split)
}

/// The Fashion-MNIST subset compiled into the binary (data/fashion-mnist-subset/), so the
/// main job and the browser demo need no files.
pub(crate) fn load_builtin() -> Result<Splits, DataError> {
    const DIR: &str = "builtin:fashion-mnist-subset";
    let gz = |name: &str, bytes: &'static [u8]| -> (PathBuf, Box<dyn Read>, Bound) {
        let reader: Box<dyn Read> = Box::new(flate2::read::GzDecoder::new(bytes));
        (PathBuf::from(format!("{DIR}/{name}")), reader, Bound::Gzip(bytes.len() as u64))
    };
    let part = |prefix: &str, split: &str, img: &'static [u8], lab: &'static [u8]| {
        let (ip, ir, ib) = gz(&format!("{prefix}-images-idx3-ubyte.gz"), img);
        let (lp, lr, lb) = gz(&format!("{prefix}-labels-idx1-ubyte.gz"), lab);
        parse_split((&ip, ir, ib), (&lp, lr, lb), Flavor::FashionMnist, split)
    };
    let train = part(
        "train",
        "train",
        include_bytes!("../../data/fashion-mnist-subset/train-images-idx3-ubyte.gz"),
        include_bytes!("../../data/fashion-mnist-subset/train-labels-idx1-ubyte.gz"),
    )?;
    let test = part(
        "t10k",
        "test",
        include_bytes!("../../data/fashion-mnist-subset/t10k-images-idx3-ubyte.gz"),
        include_bytes!("../../data/fashion-mnist-subset/t10k-labels-idx1-ubyte.gz"),
    )?;
    Ok(Splits { train, test })
}

/// Parses one split from its image and label streams; the paths only name the files in
/// errors, the bounds check each header's sizes before any of the data is read.
fn parse_split(
    (images_path, mut image_reader, image_bound): (&Path, Box<dyn Read>, Bound),
    (labels_path, mut label_reader, label_bound): (&Path, Box<dyn Read>, Bound),
    flavor: Flavor,
    split: &str,
) -> Result<Dataset, DataError> {
    let images_path = images_path.to_path_buf();
    let labels_path = labels_path.to_path_buf();
    let reader = &mut image_reader;
    let [magic, count, rows, cols] = read_header::<4>(reader, &images_path)?;
    check_magic(&images_path, magic, IMAGES_MAGIC, "image")?;
    if count == 0 {
        return Err(DataError::new(&images_path, "header says 0 images"));
    }
    if rows == 0 || cols == 0 {
        return Err(DataError::new(&images_path, format!("header says images of {rows}x{cols}")));
    }
    let (n, h, w) = (count as usize, rows as usize, cols as usize);
    let Some(pixel_bytes) = n.checked_mul(h).and_then(|x| x.checked_mul(w)) else {
        return Err(DataError::new(
            &images_path,
            format!("header says {n} images of {h}x{w}, too large to hold in memory"),
        ));
    };
    let declared_images = || format!("{n} images of {h}x{w} ({pixel_bytes} bytes of pixels)");
    image_bound.check(&images_path, 16, pixel_bytes, declared_images)?;
    // Both headers, and the small label file, before any pixel: a label count that
    // refutes the images' header must not cost reading the images first (a gzip whose
    // header matches its 2 GB body beside a 60-label file).
    let [magic, label_count] = read_header::<2>(&mut label_reader, &labels_path)?;
    check_magic(&labels_path, magic, LABELS_MAGIC, "label")?;
    if label_count != count {
        return Err(DataError::new(
            &labels_path,
            format!("count mismatch: {label_count} labels here but {count} images in {}", images_path.display()),
        ));
    }
    let declared = || format!("{n} labels");
    label_bound.check(&labels_path, 8, n, declared)?;
    let label_bytes = read_body(&mut label_reader, &labels_path, n, declared)?;
    if let Some((i, &l)) = label_bytes.iter().enumerate().find(|&(_, &l)| l as usize >= CLASSES) {
        return Err(DataError::new(&labels_path, format!("label {l} out of range 0..{CLASSES} at index {i}")));
    }
    let images = read_body(reader, &images_path, pixel_bytes, declared_images)?;

    Ok(Dataset {
        name: format!("{}/{split}", flavor.name()),
        images,
        labels: label_bytes.into_iter().map(u32::from).collect(),
        n,
        channels: 1,
        height: h,
        width: w,
        classes: CLASSES,
        class_names: flavor.class_names(),
    })
}

/// `dir/base` if it exists, else `dir/base.gz`.
fn find(dir: &Path, base: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(base);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = dir.join(format!("{base}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::new(plain, format!("file not found (nor {base}.gz)")))
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The file's data (decompressed when gzipped) and what bounds the header's claims.
fn open(path: &Path) -> Result<(Box<dyn Read>, Bound), DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let file = BufReader::new(file);
    // MultiGzDecoder rather than GzDecoder: a gzip file may hold several members
    // (`cat a.gz b.gz`), and GzDecoder would stop after the first without a word.
    Ok(if is_gz(path) {
        (Box::new(flate2::read::MultiGzDecoder::new(file)), Bound::Gzip(len))
    } else {
        (Box::new(file), Bound::Plain(len))
    })
}

/// Deflate's largest expansion: a 258-byte match in 2 bits, 1032 bytes out per byte in.
/// Gzip's headers and trailers only lower the ratio, and so do more members.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// What a file's size says about the data its header may claim. The header is
/// untrusted: checked against this first, a corrupt or hostile count (a small gzip file
/// claiming gigabytes, whether its stream then stops short or decompresses without end)
/// fails before anything is read, instead of after memory has grown to the claim.
#[derive(Clone, Copy, Debug)]
enum Bound {
    /// An uncompressed file of this many bytes: the header and its data must be all of it.
    Plain(u64),
    /// Gzip data of this many bytes: it decompresses to at most `DEFLATE_MAX_RATIO` times
    /// as much.
    Gzip(u64),
}

impl Bound {
    /// Whether `header` bytes of header followed by `len` of data fit the file.
    fn check(self, path: &Path, header: u64, len: usize, declared: impl Fn() -> String) -> Result<(), DataError> {
        let len = len as u64;
        match self {
            Bound::Plain(file_len) => {
                let body = file_len.saturating_sub(header);
                if len > body {
                    return Err(DataError::new(
                        path,
                        format!(
                            "truncated: the header says {} but the file holds only {body} bytes after its {header}-byte header",
                            declared()
                        ),
                    ));
                }
                if len < body {
                    return Err(DataError::new(
                        path,
                        format!(
                            "trailing bytes after the {} the header says: the file holds {body} bytes after its {header}-byte header",
                            declared()
                        ),
                    ));
                }
            }
            Bound::Gzip(gz_len) => {
                let most = gz_len.saturating_mul(DEFLATE_MAX_RATIO);
                if len.saturating_add(header) > most {
                    return Err(DataError::new(
                        path,
                        format!(
                            "the header says {}, more than {gz_len} bytes of gzip can hold (deflate expands at most \
                             {DEFLATE_MAX_RATIO}-fold, to {most} bytes): the header is corrupt",
                            declared()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn read_error(path: &Path, err: std::io::Error) -> DataError {
    if is_gz(path) {
        DataError::new(path, format!("cannot decompress: {err}"))
    } else {
        DataError::io(path, err)
    }
}

fn read_header<const WORDS: usize>(reader: &mut dyn Read, path: &Path) -> Result<[u32; WORDS], DataError> {
    let mut raw = [0u8; 16];
    let raw = &mut raw[..WORDS * 4];
    let mut got = 0;
    // read_exact would not say how much it got; the count makes the message useful.
    while got < raw.len() {
        match reader.read(&mut raw[got..]) {
            Ok(0) => {
                return Err(DataError::new(
                    path,
                    format!("truncated header: {got} bytes, an IDX header of this kind is {}", raw.len()),
                ))
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(path, e)),
        }
    }
    let mut words = [0u32; WORDS];
    for (w, bytes) in words.iter_mut().zip(raw.chunks_exact(4)) {
        *w = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    Ok(words)
}

fn check_magic(path: &Path, found: u32, expected: u32, kind: &str) -> Result<(), DataError> {
    if found == expected {
        return Ok(());
    }
    let hint = if found >> 16 == 0x1f8b {
        " (the file looks gzip-compressed: give it a .gz name)"
    } else if found == IMAGES_MAGIC {
        " (that is the magic of an IDX image file)"
    } else if found == LABELS_MAGIC {
        " (that is the magic of an IDX label file)"
    } else {
        ""
    };
    Err(DataError::new(
        path,
        format!("bad magic 0x{found:08x}, expected 0x{expected:08x} for an IDX {kind} file{hint}"),
    ))
}

/// Reads exactly `len` bytes after the header and checks that nothing follows, so a
/// header that disagrees with the file's length is caught either way (a file can change
/// after `Bound::check`, and a gzip stream's length is known only once it has been read).
fn read_body(
    reader: &mut dyn Read,
    path: &Path,
    len: usize,
    declared: impl Fn() -> String,
) -> Result<Vec<u8>, DataError> {
    // Memory follows the data that arrives, never the claim: the buffer doubles as it
    // fills, up to the claim and one byte more (to notice trailing data). A stream that
    // stops short of its claim has cost at most twice what it held.
    let mut body: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut reader = reader.take(len as u64 + 1);
    loop {
        let k = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(path, e)),
        };
        if body.len() + k > body.capacity() {
            let grown = (body.capacity() * 2).max(1 << 16).min(len + 1).max(body.len() + k);
            body.reserve_exact(grown - body.len());
        }
        body.extend_from_slice(&chunk[..k]);
    }
    if body.len() < len {
        return Err(DataError::new(
            path,
            format!("truncated: the header says {} but only {} bytes follow it", declared(), body.len()),
        ));
    }
    if body.len() > len {
        return Err(DataError::new(path, format!("trailing bytes after the {} the header says", declared())));
    }
    Ok(body)
}
