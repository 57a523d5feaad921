//! A folder's validation photos never reach training (`PhotoFolder::split_validation`).

use data::{ImageSource, PhotoFolder};
use std::collections::BTreeSet;

fn names(f: &PhotoFolder) -> BTreeSet<String> {
    f.paths().iter().map(|p| p.display().to_string()).collect()
}

#[test]
fn validation_photos_are_held_out_of_training() {
    let all = PhotoFolder::open(&data::photos_dir()).unwrap();
    let n = all.len().unwrap();
    assert!(n >= 5, "{n} shipped photos");
    let (train, validation) = all.clone().split_validation(4, 7).unwrap();
    let (t, v) = (names(&train), names(&validation));
    assert_eq!((t.len(), v.len()), (n - 4, 4));
    assert!(t.is_disjoint(&v), "{t:?} / {v:?}");
    assert_eq!(t.union(&v).cloned().collect::<BTreeSet<_>>(), names(&all));
    assert_eq!((train.len(), validation.len()), (Some(n - 4), Some(4)));
    // The split depends on the seed only.
    let again = all.clone().split_validation(4, 7).unwrap().1;
    assert_eq!(names(&again), v);
    let other: Vec<_> = (8..16)
        .map(|s| names(&all.clone().split_validation(4, s).unwrap().1))
        .collect();
    assert!(other.iter().any(|o| *o != v));
    // Nothing left for training is an error naming the folder.
    let e = all.clone().split_validation(n, 7).unwrap_err().to_string();
    assert!(e.contains("photos") && e.contains("validation"), "{e}");
}
