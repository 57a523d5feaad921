//! Noise-level conditioning, following the authors' code: a sinusoidal embedding of `t`
//! (DDPM's `timestep_embedding`) fed through small MLPs and added to feature maps.

use crate::error::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

const MAX_PERIOD: f64 = 10_000.0;

/// The noise level `t` of a batch of `n` images as a flat `[n]` tensor (`[n]` or any shape with
/// `n` elements, e.g. `[n, 1, 1, 1]`, is accepted); `None` is [`Error::MissingNoiseLevel`].
pub fn noise_level(t: Option<&Tensor>, n: usize) -> Result<Tensor> {
    let t = t.ok_or(Error::MissingNoiseLevel)?;
    if t.elem_count() != n {
        return Err(Error::InputShape {
            got: t.dims().to_vec(),
            expected: format!("noise level t with {n} elements"),
        });
    }
    Ok(t.flatten_all()?)
}

/// Sinusoidal embedding `[N] -> [N, dim]`: `[cos(t f_k) | sin(t f_k)]` with
/// `f_k = exp(-ln(10^4) k / half)`, `k < half = dim / 2`, zero-padded when `dim` is odd
/// (DDPM / authors' `timestep_embedding`).
pub fn sinusoidal(t: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|k| (-MAX_PERIOD.ln() * k as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = t
        .to_dtype(candle_core::DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs)?;
    let emb = Tensor::cat(&[args.cos()?, args.sin()?], 1)?;
    if dim % 2 == 1 {
        Tensor::cat(&[&emb, &emb.narrow(1, 0, 1)?.zeros_like()?], 1)
    } else {
        Ok(emb)
    }
}

/// UNet noise embedding (authors' `UNetModel.time_embed`):
/// `e = W_2 SiLU(W_1 sinusoidal(t, c_0) + b_1) + b_2`, `[N] -> [N, 4 c_0]`.
pub struct UnetEmbedding {
    dim: usize,
    lin1: Linear,
    lin2: Linear,
}

impl UnetEmbedding {
    /// Embedding for base width `dim` (output `4 dim`).
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            dim,
            lin1: linear(dim, 4 * dim, vb.pp("lin1"))?,
            lin2: linear(4 * dim, 4 * dim, vb.pp("lin2"))?,
        })
    }

    /// Width of the embedding vector.
    pub fn out_dim(&self) -> usize {
        4 * self.dim
    }

    /// `[N] -> [N, 4 dim]`.
    pub fn forward(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        self.lin2
            .forward(&self.lin1.forward(&sinusoidal(t, self.dim)?)?.silu()?)
    }
}

/// ResNet noise embedding (authors' `TimeEmbedding`): `[sinusoidal(t, s) | MLP(t)]`, `[N] -> [N, dim]`,
/// `s = 2 floor(dim / 4)`, MLP `1 -> 32 -> 32 -> dim - s` with ReLU; added to the feature map
/// after the first convolution of every block.
pub struct ResnetEmbedding {
    sincos: usize,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl ResnetEmbedding {
    /// Embedding of width `dim` (the block's channel count).
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        const HIDDEN: usize = 32;
        let sincos = 2 * (dim / 4);
        Ok(Self {
            sincos,
            fc1: linear(1, HIDDEN, vb.pp("fc1"))?,
            fc2: linear(HIDDEN, HIDDEN, vb.pp("fc2"))?,
            fc3: linear(HIDDEN, dim - sincos, vb.pp("fc3"))?,
        })
    }

    /// `[N] -> [N, dim]`.
    pub fn forward(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        let mlp = self.fc1.forward(&t.unsqueeze(1)?)?.relu()?;
        let mlp = self.fc3.forward(&self.fc2.forward(&mlp)?.relu()?)?;
        if self.sincos == 0 {
            return Ok(mlp);
        }
        Tensor::cat(&[&sinusoidal(t, self.sincos)?, &mlp], 1)
    }
}
