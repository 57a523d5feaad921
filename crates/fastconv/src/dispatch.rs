//! The f32/f64 dispatch of a candle custom op's CPU forward, shared by this crate's ops and those
//! of `mfc` and `models`: read the operands' storages as contiguous slices of one float type,
//! run the kernel generic over that type, wrap its output in a storage, and refuse other dtypes,
//! mixed dtypes and non-contiguous operands with an error that names the op.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout};

/// A CPU kernel with `N` operands, run by [`dispatch`] for f32 and f64 (implement it for both,
/// usually as one generic `impl<T: MyFloat> CpuKernel<T, N> for MyOp`).
pub trait CpuKernel<T, const N: usize> {
    /// The op's output for contiguous operands, in the order given to [`dispatch`].
    fn run(&self, operands: [&[T]; N]) -> Vec<T>;
}

/// Why [`dispatch`] could not run an op on its operands.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The first operand is neither f32 nor f64.
    #[error("{op}: dtype {dtype:?} is not supported (f32 or f64 only)")]
    Dtype {
        /// The op's name.
        op: &'static str,
        /// The first operand's dtype.
        dtype: DType,
    },
    /// An operand's dtype differs from the first one's.
    #[error("{op}: operands must all be {expected:?}, operand {index} is {got:?}")]
    Mixed {
        /// The op's name.
        op: &'static str,
        /// The first operand's dtype.
        expected: DType,
        /// Position of the operand (0 is the first).
        index: usize,
        /// Its dtype.
        got: DType,
    },
    /// An operand's layout is not contiguous.
    #[error("{op}: operand {index} is not contiguous")]
    NotContiguous {
        /// The op's name.
        op: &'static str,
        /// Position of the operand (0 is the first).
        index: usize,
    },
}

impl From<StorageError> for candle_core::Error {
    fn from(e: StorageError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// `kernel.run(operands)` as f32 or f64, as the first operand's dtype says, with the output
/// wrapped in a storage of that dtype. Errors ([`StorageError`], naming `op`): another dtype, an
/// operand of another dtype than the first, or a non-contiguous operand.
pub fn dispatch<K, const N: usize>(
    op: &'static str,
    kernel: &K,
    operands: [(&CpuStorage, &Layout); N],
) -> Result<CpuStorage, StorageError>
where
    K: CpuKernel<f32, N> + CpuKernel<f64, N>,
{
    const { assert!(N > 0, "an op has at least one operand") };
    match operands[0].0.dtype() {
        DType::F32 => run::<f32, K, N>(op, kernel, operands),
        DType::F64 => run::<f64, K, N>(op, kernel, operands),
        dtype => Err(StorageError::Dtype { op, dtype }),
    }
}

fn run<T: Storable, K: CpuKernel<T, N>, const N: usize>(
    op: &'static str,
    kernel: &K,
    operands: [(&CpuStorage, &Layout); N],
) -> Result<CpuStorage, StorageError> {
    let mut slices: [&[T]; N] = [&[]; N];
    for (index, ((s, l), slice)) in operands.into_iter().zip(&mut slices).enumerate() {
        let data = T::slice(s).ok_or(StorageError::Mixed {
            op,
            expected: T::DTYPE,
            index,
            got: s.dtype(),
        })?;
        let (start, end) = l
            .contiguous_offsets()
            .ok_or(StorageError::NotContiguous { op, index })?;
        *slice = &data[start..end];
    }
    Ok(T::storage(kernel.run(slices)))
}

/// The float types a [`CpuStorage`] holds that [`dispatch`] runs kernels on.
trait Storable: Sized {
    const DTYPE: DType;
    /// The values of a storage of this dtype.
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    /// Wrap values into a storage.
    fn storage(v: Vec<Self>) -> CpuStorage;
}

macro_rules! storable {
    ($t:ty, $variant:ident) => {
        impl Storable for $t {
            const DTYPE: DType = DType::$variant;
            fn slice(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn storage(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$variant(v)
            }
        }
    };
}

storable!(f32, F32);
storable!(f64, F64);

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Shape;

    /// `a + 2 b`, element-wise.
    struct AxpyTwo;

    impl<T: Copy + std::ops::Add<Output = T>> CpuKernel<T, 2> for AxpyTwo {
        fn run(&self, [a, b]: [&[T]; 2]) -> Vec<T> {
            a.iter().zip(b).map(|(&x, &y)| x + y + y).collect()
        }
    }

    fn layout(n: usize) -> Layout {
        Layout::contiguous(Shape::from(n))
    }

    #[test]
    fn runs_f32_and_f64_on_the_contiguous_part() {
        let (a, b) = (
            CpuStorage::F32(vec![1.0, 2.0]),
            CpuStorage::F32(vec![3.0, 4.0]),
        );
        let out = dispatch("axpy", &AxpyTwo, [(&a, &layout(2)), (&b, &layout(2))]);
        assert!(matches!(out, Ok(CpuStorage::F32(v)) if v == [7.0, 10.0]));
        // An offset layout reads only its window.
        let a = CpuStorage::F64(vec![9.0, 1.0, 2.0]);
        let b = CpuStorage::F64(vec![3.0, 4.0]);
        let shifted = Layout::contiguous_with_offset(Shape::from(2), 1);
        let out = dispatch("axpy", &AxpyTwo, [(&a, &shifted), (&b, &layout(2))]);
        assert!(matches!(out, Ok(CpuStorage::F64(v)) if v == [7.0, 10.0]));
    }

    #[test]
    fn names_the_op_and_the_dtype_on_errors() {
        let (f, d) = (CpuStorage::F32(vec![1.0]), CpuStorage::F64(vec![1.0]));
        let h = CpuStorage::U8(vec![1]);
        let err = dispatch("axpy", &AxpyTwo, [(&h, &layout(1)), (&f, &layout(1))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "axpy: dtype U8 is not supported (f32 or f64 only)"
        );
        let err = dispatch("axpy", &AxpyTwo, [(&f, &layout(1)), (&d, &layout(1))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "axpy: operands must all be F32, operand 1 is F64"
        );
        let (d4, transposed) = (
            CpuStorage::F64(vec![0.0; 4]),
            Layout::new(Shape::from((2, 2)), vec![1, 2], 0),
        );
        let operands = [(&d4, &layout(4)), (&d4, &transposed)];
        let err = dispatch("axpy", &AxpyTwo, operands).unwrap_err();
        assert_eq!(err.to_string(), "axpy: operand 1 is not contiguous");
    }
}
