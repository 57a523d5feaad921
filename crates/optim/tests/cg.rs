//! The CG kernel against dense solves, and the Steihaug exits.
mod common;

use common::{dense_solve, random_matrix, random_spd, rel_err, Dense};
use optim::cg::{solve, CgOptions, Termination};
use optim::vector::norm;
use proptest::prelude::*;

fn apply(m: &Dense) -> impl FnMut(&[f64]) -> optim::Result<Vec<f64>> + '_ {
    move |v| Ok(m.matvec(v))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Plain CG on a random SPD system matches Gaussian elimination within n iterations.
    #[test]
    fn cg_matches_dense_solve(seed in 0u64..10_000, n in 1usize..24) {
        let a = random_spd(seed, n, 0.5);
        let b = random_matrix(seed + 1, n, 1).a;
        let exact = dense_solve(&a, &b);
        let opts = CgOptions { max_iters: n, rel_tol: 1e-13, radius: None };
        let sol = solve(apply(&a), &b, &opts).unwrap();
        prop_assert!(sol.iterations <= n);
        // Finite-precision CG after n steps is accurate to about cond(A) eps (seed 7409,
        // n = 19 reached 1.04e-9).
        prop_assert!(rel_err(&sol.x, &exact) < 1e-8, "rel err {}", rel_err(&sol.x, &exact));
        // Tracked model value equals q(x) = 1/2 x^T A x - b^T x.
        let q = 0.5 * optim::vector::dot(&sol.x, &a.matvec(&sol.x)) - optim::vector::dot(&b, &sol.x);
        prop_assert!((sol.model_value - q).abs() <= 1e-10 * q.abs().max(1.0));
    }

    /// With a radius below ||A^{-1} b|| Steihaug stops on the boundary with a model decrease.
    #[test]
    fn steihaug_stops_on_boundary(seed in 0u64..10_000, n in 2usize..16) {
        let a = random_spd(seed, n, 0.5);
        let b = random_matrix(seed + 7, n, 1).a;
        let radius = 0.5 * norm(&dense_solve(&a, &b));
        let opts = CgOptions { max_iters: 3 * n, rel_tol: 1e-12, radius: Some(radius) };
        let sol = solve(apply(&a), &b, &opts).unwrap();
        prop_assert_eq!(sol.termination, Termination::Boundary);
        prop_assert!((norm(&sol.x) - radius).abs() <= 1e-10 * radius);
        prop_assert!(sol.model_value < 0.0);
        let q = 0.5 * optim::vector::dot(&sol.x, &a.matvec(&sol.x)) - optim::vector::dot(&b, &sol.x);
        prop_assert!((sol.model_value - q).abs() <= 1e-10 * q.abs().max(1.0));
    }
}

/// An indefinite operator makes Steihaug follow the negative-curvature direction to the
/// boundary, choosing the root with the lower model value.
#[test]
fn steihaug_negative_curvature_goes_to_boundary() {
    // A = diag(-1, 2), b = (1, 0): d_0 = b has d^T A d = -1 < 0.
    let a = Dense {
        rows: 2,
        cols: 2,
        a: vec![-1.0, 0.0, 0.0, 2.0],
    };
    let b = [1.0, 0.0];
    let opts = CgOptions {
        max_iters: 10,
        rel_tol: 1e-12,
        radius: Some(3.0),
    };
    let sol = solve(apply(&a), &b, &opts).unwrap();
    assert_eq!(sol.termination, Termination::NegativeCurvature);
    assert!(
        (sol.x[0] - 3.0).abs() < 1e-12 && sol.x[1].abs() < 1e-12,
        "{:?}",
        sol.x
    );
    // q(3, 0) = -9/2 - 3.
    assert!((sol.model_value + 7.5).abs() < 1e-12);
    // Without a radius the first direction is returned (steepest descent).
    let plain = solve(
        apply(&a),
        &b,
        &CgOptions {
            radius: None,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(plain.termination, Termination::NegativeCurvature);
    assert_eq!(plain.x, b.to_vec());
}

/// Bad settings and a wrong-length operator give typed errors.
#[test]
fn invalid_inputs_are_errors() {
    let a = random_spd(3, 4, 1.0);
    let b = vec![1.0; 4];
    let bad_radius = CgOptions {
        max_iters: 4,
        rel_tol: 1e-8,
        radius: Some(0.0),
    };
    assert!(matches!(
        solve(apply(&a), &b, &bad_radius),
        Err(optim::Error::InvalidConfig(_))
    ));
    let short = |_: &[f64]| Ok(vec![0.0; 3]);
    let opts = CgOptions {
        max_iters: 4,
        rel_tol: 1e-8,
        radius: None,
    };
    assert!(matches!(
        solve(short, &b, &opts),
        Err(optim::Error::LengthMismatch { .. })
    ));
}
