//! Fused losses over senone logits `[frames, senones]`: each is one pass per row forward that
//! also leaves the gradient ready, so backward is one scaling pass. Candle's generic graph for
//! the same losses (log-softmax, gather, mean, and their gradients) walks the 2000-wide logits
//! about ten times and calls the scalar `exp` twice per element.
//!
//! On the CPU with f32 logits these are custom ops; elsewhere they fall back to candle's ops
//! with the same meaning. Non-contiguous inputs are copied first.

use std::sync::{Arc, Mutex};

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;

use super::kernels::{all_cpu_f32, f32_slice, fast_exp, with_f32};

/// Rows per rayon task.
const ROWS: usize = 16;

/// Mean cross-entropy of `logits` `[N, S]` against class ids `labels` `[N]` (u32 or i64),
/// like PyTorch's `F.cross_entropy(logits, labels)`; a scalar tensor. Gradient flows to
/// `logits` only.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (n, _) = logits.dims2()?;
    if labels.dims() != [n] {
        bail!(
            "cross_entropy: labels {:?} for logits {:?}",
            labels.shape(),
            logits.shape()
        );
    }
    if !all_cpu_f32(&[logits]) || !labels.device().is_cpu() {
        return candle_nn::loss::cross_entropy(logits, labels);
    }
    let labels = labels.to_dtype(DType::U32)?.contiguous()?;
    logits
        .contiguous()?
        .apply_op2_arc(&labels, Arc::new(Box::new(CrossEntropy::default())))
}

/// `T^2 * KL(softmax(teacher/T) || softmax(student/T))`, averaged over the `N` rows of
/// `[N, S]` logits: PyTorch's
/// `F.kl_div(F.log_softmax(s/T,-1), F.log_softmax(t/T,-1), reduction="batchmean", log_target=True) * T*T`,
/// the soft term of knowledge distillation. A scalar; the teacher is a constant target (no
/// gradient flows to `teacher_logits`).
pub fn kl_div_soft_targets(
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    if student_logits.dims().len() != 2 || student_logits.dims() != teacher_logits.dims() {
        bail!(
            "kl_div_soft_targets: student {:?} and teacher {:?} must both be [N, S]",
            student_logits.shape(),
            teacher_logits.shape()
        );
    }
    if temperature.is_nan() || temperature <= 0.0 {
        bail!("kl_div_soft_targets: temperature must be > 0, got {temperature}");
    }
    let n = student_logits.dim(0)? as f64;
    if !all_cpu_f32(&[student_logits, teacher_logits]) {
        let ls = candle_nn::ops::log_softmax(&(student_logits / temperature)?, D::Minus1)?;
        let lt = candle_nn::ops::log_softmax(&(teacher_logits.detach() / temperature)?, D::Minus1)?;
        let kl = (lt.exp()? * (lt - ls)?)?.sum_all()?;
        return kl.affine(temperature * temperature / n, 0.0);
    }
    student_logits.contiguous()?.apply_op2_arc(
        &teacher_logits.detach().contiguous()?,
        Arc::new(Box::new(GradCachingLoss::new(
            "amdistill-kl-soft-targets",
            move |s: &[f32], t: &[f32], cols| kl_forward(s, t, cols, temperature),
        ))),
    )
}

/// `sum_i w_i KL(p_i || softmax(z_i / T))` over the rows of student logits `z` `[N, S]` and
/// teacher probabilities `p` `[N, S]` (rows summing to 1, at temperature T; a constant), with
/// row weights `w` `[N]` and each row's `sum_j p_ij ln p_ij` given as `neg_entropy` `[N]` (the
/// caller knows it cheaply, e.g. from top-k targets; here it would cost a log per element). A
/// scalar; the gradient flows to `z` only: `w_i (softmax(z_i / T) - p_i) / T`. One pass per row
/// forward, none backward: the soft term of the distillation loss with padding, conditional
/// frames and the `alpha T^2 / frames` scale all in `w`.
pub fn weighted_soft_kl(
    student_logits: &Tensor,
    teacher_probs: &Tensor,
    weights: &[f64],
    neg_entropy: &[f64],
    temperature: f64,
) -> Result<Tensor> {
    let (n, _) = student_logits.dims2()?;
    if teacher_probs.dims() != student_logits.dims() || weights.len() != n || neg_entropy.len() != n
    {
        bail!(
            "weighted_soft_kl: student {:?}, teacher {:?}, {} weights and {} entropies",
            student_logits.shape(),
            teacher_probs.shape(),
            weights.len(),
            neg_entropy.len()
        );
    }
    if !(temperature > 0.0 && temperature.is_finite()) {
        bail!("weighted_soft_kl: temperature must be > 0, got {temperature}");
    }
    if !all_cpu_f32(&[student_logits, teacher_probs]) {
        let d = student_logits.device();
        let ls = candle_nn::ops::log_softmax(&(student_logits / temperature)?, D::Minus1)?;
        let cross = (teacher_probs.detach() * ls)?.sum(D::Minus1)?;
        let kl = (Tensor::from_slice(neg_entropy, n, d)?.to_dtype(cross.dtype())? - cross)?;
        let w = Tensor::from_slice(weights, n, d)?.to_dtype(kl.dtype())?;
        return (kl * w)?.sum_all();
    }
    let weights: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    let neg_entropy: Vec<f32> = neg_entropy.iter().map(|&h| h as f32).collect();
    student_logits.contiguous()?.apply_op2_arc(
        &teacher_probs.detach().contiguous()?,
        Arc::new(Box::new(GradCachingLoss::new(
            "amdistill-weighted-soft-kl",
            move |z: &[f32], p: &[f32], cols| {
                weighted_kl_forward(z, p, cols, temperature, &weights, &neg_entropy)
            },
        ))),
    )
}

/// [`weighted_soft_kl`]'s forward pass: the loss and its gradient with respect to `z`.
fn weighted_kl_forward(
    z: &[f32],
    p: &[f32],
    cols: usize,
    temperature: f64,
    weights: &[f32],
    neg_entropy: &[f32],
) -> (f64, Vec<f32>) {
    let scale = (1.0 / temperature) as f32;
    let mut g = vec![0f32; z.len()];
    let loss: f64 = g
        .par_chunks_mut(cols)
        .zip(z.par_chunks(cols).zip(p.par_chunks(cols)))
        .zip(weights.par_iter().zip(neg_entropy.par_iter()))
        .with_min_len(ROWS)
        .map(|((g, (z, p)), (&w, &h))| {
            if w == 0.0 {
                return 0.0; // padding or a frame kept hard: no term, no gradient
            }
            let (mx, lse) = row_lse(z, scale, g);
            // -sum_j p_j ln softmax(z/T)_j = ln Z - sum_j p_j z_j / T, as sum_j p_j = 1.
            let cross = mx + lse - scale * row_dot(p, z);
            let inv = (-lse).exp();
            let k = w * scale;
            for (g, &p) in g.iter_mut().zip(p) {
                *g = k * (*g * inv - p);
            }
            (w * (h + cross)) as f64
        })
        .sum();
    (loss, g)
}

/// A scalar loss of two f32 `[N, S]` inputs (the first with a gradient, the second a constant)
/// whose forward pass `f(a, b, S) -> (loss, d loss / d a)` leaves the gradient for backward,
/// so backward is one scaling pass (a second backward over the same graph recomputes it).
struct GradCachingLoss<F> {
    name: &'static str,
    f: F,
    grad: Mutex<Option<Vec<f32>>>,
}

impl<F> GradCachingLoss<F> {
    fn new(name: &'static str, f: F) -> Self {
        GradCachingLoss {
            name,
            f,
            grad: Mutex::new(None),
        }
    }
}

impl<F> CustomOp2 for GradCachingLoss<F>
where
    F: Fn(&[f32], &[f32], usize) -> (f64, Vec<f32>) + Send + Sync,
{
    fn name(&self) -> &'static str {
        self.name
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, cols) = l1.shape().dims2()?;
        let a = f32_slice(s1, l1, self.name)?;
        let b = f32_slice(s2, l2, self.name)?;
        let (loss, g) = (self.f)(a, b, cols);
        *self.grad.lock().unwrap() = Some(g);
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let cached = self.grad.lock().unwrap().take();
        let g = match cached {
            Some(g) => g,
            None => with_f32(a, self.name, |av| {
                with_f32(b, self.name, |bv| Ok((self.f)(av, bv, a.dim(1)?).1))
            })?,
        };
        Ok((Some(scaled(g, a, grad_res)?), None))
    }
}

/// `log_softmax` over the last dimension of a `[N, S]` tensor, with its gradient
/// (`dx = dy - softmax(x) * sum(dy)` per row).
pub fn log_softmax_last(xs: &Tensor) -> Result<Tensor> {
    if xs.dims().len() != 2 || !all_cpu_f32(&[xs]) {
        return candle_nn::ops::log_softmax(xs, D::Minus1);
    }
    xs.contiguous()?
        .apply_op1_arc(Arc::new(Box::new(LogSoftmax)))
}

/// Lanes of the row reductions: independent accumulators so that the loops vectorise (a
/// single f32 accumulator is a serial chain, f32 addition not being associative).
const LANES: usize = 16;

/// The maximum of `x` (`-inf` when empty).
#[inline]
fn row_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for k in 0..LANES {
            acc[k] = acc[k].max(c[k]);
        }
    }
    let m = it
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    acc.iter().fold(m, |a, &v| a.max(v))
}

/// `sum_j x_j`.
#[inline]
fn row_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for k in 0..LANES {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + it.remainder().iter().sum::<f32>()
}

/// `sum_j a_j * b_j`.
#[inline]
fn row_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `(max, log sum exp(x - max))` of one row of `x * scale`, with `exp(x * scale - max)`
/// written to `e`.
#[inline]
fn row_lse(x: &[f32], scale: f32, e: &mut [f32]) -> (f32, f32) {
    let mx = row_max(x) * scale;
    let mut acc = [0f32; LANES];
    let mut tail = 0f32;
    let mut ce = e.chunks_exact_mut(LANES);
    let mut cx = x.chunks_exact(LANES);
    for (e, x) in (&mut ce).zip(&mut cx) {
        for k in 0..LANES {
            let t = fast_exp(x[k] * scale - mx);
            e[k] = t;
            acc[k] += t;
        }
    }
    for (e, &x) in ce.into_remainder().iter_mut().zip(cx.remainder()) {
        *e = fast_exp(x * scale - mx);
        tail += *e;
    }
    (mx, (acc.iter().sum::<f32>() + tail).ln())
}

/// `sum_i w_i CE(labels_i, softmax(logits_i))` over the rows of `logits` `[N, S]` with row
/// weights `weights` `[N]` (the hard term of the distillation loss: `1 - alpha`, or 1 where a
/// conditional loss keeps the frame hard, over the frame count). A scalar; gradient to
/// `logits` only.
pub fn weighted_cross_entropy(logits: &Tensor, labels: &Tensor, weights: &[f64]) -> Result<Tensor> {
    let (n, _) = logits.dims2()?;
    if labels.dims() != [n] || weights.len() != n {
        bail!(
            "weighted_cross_entropy: labels {:?} and {} weights for logits {:?}",
            labels.shape(),
            weights.len(),
            logits.shape()
        );
    }
    if !all_cpu_f32(&[logits]) || !labels.device().is_cpu() {
        let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        let nll = logp
            .gather(&labels.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .neg()?;
        let w = Tensor::from_slice(weights, n, logits.device())?.to_dtype(nll.dtype())?;
        return (nll * w)?.sum_all();
    }
    let labels = labels.to_dtype(DType::U32)?.contiguous()?;
    logits.contiguous()?.apply_op2_arc(
        &labels,
        Arc::new(Box::new(CrossEntropy {
            weights: Some(weights.iter().map(|&w| w as f32).collect()),
            grad: Mutex::new(None),
        })),
    )
}

#[derive(Default)]
struct CrossEntropy {
    /// Row weights; `None`: `1 / N` each (the mean).
    weights: Option<Vec<f32>>,
    /// `w_i (softmax - onehot)`, left by the forward pass for backward.
    grad: Mutex<Option<Vec<f32>>>,
}

fn ce_forward(
    x: &[f32],
    labels: &[u32],
    s: usize,
    weights: Option<&[f32]>,
) -> Result<(f64, Vec<f32>)> {
    let n = labels.len();
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= s) {
        bail!("cross_entropy: label {bad} out of range for {s} classes");
    }
    let inv_n = 1.0 / n as f32;
    let weight = |i: usize| weights.map_or(inv_n, |w| w[i]);
    let mut g = vec![0f32; x.len()];
    let loss: f64 = g
        .par_chunks_mut(s)
        .zip(x.par_chunks(s).zip(labels.par_iter()))
        .enumerate()
        .with_min_len(ROWS)
        .map(|(i, (g, (x, &l)))| {
            let w = weight(i);
            if w == 0.0 {
                return 0.0;
            }
            let (mx, lse) = row_lse(x, 1.0, g);
            let inv = (-lse).exp() * w;
            g.iter_mut().for_each(|v| *v *= inv);
            g[l as usize] -= w;
            (w * (mx + lse - x[l as usize])) as f64
        })
        .sum();
    Ok((loss, g))
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "amdistill-cross-entropy"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, s) = l1.shape().dims2()?;
        let x = f32_slice(s1, l1, "cross_entropy logits")?;
        let labels = match (s2, l2.contiguous_offsets()) {
            (CpuStorage::U32(v), Some((a, b))) => &v[a..b],
            _ => bail!("cross_entropy: labels must be contiguous u32"),
        };
        let (loss, g) = ce_forward(x, labels, s, self.weights.as_deref())?;
        *self.grad.lock().unwrap() = Some(g);
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }
    fn bwd(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let cached = self.grad.lock().unwrap().take();
        let g = match cached {
            Some(g) => g,
            // A second backward over the same graph: recompute.
            None => {
                let l = labels.to_vec1::<u32>()?;
                with_f32(logits, "cross_entropy logits", |x| {
                    Ok(ce_forward(x, &l, logits.dim(1)?, self.weights.as_deref())?.1)
                })?
            }
        };
        Ok((Some(scaled(g, logits, grad_res)?), None))
    }
}

/// `g` as a tensor shaped like `like`, times the scalar upstream gradient.
fn scaled(mut g: Vec<f32>, like: &Tensor, grad_res: &Tensor) -> Result<Tensor> {
    let k = grad_res.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if k != 1.0 {
        g.par_chunks_mut(super::kernels::CHUNK)
            .for_each(|c| c.iter_mut().for_each(|v| *v *= k));
    }
    Tensor::from_vec(g, like.shape(), like.device())
}

fn kl_forward(s: &[f32], t: &[f32], cols: usize, temp: f64) -> (f64, Vec<f32>) {
    let n = s.len() / cols;
    let scale = (1.0 / temp) as f32;
    let gk = (temp / n as f64) as f32;
    let mut g = vec![0f32; s.len()];
    let kl: f64 = g
        .par_chunks_mut(cols)
        .zip(s.par_chunks(cols).zip(t.par_chunks(cols)))
        .with_min_len(ROWS)
        .map_init(
            || vec![0f32; cols],
            |pt, (g, (s, t))| {
                let (ms, lzs) = row_lse(s, scale, g);
                let (mt, lzt) = row_lse(t, scale, pt);
                let is = (-lzs).exp();
                let it = (-lzt).exp();
                // KL = sum p_t (t - s)/T - (mt + lzt) + (ms + lzs), since sum p_t = 1.
                // sum_j p_j (t_j - s_j) = it * (sum_j e_j t_j - sum_j e_j s_j).
                let dot = it * (row_dot(pt, t) - row_dot(pt, s));
                for j in 0..cols {
                    g[j] = gk * (g[j] * is - pt[j] * it);
                }
                (dot * scale - (mt + lzt) + (ms + lzs)) as f64
            },
        )
        .sum();
    (kl * temp * temp / n as f64, g)
}

struct LogSoftmax;

impl CustomOp1 for LogSoftmax {
    fn name(&self) -> &'static str {
        "amdistill-log-softmax"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, cols) = l1.shape().dims2()?;
        let x = f32_slice(s1, l1, "log_softmax_last")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(cols)
            .zip(x.par_chunks(cols))
            .with_min_len(ROWS)
            .for_each(|(y, x)| {
                let (mx, lse) = row_lse(x, 1.0, y);
                let off = mx + lse;
                y.iter_mut().zip(x).for_each(|(y, &x)| *y = x - off);
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.detach().contiguous()?;
        let cols = y.dim(1)?;
        let dx = with_f32(y, "log_softmax output", |yv| {
            with_f32(&dy, "log_softmax grad", |d| {
                let mut dx = vec![0f32; d.len()];
                dx.par_chunks_mut(cols)
                    .zip(d.par_chunks(cols).zip(yv.par_chunks(cols)))
                    .with_min_len(ROWS)
                    .for_each(|(dx, (d, y))| {
                        let s = row_sum(d);
                        for j in 0..cols {
                            dx[j] = d[j] - fast_exp(y[j]) * s;
                        }
                    });
                Ok(dx)
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, y.shape(), y.device())?))
    }
}
