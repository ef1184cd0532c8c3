//! Text for the language models: vocabulary, split, the built-in Tiny Shakespeare, and
//! every bad file named with its problem.

use super::*;
use cuttle::data::load_text;
use cuttle::data::text::{decode, encode, eval_stride, window_start, TextData, MAX_VOCAB};

fn text_err(bytes: &[u8], parts: &[&str]) {
    let dir = TempDir::new("text");
    let path = dir.path().join("input.txt");
    fs::write(&path, bytes).unwrap();
    let msg = match load_text(&DataSpec::Text(path.clone())) {
        Ok(t) => panic!("loaded {} characters, expected an error", t.train.len() + t.val.len()),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains(&path.display().to_string()), "{msg:?} names the file");
    for part in parts {
        assert!(msg.contains(part), "error {msg:?} does not mention {part:?}");
    }
}

#[test]
fn text_vocabulary_is_sorted_and_split_is_90_10() {
    let t = TextData::from_bytes("t", Path::new("t"), "hello world, hello!\n".repeat(10).as_bytes()).unwrap();
    assert_eq!(t.vocab, "\n !,dehlorw".chars().collect::<Vec<_>>());
    assert_eq!((t.train.len(), t.val.len()), (180, 20));
    assert_eq!(t.decode(&t.train[..5]), "hello");
    assert_eq!(encode(&t.vocab, "owl").unwrap(), vec![8, 10, 7]);
    assert_eq!(t.encode("hex"), Err('x'));
    assert_eq!(decode(&t.vocab, &[99]), "\u{FFFD}");
    // Non-ASCII characters are characters, not bytes.
    let u = TextData::from_bytes("u", Path::new("u"), "çà et là ".repeat(20).as_bytes()).unwrap();
    assert!(u.vocab.contains(&'à') && u.vocab.len() == 6);
}

#[test]
fn builtin_text_is_tiny_shakespeare() {
    let t = load_text(&DataSpec::BuiltinText).unwrap();
    assert_eq!((t.train.len(), t.val.len(), t.vocab.len()), (1_003_854, 111_540, 65));
    assert!(t.decode(&t.train[..14]).starts_with("First Citizen:"));
    // The shared copy, where present, is the same text.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinyshakespeare/input.txt");
    match fs::read(&shared) {
        Ok(bytes) => assert_eq!(TextData::from_bytes("s", &shared, &bytes).unwrap().train, t.train),
        Err(_) => eprintln!("skipped the comparison: no {}", shared.display()),
    }
}

#[test]
fn bad_text_files_are_named() {
    text_err(b"", &["empty file"]);
    text_err(&[0x66, 0x6f, 0xff, 0xfe, 0x00], &["not UTF-8", "offset 2", "binary"]);
    text_err(b"PK\x03\x04\x00\x00 zip", &["control character U+0003", "binary"]);
    let wide: String = (0..(MAX_VOCAB as u32 + 10)).filter_map(|i| char::from_u32(0x4e00 + i)).collect();
    text_err(wide.as_bytes(), &["266 distinct characters", "at most 256"]);
    let dir = TempDir::new("missing");
    let missing = dir.path().join("none.txt");
    let e = load_text(&DataSpec::Text(missing.clone())).unwrap_err().to_string();
    assert!(e.contains("file not found") && e.contains(&missing.display().to_string()), "{e}");
    // Shorter than a window: the split that is too short is named.
    let t = TextData::from_bytes("short", Path::new("short.txt"), &[b'a'; 100]).unwrap();
    let e = t.check_context(64).unwrap_err().to_string();
    assert!(e.contains("short.txt") && e.contains("validation split") && e.contains("10 characters"), "{e}");
    t.check_context(9).unwrap();
    // Images are not text and text is not images.
    assert!(load_text(&DataSpec::Builtin).unwrap_err().to_string().contains("is images"));
    let e = load(&DataSpec::BuiltinText).unwrap_err().to_string();
    assert!(e.contains("builtin-text") && e.contains("language model"), "{e}");
    // A run's vocabulary refuses characters it does not know.
    let e = TextData::with_vocab("x", Path::new("x.txt"), b"abcz", vec!['a', 'b', 'c']).unwrap_err().to_string();
    assert!(e.contains("'z'") && e.contains("vocabulary"), "{e}");
}

#[test]
fn text_specs_parse() {
    assert_eq!("builtin-text".parse::<DataSpec>().unwrap(), DataSpec::BuiltinText);
    assert_eq!("text:a/b.txt".parse::<DataSpec>().unwrap(), DataSpec::Text("a/b.txt".into()));
    assert_eq!(DataSpec::Text("a.txt".into()).to_string(), "text:a.txt");
    assert!(DataSpec::BuiltinText.is_text() && !DataSpec::Builtin.is_text());
}

#[test]
fn windows_cover_the_split_and_vary_with_the_seed() {
    let starts = 1000;
    let a: Vec<u32> = (0..64).map(|w| window_start(1, 0, w, starts)).collect();
    assert!(a.iter().all(|&s| s < starts));
    assert_ne!(a, (0..64).map(|w| window_start(2, 0, w, starts)).collect::<Vec<_>>());
    assert_ne!(a, (0..64).map(|w| window_start(1, 1, w, starts)).collect::<Vec<_>>());
    // Evaluation: 8 windows of 64 over 1,000 tokens, the last one still inside.
    let s = eval_stride(1000, 64, 8);
    assert_eq!(s, 117);
    assert!(7 * s + 64 < 1000);
}
