//! Every reader on small files written here in the real format, plus truncated and corrupted
//! files: a typed error naming the file, never a panic.

use data::{Cifar, CifarKind, Error, Idx, ImageSource, PhotoFolder, Stl10};
use proptest::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A fresh temporary folder for one test.
fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("data-readers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write test file");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// An IDX u8 file: magic, big-endian dims, data.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Asserts a format error that names `path`.
fn assert_names_file<T: std::fmt::Debug>(r: data::Result<T>, path: &Path) {
    match r {
        Err(e @ (Error::Format { .. } | Error::Io { .. } | Error::Decode { .. })) => {
            assert!(
                e.to_string().contains(&path.display().to_string()),
                "{e} does not name {}",
                path.display()
            )
        }
        other => panic!(
            "expected a file error for {}, got {other:?}",
            path.display()
        ),
    }
}

fn image_values(src: &dyn ImageSource, index: u64, n: usize) -> Vec<f32> {
    src.image(index, n)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn idx_plain_and_gzip_read_exactly() {
    let dir = tmp("idx");
    let pixels: Vec<u8> = (0..5 * 4 * 4).map(|k| (k * 7 % 256) as u8).collect();
    let labels = [3u8, 0, 9, 1, 2];
    for gz in [false, true] {
        let (ip, lp) = (dir.join(format!("img{gz}")), dir.join(format!("lab{gz}")));
        let (ib, lb) = (idx_bytes(&[5, 4, 4], &pixels), idx_bytes(&[5], &labels));
        write(&ip, &if gz { gzip(&ib) } else { ib });
        write(&lp, &if gz { gzip(&lb) } else { lb });
        let idx = Idx::open(&ip, Some(&lp)).unwrap();
        assert_eq!(
            (idx.len(), idx.channels(), idx.classes()),
            (Some(5), 1, Some(10))
        );
        for i in 0..5u64 {
            let expect: Vec<f32> = pixels[i as usize * 16..(i as usize + 1) * 16]
                .iter()
                .map(|&b| b as f32 / 255.0)
                .collect();
            assert_eq!(image_values(&idx, i, 4), expect);
            assert_eq!(idx.label(i).unwrap(), Some(labels[i as usize] as usize));
        }
        assert!(matches!(
            idx.image(5, 4),
            Err(Error::IndexOutOfRange { index: 5, len: 5 })
        ));
    }
}

#[test]
fn idx_errors_name_the_file() {
    let dir = tmp("idx-bad");
    let good = idx_bytes(&[2, 3, 3], &[1; 18]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short-header", good[..9].to_vec()),
        ("short-data", good[..good.len() - 1].to_vec()),
        ("trailing", [good.clone(), vec![0]].concat()),
        ("magic", [vec![1], good[1..].to_vec()].concat()),
        ("type", [vec![0, 0, 0x0D], good[3..].to_vec()].concat()),
        ("gzip-truncated", gzip(&good)[..20].to_vec()),
    ];
    for (name, bytes) in cases {
        let p = dir.join(name);
        write(&p, &bytes);
        assert_names_file(Idx::open(&p, None), &p);
    }
    // Rank 2 where images need rank 3, label count mismatch, missing file.
    let (p2, pl) = (dir.join("rank2"), dir.join("labels"));
    write(&p2, &idx_bytes(&[3, 3], &[0; 9]));
    assert_names_file(Idx::open(&p2, None), &p2);
    let pi = dir.join("ok");
    write(&pi, &good);
    write(&pl, &idx_bytes(&[3], &[0; 3]));
    assert_names_file(Idx::open(&pi, Some(&pl)), &pl);
    let missing = dir.join("missing");
    assert_names_file(Idx::open(&missing, None), &missing);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Any truncation is an error naming the file; any corrupted byte is an error or a
    /// consistent array, never a panic.
    #[test]
    fn idx_truncated_or_corrupted_never_panics(cut in 0usize..40, pos in 0usize..40, val in any::<u8>(), gz in any::<bool>()) {
        let dir = tmp("idx-prop");
        let good = idx_bytes(&[2, 2, 5], &(0..20).collect::<Vec<u8>>());
        let p = dir.join("t");
        let mut cut_bytes = good[..cut.min(good.len() - 1)].to_vec();
        if gz { cut_bytes = gzip(&good)[..cut.min(good.len() - 1)].to_vec(); }
        write(&p, &cut_bytes);
        prop_assert!(data::read_idx(&p).is_err());
        let mut bad = good.clone();
        bad[pos % good.len()] = val;
        write(&p, &bad);
        match data::read_idx(&p) {
            Ok(a) => prop_assert_eq!(a.dims.iter().product::<usize>(), a.data.len()),
            Err(e) => prop_assert!(e.to_string().contains(&p.display().to_string())),
        }
    }
}

/// A CIFAR record: label byte(s) then planar RGB pixels.
fn cifar_record(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut r = labels.to_vec();
    r.extend((0..3072).map(|k| (k as u8).wrapping_mul(seed)));
    r
}

#[test]
fn cifar_10_and_100_records() {
    let dir = tmp("cifar");
    let p10 = dir.join("data_batch_1.bin");
    write(
        &p10,
        &[cifar_record(&[7], 3), cifar_record(&[2], 5)].concat(),
    );
    let c10 = Cifar::open(&[p10.clone(), p10.clone()], CifarKind::Cifar10).unwrap();
    assert_eq!(
        (c10.len(), c10.channels(), c10.classes()),
        (Some(4), 3, Some(10))
    );
    assert_eq!(c10.label(3).unwrap(), Some(2));
    let expect: Vec<f32> = cifar_record(&[], 5)
        .iter()
        .map(|&b| b as f32 / 255.0)
        .collect();
    assert_eq!(image_values(&c10, 1, 32), expect);
    let p100 = dir.join("train.bin");
    write(
        &p100,
        &[cifar_record(&[19, 99], 1), cifar_record(&[4, 42], 2)].concat(),
    );
    let fine = Cifar::open_dir(&dir, CifarKind::Cifar100Fine, true).unwrap();
    let coarse = Cifar::open_dir(&dir, CifarKind::Cifar100Coarse, true).unwrap();
    assert_eq!(
        (fine.label(0).unwrap(), fine.label(1).unwrap()),
        (Some(99), Some(42))
    );
    assert_eq!(
        (coarse.label(0).unwrap(), coarse.classes()),
        (Some(19), Some(20))
    );
    // Truncated, label out of range, CIFAR-100 read as CIFAR-10 (length mismatch).
    let bad = dir.join("bad.bin");
    write(&bad, &cifar_record(&[1], 1)[..3000]);
    assert_names_file(
        Cifar::open(std::slice::from_ref(&bad), CifarKind::Cifar10),
        &bad,
    );
    write(&bad, &cifar_record(&[10], 1));
    assert_names_file(
        Cifar::open(std::slice::from_ref(&bad), CifarKind::Cifar10),
        &bad,
    );
    assert_names_file(
        Cifar::open(std::slice::from_ref(&p100), CifarKind::Cifar10),
        &p100,
    );
    let missing = dir.join("data_batch_2.bin");
    assert_names_file(Cifar::open_dir(&dir, CifarKind::Cifar10, true), &missing);
}

#[test]
fn stl10_column_major_and_labels() {
    let dir = tmp("stl");
    let value = |img: usize, c: usize, row: usize, col: usize| {
        ((img * 31 + c * 7 + row * 3 + col * 5) % 256) as u8
    };
    let mut bytes = Vec::new();
    for img in 0..2 {
        for c in 0..3 {
            for col in 0..96 {
                for row in 0..96 {
                    bytes.push(value(img, c, row, col));
                }
            }
        }
    }
    let (xp, yp) = (dir.join("train_X.bin"), dir.join("train_y.bin"));
    write(&xp, &bytes);
    write(&yp, &[10, 1]);
    let stl = Stl10::open(&xp, Some(&yp)).unwrap();
    assert_eq!(
        (stl.len(), stl.label(0).unwrap(), stl.label(1).unwrap()),
        (Some(2), Some(9), Some(0))
    );
    let img = image_values(&stl, 1, 96);
    for (c, row, col) in [(0, 0, 1), (1, 5, 70), (2, 95, 3)] {
        assert_eq!(
            img[(c * 96 + row) * 96 + col],
            value(1, c, row, col) as f32 / 255.0
        );
    }
    assert_eq!(stl.image(0, 48).unwrap().dims(), &[3, 48, 48]);
    let bad = dir.join("bad_X.bin");
    write(&bad, &bytes[..bytes.len() - 5]);
    assert_names_file(Stl10::open(&bad, None), &bad);
    write(&yp, &[0, 1]);
    assert_names_file(Stl10::open(&xp, Some(&yp)), &yp);
    write(&yp, &[1]);
    assert_names_file(Stl10::open(&xp, Some(&yp)), &yp);
}

#[test]
fn photo_folder_crops_resizes_and_reports_bad_files() {
    let dir = tmp("photos");
    // 6x4 RGB PNG: the centre square is columns 1..5.
    let img = image::RgbImage::from_fn(6, 4, |x, y| {
        image::Rgb([(x * 40) as u8, (y * 60) as u8, 200])
    });
    img.save(dir.join("a.png")).unwrap();
    image::RgbImage::from_pixel(20, 30, image::Rgb([10, 20, 30]))
        .save(dir.join("b.JPG"))
        .unwrap();
    write(&dir.join("notes.txt"), b"ignored");
    let folder = PhotoFolder::open(&dir).unwrap();
    assert_eq!((folder.len(), folder.channels()), (Some(2), 3));
    let v = image_values(&folder, 0, 4);
    for (y, x) in [(0, 0), (3, 3), (2, 1)] {
        assert_eq!(v[y * 4 + x], ((x + 1) * 40) as f32 / 255.0);
        assert_eq!(v[16 + y * 4 + x], (y * 60) as f32 / 255.0);
    }
    let grey = folder.clone().grayscale(true);
    let g = image_values(&grey, 0, 4)[0];
    assert!((g - (0.299 * 40.0 + 0.587 * 0.0 + 0.114 * 200.0) / 255.0).abs() < 1e-5);
    let crops = folder.with_random_crops(3, 1);
    assert_eq!(
        (crops.len(), crops.image(17, 8).unwrap().dims()),
        (None, &[3usize, 8, 8][..])
    );
    write(&dir.join("c.png"), b"\x89PNG\r\n\x1a\nnot really");
    assert_names_file(PhotoFolder::open(&dir), &dir.join("c.png"));
    let empty = tmp("photos-empty");
    assert_names_file(PhotoFolder::open(&empty), &empty);
}

#[test]
fn shipped_photos_open() {
    let folder = PhotoFolder::open(&data::photos_dir()).unwrap();
    assert_eq!(folder.len(), Some(13));
    for i in 0..13 {
        let v = image_values(&folder, i, 32);
        assert!(v.iter().all(|p| (-0.05..=1.05).contains(p)));
    }
}

#[test]
fn fashion_mnist_absent_says_how_to_install() {
    let err = data::fashion_mnist_in(Path::new("/nonexistent/fashion"), true).unwrap_err();
    assert!(matches!(err, Error::NotInstalled { .. }));
    assert!(
        err.to_string()
            .contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );
    if Path::new(data::FASHION_MNIST_DIR).is_dir() {
        let train = data::fashion_mnist().unwrap();
        assert_eq!((train.len(), train.classes()), (Some(60000), Some(10)));
    }
}

// Half a file (issue 19, item 5): a truncated JPEG, a multi-member gzip, trailing garbage.

/// A 48x40 JPEG with some structure (so its scan data is long enough to cut).
fn jpeg_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, ((x * y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[test]
fn a_jpeg_cut_to_half_its_bytes_is_refused_naming_the_file() {
    let dir = tmp("jpeg-half");
    let whole = jpeg_bytes();
    write(&dir.join("a.jpg"), &whole);
    assert_eq!(PhotoFolder::open(&dir).unwrap().len(), Some(1));
    for cut in [whole.len() / 2, whole.len() - 2, 300] {
        write(&dir.join("a.jpg"), &whole[..cut]);
        let e = PhotoFolder::open(&dir).unwrap_err();
        assert_names_file(
            Err::<(), _>(PhotoFolder::open(&dir).unwrap_err()),
            &dir.join("a.jpg"),
        );
        assert!(e.to_string().contains("truncated JPEG"), "{e}");
    }
    // A thumbnail's end marker in an APP1 segment before the scan does not hide the cut.
    let mut with_thumb = whole[..2].to_vec();
    let app1 = [b"Exif\0\0".as_slice(), &[0xFF, 0xD8, 0x00, 0xFF, 0xD9]].concat();
    with_thumb.extend_from_slice(&[0xFF, 0xE1]);
    with_thumb.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    with_thumb.extend_from_slice(&app1);
    with_thumb.extend_from_slice(&whole[2..]);
    write(&dir.join("a.jpg"), &with_thumb);
    assert_eq!(PhotoFolder::open(&dir).unwrap().len(), Some(1));
    write(&dir.join("a.jpg"), &with_thumb[..with_thumb.len() / 2 + 20]);
    assert_names_file(PhotoFolder::open(&dir), &dir.join("a.jpg"));
}

#[test]
fn a_multi_member_gzip_idx_is_read_whole_and_trailing_garbage_refused() {
    let dir = tmp("idx-members");
    let good = idx_bytes(&[2, 2, 5], &(0..20).collect::<Vec<u8>>());
    let p = dir.join("images-idx3-ubyte.gz");
    // `cat a.gz b.gz`: the header in one member, the data split over two more.
    write(
        &p,
        &[gzip(&good[..10]), gzip(&good[10..21]), gzip(&good[21..])].concat(),
    );
    let arr = data::read_idx(&p).unwrap();
    assert_eq!(
        (arr.dims, arr.data),
        (vec![2, 2, 5], (0..20).collect::<Vec<u8>>())
    );
    // Garbage after the member (or a truncated second member) is an error naming the file.
    for tail in [
        b"garbage!".to_vec(),
        vec![0u8; 4],
        gzip(b"more")[..6].to_vec(),
    ] {
        write(&p, &[gzip(&good), tail].concat());
        let e = data::read_idx(&p).unwrap_err();
        assert_names_file(Err::<(), _>(data::read_idx(&p).unwrap_err()), &p);
        assert!(e.to_string().contains("gzip"), "{e}");
    }
}
