//! Subsampling strategies: coarsen = restrict, crops are consistent across tensor sizes,
//! the coarsen/crop split of `CoarsenAndCrop`, determinism given the rng.

use candle_core::{DType, Device, Tensor};
use grids::subsample::next_level;
use grids::{prolong, restrict, Prolongation, Restriction, Subsampling};
use rand::{rngs::StdRng, SeedableRng};

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `[n, 1, side, side]` whose pixel `(i, j)` of sample `k` is `1000 k + side i + j`.
fn labelled(n: usize, side: usize) -> Tensor {
    Tensor::arange(0f32, (side * side) as f32, &Device::Cpu)
        .unwrap()
        .reshape((1, 1, side, side))
        .unwrap()
        .broadcast_add(
            &(Tensor::arange(0f32, n as f32, &Device::Cpu).unwrap() * 1000.0)
                .unwrap()
                .reshape((n, 1, 1, 1))
                .unwrap(),
        )
        .unwrap()
}

#[test]
fn coarsen_is_restriction() {
    let x = Tensor::rand(0f32, 1., (3, 2, 16, 16), &Device::Cpu).unwrap();
    let y = Tensor::rand(0f32, 1., (3, 1, 8, 8), &Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    for r in Restriction::ALL {
        let out = next_level(
            &[x.clone(), y.clone()],
            0,
            3,
            Subsampling::Coarsen,
            r,
            &mut rng,
        )
        .unwrap();
        assert_eq!(max_abs(&out[0], &restrict(&x, r).unwrap()), 0.0);
        assert_eq!(max_abs(&out[1], &restrict(&y, r).unwrap()), 0.0);
    }
}

#[test]
fn crops_are_half_size_windows_shared_across_sizes() {
    let (n, side) = (16, 8);
    let small = labelled(n, side);
    let big = prolong(&small, Prolongation::Constant).unwrap(); // a 2x "target"
    let mut rng = StdRng::seed_from_u64(7);
    let out = next_level(
        &[small.clone(), big],
        0,
        2,
        Subsampling::Crop,
        Restriction::Average,
        &mut rng,
    )
    .unwrap();
    assert_eq!(out[0].dims(), &[n, 1, side / 2, side / 2]);
    assert_eq!(out[1].dims(), &[n, 1, side, side]);
    // The big crop is the constant prolongation of the small one: the same window.
    assert_eq!(
        max_abs(&out[1], &prolong(&out[0], Prolongation::Constant).unwrap()),
        0.0
    );
    // Each small crop is the contiguous block at its top-left label's offset.
    let mut offsets = std::collections::BTreeSet::new();
    for k in 0..n {
        let c = out[0]
            .get(k)
            .unwrap()
            .get(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let first = c[0][0] as usize - 1000 * k;
        let (oy, ox) = (first / side, first % side);
        assert!(oy <= side / 2 && ox <= side / 2);
        offsets.insert((oy, ox));
        for (i, row) in c.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert_eq!(*v as usize, 1000 * k + side * (oy + i) + ox + j);
            }
        }
    }
    assert!(
        offsets.len() > 1,
        "per-sample windows should differ: {offsets:?}"
    );
}

#[test]
fn deterministic_given_the_rng() {
    let x = Tensor::rand(0f32, 1., (4, 3, 16, 16), &Device::Cpu).unwrap();
    let run = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        next_level(
            std::slice::from_ref(&x),
            1,
            3,
            Subsampling::Crop,
            Restriction::Average,
            &mut rng,
        )
        .unwrap()
        .remove(0)
    };
    assert_eq!(max_abs(&run(3), &run(3)), 0.0);
    assert!(max_abs(&run(3), &run(4)) > 0.0);
}

#[test]
fn coarsen_and_crop_splits_at_half_the_levels() {
    let levels = 4;
    let split: Vec<bool> = (0..levels - 1)
        .map(|l| Subsampling::CoarsenAndCrop.coarsens(l, levels))
        .collect();
    assert_eq!(split, [true, true, false]);
    assert_eq!(
        (0..2)
            .map(|l| Subsampling::CoarsenAndCrop.coarsens(l, 3))
            .collect::<Vec<_>>(),
        [true, false]
    );
    // Coarsening halves the mesh; the crop keeps the mesh: both halve the side.
    let x = labelled(2, 16);
    let mut rng = StdRng::seed_from_u64(0);
    let l1 = next_level(
        std::slice::from_ref(&x),
        0,
        levels,
        Subsampling::CoarsenAndCrop,
        Restriction::Injection,
        &mut rng,
    )
    .unwrap();
    assert_eq!(
        max_abs(&l1[0], &restrict(&x, Restriction::Injection).unwrap()),
        0.0
    );
    let l3 = next_level(
        &l1,
        2,
        levels,
        Subsampling::CoarsenAndCrop,
        Restriction::Injection,
        &mut rng,
    )
    .unwrap();
    assert_eq!(l3[0].dims(), &[2, 1, 4, 4]);
    // A crop keeps neighbouring labels adjacent (step 2 after one injection), a coarsening would not.
    let c = l3[0]
        .get(0)
        .unwrap()
        .get(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(c[0][1] - c[0][0], 2.0);
}

#[test]
fn bad_inputs_are_errors() {
    let mut rng = StdRng::seed_from_u64(0);
    let x = Tensor::zeros((2, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::zeros((3, 1, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let z = Tensor::zeros((2, 1, 12, 12), DType::F32, &Device::Cpu).unwrap();
    assert!(next_level(
        std::slice::from_ref(&x),
        2,
        3,
        Subsampling::Coarsen,
        Restriction::Average,
        &mut rng
    )
    .is_err());
    assert!(next_level(
        &[x.clone(), y],
        0,
        2,
        Subsampling::Crop,
        Restriction::Average,
        &mut rng
    )
    .is_err());
    assert!(next_level(
        &[x, z],
        0,
        2,
        Subsampling::Crop,
        Restriction::Average,
        &mut rng
    )
    .is_err());
    assert_eq!(
        "both".parse::<Subsampling>().unwrap(),
        Subsampling::CoarsenAndCrop
    );
    assert!("random".parse::<Subsampling>().is_err());
}

#[test]
fn mesh_factor_counts_the_coarsening_steps() {
    let f = |s: Subsampling| (0..4).map(|l| s.mesh_factor(l, 4)).collect::<Vec<_>>();
    assert_eq!(f(Subsampling::Coarsen), [1, 2, 4, 8]);
    assert_eq!(f(Subsampling::Crop), [1, 1, 1, 1]);
    assert_eq!(f(Subsampling::CoarsenAndCrop), [1, 2, 4, 4]);
}
