//! Training losses: cross-entropy with label smoothing, and knowledge distillation (DOMAIN.md §4).
//!
//! Shapes: `N` frames (rows), `S` senones. Logits are `[N, S]`, labels `[N]` u32, teacher
//! probabilities `[N, S]`. Every loss is a mean over the frames that carry a label.
//!
//! Padding: a label equal to [`PAD_LABEL`] (`u32::MAX`, as `train::data` pads past an
//! utterance's end) marks a frame that contributes nothing. The losses mask such rows (weight 0,
//! and they are left out of the mean's denominator), so callers may either drop padded rows
//! first (the trainer does, which saves the compute) or pass them through.
//!
//! Untranscribed frames: a label equal to [`UNLABELLED`] marks a real frame without an
//! alignment. Only [`kd_loss`] takes them: they get the soft term alone, at full weight
//! (`T² · KL`), and count in the mean's denominator; the other losses refuse them.
//!
//! The losses are computed in f32 (f64 when the logits are f64, for gradient checks), whatever
//! the model's dtype. Labels are read to the host once per call to build the mask and to check
//! them against `S` (a label out of range would make `gather` read out of bounds on a GPU).

use candle_core::{DType, Device, Result, Tensor, D};

use crate::labels::soft_targets::UttTargets;
use crate::train::data::{PAD_LABEL, UNLABELLED};

/// Per-frame weights `[N]` (1 for labelled frames, 0 for padding and untranscribed frames),
/// labels with those replaced by 0 (safe to gather), which rows are untranscribed, and the
/// number of frames the mean is over (labelled and untranscribed).
struct Valid {
    mask: Tensor,
    labels: Tensor,
    unlabelled: Vec<bool>,
    count: usize,
}

/// Checks `labels` `[n]` against `s` senones; [`UNLABELLED`] is an error unless
/// `unlabelled_ok`.
fn valid_rows(
    labels: &Tensor,
    n: usize,
    s: usize,
    dtype: DType,
    device: &Device,
    unlabelled_ok: bool,
) -> Result<Valid> {
    if labels.dims() != [n] {
        candle_core::bail!(
            "labels have shape {:?}, the logits {n} rows: expected [{n}]",
            labels.dims()
        );
    }
    let host: Vec<u32> = labels.to_dtype(DType::U32)?.to_vec1()?;
    let mut mask = Vec::with_capacity(n);
    let mut safe = Vec::with_capacity(n);
    let mut unlabelled = vec![false; n];
    let mut count = 0;
    for (i, &y) in host.iter().enumerate() {
        if y == PAD_LABEL {
            mask.push(0f32);
            safe.push(0u32);
        } else if y == UNLABELLED {
            if !unlabelled_ok {
                candle_core::bail!(
                    "row {i} is an untranscribed frame: only the KD loss can train on it"
                );
            }
            mask.push(0f32);
            safe.push(0u32);
            unlabelled[i] = true;
            count += 1;
        } else if (y as usize) < s {
            mask.push(1.0);
            safe.push(y);
            count += 1;
        } else {
            candle_core::bail!("label {y} at row {i} is not a senone (the model has {s})");
        }
    }
    Ok(Valid {
        mask: Tensor::from_vec(mask, n, device)?.to_dtype(dtype)?,
        labels: Tensor::from_vec(safe, n, device)?,
        unlabelled,
        count,
    })
}

/// The dtype the losses compute in.
fn loss_dtype(logits: &Tensor) -> DType {
    if logits.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

fn rows_and_senones(logits: &Tensor, what: &str) -> Result<(usize, usize)> {
    match logits.dims() {
        &[n, s] => Ok((n, s)),
        d => candle_core::bail!("{what}: logits must be [frames, senones], got {d:?}"),
    }
}

/// Mean over labelled frames of a per-frame `[N]` loss (0 when no frame is labelled).
fn masked_mean(per_frame: &Tensor, v: &Valid) -> Result<Tensor> {
    (per_frame * &v.mask)?
        .sum_all()?
        .affine(1.0 / v.count.max(1) as f64, 0.0)
}

/// `-log p(y)` per frame `[N]` from log-probabilities `[N, S]`.
fn nll_rows(logp: &Tensor, labels: &Tensor) -> Result<Tensor> {
    logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
}

/// Cross-entropy of `logits` `[N, S]` against `labels` `[N]` (u32), mean over the labelled
/// frames, with PyTorch's label smoothing: per frame `(1 - eps) · (-log p(y)) + eps · mean_j
/// (-log p(j))`. Returns a scalar.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, label_smoothing: f64) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&label_smoothing) {
        candle_core::bail!("label smoothing {label_smoothing} must be in [0, 1]");
    }
    let (n, s) = rows_and_senones(logits, "cross_entropy")?;
    let dt = loss_dtype(logits);
    let v = valid_rows(labels, n, s, dt, logits.device(), false)?;
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(dt)?, D::Minus1)?;
    let mut per = nll_rows(&logp, &v.labels)?;
    if label_smoothing > 0.0 {
        let smooth = logp.mean(D::Minus1)?.neg()?;
        per = (per.affine(1.0 - label_smoothing, 0.0)? + smooth.affine(label_smoothing, 0.0)?)?;
    }
    masked_mean(&per, &v)
}

/// Settings of the distillation loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KdConfig {
    /// Softmax temperature T for teacher and student in the soft term (> 0).
    pub temperature: f64,
    /// Weight of the soft term, in [0, 1]; the hard term gets `1 - alpha`.
    pub alpha: f64,
    /// Conditional teacher-student (Meng et al. 2019): the soft term only on frames where the
    /// teacher's argmax equals the label; the other frames get the hard loss with weight 1.
    pub conditional: bool,
}

/// The teacher's side of a batch: dense probabilities `[N, S]` at the loss's temperature,
/// detached from any graph, in f32.
#[derive(Debug, Clone)]
pub struct SoftBatch {
    probs: Tensor,
    /// `sum_j p_ij ln p_ij` per row `[N]` (the KL's teacher half, a constant).
    neg_entropy: Vec<f64>,
}

impl SoftBatch {
    /// Wraps teacher probabilities `[N, S]` (at temperature T; rows summing to 1).
    pub fn from_probs(probs: Tensor) -> Result<Self> {
        let probs = probs.detach();
        let neg_entropy = (&probs * probs.clamp(1e-30, 1.0)?.log()?)?
            .sum(D::Minus1)?
            .to_dtype(DType::F64)?
            .to_vec1()?;
        Ok(SoftBatch { probs, neg_entropy })
    }

    /// Teacher probabilities `softmax(logits / t)` from teacher logits `[N, S]` (online KD).
    pub fn from_logits(logits: &Tensor, t: f64) -> Result<Self> {
        if !(t > 0.0 && t.is_finite()) {
            candle_core::bail!("temperature {t} must be positive");
        }
        rows_and_senones(logits, "SoftBatch::from_logits")?;
        let z = logits
            .detach()
            .to_dtype(loss_dtype(logits))?
            .affine(1.0 / t, 0.0)?;
        let logp = candle_nn::ops::log_softmax(&z, D::Minus1)?;
        let probs = logp.exp()?;
        let neg_entropy = (&probs * &logp)?
            .sum(D::Minus1)?
            .to_dtype(DType::F64)?
            .to_vec1()?;
        Ok(SoftBatch { probs, neg_entropy })
    }

    /// Dense teacher probabilities at temperature `t` for a batch of spans: each `(targets,
    /// start, len)` gives frames `[start, start + len)` of one utterance; rows follow the spans'
    /// order. The dropped mass is spread evenly over the senones that were not kept (see
    /// [`soft_batch_from_topk`]).
    pub fn from_spans(
        spans: &[(&UttTargets, usize, usize)],
        t: f32,
        num_senones: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut dense = Vec::new();
        let mut neg_entropy = Vec::new();
        let mut n = 0;
        for &(targets, start, len) in spans {
            if targets.num_senones != num_senones {
                candle_core::bail!(
                    "soft targets over {} senones, the batch over {num_senones}",
                    targets.num_senones
                );
            }
            if !matches!(start.checked_add(len), Some(e) if e <= targets.frames) {
                candle_core::bail!(
                    "span {start}+{len} outside an utterance of {} frames",
                    targets.frames
                );
            }
            let (p, r) = targets.probs_at(t, start, len);
            let k = targets.k;
            let ids = &targets.ids[start * k..(start + len) * k];
            dense.extend(soft_batch_from_topk(ids, &p, &r, len, k, num_senones));
            neg_entropy.extend(topk_neg_entropy(&p, &r, k, num_senones));
            n += len;
        }
        Ok(SoftBatch {
            probs: Tensor::from_vec(dense, (n, num_senones), device)?,
            neg_entropy,
        })
    }

    /// The probabilities `[N, S]`.
    pub fn probs(&self) -> &Tensor {
        &self.probs
    }
}

/// Dense `[n, s]` probabilities from top-k ones: `ids` and `probs` are `[n, k]`, `rest` `[n]`
/// is the mass of the other `s - k` senones, spread evenly over them (each gets
/// `rest / (s - k)`; nothing when k = s). Ids within a row must be distinct and below `s`.
pub fn soft_batch_from_topk(
    ids: &[u16],
    probs: &[f32],
    rest: &[f32],
    n: usize,
    k: usize,
    s: usize,
) -> Vec<f32> {
    assert!(k <= s, "top-{k} of {s} senones");
    assert!(
        ids.len() == n * k && probs.len() == n * k && rest.len() == n,
        "soft_batch_from_topk: {} ids, {} probs, {} rest values for {n} frames of top-{k}",
        ids.len(),
        probs.len(),
        rest.len()
    );
    let mut out = vec![0f32; n * s];
    for i in 0..n {
        let row = &mut out[i * s..(i + 1) * s];
        if s > k {
            row.fill(rest[i] / (s - k) as f32);
        }
        for j in 0..k {
            let id = ids[i * k + j] as usize;
            assert!(id < s, "senone id {id} >= {s}");
            row[id] = probs[i * k + j];
        }
    }
    out
}

/// `sum_j p_j ln p_j` of each row of top-k probabilities `probs` `[n, k]` whose `rest` `[n]`
/// is spread evenly over the other `s - k` senones (as [`soft_batch_from_topk`] does): k + 1
/// logarithms per row instead of `s`.
fn topk_neg_entropy<'a>(
    probs: &'a [f32],
    rest: &'a [f32],
    k: usize,
    s: usize,
) -> impl Iterator<Item = f64> + 'a {
    let xlnx = |x: f64| if x > 0.0 { x * x.ln() } else { 0.0 };
    probs.chunks_exact(k.max(1)).zip(rest).map(move |(p, &r)| {
        let top: f64 = p.iter().map(|&v| xlnx(v as f64)).sum();
        let others = if s > k {
            (s - k) as f64 * xlnx(r as f64 / (s - k) as f64)
        } else {
            0.0
        };
        top + others
    })
}

/// The distillation loss and its parts (for logging); `total = soft + hard`.
#[derive(Debug, Clone)]
pub struct KdLoss {
    /// The scalar to minimise.
    pub total: Tensor,
    /// Mean over labelled frames of the soft term's contribution, `alpha · T² · KL` (0 on
    /// frames a conditional loss keeps hard).
    pub soft: f64,
    /// Mean over labelled frames of the hard term's contribution, `(1 - alpha) · CE` (`CE` on
    /// frames a conditional loss keeps hard).
    pub hard: f64,
    /// Frames that got the soft term (untranscribed ones included).
    pub soft_frames: usize,
    /// Frames the means are over: labelled and untranscribed.
    pub frames: usize,
}

/// Knowledge distillation (Hinton et al. 2015), per labelled frame
/// `alpha · T² · KL(p_t^T ‖ p_s^T) + (1 - alpha) · CE(y, p_s)`, mean over labelled frames.
/// `student_logits` is `[N, S]`, `teacher` holds `p_t^T` `[N, S]`, `labels` `[N]`. With
/// `cfg.conditional` the soft term applies only where `argmax p_t = y`; elsewhere the frame's
/// loss is `CE(y, p_s)` alone. A frame labelled [`UNLABELLED`] gets `T² · KL(p_t^T ‖ p_s^T)`
/// alone (conditional or not: there is no label to check the teacher against).
pub fn kd_loss(
    student_logits: &Tensor,
    teacher: &SoftBatch,
    labels: &Tensor,
    cfg: &KdConfig,
) -> Result<KdLoss> {
    let t = cfg.temperature;
    if !(t > 0.0 && t.is_finite()) {
        candle_core::bail!("temperature {t} must be positive");
    }
    if !(0.0..=1.0).contains(&cfg.alpha) {
        candle_core::bail!("alpha {} must be in [0, 1]", cfg.alpha);
    }
    let (n, s) = rows_and_senones(student_logits, "kd_loss")?;
    if teacher.probs.dims() != [n, s] {
        candle_core::bail!(
            "teacher probabilities have shape {:?}, the student logits [{n}, {s}]",
            teacher.probs.dims()
        );
    }
    let dt = loss_dtype(student_logits);
    let device = student_logits.device();
    let v = valid_rows(labels, n, s, dt, device, true)?;
    let z = student_logits.to_dtype(dt)?;
    let pt = teacher.probs.to_dtype(dt)?;

    // Which labelled frames get the soft term (1) and which not (0, padding included).
    let mask: Vec<f64> = v.mask.to_dtype(DType::F64)?.to_vec1()?;
    let soft_w: Vec<f64> = if cfg.conditional {
        let agree: Vec<u8> = pt.argmax(D::Minus1)?.eq(&v.labels)?.to_vec1()?;
        mask.iter()
            .zip(&agree)
            .map(|(&m, &a)| m * a as f64)
            .collect()
    } else {
        mask.clone()
    };
    let untranscribed = v.unlabelled.iter().filter(|&&u| u).count();
    let soft_frames = soft_w.iter().filter(|&&w| w > 0.0).count() + untranscribed;

    // Soft term: mean over frames of alpha T^2 KL(p_t || p_s^T) (T^2 KL on untranscribed
    // frames, which have nothing else to learn from), one fused pass.
    let k = cfg.alpha * t * t / v.count.max(1) as f64;
    let k_untranscribed = t * t / v.count.max(1) as f64;
    let row_w: Vec<f64> = soft_w
        .iter()
        .zip(&v.unlabelled)
        .map(|(&w, &u)| if u { k_untranscribed } else { w * k })
        .collect();
    let soft =
        crate::nn::weighted_soft_kl(&z, &pt, &row_w, &teacher.neg_entropy, t)?.to_dtype(dt)?;
    // Hard term: -log p_s(y) at T = 1, weight 1 - alpha on soft frames, 1 on the others
    // (0 on padding), also fused.
    let inv = 1.0 / v.count.max(1) as f64;
    let hard_w: Vec<f64> = mask
        .iter()
        .zip(&soft_w)
        .map(|(&m, &w)| (m - cfg.alpha * w) * inv)
        .collect();
    let hard = crate::nn::weighted_cross_entropy(&z, &v.labels, &hard_w)?.to_dtype(dt)?;
    let total = (&soft + &hard)?;
    let scalar = |x: &Tensor| x.to_dtype(DType::F64)?.to_scalar::<f64>();
    Ok(KdLoss {
        soft: scalar(&soft)?,
        hard: scalar(&hard)?,
        total,
        soft_frames,
        frames: v.count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    // The hand-worked example: 2 frames, 3 senones.
    //   student logits  z0 = [0, ln 2, ln 3]  -> p_s0 = [1/6, 1/3, 1/2]
    //                   z1 = [ln 4, 0, 0]     -> p_s1 = [2/3, 1/6, 1/6]
    //   labels          y  = [2, 0]
    //   teacher logits  t0 = [ln 3, ln 2, 0]  -> p_t0 = [1/2, 1/3, 1/6]  (argmax 0 != y0: disagrees)
    //                   t1 = z1               -> p_t1 = p_s1            (argmax 0 == y1: agrees)
    // CE: (-ln 1/2 - ln 2/3) / 2 = (ln 2 + ln 1.5) / 2 = ln 3 / 2 = 0.549306.
    // Smoothing 0.1: frame 0: -log p = [ln 6, ln 3, ln 2], mean 2 ln 6 / 3 = 1.194506,
    //   0.9 ln 2 + 0.1 * 1.194506 = 0.743283; frame 1: -log p = [ln 1.5, ln 6, ln 6],
    //   mean 1.329661, 0.9 ln 1.5 + 0.1 * 1.329661 = 0.497885; mean 0.620584.
    // KL at T=1: frame 0: 1/2 ln 3 + 1/3 ln 1 + 1/6 ln(1/3) = ln 3 / 3 = 0.366204; frame 1: 0.
    // KL at T=2: p_t0 = [√3, √2, 1] / Z, p_s0 = [1, √2, √3] / Z with Z = √3 + √2 + 1 = 4.146264;
    //   KL0 = (√3 - 1) / Z * ln √3 = 0.096984; frame 1: 0.
    fn example() -> (Tensor, Tensor, Tensor) {
        let l = |x: f64| x.ln();
        let d = Device::Cpu;
        let z = Tensor::new(&[[0.0, l(2.0), l(3.0)], [l(4.0), 0.0, 0.0]], &d).unwrap();
        let t = Tensor::new(&[[l(3.0), l(2.0), 0.0], [l(4.0), 0.0, 0.0]], &d).unwrap();
        let y = Tensor::new(&[2u32, 0], &d).unwrap();
        (z, t, y)
    }

    fn scalar(x: &Tensor) -> f64 {
        x.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    fn kd(
        z: &Tensor,
        t: &Tensor,
        y: &Tensor,
        temperature: f64,
        alpha: f64,
        conditional: bool,
    ) -> KdLoss {
        let soft = SoftBatch::from_logits(t, temperature).unwrap();
        let cfg = KdConfig {
            temperature,
            alpha,
            conditional,
        };
        kd_loss(z, &soft, y, &cfg).unwrap()
    }

    const LN3: f64 = 1.098_612_288_668_109_8;

    #[test]
    fn cross_entropy_matches_hand_values() {
        let (z, _, y) = example();
        assert!((scalar(&cross_entropy(&z, &y, 0.0).unwrap()) - LN3 / 2.0).abs() < 1e-12);
        let smoothed = scalar(&cross_entropy(&z, &y, 0.1).unwrap());
        assert!(
            (smoothed - 0.620_583_912_984_322_4).abs() < 1e-12,
            "{smoothed}"
        );
        // f32 logits give the same within f32 precision.
        let z32 = z.to_dtype(DType::F32).unwrap();
        assert!((scalar(&cross_entropy(&z32, &y, 0.1).unwrap()) - 0.620_583_9).abs() < 1e-6);
    }

    #[test]
    fn kd_matches_hand_values_at_t1_and_t2() {
        let (z, t, y) = example();
        let ce = LN3 / 2.0;
        let kl1 = LN3 / 3.0 / 2.0; // mean KL over the two frames at T = 1
        let zz = 3f64.sqrt() + 2f64.sqrt() + 1.0;
        let kl2 = (3f64.sqrt() - 1.0) / zz * LN3 / 2.0 / 2.0; // mean KL at T = 2
        let cases = [
            (1.0, 0.0, ce),
            (1.0, 0.5, 0.5 * kl1 + 0.5 * ce),
            (1.0, 1.0, kl1),
            (2.0, 0.0, ce),
            (2.0, 0.5, 0.5 * 4.0 * kl2 + 0.5 * ce),
            (2.0, 1.0, 4.0 * kl2),
        ];
        for (temp, alpha, want) in cases {
            let l = kd(&z, &t, &y, temp, alpha, false);
            let got = scalar(&l.total);
            assert!(
                (got - want).abs() < 1e-12,
                "T={temp} alpha={alpha}: {got} vs {want}"
            );
            assert!((l.soft + l.hard - got).abs() < 1e-12);
            assert!((l.hard - (1.0 - alpha) * ce).abs() < 1e-12);
            assert_eq!((l.soft_frames, l.frames), (2, 2));
        }
        // The T = 2, alpha = 0.5 figure worked out in the comment above.
        assert!(
            (scalar(&kd(&z, &t, &y, 2.0, 0.5, false).total) - 0.371_636_759_333_101_4).abs()
                < 1e-12
        );
    }

    #[test]
    fn conditional_kd_keeps_disagreeing_frames_hard() {
        let (z, t, y) = example();
        // Frame 0 (teacher wrong): CE0 = ln 2 with weight 1. Frame 1 (teacher right):
        // alpha T² KL1 + (1 - alpha) CE1 = 0 + 0.5 ln 1.5. Mean 0.447940.
        let l = kd(&z, &t, &y, 1.0, 0.5, true);
        let want = (2f64.ln() + 0.5 * 1.5f64.ln()) / 2.0;
        assert!(
            (scalar(&l.total) - want).abs() < 1e-12,
            "{}",
            scalar(&l.total)
        );
        assert_eq!(l.soft_frames, 1);
        assert!(l.soft.abs() < 1e-12, "KL1 is 0");
        // alpha = 1 still learns frame 0 from its label.
        let l = kd(&z, &t, &y, 2.0, 1.0, true);
        assert!((scalar(&l.total) - 2f64.ln() / 2.0).abs() < 1e-12);
        // Unconditional alpha = 1 has no hard term at all.
        assert!(kd(&z, &t, &y, 2.0, 1.0, false).hard.abs() < 1e-15);
    }

    #[test]
    fn untranscribed_rows_learn_from_the_teacher_alone() {
        let (z, t, _) = example();
        let d = Device::Cpu;
        // Frame 0 untranscribed: T² KL0 whatever alpha; frame 1 labelled 0 as before:
        // alpha T² KL1 + (1 - alpha) CE1 = (1 - alpha) ln 1.5 (KL1 = 0). Mean over both.
        let y = Tensor::new(&[UNLABELLED, 0], &d).unwrap();
        let kl0_t1 = LN3 / 3.0;
        let zz = 3f64.sqrt() + 2f64.sqrt() + 1.0;
        let kl0_t2 = (3f64.sqrt() - 1.0) / zz * LN3 / 2.0;
        let ce1 = 1.5f64.ln();
        let cases = [
            (1.0, 0.5, (kl0_t1 + 0.5 * ce1) / 2.0),
            (1.0, 0.0, (kl0_t1 + ce1) / 2.0),
            (2.0, 0.5, (4.0 * kl0_t2 + 0.5 * ce1) / 2.0),
            (2.0, 1.0, 4.0 * kl0_t2 / 2.0),
        ];
        for (temp, alpha, want) in cases {
            for cond in [false, true] {
                let l = kd(&z, &t, &y, temp, alpha, cond);
                let got = scalar(&l.total);
                assert!(
                    (got - want).abs() < 1e-12,
                    "T={temp} alpha={alpha} conditional={cond}: {got} vs {want}"
                );
                assert!((l.hard - (1.0 - alpha) * ce1 / 2.0).abs() < 1e-12);
                assert_eq!(l.frames, 2);
            }
        }
        // The untranscribed row gets a gradient (the teacher pulls it), not a label's.
        let v = Var::from_tensor(&z).unwrap();
        let soft = SoftBatch::from_logits(&t, 1.0).unwrap();
        let cfg = KdConfig {
            temperature: 1.0,
            alpha: 0.0,
            conditional: false,
        };
        let g = kd_loss(v.as_tensor(), &soft, &y, &cfg)
            .unwrap()
            .total
            .backward()
            .unwrap();
        let g: Vec<Vec<f64>> = g.get(v.as_tensor()).unwrap().to_vec2().unwrap();
        // d/dz of KL(p_t || softmax z) / 2 = (p_s - p_t) / 2.
        let want = [(1.0 / 6.0 - 0.5) / 2.0, 0.0, (0.5 - 1.0 / 6.0) / 2.0];
        for (a, b) in g[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{:?}", g[0]);
        }
        // The other losses need labels.
        let e = cross_entropy(&z, &y, 0.0).unwrap_err();
        assert!(e.to_string().contains("untranscribed"), "{e}");
    }

    #[test]
    fn padded_rows_contribute_nothing() {
        let (z, t, y) = example();
        let d = Device::Cpu;
        // A padded middle row with extreme logits and a teacher that disagrees with everything.
        let junk = Tensor::new(&[[50.0f64, -50.0, 3.0]], &d).unwrap();
        let zp = Tensor::cat(
            &[
                &z.narrow(0, 0, 1).unwrap(),
                &junk,
                &z.narrow(0, 1, 1).unwrap(),
            ],
            0,
        )
        .unwrap();
        let tp = Tensor::cat(
            &[
                &t.narrow(0, 0, 1).unwrap(),
                &junk.neg().unwrap(),
                &t.narrow(0, 1, 1).unwrap(),
            ],
            0,
        )
        .unwrap();
        let yp = Tensor::new(&[2u32, PAD_LABEL, 0], &d).unwrap();
        for eps in [0.0, 0.1] {
            let a = scalar(&cross_entropy(&z, &y, eps).unwrap());
            let b = scalar(&cross_entropy(&zp, &yp, eps).unwrap());
            assert!((a - b).abs() < 1e-12, "eps {eps}: {a} vs {b}");
        }
        for cond in [false, true] {
            let a = kd(&z, &t, &y, 2.0, 0.5, cond);
            let b = kd(&zp, &tp, &yp, 2.0, 0.5, cond);
            assert!((scalar(&a.total) - scalar(&b.total)).abs() < 1e-12);
            assert_eq!((a.frames, a.soft_frames), (b.frames, b.soft_frames));
        }
        // Gradients of padded rows are zero.
        let v = Var::from_tensor(&zp).unwrap();
        let g = cross_entropy(v.as_tensor(), &yp, 0.1)
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<Vec<f64>> = g.get(v.as_tensor()).unwrap().to_vec2().unwrap();
        assert!(g[1].iter().all(|&x| x == 0.0), "{:?}", g[1]);
        // Only padding: 0, not NaN.
        let all_pad = Tensor::new(&[PAD_LABEL, PAD_LABEL], &d).unwrap();
        assert_eq!(scalar(&cross_entropy(&z, &all_pad, 0.0).unwrap()), 0.0);
    }

    #[test]
    fn bad_labels_and_shapes_are_refused() {
        let (z, t, _) = example();
        let d = Device::Cpu;
        let e = cross_entropy(&z, &Tensor::new(&[3u32, 0], &d).unwrap(), 0.0).unwrap_err();
        assert!(e.to_string().contains("label 3 at row 0"), "{e}");
        let e = cross_entropy(&z, &Tensor::new(&[0u32], &d).unwrap(), 0.0).unwrap_err();
        assert!(e.to_string().contains("expected [2]"), "{e}");
        let soft = SoftBatch::from_logits(&t.narrow(0, 0, 1).unwrap(), 1.0).unwrap();
        let cfg = KdConfig {
            temperature: 1.0,
            alpha: 0.5,
            conditional: false,
        };
        let e = kd_loss(&z, &soft, &Tensor::new(&[0u32, 0], &d).unwrap(), &cfg).unwrap_err();
        assert!(
            e.to_string()
                .contains("teacher probabilities have shape [1, 3]"),
            "{e}"
        );
    }

    /// Central differences of `f` at `x` against candle's gradient.
    fn check_grad(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) {
        let v = Var::from_tensor(x).unwrap();
        let grads = f(v.as_tensor()).backward().unwrap();
        let g: Vec<f64> = grads
            .get(v.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-5;
        for i in 0..base.len() {
            let at = |delta: f64| {
                let mut b = base.clone();
                b[i] += delta;
                scalar(&f(&Tensor::from_vec(b, x.shape(), x.device()).unwrap()))
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                "element {i}: finite diff {fd}, backward {}",
                g[i]
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let d = Device::Cpu;
        let z = Tensor::new(
            &[
                [0.3f64, -1.2, 2.0, 0.1],
                [1.5, 0.2, -0.7, 0.0],
                [-0.4, 0.9, 0.3, 1.1],
            ],
            &d,
        )
        .unwrap();
        let t = Tensor::new(
            &[
                [1.0f64, 0.0, 2.5, -1.0],
                [0.5, 2.0, 0.0, 0.1],
                [0.0, 0.0, 0.2, 3.0],
            ],
            &d,
        )
        .unwrap();
        let y = Tensor::new(&[2u32, 0, PAD_LABEL], &d).unwrap();
        check_grad(&z, |x| cross_entropy(x, &y, 0.1).unwrap());
        let soft = SoftBatch::from_logits(&t, 2.0).unwrap();
        for cond in [false, true] {
            let cfg = KdConfig {
                temperature: 2.0,
                alpha: 0.5,
                conditional: cond,
            };
            check_grad(&z, |x| kd_loss(x, &soft, &y, &cfg).unwrap().total);
        }
        // The analytic soft gradient alpha·T·(p_s^T - p_t) / N on one frame, as a cross-check.
        let cfg = KdConfig {
            temperature: 2.0,
            alpha: 1.0,
            conditional: false,
        };
        let z1 = z.narrow(0, 0, 1).unwrap();
        let t1 = SoftBatch::from_logits(&t.narrow(0, 0, 1).unwrap(), 2.0).unwrap();
        let y1 = Tensor::new(&[2u32], &d).unwrap();
        let v = Var::from_tensor(&z1).unwrap();
        let g = kd_loss(v.as_tensor(), &t1, &y1, &cfg)
            .unwrap()
            .total
            .backward()
            .unwrap();
        let g: Vec<f64> = g
            .get(v.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let ps: Vec<f64> = candle_nn::ops::softmax_last_dim(&z1.affine(0.5, 0.0).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let pt: Vec<f64> = t1.probs().flatten_all().unwrap().to_vec1().unwrap();
        for j in 0..4 {
            assert!((g[j] - 2.0 * (ps[j] - pt[j])).abs() < 1e-12);
        }
    }

    #[test]
    fn topk_scatter_spreads_the_rest_evenly() {
        // Frame 0 keeps senones 3 (0.5) and 0 (0.3), rest 0.2 over senones 1 and 2;
        // frame 1 keeps 1 (0.6) and 2 (0.4), rest 0.
        let dense =
            soft_batch_from_topk(&[3, 0, 1, 2], &[0.5, 0.3, 0.6, 0.4], &[0.2, 0.0], 2, 2, 4);
        assert_eq!(dense, vec![0.3, 0.1, 0.1, 0.5, 0.0, 0.6, 0.4, 0.0]);
        // k = s: the rest is ignored.
        assert_eq!(
            soft_batch_from_topk(&[1, 0], &[0.25, 0.75], &[0.0], 1, 2, 2),
            vec![0.75, 0.25]
        );
    }

    #[test]
    fn soft_batch_from_spans_follows_the_spans() {
        // 3 senones, top-2: frame f keeps ids [f % 3, (f + 1) % 3] with logits [0, -1], rest -2.
        let frames = 4;
        let u = UttTargets {
            frames,
            k: 2,
            num_senones: 3,
            ids: (0..frames)
                .flat_map(|f| [(f % 3) as u16, ((f + 1) % 3) as u16])
                .collect(),
            logits: (0..frames).flat_map(|_| [0.0, -1.0]).collect(),
            rest_lse: vec![-2.0; frames],
            rest_lse_half: vec![-1.0; frames],
        };
        let sb = SoftBatch::from_spans(&[(&u, 2, 2), (&u, 0, 1)], 1.0, 3, &Device::Cpu).unwrap();
        let p: Vec<Vec<f32>> = sb.probs().to_vec2().unwrap();
        let z = 1.0 + (-1f32).exp() + (-2f32).exp();
        let (a, b, c) = (1.0 / z, (-1f32).exp() / z, (-2f32).exp() / z);
        let want = [[b, c, a], [a, b, c], [a, b, c]]; // frames 2 (ids 2, 0), 3 (ids 0, 1), then 0 (ids 0, 1)
        for (row, w) in p.iter().zip(want) {
            for (x, y) in row.iter().zip(w) {
                assert!((x - y).abs() < 1e-6, "{p:?}");
            }
        }
        assert!(SoftBatch::from_spans(&[(&u, 3, 2)], 1.0, 3, &Device::Cpu).is_err());
        // The entropy from the top-k form equals the one of the dense rows.
        let dense = SoftBatch::from_probs(sb.probs().clone()).unwrap();
        for (a, b) in sb.neg_entropy.iter().zip(&dense.neg_entropy) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    /// The fused f32 soft term (`nn::weighted_soft_kl`) against candle's generic ops in f64:
    /// the loss, its parts and the gradient, with padding, at T = 1 and 2, plain and
    /// conditional.
    #[test]
    fn fused_f32_kd_loss_equals_the_generic_f64_one() {
        use candle_core::Var;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (n, s) = (37, 50);
        let z: Vec<f32> = (0..n * s).map(|_| rng.gen_range(-4.0..4.0)).collect();
        let t: Vec<f32> = (0..n * s).map(|_| rng.gen_range(-4.0..4.0)).collect();
        let mut y: Vec<u32> = (0..n).map(|_| rng.gen_range(0..s as u32)).collect();
        y[5] = PAD_LABEL;
        y[30] = PAD_LABEL;
        // Some frames where the teacher agrees with the label, for the conditional loss.
        for i in 0..n {
            if i % 3 == 0 && y[i] != PAD_LABEL {
                let j = (0..s)
                    .max_by(|&a, &b| t[i * s + a].total_cmp(&t[i * s + b]))
                    .unwrap();
                y[i] = j as u32;
            }
        }
        let d = Device::Cpu;
        let labels = Tensor::from_vec(y, n, &d).unwrap();
        for (temperature, alpha, conditional) in
            [(1.0, 0.5, false), (2.0, 0.7, false), (2.0, 0.5, true)]
        {
            let cfg = KdConfig {
                temperature,
                alpha,
                conditional,
            };
            let run = |dt: DType| {
                let zv = Var::from_tensor(
                    &Tensor::from_vec(z.clone(), (n, s), &d)
                        .unwrap()
                        .to_dtype(dt)
                        .unwrap(),
                )
                .unwrap();
                let tl = Tensor::from_vec(t.clone(), (n, s), &d)
                    .unwrap()
                    .to_dtype(dt)
                    .unwrap();
                let soft = SoftBatch::from_logits(&tl, temperature).unwrap();
                let l = kd_loss(zv.as_tensor(), &soft, &labels, &cfg).unwrap();
                let g = l.total.backward().unwrap();
                let grad: Vec<f64> = g
                    .get(zv.as_tensor())
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                (scalar(&l.total), l.soft, l.hard, l.soft_frames, grad)
            };
            let (a, b) = (run(DType::F32), run(DType::F64));
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-5 * (1.0 + y.abs());
            assert!(
                close(a.0, b.0) && close(a.1, b.1) && close(a.2, b.2),
                "{cfg:?}: {:?} vs {:?}",
                (a.0, a.1, a.2),
                (b.0, b.1, b.2)
            );
            assert_eq!(a.3, b.3);
            let worst =
                a.4.iter()
                    .zip(&b.4)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
            assert!(worst < 1e-6, "{cfg:?}: gradient differs by {worst}");
        }
    }
}
