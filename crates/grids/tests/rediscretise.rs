//! Rediscretisation: the derivative basis is exact on polynomials of its degree, the
//! printed basis of 002 has the documented typos, and moving a stencil between meshes keeps
//! its action on bilinear polynomials.

use grids::rediscretise::{
    basis_stencil, coefficients, from_coefficients, rediscretise, Derivative, BASIS,
};
use grids::Matrix;
use proptest::prelude::*;

/// `(s ⋆ u)(x0, y0) = sum_{a,b} s[a,b] u(x0 + b h, y0 + a h)`.
fn apply(s: &Matrix, h: f64, u: &dyn Fn(f64, f64) -> f64, x0: f64, y0: f64) -> f64 {
    let mut acc = 0.0;
    for a in 0..3 {
        for b in 0..3 {
            acc += s[(a, b)] * u(x0 + (b as f64 - 1.0) * h, y0 + (a as f64 - 1.0) * h);
        }
    }
    acc
}

fn factorial(n: u8) -> f64 {
    (1..=n as u32).product::<u32>() as f64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// `B_{pq}(h) ⋆ x^i y^j = ∂x^p ∂y^q (x^i y^j)` exactly for all `i <= p`, `j <= q`:
    /// `p! q!` when `(i, j) = (p, q)`, else 0 — at any point and on any mesh.
    #[test]
    fn basis_is_exact_on_polynomials_of_its_degree(x0 in -2.0f64..2.0, y0 in -2.0f64..2.0, h in 0.01f64..1.0) {
        for d in BASIS {
            let s = basis_stencil(d, h);
            for i in 0..=d.dx {
                for j in 0..=d.dy {
                    let u = |x: f64, y: f64| x.powi(i as i32) * y.powi(j as i32);
                    let expect = if (i, j) == (d.dx, d.dy) { factorial(i) * factorial(j) } else { 0.0 };
                    let got = apply(&s, h, &u, x0, y0);
                    let scale = (x0.abs() + y0.abs() + 1.0).powi(4) / h.powi((d.dx + d.dy) as i32);
                    prop_assert!((got - expect).abs() < 1e-12 * scale, "{:?} on x^{} y^{}: {} vs {}", d, i, j, got, expect);
                }
            }
        }
    }

    /// Rediscretised stencils act identically on bilinear polynomials (`Q_{1,1}`, where
    /// every basis stencil is exact): `s_h ⋆_h u = s_H ⋆_H u = sum alpha_d ∂^d u`.
    #[test]
    fn rediscretisation_is_exact_on_bilinear_polynomials(
        values in prop::collection::vec(-3.0f64..3.0, 9),
        c in prop::collection::vec(-2.0f64..2.0, 4),
        h in 0.05f64..0.5, ratio in 0.25f64..4.0, x0 in -1.0f64..1.0, y0 in -1.0f64..1.0,
    ) {
        let s = Matrix::from_vec(3, 3, values).unwrap();
        let big_h = h * ratio;
        let s_new = rediscretise(&s, h, big_h).unwrap();
        let u = |x: f64, y: f64| c[0] + c[1] * x + c[2] * y + c[3] * x * y;
        let (fine, coarse) = (apply(&s, h, &u, x0, y0), apply(&s_new, big_h, &u, x0, y0));
        let alpha = coefficients(&s, h).unwrap();
        let continuous = alpha[0] * u(x0, y0) + alpha[1] * (c[1] + c[3] * y0) + alpha[2] * (c[2] + c[3] * x0) + alpha[5] * c[3];
        let tol = 1e-9 * (1.0 + continuous.abs()) / (h.min(big_h)).powi(4);
        prop_assert!((fine - continuous).abs() < tol && (coarse - continuous).abs() < tol,
            "fine {} coarse {} continuous {}", fine, coarse, continuous);
        // Coefficients are mesh independent, and going back recovers the stencil.
        let alpha_new = coefficients(&s_new, big_h).unwrap();
        for (a, b) in alpha.iter().zip(&alpha_new) {
            prop_assert!((a - b).abs() < 1e-9 * (1.0 + a.abs()));
        }
        prop_assert!(rediscretise(&s_new, big_h, h).unwrap().max_abs_diff(&s) < 1e-9);
        prop_assert!(from_coefficients(&alpha, h).max_abs_diff(&s) < 1e-9);
    }
}

/// Each basis stencil scales like `h^-(dx+dy)` under rediscretisation.
#[test]
fn basis_stencils_rediscretise_to_themselves() {
    for d in BASIS {
        let moved = rediscretise(&basis_stencil(d, 0.1), 0.1, 0.2).unwrap();
        assert!(moved.max_abs_diff(&basis_stencil(d, 0.2)) < 1e-12, "{d:?}");
    }
}

/// The 2-D basis as printed in 002 (matrices and factors) against the derived one: which
/// printed entries are right and which are typos.
#[test]
fn printed_basis_typos() {
    let h = 0.3;
    let m = |rows: [[f64; 3]; 3], factor: f64| {
        let mut s = Matrix::from_rows(&rows).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                s[(i, j)] *= factor;
            }
        }
        s
    };
    let d = |dx, dy| basis_stencil(Derivative { dx, dy }, h);
    let close = |a: &Matrix, b: &Matrix| a.max_abs_diff(b) < 1e-9;
    // Correct as printed.
    assert!(close(
        &d(0, 0),
        &m([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]], 1. / 16.)
    ));
    assert!(close(
        &d(2, 0),
        &m(
            [[1., -2., 1.], [2., -4., 2.], [1., -2., 1.]],
            1. / (4. * h * h)
        )
    ));
    assert!(close(
        &d(0, 2),
        &m(
            [[1., 2., 1.], [-2., -4., -2.], [1., 2., 1.]],
            1. / (4. * h * h)
        )
    ));
    // ∂x, ∂y: printed 1/(6h) would give 4/3 of the derivative; the factor is 1/(8h).
    let dx_printed = [[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]];
    assert!(close(&d(1, 0), &m(dx_printed, 1. / (8. * h))));
    assert!(!close(&d(1, 0), &m(dx_printed, 1. / (6. * h))));
    assert!(close(
        &d(0, 1),
        &m([[-1., -2., -1.], [0., 0., 0.], [1., 2., 1.]], 1. / (8. * h))
    ));
    // ∂xy: printed matrix with 1/h^2 is -4 times the derivative.
    let dxy_printed = [[-1., 0., 1.], [0., 0., 0.], [1., 0., -1.]];
    assert!(close(&d(1, 1), &m(dxy_printed, -1. / (4. * h * h))));
    // Third order: the factor 1/(2h^3) is right but the labels are swapped.
    let printed_dxxy = [[-1., 0., 1.], [2., 0., -2.], [-1., 0., 1.]];
    let printed_dxyy = [[-1., 2., -1.], [0., 0., 0.], [1., -2., 1.]];
    assert!(close(&d(1, 2), &m(printed_dxxy, 1. / (2. * h.powi(3)))));
    assert!(close(&d(2, 1), &m(printed_dxyy, 1. / (2. * h.powi(3)))));
    // Fourth order: printed 1/(2h^3); the printed matrix needs -1/h^4.
    let printed_dxxyy = [[-1., 2., -1.], [2., -4., 2.], [-1., 2., -1.]];
    assert!(close(&d(2, 2), &m(printed_dxxyy, -1. / h.powi(4))));
}

#[test]
fn bad_inputs_are_errors() {
    let s = Matrix::zeros(3, 3);
    assert!(rediscretise(&s, 0.0, 0.1).is_err());
    assert!(rediscretise(&s, 0.1, -1.0).is_err());
    assert!(coefficients(&Matrix::zeros(5, 5), 0.1).is_err());
}
