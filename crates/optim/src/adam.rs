//! Adam (Kingma & Ba 2014, Algorithm 1) with state that can be saved and restored, so a
//! resumed run continues exactly where the interrupted one stopped (candle-nn's `AdamW` keeps
//! its moments private).
//!
//! Per parameter `θ` with gradient `g` at step `t` (1-based):
//! `m ← β1 m + (1-β1) g`, `v ← β2 v + (1-β2) g²`,
//! `θ ← θ - lr · (m / (1-β1^t)) / (sqrt(v / (1-β2^t)) + ε)`.
//!
//! On the CPU (f32, f64, contiguous) the three lines are one in-place pass over the parameter's
//! buffers (nested candle in-place custom ops, `FusedM`: no allocation, no temporary tensors),
//! with the bias corrections folded into two scalars, split over the rayon pool for long
//! variables; elsewhere the same formulas run as tensor operations.

use crate::{Error, Result};
use candle_core::{
    backprop::GradStore, CpuStorage, DType, Device, InplaceOp1, InplaceOp2, Layout, Tensor, Var,
};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Adam over a fixed list of named variables.
pub struct Adam {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// The variables of `varmap` with their names, sorted by name (a layout that does not depend
/// on map order, so optimizer states and drivers agree across runs).
pub fn named_vars(varmap: &candle_nn::VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::InvalidConfig("poisoned VarMap lock".into()))?;
    let mut named: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}

/// The variables of `varmap`, sorted by name.
pub fn sorted_vars(varmap: &candle_nn::VarMap) -> Result<Vec<Var>> {
    Ok(named_vars(varmap)?.into_iter().map(|(_, v)| v).collect())
}

impl Adam {
    /// Adam with `β1 = 0.9, β2 = 0.999, ε = 1e-8` (PyTorch's defaults, used by the authors)
    /// over `vars` (sorted by name so the state layout does not depend on map order).
    pub fn new(mut vars: Vec<(String, Var)>) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        // Separate buffers for m and v: the CPU step updates them in place.
        let zeros = || {
            vars.iter()
                .map(|(_, v)| v.as_tensor().zeros_like())
                .collect::<candle_core::Result<Vec<_>>>()
        };
        let (m, v) = (zeros()?, zeros()?);
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    /// Adam over every variable of `varmap`.
    pub fn from_varmap(varmap: &candle_nn::VarMap) -> Result<Self> {
        Self::new(named_vars(varmap)?)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One Adam step with learning rate `lr`; variables without a gradient are left as they are.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let (m, v, theta) = (&self.m[i], &self.v[i], var.as_tensor());
            let native = [theta, m, v, g]
                .iter()
                .all(|t| t.device().is_cpu() && t.dtype() == theta.dtype())
                && matches!(theta.dtype(), DType::F32 | DType::F64)
                && theta.is_contiguous();
            if native {
                let g = g.contiguous()?;
                m.inplace_op1(&FusedM {
                    v,
                    theta,
                    g: &g,
                    k: Consts {
                        beta1: self.beta1,
                        beta2: self.beta2,
                        step: lr / c1,
                        rc2: 1.0 / c2.sqrt(),
                        eps: self.eps,
                    },
                })?;
                continue;
            }
            let m = ((m * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v = ((v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((&v / c2)?.sqrt()? + self.eps)?;
            let update = ((&m / c1)? / denom)?;
            var.set(&(theta - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moments and the step count, as named tensors (`m.NAME`, `v.NAME`, `step`).
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let dev = self
            .m
            .first()
            .map(|t| t.device().clone())
            .unwrap_or(Device::Cpu);
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out.insert("step".into(), Tensor::new(&[self.step as f64], &dev)?);
        Ok(out)
    }

    /// Restore what [`Adam::state`] returned (for the same variables).
    pub fn load_state(&mut self, mut state: HashMap<String, Tensor>) -> Result<()> {
        let step = state
            .remove("step")
            .ok_or_else(|| Error::State("lacks `step`".into()))?;
        self.step = step
            .flatten_all()?
            .to_vec1::<f64>()?
            .first()
            .copied()
            .ok_or_else(|| Error::State("empty `step`".into()))? as u64;
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (key, slot) in [
                (format!("m.{name}"), &mut self.m[i]),
                (format!("v.{name}"), &mut self.v[i]),
            ] {
                let t = state
                    .remove(&key)
                    .ok_or_else(|| Error::State(format!("lacks `{key}`")))?;
                if t.dims() != var.dims() {
                    return Err(Error::State(format!(
                        "`{key}` has shape {:?}, the parameter {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                // A copy of its own: the CPU step writes the moments in place.
                *slot = t.to_device(var.device())?.to_dtype(var.dtype())?.copy()?;
            }
        }
        if let Some(extra) = state.keys().next() {
            return Err(Error::State(format!(
                "has `{extra}`, which is no parameter of this model"
            )));
        }
        Ok(())
    }

    /// Save the state to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.state()?, path).map_err(|e| Error::File {
            path: path.to_path_buf(),
            why: format!("cannot write optimizer state: {e}"),
        })
    }

    /// Load the state from a safetensors file written by [`Adam::save`].
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let dev = self
            .m
            .first()
            .map(|t| t.device().clone())
            .unwrap_or(Device::Cpu);
        let state = candle_core::safetensors::load(path, &dev).map_err(|e| Error::File {
            path: path.to_path_buf(),
            why: format!("cannot read optimizer state: {e}"),
        })?;
        self.load_state(state).map_err(|e| Error::File {
            path: path.to_path_buf(),
            why: format!("optimizer state: {e}"),
        })
    }
}

/// The contiguous range of a layout.
fn range(l: &Layout) -> candle_core::Result<std::ops::Range<usize>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("adam: operand not contiguous".into()))?;
    Ok(a..b)
}

fn mismatch() -> candle_core::Error {
    candle_core::Error::Msg("adam: operands must all be f32 or all f64 and of one size".into())
}

/// The constants of one step (see [`FusedM`]).
#[derive(Clone, Copy)]
struct Consts {
    beta1: f64,
    beta2: f64,
    step: f64,
    rc2: f64,
    eps: f64,
}

/// Variables at least this long are split over the rayon pool.
const PAR_MIN: usize = 32 * 1024;
/// Elements per rayon task.
const PAR_CHUNK: usize = 16 * 1024;

/// One Adam step of one variable on the CPU, in place: `m ← β1 m + (1-β1) g`,
/// `v ← β2 v + (1-β2) g²`, `θ ← θ - step m / (sqrt(v) rc2 + ε)` with `step = lr / c1` and
/// `rc2 = 1 / sqrt(c2)` (the bias corrections folded into two scalars), in one pass over the
/// four buffers.
///
/// Candle hands an in-place op one writable storage, so the op is applied three times, nested:
/// on `m` ([`FusedM`]), whose `cpu_fwd` applies [`FusedV`] to `v`, whose `cpu_fwd` applies
/// [`FusedTheta`] to `θ` with `g` as operand; the outer storages travel down behind a `Mutex`.
/// The four tensors have distinct storages (the moments are buffers of their own, see
/// [`Adam::new`] and [`Adam::load_state`]), so no lock is taken twice.
struct FusedM<'a> {
    v: &'a Tensor,
    theta: &'a Tensor,
    g: &'a Tensor,
    k: Consts,
}

struct FusedV<'a, 'm> {
    m: Mutex<(&'m mut CpuStorage, &'m Layout)>,
    theta: &'a Tensor,
    g: &'a Tensor,
    k: Consts,
}

struct FusedTheta<'m> {
    m: Mutex<(&'m mut CpuStorage, &'m Layout)>,
    v: Mutex<(&'m mut CpuStorage, &'m Layout)>,
    k: Consts,
}

impl InplaceOp1 for FusedM<'_> {
    fn name(&self) -> &'static str {
        "adam-step"
    }
    fn cpu_fwd(&self, m: &mut CpuStorage, lm: &Layout) -> candle_core::Result<()> {
        self.v.inplace_op1(&FusedV {
            m: Mutex::new((m, lm)),
            theta: self.theta,
            g: self.g,
            k: self.k,
        })
    }
}

impl InplaceOp1 for FusedV<'_, '_> {
    fn name(&self) -> &'static str {
        "adam-step"
    }
    fn cpu_fwd(&self, v: &mut CpuStorage, lv: &Layout) -> candle_core::Result<()> {
        let mut m = self.m.lock().map_err(|_| poisoned())?;
        let (m, lm) = &mut *m;
        self.theta.inplace_op2(
            self.g,
            &FusedTheta {
                m: Mutex::new((&mut **m, *lm)),
                v: Mutex::new((v, lv)),
                k: self.k,
            },
        )
    }
}

impl InplaceOp2 for FusedTheta<'_> {
    fn name(&self) -> &'static str {
        "adam-step"
    }
    fn cpu_fwd(
        &self,
        th: &mut CpuStorage,
        lth: &Layout,
        g: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<()> {
        let mut m = self.m.lock().map_err(|_| poisoned())?;
        let mut v = self.v.lock().map_err(|_| poisoned())?;
        let (m, lm) = &mut *m;
        let (v, lv) = &mut *v;
        let (rt, rm, rv, rg) = (range(lth)?, range(lm)?, range(lv)?, range(lg)?);
        let n = rt.len();
        if rm.len() != n || rv.len() != n || rg.len() != n {
            return Err(mismatch());
        }
        match (th, &mut **m, &mut **v, g) {
            (CpuStorage::F32(t), CpuStorage::F32(m), CpuStorage::F32(v), CpuStorage::F32(g)) => {
                adam_step(&self.k, &mut t[rt], &mut m[rm], &mut v[rv], &g[rg])
            }
            (CpuStorage::F64(t), CpuStorage::F64(m), CpuStorage::F64(v), CpuStorage::F64(g)) => {
                adam_step(&self.k, &mut t[rt], &mut m[rm], &mut v[rv], &g[rg])
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }
}

fn poisoned() -> candle_core::Error {
    candle_core::Error::Msg("adam: poisoned lock".into())
}

/// f32 / f64 for [`adam_step`].
trait Float:
    Copy
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    fn of(v: f64) -> Self;
    fn sqrt(self) -> Self;
}

impl Float for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Float for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// The fused update over equally long slices; over rayon chunks for long variables.
fn adam_step<T: Float>(k: &Consts, th: &mut [T], m: &mut [T], v: &mut [T], g: &[T]) {
    let (b1, a1) = (T::of(k.beta1), T::of(1.0 - k.beta1));
    let (b2, a2) = (T::of(k.beta2), T::of(1.0 - k.beta2));
    let (step, rc2, eps) = (T::of(k.step), T::of(k.rc2), T::of(k.eps));
    let run = |th: &mut [T], m: &mut [T], v: &mut [T], g: &[T]| {
        for (((th, m), v), &g) in th.iter_mut().zip(m).zip(v).zip(g) {
            let mi = b1 * *m + a1 * g;
            let vi = b2 * *v + a2 * (g * g);
            *m = mi;
            *v = vi;
            *th = *th - step * mi / (vi.sqrt() * rc2 + eps);
        }
    };
    if th.len() < PAR_MIN {
        run(th, m, v, g);
    } else {
        th.par_chunks_mut(PAR_CHUNK)
            .zip(m.par_chunks_mut(PAR_CHUNK))
            .zip(v.par_chunks_mut(PAR_CHUNK))
            .zip(g.par_chunks(PAR_CHUNK))
            .for_each(|(((th, m), v), g)| run(th, m, v, g));
    }
}

/// [`Adam`] at a learning rate, as a candle-nn `Optimizer` (the driver's schedule sets the
/// rate every iteration); the moments stay reachable in `adam` to checkpoint them.
pub struct AdamOptimizer {
    /// The optimizer and its moments.
    pub adam: Adam,
    /// The learning rate of the next step.
    pub lr: f64,
}

impl AdamOptimizer {
    /// `adam` stepping at `lr`.
    pub fn new(adam: Adam, lr: f64) -> Self {
        AdamOptimizer { adam, lr }
    }
}

impl candle_nn::Optimizer for AdamOptimizer {
    type Config = f64;
    fn new(vars: Vec<Var>, lr: f64) -> candle_core::Result<Self> {
        let named = vars
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("p{i:05}"), v))
            .collect();
        let adam = Adam::new(named).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(AdamOptimizer { adam, lr })
    }
    fn step(&mut self, grads: &candle_core::backprop::GradStore) -> candle_core::Result<()> {
        self.adam
            .step(grads, self.lr)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    /// `steps` steps of `adam` on `sum (θ - c)^2`; θ afterwards, flattened, as f64 (exact for
    /// f32 values).
    fn run(adam: &mut Adam, theta: &Var, target: &Tensor, steps: usize, lr: f64) -> Vec<f64> {
        for _ in 0..steps {
            let loss = (theta.as_tensor() - target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            adam.step(&loss.backward().unwrap(), lr).unwrap();
        }
        let flat = theta.as_tensor().flatten_all().unwrap();
        flat.to_dtype(DType::F64).unwrap().to_vec1().unwrap()
    }

    fn reference(theta0: &[f64], c: &[f64], steps: usize, lr: f64) -> Vec<f64> {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        theta0
            .iter()
            .zip(c)
            .map(|(&th0, &ci)| {
                let (mut th, mut m, mut v) = (th0, 0.0, 0.0);
                for t in 1..=steps as i32 {
                    let g = 2.0 * (th - ci);
                    m = b1 * m + (1.0 - b1) * g;
                    v = b2 * v + (1.0 - b2) * g * g;
                    th -= lr * (m / (1.0 - b1.powi(t))) / ((v / (1.0 - b2.powi(t))).sqrt() + eps);
                }
                th
            })
            .collect()
    }

    #[test]
    fn matches_the_scalar_algorithm() {
        let dev = Device::Cpu;
        let theta = Var::from_slice(&[1.0f32, -2.0, 0.5], 3, &dev).unwrap();
        let c = Tensor::new(&[0.3f32, 0.1, -0.7], &dev).unwrap();
        let mut adam = Adam::new(vec![("w".into(), theta.clone())]).unwrap();
        let got = run(&mut adam, &theta, &c, 25, 0.05);
        let want = reference(&[1.0, -2.0, 0.5], &[0.3, 0.1, -0.7], 25, 0.05);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    /// The in-place CPU step in f64 against the same transcription, to rounding.
    #[test]
    fn matches_the_scalar_algorithm_in_f64() {
        let dev = Device::Cpu;
        let theta = Var::from_slice(&[1.0f64, -2.0, 0.5, 3.0], (2, 2), &dev).unwrap();
        let c = Tensor::new(&[[0.3f64, 0.1], [-0.7, 2.5]], &dev).unwrap();
        let mut adam = Adam::new(vec![("w".into(), theta.clone())]).unwrap();
        let got = run(&mut adam, &theta, &c, 30, 0.05);
        let want = reference(&[1.0, -2.0, 0.5, 3.0], &[0.3, 0.1, -0.7, 2.5], 30, 0.05);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }

    /// A variable long enough for the rayon-split step (several chunks and a short last one),
    /// f64, against the transcription.
    #[test]
    fn long_variables_match_the_scalar_algorithm() {
        let dev = Device::Cpu;
        let n = 2 * PAR_MIN + 123;
        let th0: Vec<f64> = (0..n)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 17.0)
            .collect();
        let c: Vec<f64> = (0..n)
            .map(|i| ((i * 53 % 89) as f64 - 44.0) / 23.0)
            .collect();
        let theta = Var::from_slice(&th0, n, &dev).unwrap();
        let target = Tensor::new(c.as_slice(), &dev).unwrap();
        let mut adam = Adam::new(vec![("w".into(), theta.clone())]).unwrap();
        let got = run(&mut adam, &theta, &target, 6, 0.05);
        let want = reference(&th0, &c, 6, 0.05);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() < 1e-12, "element {i}: {g} vs {w}");
        }
    }

    /// The `candle_nn::Optimizer` face steps exactly like [`Adam::step`] at the rate last set,
    /// and names its variables `p00000, p00001, ...`.
    #[test]
    fn optimizer_trait_steps_like_adam_at_its_rate() {
        use candle_nn::Optimizer as _;
        let dev = Device::Cpu;
        let c = Tensor::new(&[0.3f32, 0.1, -0.4], &dev).unwrap();
        let a = Var::from_slice(&[1.0f32, -2.0, 0.5], 3, &dev).unwrap();
        let b = Var::from_tensor(&a.as_tensor().copy().unwrap()).unwrap();
        let mut adam = Adam::new(vec![("p00000".into(), a.clone())]).unwrap();
        let mut opt = <AdamOptimizer as candle_nn::Optimizer>::new(vec![b.clone()], 0.5).unwrap();
        assert_eq!(opt.learning_rate(), 0.5);
        for lr in [0.1, 0.05, 0.2] {
            opt.set_learning_rate(lr);
            let loss = (b.as_tensor() - &c)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
            run(&mut adam, &a, &c, 1, lr);
            assert_eq!(
                b.as_tensor().to_vec1::<f32>().unwrap(),
                a.as_tensor().to_vec1::<f32>().unwrap(),
                "lr {lr}"
            );
        }
        assert_eq!(opt.adam.steps(), 3);
        let mut keys: Vec<String> = opt.adam.state().unwrap().into_keys().collect();
        keys.sort();
        assert_eq!(keys, ["m.p00000", "step", "v.p00000"]);
    }

    #[test]
    fn saved_state_continues_identically() {
        let dev = Device::Cpu;
        let c = Tensor::new(&[0.3f32, 0.1], &dev).unwrap();
        let a = Var::from_slice(&[1.0f32, -2.0], 2, &dev).unwrap();
        let mut opt_a = Adam::new(vec![("w".into(), a.clone())]).unwrap();
        run(&mut opt_a, &a, &c, 5, 0.1);
        let path =
            std::env::temp_dir().join(format!("xtask-adam-{}.safetensors", std::process::id()));
        opt_a.save(&path).unwrap();
        let b = Var::from_tensor(&a.as_tensor().copy().unwrap()).unwrap();
        let mut opt_b = Adam::new(vec![("w".into(), b.clone())]).unwrap();
        opt_b.load(&path).unwrap();
        assert_eq!(opt_b.steps(), 5);
        let ra = run(&mut opt_a, &a, &c, 7, 0.1);
        let rb = run(&mut opt_b, &b, &c, 7, 0.1);
        assert_eq!(ra, rb);
        // State of another model is refused with a message naming the parameter.
        let other = Var::zeros((3,), DType::F32, &dev).unwrap();
        let mut opt_c = Adam::new(vec![("w".into(), other)]).unwrap();
        let e = format!("{:#}", opt_c.load(&path).unwrap_err());
        assert!(e.contains("m.w") && e.contains("shape"), "{e}");
        std::fs::remove_file(&path).ok();
    }
}
