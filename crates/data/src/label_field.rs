//! Classification labels as fields on the mesh, so that a classifier can be trained with the
//! multiscale gradient estimator (001 eq. 6), whose terms restrict the target together with the
//! image.
//!
//! A label is a constant function on the image: class `y` of image `i` becomes the one-hot
//! field `F[i, k, :, :] = [k = y]` of shape `[N, K, h, w]`. Any restriction that averages (or
//! injects) keeps a constant field unchanged, so on every mesh the class probabilities are the
//! field's pixel mean `p_k = mean_{pixels} F[i, k]`, and the loss of a term is the cross-entropy
//! against them ([`field_cross_entropy`]).

use crate::{Error, Result};
use candle_core::{Device, Tensor, D};

/// `[N, K, h, w]` one-hot label fields: class `labels[i]` is 1 everywhere on image `i`, the
/// other `classes - 1` channels 0. A label `>= classes` is an error.
pub fn label_field(
    labels: &[u32],
    classes: usize,
    h: usize,
    w: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut onehot = vec![0f32; labels.len() * classes];
    for (i, &y) in labels.iter().enumerate() {
        if y as usize >= classes {
            return Err(Error::InvalidArgument(format!(
                "label {y} out of range for {classes} classes"
            )));
        }
        onehot[i * classes + y as usize] = 1.0;
    }
    Ok(
        Tensor::from_vec(onehot, (labels.len(), classes, 1, 1), device)?
            .broadcast_as((labels.len(), classes, h, w))?
            .contiguous()?,
    )
}

/// Per-sample cross-entropy `-sum_k p_k log softmax(z)_k` of logits `z` `[N, K]` against the
/// class probabilities `p = mean_{pixels}(field)` of a label field `[N, K, h, w]`; `[N]`.
/// `log softmax(z)_k = (z_k - max z) - log sum_j exp(z_j - max z)`.
pub fn field_cross_entropy(logits: &Tensor, field: &Tensor) -> candle_core::Result<Tensor> {
    let p = field.mean(D::Minus1)?.mean(D::Minus1)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let diff = logits.broadcast_sub(&max)?;
    let log_p = diff.broadcast_sub(&diff.exp()?.sum_keepdim(D::Minus1)?.log()?)?;
    (p * log_p)?.sum(D::Minus1)?.neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2x2 averages of a `[N, K, h, w]` field (what an averaging restriction does).
    fn average_2x2(f: &Tensor) -> Tensor {
        let (n, k, h, w) = f.dims4().unwrap();
        f.reshape((n, k, h / 2, 2, w / 2, 2))
            .unwrap()
            .mean(5)
            .unwrap()
            .mean(3)
            .unwrap()
    }

    #[test]
    fn label_fields_survive_restriction_and_give_the_cross_entropy() {
        let dev = Device::Cpu;
        let field = label_field(&[2, 0], 3, 4, 4, &dev).unwrap();
        assert_eq!(field.dims(), &[2, 3, 4, 4]);
        let coarse = average_2x2(&field);
        let logits = Tensor::new(&[[0.1f32, -0.3, 0.7], [1.2, 0.4, -0.5]], &dev).unwrap();
        let want: Vec<f64> = [[0.1f64, -0.3, 0.7], [1.2, 0.4, -0.5]]
            .iter()
            .zip([2usize, 0])
            .map(|(z, y)| z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[y])
            .collect();
        for f in [&field, &coarse] {
            let got: Vec<f32> = field_cross_entropy(&logits, f).unwrap().to_vec1().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        }
        let e = label_field(&[3], 3, 2, 2, &dev).unwrap_err().to_string();
        assert!(e.contains("label 3") && e.contains("3 classes"), "{e}");
    }

    /// The hand-written log-softmax is candle-nn's to the bit (the mgnet experiment's results
    /// stay the same).
    #[test]
    fn log_softmax_matches_candle_nn() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[3.0f32, -1.5, 0.25, 7.0], [0.0, 0.0, 0.0, 0.0]], &dev).unwrap();
        let field = label_field(&[3, 1], 4, 2, 2, &dev).unwrap();
        let ours: Vec<f32> = field_cross_entropy(&logits, &field)
            .unwrap()
            .to_vec1()
            .unwrap();
        let p = field.mean(D::Minus1).unwrap().mean(D::Minus1).unwrap();
        let nn = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let theirs: Vec<f32> = (p * nn)
            .unwrap()
            .sum(D::Minus1)
            .unwrap()
            .neg()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(ours, theirs);
    }
}
