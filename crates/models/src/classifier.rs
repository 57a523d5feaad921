//! The small CNN classifier of 002 section 5 and 003 section 3.2 (two 3x3 convolution layers,
//! optionally a 2x2 average-pooling layer between them, and a linear classifier head on the
//! flattened feature map), with its transfer between meshes `h` and `2h`, cross-entropy,
//! accuracy and the smoothness regulariser of the head weights (003 section 3.2.1).
//!
//! Head transfer (003 section 3.1.3). The head computes the plain sum
//! `z_j = sum_{k,x} g_k(x) w_{j,k}(x) + b_j` over the `m x m` feature pixels, a Riemann sum of
//! `m^2 ∫ g_k w_{j,k} dx`. With `g^{2h} = R g^h` (2x2 average) the coarse sum has a quarter of the
//! terms, so equal logits need `w^{2h} = 4 R w^h`:
//! `sum_I (R g)_I (4 R w)_I = sum_I sum_{i in I} g_i w_i + O(h^2)` for smooth `g`, `w`.
//! Coarse to fine: `w^h = P w^{2h} / 4` (bilinear `P`, `R P = I + O(h^2)`). Stencils follow
//! Galerkin (`K_{2h} = R K_h P`, 002 eq. 2.6b / 4.14) or stay unchanged; biases are copied.

use crate::conv::{Conv, ConvKind, ConvSpec};
use crate::error::{Error, Result};
use crate::transfer::{prolong_network_with, restrict_network};
use candle_core::{DType, Module, Tensor, Var, D};
use candle_nn::{Init, VarBuilder, VarMap};
use grids::{Prolongation, Restriction};

/// Variable name of the head weights `[classes, c2 * m * m]` (rank 2, so that
/// [`restrict_network`] leaves them to [`restrict_head`]).
pub const HEAD_WEIGHT: &str = "head.weight";

/// Architecture of the 2-layer CNN classifier (003 section 3.2: widths 32 and 64, ReLU,
/// optional 2x2 average pooling between the layers; Table 4.1 without, Table 4.2 with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifierConfig {
    /// Output channels of the first convolution (003: 32).
    pub c1: usize,
    /// Output channels of the second convolution (003: 64).
    pub c2: usize,
    /// 2x2 average pooling between the two convolutions (003 Table 4.2).
    pub pool: bool,
    /// Number of classes.
    pub classes: usize,
    /// Input mesh `n` (images are `[N, 1, n, n]`).
    pub size: usize,
}

impl Default for ClassifierConfig {
    /// 003's network for 28x28 MNIST without pooling.
    fn default() -> Self {
        Self {
            c1: 32,
            c2: 64,
            pool: false,
            classes: 10,
            size: 28,
        }
    }
}

impl ClassifierConfig {
    /// Side `m` of the feature map the head reads: `n`, or `n/2` with pooling.
    pub fn feature_side(&self) -> usize {
        if self.pool {
            self.size / 2
        } else {
            self.size
        }
    }

    /// Number of head inputs `c2 * m^2`.
    pub fn features(&self) -> usize {
        self.c2 * self.feature_side() * self.feature_side()
    }

    /// The same network on mesh `size`.
    pub fn at_size(self, size: usize) -> Self {
        Self { size, ..self }
    }

    fn validate(&self) -> Result<()> {
        let factor = if self.pool { 2 } else { 1 };
        if self.c1 == 0 || self.c2 == 0 || self.classes == 0 || self.size == 0 {
            return Err(Error::InvalidConfig(format!(
                "classifier needs non-zero sizes, got {self:?}"
            )));
        }
        if !self.size.is_multiple_of(factor) {
            return Err(Error::MeshNotDivisible {
                h: self.size,
                w: self.size,
                factor,
            });
        }
        Ok(())
    }
}

/// `z = W vec(g) + b`, `g = σ(K_2 [pool] σ(K_1 u))` (003 eq. 3.6 with zero conv biases, σ = ReLU).
pub struct Classifier {
    conv1: Conv,
    conv2: Conv,
    head_w: Tensor,
    head_b: Tensor,
    cfg: ClassifierConfig,
}

impl Classifier {
    /// Builds the network from `vb`: Kaiming-normal 3x3 stencils without bias (003 section 3.2),
    /// head weights `N(0, 1/features)`, head bias zero.
    pub fn new(cfg: ClassifierConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let spec1 = ConvSpec::new(1, cfg.c1, 3).no_bias();
        let spec2 = ConvSpec::new(cfg.c1, cfg.c2, 3).no_bias();
        let conv1 = Conv::new(spec1, ConvKind::Standard, vb.pp("conv1"))?;
        let conv2 = Conv::new(spec2, ConvKind::Standard, vb.pp("conv2"))?;
        let stdev = 1.0 / (cfg.features() as f64).sqrt();
        let head_w = vb.get_with_hints(
            (cfg.classes, cfg.features()),
            HEAD_WEIGHT,
            Init::Randn { mean: 0.0, stdev },
        )?;
        let head_b = vb.get_with_hints(cfg.classes, "head.bias", Init::Const(0.0))?;
        Ok(Self {
            conv1,
            conv2,
            head_w,
            head_b,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// Feature map `g = σ(K_2 [pool] σ(K_1 u))`, `[N, c2, m, m]`, for `u` of shape `[N, 1, n, n]`.
    pub fn features(&self, u: &Tensor) -> Result<Tensor> {
        let n = self.cfg.size;
        match u.dims() {
            [_, 1, h, w] if *h == n && *w == n => {}
            got => {
                return Err(Error::InputShape {
                    got: got.to_vec(),
                    expected: format!("[N, 1, {n}, {n}]"),
                })
            }
        }
        let mut a = self.conv1.forward(u)?.relu()?;
        if self.cfg.pool {
            a = a.avg_pool2d(2)?;
        }
        Ok(self.conv2.forward(&a)?.relu()?)
    }

    /// Logits `z = W vec(g) + b`, `[N, classes]`.
    pub fn forward(&self, u: &Tensor) -> Result<Tensor> {
        let g = self.features(u)?.flatten_from(1)?;
        Ok(g.matmul(&self.head_w.t()?)?.broadcast_add(&self.head_b)?)
    }
}

/// Reshape head weights `[classes, c * m * m]` to `[classes, c, m, m]`, checking the size.
fn head_image(w: &Tensor, channels: usize, m: usize) -> Result<Tensor> {
    let (classes, features) = w.dims2()?;
    if channels == 0 || features != channels * m * m {
        return Err(Error::InvalidConfig(format!(
            "head weights [{classes}, {features}] do not fit {channels} channels of {m}x{m}"
        )));
    }
    Ok(w.reshape((classes, channels, m, m))?)
}

/// Fine-to-coarse head weights `w^{2h} = 4 R w^h` (003 section 3.1.3, Riemann-sum factor 4;
/// `R` the 2x2 average): `[classes, c m^2] -> [classes, c m^2 / 4]`, `m` the fine side (even).
pub fn restrict_head(w: &Tensor, channels: usize, m: usize) -> Result<Tensor> {
    if !m.is_multiple_of(2) {
        return Err(Error::MeshNotDivisible {
            h: m,
            w: m,
            factor: 2,
        });
    }
    let img = head_image(w, channels, m)?;
    let coarse = (grids::restrict(&img, Restriction::Average)? * 4.0)?;
    Ok(coarse.flatten_from(1)?)
}

/// Coarse-to-fine head weights `w^h = P w^{2h} / 4` (003 section 3.1.3; `P` cell-centred
/// bilinear, replicate boundary): `[classes, c m^2] -> [classes, 4 c m^2]`, `m` the coarse side.
pub fn prolong_head(w: &Tensor, channels: usize, m: usize) -> Result<Tensor> {
    let img = head_image(w, channels, m)?;
    let fine = (grids::prolong(&img, Prolongation::Bilinear)? / 4.0)?;
    Ok(fine.flatten_from(1)?)
}

/// How the convolution stencils move between meshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StencilTransfer {
    /// Galerkin `K_{2h} = R K_h P` (002 eq. 2.6b) and its exact inverse (002 eq. 4.14, the
    /// undamped solve, as in 003's multigrid), with the default pair (2x2 average, bilinear).
    Galerkin,
    /// The same stencil values on the new mesh (003's "transfer").
    Unchanged,
}

/// A deep copy of `varmap`.
fn copy_varmap(varmap: &VarMap) -> Result<VarMap> {
    crate::transfer::map_stencils(varmap, |w| Ok(w.copy()?))
}

/// Replace the head weights of `varmap` by `map(old)`.
fn map_head(varmap: VarMap, map: impl Fn(&Tensor) -> Result<Tensor>) -> Result<VarMap> {
    {
        let mut vars = varmap
            .data()
            .lock()
            .map_err(|_| Error::InvalidConfig("VarMap lock poisoned".into()))?;
        let old = vars
            .get(HEAD_WEIGHT)
            .ok_or_else(|| {
                Error::InvalidConfig(format!("no variable {HEAD_WEIGHT}: not a classifier"))
            })?
            .as_tensor()
            .clone();
        vars.insert(
            HEAD_WEIGHT.to_string(),
            Var::from_tensor(&map(&old)?.detach())?,
        );
    }
    Ok(varmap)
}

/// Variables of the coarse (`n/2`) copy of the fine classifier `fine` (configuration `cfg` at
/// mesh `n`): stencils by `stencils`, head by [`restrict_head`], biases copied (002 section 5.2).
pub fn restrict_classifier(
    varmap: &VarMap,
    cfg: &ClassifierConfig,
    stencils: StencilTransfer,
) -> Result<VarMap> {
    let out = match stencils {
        StencilTransfer::Galerkin => {
            restrict_network(varmap, Restriction::Average, Prolongation::Bilinear)?
        }
        StencilTransfer::Unchanged => copy_varmap(varmap)?,
    };
    map_head(out, |w| restrict_head(w, cfg.c2, cfg.feature_side()))
}

/// Variables of the fine (`2n`) copy of the coarse classifier (configuration `cfg` at mesh `n`):
/// stencils by `stencils`, head by [`prolong_head`], biases copied (003 section 4.1).
pub fn prolong_classifier(
    varmap: &VarMap,
    cfg: &ClassifierConfig,
    stencils: StencilTransfer,
) -> Result<VarMap> {
    let out = match stencils {
        StencilTransfer::Galerkin => {
            prolong_network_with(varmap, Restriction::Average, Prolongation::Bilinear, 0.0)?
        }
        StencilTransfer::Unchanged => copy_varmap(varmap)?,
    };
    map_head(out, |w| prolong_head(w, cfg.c2, cfg.feature_side()))
}

/// Mean cross-entropy `-(1/N) sum_i log softmax(z_i)_{y_i}` of logits `[N, K]` and `u32`
/// labels `[N]` (the soft-max criterion 002 section 2.3 mentions beside least squares).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(logits, labels)?)
}

/// Fraction of rows whose arg-max logit equals the label.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let (n, _) = logits.dims2()?;
    if n == 0 {
        return Ok(f64::NAN);
    }
    let pred = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    let hits = pred
        .eq(&labels.to_dtype(DType::U32)?)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(hits as f64 / n as f64)
}

/// Smoothness penalty of the head weights (003 section 3.2.1, `R(w) = 0.5 ||B w||^2` with `B`
/// forward differences): `0.5 sum_{j,k} sum_x (w(x + e_1) - w(x))^2 + (w(x + e_2) - w(x))^2`
/// over each `m x m` weight image (`[classes, c m^2]`). Multiply by the paper's `α`.
pub fn head_smoothness(w: &Tensor, channels: usize, m: usize) -> Result<Tensor> {
    let img = head_image(w, channels, m)?;
    if m < 2 {
        return Ok(w.zeros_like()?.sum_all()?);
    }
    let dy = (img.narrow(2, 1, m - 1)? - img.narrow(2, 0, m - 1)?)?;
    let dx = (img.narrow(3, 1, m - 1)? - img.narrow(3, 0, m - 1)?)?;
    Ok(((dy.sqr()?.sum_all()? + dx.sqr()?.sum_all()?)? * 0.5)?)
}
