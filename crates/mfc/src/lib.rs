//! Mesh-free convolutions (MFC, 000 section 3, Appendices A-B; SPEC section 2).
//!
//! An MFC with `C_in` inputs and `C_out` outputs is `MFC(u) = D_d exp(T L) (M u)`: a learned 1x1
//! embedding `M` (plus optional bias), the solution operator of the parabolic PDE
//! `v_t = div(Sigma_c grad v)` run to time `t_c` per channel, and `D_d = alpha_c + d_c . grad`.
//!
//! **Symbol.** On the periodic domain the operator is diagonal in Fourier space. With integer
//! modes `-n/2 <= m < n/2` and physical wavenumbers `k = 2 pi m` on the unit square (independent
//! of the mesh), channel `c` is multiplied by (000 eq. 21)
//! `S_c(k) = (alpha_c + i d_c . k) exp(-t_c k^T Sigma_c k)`,
//! and the layer computes `irfft2( S_c(k) rfft2(M u + b)_c )`. The same parameters therefore
//! describe the same continuous operator on every mesh, even or odd, which is why the loss and its
//! gradients converge as `h -> 0`, even on noisy inputs (000 Lemmas 2-3).
//!
//! **Parameterisation.** Every parameter value is valid: `t_c = exp(tau_c)`,
//! `Sigma_c = Rot(phi_c) diag(exp(a_c), exp(b_c)) Rot(phi_c)^T` (SPD, 000 eq. 28), `alpha_c` and
//! `d_c = (d_x, d_y)` free. Axis `x` runs along the width (columns), `y` along the height (rows).
//!
//! **Boundary and Nyquist convention.** Images are periodic on the unit square, pixel centres at
//! `((j + 1/2) h, (i + 1/2) h)` ([`Mfc::forward_with_mesh`] takes an explicit mesh size instead).
//! On a Nyquist line of an even mesh the sign of `k` is ambiguous, so the terms odd in that
//! component (derivative and the `Sigma_xy` cross term) are zeroed: the symbol is Hermitian and the
//! output is real ([`symbol::Wavenumbers`]).
//!
//! **Complex tensors** are [`Spectrum`]s: separate real and imaginary tensors of shape
//! `[.., H, W/2+1]` (the real-input half spectrum).
//!
//! **Backends** ([`Backend`]): (a) [`fft`], realfft/rustfft inside candle custom ops with exact
//! backward passes (the adjoints with the Hermitian half-spectrum weights), on the CPU, with the
//! symbol built and applied by one fused custom op ([`symbol_product`]) and `M` as one gemm op
//! ([`pointwise`]);
//! (b) [`dft_matmul`], the DFT as matmuls with cached cos/sin matrices, on any device.
//!
//! **Cost.** `O(C n^2 log n)` per image with the FFT backend (plus `O(C_in C_out n^2)` for `M`),
//! against `O(9 C_in C_out n^2)` for a 3x3 convolution; the matmul backend costs `O(C n^3)`.
//!
//! [`SpectralConv`] is the FNO-style alternative (learned complex weights on the lowest modes).
//!
//! Sources: `000` is the earlier version of *Multiscale Training of Convolutional Neural
//! Networks*, the one that introduces mesh-free convolutions; FNO is Li et al. 2020, *Fourier
//! Neural Operator for Parametric Partial Differential Equations*.
//!
//! | file | what |
//! |---|---|
//! | `layer.rs` | the layer [`Mfc`], `MFC(u) = D_d exp(T L) (M u)` (000 section 3.1, eqs. 18-19) |
//! | `symbol.rs` | the symbol `S_c(k)` (000 eqs. 19, 21) and the SPD parameterisation of `Sigma_c` (000 eq. 28) |
//! | `symbol_product.rs` | backend (a)'s fused op `Z -> S_c(k) Z` (000 eq. 21) |
//! | `pointwise.rs` | the 1x1 embedding `v = M u + b` (000 eq. 18) as one gemm op |
//! | `fft.rs` | backend (a): `rfft2`/`irfft2` with realfft + rustfft, exact backward; the split of the planes over worker threads, each writing its own `&mut` chunks of the output (no `unsafe`) |
//! | `dft_matmul.rs` | backend (b): the DFT as matmuls, any device |
//! | `backend.rs` | the backend choice and the half-spectrum type [`Spectrum`] |
//! | `spectral.rs` | [`SpectralConv`], the FNO-style layer of 000 Table 8 |
//! | `error.rs` | typed errors of `mfc` |
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//!
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let layer = mfc::Mfc::new(3, 8, &mfc::MfcConfig::default(), vb.pp("mfc"))?;
//! // The same layer runs on any mesh size.
//! for n in [31, 64] {
//!     let x = Tensor::randn(0f32, 1.0, (2, 3, n, n), &Device::Cpu)?;
//!     assert_eq!(layer.forward(&x)?.dims(), &[2, 8, n, n]);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
pub mod dft_matmul;
pub mod error;
pub mod fft;
pub mod layer;
pub mod pointwise;
pub mod spectral;
pub mod symbol;
pub mod symbol_product;

pub use backend::{Backend, Spectrum};
pub use error::{Error, Result};
pub use layer::{Mfc, MfcConfig};
pub use spectral::SpectralConv;
pub use symbol::{SymbolParams, Wavenumbers};
