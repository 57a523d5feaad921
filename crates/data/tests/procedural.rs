//! Procedural sources are continuous functions: sampling at mesh n then 2x2 averaging is within
//! O(h) of sampling at mesh n/2 (measured rates printed with `--nocapture`).

use data::{DeadLeaves, GaussianRandomField, ImageSource, MarkovField};

fn values(src: &dyn ImageSource, index: u64, n: usize) -> Vec<f32> {
    src.image(index, n)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// 2x2 averaging of `c` planes of `n x n` (an independent reference, not the grids crate).
fn average2(v: &[f32], c: usize, n: usize) -> Vec<f32> {
    let m = n / 2;
    let mut out = vec![0f32; c * m * m];
    for ch in 0..c {
        for i in 0..m {
            for j in 0..m {
                let at = |a: usize, b: usize| v[(ch * n + 2 * i + a) * n + 2 * j + b];
                out[(ch * m + i) * m + j] = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0;
            }
        }
    }
    out
}

/// `(mean |R f_n - f_{n/2}|, max |R f_n - f_{n/2}|)` over images 0..3 for each `n`.
fn restriction_errors(src: &dyn ImageSource, sizes: &[usize]) -> Vec<(f64, f64)> {
    let c = src.channels();
    sizes
        .iter()
        .map(|&n| {
            let (mut mean, mut max) = (0.0, 0f64);
            for i in 0..3 {
                let d: Vec<f64> = average2(&values(src, i, n), c, n)
                    .iter()
                    .zip(values(src, i, n / 2))
                    .map(|(a, b)| (*a as f64 - b as f64).abs())
                    .collect();
                mean += d.iter().sum::<f64>() / d.len() as f64 / 3.0;
                max = d.iter().cloned().fold(max, f64::max);
            }
            (mean, max)
        })
        .collect()
}

fn rates(errs: &[f64]) -> Vec<f64> {
    errs.windows(2).map(|w| (w[0] / w[1]).log2()).collect()
}

#[test]
fn dead_leaves_restriction_is_first_order() {
    let src = DeadLeaves::new(11);
    let sizes = [64, 128, 256];
    let errs = restriction_errors(&src, &sizes);
    let mean: Vec<f64> = errs.iter().map(|e| e.0).collect();
    let r = rates(&mean);
    println!("dead leaves mean |R f_n - f_n/2| at n={sizes:?}: {mean:?}, rates {r:?}");
    for (e, n) in mean.iter().zip(sizes) {
        assert!(*e <= 2.0 / n as f64, "error {e} at n={n} is not O(h)");
    }
    // Pre-asymptotic while pixels are not much smaller than r_min = 0.01; tends to 1.
    assert!(r.iter().all(|&q| q > 0.6), "rates {r:?} not first order");
}

#[test]
fn fourier_fields_restriction_is_second_order() {
    let sizes = [128, 256, 512];
    let sources: [(&str, Box<dyn ImageSource>); 2] = [
        ("grf beta=3", Box::new(GaussianRandomField::new(5, 3.0))),
        ("markov", Box::new(MarkovField::new(5))),
    ];
    for (name, src) in sources {
        let max: Vec<f64> = restriction_errors(src.as_ref(), &sizes)
            .iter()
            .map(|e| e.1)
            .collect();
        let r = rates(&max);
        println!("{name} max |R f_n - f_n/2| at n={sizes:?}: {max:?}, rates {r:?}");
        // Pre-asymptotic while the top mode (K = 32) is near the Nyquist frequency n/2.
        assert!(
            r.iter().all(|&q| q > 1.5) && r[r.len() - 1] > 1.8,
            "{name}: rates {r:?} not second order"
        );
    }
}

#[test]
fn sources_are_deterministic_distinct_and_in_range() {
    let sources: [Box<dyn ImageSource>; 4] = [
        Box::new(DeadLeaves::new(1).with_channels(3)),
        Box::new(GaussianRandomField::new(1, 2.0).with_channels(3)),
        Box::new(MarkovField::new(1)),
        Box::new(DeadLeaves::new(2).with_subsamples(1)),
    ];
    for src in &sources {
        let a = values(src.as_ref(), 4, 24);
        assert_eq!(a.len(), src.channels() * 24 * 24);
        assert_eq!(a, values(src.as_ref(), 4, 24));
        assert_ne!(a, values(src.as_ref(), 5, 24));
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(var > 1e-3, "image is nearly constant: var {var}");
    }
    assert!(DeadLeaves::new(1).image(0, 0).is_err());
}
