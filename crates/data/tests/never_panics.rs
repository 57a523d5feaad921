//! Proptest over bytes (issue 19, item 8): every reader given arbitrary or damaged bytes
//! returns a value or a typed error, never a panic. A short run in CI (16 cases each); a
//! longer one with `PROPTEST_CASES=5000 cargo test --release -p data --test never_panics`.

use data::{Cifar, CifarKind, ImageSource, PhotoFolder, Stl10};
use proptest::prelude::*;
use std::path::PathBuf;

/// Cases per property: `PROPTEST_CASES` when set, else 16 (CI).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(16);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("data-fuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Arbitrary bytes, often starting with a real magic so the parser gets past the first check.
fn bytes_with_magic(magics: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(magics),
        prop::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(m, rest)| [m, &rest[..]].concat())
}

/// A small valid image file of `format`, with a few bytes overwritten and a random cut.
fn damaged_image(format: image::ImageFormat) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(flips, cut)| {
            let img = image::RgbImage::from_fn(24, 20, |x, y| {
                image::Rgb([(x * 9) as u8, (y * 11) as u8, (x ^ y) as u8])
            });
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, format).expect("encode");
            let mut b = out.into_inner();
            for (pos, val) in flips {
                let n = b.len();
                b[pos % n] = val;
            }
            let keep = 1 + cut.index(b.len());
            b.truncate(keep);
            b
        })
}

/// Read every image of an opened source (a decoded reader must also serve its images).
fn touch(src: &dyn ImageSource) {
    for i in 0..src.len().unwrap_or(1).min(3) as u64 {
        let _ = src.image(i, 8);
        let _ = src.label(i);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn idx_never_panics(bytes in bytes_with_magic(&[b"\0\0\x08\x01", b"\0\0\x08\x03", b"\x1f\x8b", b""])) {
        let dir = tmp("idx");
        let p = dir.join("x-idx3-ubyte");
        std::fs::write(&p, &bytes).unwrap();
        let _ = data::read_idx(&p);
        let _ = data::parse_idx(&bytes, &p);
        if let Ok(idx) = data::Idx::open(&p, Some(&p)) {
            touch(&idx);
        }
    }

    #[test]
    fn cifar_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..7000), kind in 0usize..3) {
        let dir = tmp("cifar");
        let p = dir.join("data_batch_1.bin");
        std::fs::write(&p, &bytes).unwrap();
        let kind = [CifarKind::Cifar10, CifarKind::Cifar100Fine, CifarKind::Cifar100Coarse][kind];
        if let Ok(c) = Cifar::open(std::slice::from_ref(&p), kind) {
            touch(&c);
        }
    }

    #[test]
    fn stl10_never_panics(images in 0usize..3, tail in prop::collection::vec(any::<u8>(), 0..8), labels in prop::collection::vec(any::<u8>(), 0..4)) {
        let dir = tmp("stl");
        let (xp, yp) = (dir.join("train_X.bin"), dir.join("train_y.bin"));
        let mut x: Vec<u8> = (0..images * 3 * 96 * 96).map(|i| (i % 251) as u8).collect();
        x.extend_from_slice(&tail);
        std::fs::write(&xp, &x).unwrap();
        std::fs::write(&yp, &labels).unwrap();
        for l in [None, Some(yp.as_path())] {
            if let Ok(s) = Stl10::open(&xp, l) {
                touch(&s);
            }
        }
    }

    #[test]
    fn photo_folder_never_panics(
        png in damaged_image(image::ImageFormat::Png),
        jpeg in damaged_image(image::ImageFormat::Jpeg),
        raw in bytes_with_magic(&[b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xda", b""]),
    ) {
        let dir = tmp("photos");
        for (name, bytes) in [("a.png", &png), ("b.jpg", &jpeg), ("c.jpeg", &raw)] {
            let one = dir.join(name.split('.').next().unwrap());
            std::fs::create_dir_all(&one).unwrap();
            std::fs::write(one.join(name), bytes).unwrap();
            match PhotoFolder::open(&one) {
                Ok(f) => touch(&f),
                Err(e) => prop_assert!(e.to_string().contains(name), "{e}"),
            }
        }
    }
}
