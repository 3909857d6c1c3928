//! AdamW (Loshchilov and Hutter 2019) with decoupled weight decay, PyTorch's formula:
//!
//! ```text
//! p <- p * (1 - lr * wd)
//! m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
//! p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! For f32 variables on the CPU the update is one fused pass over each parameter's storage
//! (an in-place custom op; the moments are plain `Vec<f32>`; rayon over chunks), where candle's
//! optimiser runs about a dozen whole-tensor ops per parameter. Optional global-norm gradient
//! clipping folds into the same pass (the norm costs one read of the gradients). Variables
//! elsewhere (CUDA, other dtypes) are updated with candle's tensor ops, same formula.

use std::cell::RefCell;

use candle_core::{
    backprop::GradStore, bail, CpuStorage, DType, InplaceOp2, Layout, Result, Tensor, Var,
};
use rayon::prelude::*;

use super::kernels::{with_f32, CHUNK};

/// AdamW hyper-parameters (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// The optimiser's resumable state: steps taken and both moments, in variable order, each
/// flattened row-major like its variable.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWState {
    pub step: u64,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

/// Moments of one variable.
enum Moments {
    /// f32 on the CPU: updated by the fused pass.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Anywhere else: tensors on the variable's device and dtype.
    Device { m: Tensor, v: Tensor },
}

/// AdamW over a set of variables.
pub struct AdamW {
    vars: Vec<Var>,
    moments: Vec<Moments>,
    cfg: AdamWConfig,
    step: u64,
    max_grad_norm: Option<f64>,
    last_grad_norm: Option<f64>,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, cfg: AdamWConfig) -> Result<Self> {
        let moments = vars
            .iter()
            .map(|v| {
                Ok(if is_host(v) {
                    let n = v.elem_count();
                    Moments::Host {
                        m: vec![0.0; n],
                        v: vec![0.0; n],
                    }
                } else {
                    Moments::Device {
                        m: v.zeros_like()?,
                        v: v.zeros_like()?,
                    }
                })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW {
            vars,
            moments,
            cfg,
            step: 0,
            max_grad_norm: None,
            last_grad_norm: None,
        })
    }
    /// Sets the learning rate for the next steps (schedules call this every step).
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.cfg.lr
    }
    /// Clip the global L2 norm of the gradients to `max` inside `step` (PyTorch's
    /// `clip_grad_norm_`: scale by `max / (norm + 1e-6)` when that is below 1); `None` or a
    /// value <= 0 turns clipping off.
    pub fn set_max_grad_norm(&mut self, max: Option<f64>) {
        self.max_grad_norm = max.filter(|m| *m > 0.0);
    }
    /// The global gradient norm the last `step` saw (before clipping), when clipping is on.
    pub fn last_grad_norm(&self) -> Option<f64> {
        self.last_grad_norm
    }
    /// The variables, in the order of the state's moments.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// One update from `grads`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let scale = match self.max_grad_norm {
            Some(max) => {
                let norm = grad_norm(grads, &self.vars)?;
                self.last_grad_norm = Some(norm);
                clip_coef(norm, max)
            }
            None => 1.0,
        };
        self.step += 1;
        let c = Coefs::new(&self.cfg, self.step, scale);
        for (var, mom) in self.vars.iter().zip(self.moments.iter_mut()) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            match mom {
                Moments::Host { m, v } => {
                    let g = g.contiguous()?;
                    let op = FusedStep {
                        m: RefCell::new(m),
                        v: RefCell::new(v),
                        c,
                    };
                    var.as_tensor().inplace_op2(&g, &op)?;
                }
                Moments::Device { m, v } => {
                    let g = (g.to_dtype(var.dtype())? * scale)?;
                    *m = ((&*m * c.b1 as f64)? + (&g * (1.0 - c.b1 as f64))?)?;
                    *v = ((&*v * c.b2 as f64)? + (g.sqr()? * (1.0 - c.b2 as f64))?)?;
                    let denom = ((v.sqrt()? * c.inv_sqrt_bc2 as f64)? + c.eps as f64)?;
                    let upd = (m.div(&denom)? * c.step_size as f64)?;
                    let next = ((var.as_tensor() * c.decay as f64)? - upd)?;
                    var.set(&next)?;
                }
            }
        }
        Ok(())
    }

    /// Steps taken and both moments, for checkpoints.
    pub fn state(&self) -> AdamWState {
        let mut m = Vec::with_capacity(self.moments.len());
        let mut v = Vec::with_capacity(self.moments.len());
        for mom in &self.moments {
            match mom {
                Moments::Host { m: a, v: b } => {
                    m.push(a.clone());
                    v.push(b.clone());
                }
                Moments::Device { m: a, v: b } => {
                    let host = |t: &Tensor| {
                        t.flatten_all()
                            .and_then(|t| t.to_dtype(DType::F32))
                            .and_then(|t| t.to_vec1::<f32>())
                            .expect("moments of a live variable can be read back")
                    };
                    m.push(host(a));
                    v.push(host(b));
                }
            }
        }
        AdamWState {
            step: self.step,
            m,
            v,
        }
    }

    /// Restores a state from [`AdamW::state`] (same variables, same order).
    pub fn load_state(&mut self, st: AdamWState) -> Result<()> {
        if st.m.len() != self.vars.len() || st.v.len() != self.vars.len() {
            bail!(
                "AdamW state has {} / {} moments for {} variables",
                st.m.len(),
                st.v.len(),
                self.vars.len()
            );
        }
        for (i, ((var, m), v)) in self.vars.iter().zip(&st.m).zip(&st.v).enumerate() {
            let n = var.elem_count();
            if m.len() != n || v.len() != n {
                bail!(
                    "AdamW state for variable {i} {:?} has {} / {} values, expected {n}",
                    var.shape(),
                    m.len(),
                    v.len()
                );
            }
        }
        let mut moments = Vec::with_capacity(self.vars.len());
        for ((var, m), v) in self.vars.iter().zip(st.m).zip(st.v) {
            moments.push(if is_host(var) {
                Moments::Host { m, v }
            } else {
                let t = |x: Vec<f32>| {
                    Tensor::from_vec(x, var.shape(), var.device())?.to_dtype(var.dtype())
                };
                Moments::Device { m: t(m)?, v: t(v)? }
            });
        }
        self.moments = moments;
        self.step = st.step;
        Ok(())
    }
}

fn is_host(v: &Var) -> bool {
    v.device().is_cpu() && v.dtype() == DType::F32
}

/// PyTorch's `clip_grad_norm_` coefficient.
fn clip_coef(norm: f64, max: f64) -> f64 {
    (max / (norm + 1e-6)).min(1.0)
}

/// The global L2 norm of the gradients of `vars` (those without a gradient count as zero):
/// one read of each gradient, accumulated in f64.
pub fn grad_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut sq = 0f64;
    for var in vars {
        let Some(g) = grads.get(var.as_tensor()) else {
            continue;
        };
        sq += if g.device().is_cpu() && g.dtype() == DType::F32 {
            let g = g.contiguous()?;
            with_f32(&g, "grad_norm", |s| {
                Ok(s.par_chunks(CHUNK)
                    .map(|c| {
                        // Eight f32 lanes so the loop vectorises; f64 across chunks.
                        let mut acc = [0f32; 8];
                        let mut it = c.chunks_exact(8);
                        for x in &mut it {
                            for k in 0..8 {
                                acc[k] += x[k] * x[k];
                            }
                        }
                        let tail: f32 = it.remainder().iter().map(|x| x * x).sum();
                        acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64
                    })
                    .sum::<f64>())
            })?
        } else {
            g.to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?
        };
    }
    Ok(sq.sqrt())
}

/// Scales the gradients of `vars` in `grads` so that their global norm is at most `max`
/// (PyTorch's `clip_grad_norm_`), returning the norm before clipping. This rewrites each
/// gradient (a tensor pass); [`AdamW::set_max_grad_norm`] folds the scaling into the update
/// instead.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max: f64) -> Result<f64> {
    let norm = grad_norm(grads, vars)?;
    let k = clip_coef(norm, max);
    if k < 1.0 {
        for var in vars {
            if let Some(g) = grads.get(var.as_tensor()) {
                let g = (g * k)?;
                grads.insert(var.as_tensor(), g);
            }
        }
    }
    Ok(norm)
}

/// Per-step constants of the update, in f32 as the fused pass uses them.
#[derive(Clone, Copy)]
struct Coefs {
    b1: f32,
    b2: f32,
    eps: f32,
    /// `1 - lr * wd`.
    decay: f32,
    /// `lr / (1 - b1^t)`.
    step_size: f32,
    /// `1 / sqrt(1 - b2^t)`.
    inv_sqrt_bc2: f32,
    /// Gradient clipping factor.
    scale: f32,
}

impl Coefs {
    fn new(c: &AdamWConfig, t: u64, scale: f64) -> Self {
        let t = t.min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        Coefs {
            b1: c.beta1 as f32,
            b2: c.beta2 as f32,
            eps: c.eps as f32,
            decay: (1.0 - c.lr * c.weight_decay) as f32,
            step_size: (c.lr / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            scale: scale as f32,
        }
    }
}

/// The fused update of one f32 parameter from its gradient.
struct FusedStep<'a> {
    m: RefCell<&'a mut Vec<f32>>,
    v: RefCell<&'a mut Vec<f32>>,
    c: Coefs,
}

impl InplaceOp2 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "amdistill-adamw"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (a, b) = match l1.contiguous_offsets() {
            Some(o) => o,
            None => bail!(
                "AdamW: parameter must be contiguous (strides {:?})",
                l1.stride()
            ),
        };
        let p = match s1 {
            CpuStorage::F32(p) => &mut p[a..b],
            _ => bail!("AdamW: fused step needs an f32 parameter"),
        };
        let g = super::kernels::f32_slice(s2, l2, "AdamW gradient")?;
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if g.len() != p.len() || m.len() != p.len() || v.len() != p.len() {
            bail!(
                "AdamW: parameter {}, gradient {}, moments {}",
                p.len(),
                g.len(),
                m.len()
            );
        }
        let c = self.c;
        let (ob1, ob2) = (1.0 - c.b1, 1.0 - c.b2);
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), (m, v))| {
                for i in 0..p.len() {
                    let g = g[i] * c.scale;
                    let mi = c.b1 * m[i] + ob1 * g;
                    let vi = c.b2 * v[i] + ob2 * g * g;
                    m[i] = mi;
                    v[i] = vi;
                    let denom = vi.sqrt() * c.inv_sqrt_bc2 + c.eps;
                    p[i] = p[i] * c.decay - c.step_size * mi / denom;
                }
            });
        Ok(())
    }
}
