//! Image folders: PNG and JPEG decoding to planar RGB, class and file order, the
//! parallel decoder's determinism, and each bad-folder error.

use super::*;

fn save_rgb(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y))).save(path).unwrap();
}

/// train/cat: b.png (red ramp), a.png (grayscale), c.jpg (flat colour);
/// train/dog: z.png; test/cat: t.png; test/dog: u.png. All 3 wide, 2 high.
fn write_folder(dir: &Path) {
    let train = dir.join("train");
    // dog first on disk: the class order must come from sorting, not from creation.
    save_rgb(&train.join("dog/z.png"), 3, 2, |x, y| [9, 8, (x + 3 * y) as u8]);
    save_rgb(&train.join("cat/b.png"), 3, 2, |x, y| [(10 * x + 100 * y) as u8, 1, 2]);
    image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(50 + x + 10 * y) as u8]))
        .save(train.join("cat/a.png"))
        .unwrap();
    save_rgb(&train.join("cat/c.jpg"), 3, 2, |_, _| [200, 100, 50]);
    fs::write(train.join("cat/notes.txt"), "not an image").unwrap();
    fs::write(train.join("cat/.DS_Store"), "hidden").unwrap();
    fs::create_dir_all(train.join(".cache")).unwrap();
    save_rgb(&dir.join("test/cat/t.png"), 3, 2, |_, _| [1, 2, 3]);
    save_rgb(&dir.join("test/dog/u.png"), 3, 2, |_, _| [4, 5, 6]);
}

#[test]
fn folder_loads_sorted_classes_and_files() {
    let tmp = TempDir::new("folder");
    let root = tmp.path().join("pets");
    write_folder(&root);
    let s = load_ok(&DataSpec::Folder(root.clone()));
    let train = &s.train;
    assert_eq!(train.name, "pets/train");
    assert_eq!(train.class_names, ["cat", "dog"]);
    assert_eq!((train.n, train.channels, train.height, train.width), (4, 3, 2, 3));
    assert_eq!(train.labels, [0, 0, 0, 1]);
    // a.png: grayscale replicated into R, G and B.
    let gray = [50, 51, 52, 60, 61, 62];
    assert_eq!(train.image(0), [gray, gray, gray].concat());
    // b.png: planar R, then G, then B, each row-major.
    assert_eq!(train.image(1), [[0, 10, 20, 100, 110, 120], [1; 6], [2; 6]].concat());
    // c.jpg: lossy, so within a few units of the flat colour.
    let jpg = train.image(2);
    for (c, want) in [200i32, 100, 50].into_iter().enumerate() {
        for &v in &jpg[c * 6..(c + 1) * 6] {
            assert!((v as i32 - want).abs() <= 3, "jpeg channel {c}: {v} vs {want}");
        }
    }
    assert_eq!(train.image(3), [[9; 6], [8; 6], [0, 1, 2, 3, 4, 5]].concat());
    assert_eq!(s.test.labels, [0, 1]);
    assert_eq!(s.test.image(1), [[4; 6], [5; 6], [6; 6]].concat());
}

#[test]
fn folder_image_of_wrong_size() {
    let tmp = TempDir::new("folder-size");
    write_folder(tmp.path());
    save_rgb(&tmp.path().join("test/dog/v.png"), 2, 3, |_, _| [0, 0, 0]);
    let msg = load_err(&DataSpec::Folder(tmp.path().into()), &["v.png", "2x3", "3x2"]);
    assert!(msg.contains("a.png"), "{msg:?} should name the first image");
}

#[test]
fn folder_empty_class() {
    let tmp = TempDir::new("folder-empty");
    write_folder(tmp.path());
    fs::create_dir_all(tmp.path().join("train/emu")).unwrap();
    fs::write(tmp.path().join("train/emu/readme.txt"), "x").unwrap();
    fs::create_dir_all(tmp.path().join("test/emu")).unwrap();
    load_err(&DataSpec::Folder(tmp.path().into()), &["emu", "empty class folder"]);
}

#[test]
fn folder_undecodable_file() {
    let tmp = TempDir::new("folder-garbage");
    write_folder(tmp.path());
    fs::write(tmp.path().join("train/dog/broken.jpg"), b"\xff\xd8\xff\xe0 not really").unwrap();
    load_err(&DataSpec::Folder(tmp.path().into()), &["broken.jpg", "cannot decode"]);
}

#[test]
fn folder_test_classes_must_match_train() {
    let tmp = TempDir::new("folder-classes");
    write_folder(tmp.path());
    fs::remove_dir_all(tmp.path().join("test/dog")).unwrap();
    save_rgb(&tmp.path().join("test/eel/e.png"), 3, 2, |_, _| [0, 0, 0]);
    load_err(&DataSpec::Folder(tmp.path().into()), &["test", "missing [\"dog\"]", "\"eel\""]);
    fs::remove_dir_all(tmp.path().join("test")).unwrap();
    load_err(&DataSpec::Folder(tmp.path().into()), &["test", "not found"]);
}

/// Enough images for several decoding threads: order and the reported error must not
/// depend on timing.
#[test]
fn folder_parallel_decode_is_ordered_and_reports_first_error() {
    let tmp = TempDir::new("folder-many");
    let n = 1100;
    for i in 0..n {
        let class = if i % 2 == 0 { "even" } else { "odd" };
        let px = [(i % 256) as u8, (i / 256) as u8, 7];
        save_rgb(&tmp.path().join(format!("train/{class}/{i:04}.png")), 1, 1, |_, _| px);
    }
    save_rgb(&tmp.path().join("test/even/0.png"), 1, 1, |_, _| [0, 0, 0]);
    save_rgb(&tmp.path().join("test/odd/0.png"), 1, 1, |_, _| [0, 0, 0]);
    let s = load_ok(&DataSpec::Folder(tmp.path().into()));
    assert_eq!(s.train.n, n);
    let order: Vec<usize> = (0..n).step_by(2).chain((1..n).step_by(2)).collect();
    for (k, &i) in order.iter().enumerate() {
        assert_eq!(s.train.image(k), [(i % 256) as u8, (i / 256) as u8, 7], "image {k}");
        assert_eq!(s.train.labels[k], (i % 2) as u32);
    }
    // Break one file early and one late (in different threads' runs): the early one is
    // reported, every time.
    fs::write(tmp.path().join("train/odd/1091.png"), b"junk").unwrap();
    fs::write(tmp.path().join("train/even/0100.png"), b"junk").unwrap();
    for _ in 0..3 {
        load_err(&DataSpec::Folder(tmp.path().into()), &["0100.png"]);
    }
}
