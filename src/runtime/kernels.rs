//! Matrix kernels of the runtime: `out[f][r] = W[r] . x[f] + b[r]` for one or many frames, in
//! fp32 and int8.
//!
//! Every output value is computed the same way whatever the number of frames in the call:
//! a 16-lane (fp32) or 64-byte (int8) accumulator runs over the input in order and is
//! reduced at the end. A frame pushed alone in streaming therefore gets bit for bit the
//! values it gets inside a batch offline. AVX-512 (VNNI for int8) is used where the CPU has
//! it, portable loops elsewhere; each path is self-consistent, the two differ in rounding.
//!
//! Weights are packed once: rows padded with zeros to a multiple of the lane width, so the
//! inner loops have no tails.

use super::graph::QuantMatrix;
use crate::features::Matrix;

/// fp32 lanes of one accumulator.
pub const F32_LANES: usize = 16;
/// int8 values one VNNI accumulator consumes per step.
pub const I8_LANES: usize = 64;

/// `n` rounded up to a multiple of `m`.
pub fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m) * m
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which code the kernels run on this CPU, for reports.
pub fn isa() -> &'static str {
    if has_vnni() {
        "avx512-vnni"
    } else if has_avx512() {
        "avx512"
    } else {
        "portable"
    }
}

/// An fp32 weight `[rows, cols]` with each row padded to `stride` (a multiple of 16).
#[derive(Debug, Clone)]
pub struct PackedF32 {
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    data: Vec<f32>,
}

impl PackedF32 {
    pub fn new(m: &Matrix) -> Self {
        let stride = round_up(m.cols.max(1), F32_LANES);
        let mut data = vec![0f32; m.rows * stride];
        for r in 0..m.rows {
            data[r * stride..r * stride + m.cols].copy_from_slice(m.row(r));
        }
        PackedF32 {
            rows: m.rows,
            cols: m.cols,
            stride,
            data,
        }
    }

    /// `out[f * rows + r] = W[r] . x[f * stride ..] (+ bias[r]) (relu)` for `n` frames whose
    /// inputs lie `stride` apart in `x` (padding zero or anything finite: the padded weights are 0).
    pub fn apply(&self, x: &[f32], n: usize, bias: Option<&[f32]>, relu: bool, out: &mut [f32]) {
        assert!(x.len() >= n * self.stride && out.len() >= n * self.rows);
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: the CPU has AVX-512F; the slices were checked to cover every load and store.
            unsafe { avx512::dots_f32(self, x, n, out) };
            finish_f32(out, n, self.rows, bias, relu);
            return;
        }
        portable_dots_f32(self, x, n, out);
        finish_f32(out, n, self.rows, bias, relu);
    }
}

fn finish_f32(out: &mut [f32], n: usize, rows: usize, bias: Option<&[f32]>, relu: bool) {
    for f in 0..n {
        let o = &mut out[f * rows..(f + 1) * rows];
        if let Some(b) = bias {
            for (v, b) in o.iter_mut().zip(b) {
                *v += b;
            }
        }
        if relu {
            for v in o.iter_mut() {
                *v = v.max(0.0);
            }
        }
    }
}

/// The portable path: 16 partial sums per dot product, reduced pairwise as AVX-512's
/// `reduce_add` does (the order matters only for self-consistency).
fn portable_dots_f32(w: &PackedF32, x: &[f32], n: usize, out: &mut [f32]) {
    for f in 0..n {
        let xf = &x[f * w.stride..(f + 1) * w.stride];
        for r in 0..w.rows {
            let wr = &w.data[r * w.stride..(r + 1) * w.stride];
            let mut acc = [0f32; F32_LANES];
            for (wc, xc) in wr.chunks_exact(F32_LANES).zip(xf.chunks_exact(F32_LANES)) {
                for l in 0..F32_LANES {
                    acc[l] += wc[l] * xc[l];
                }
            }
            out[f * w.rows + r] = reduce16(&acc);
        }
    }
}

fn reduce16(a: &[f32; 16]) -> f32 {
    let mut v = *a;
    let mut width = 8;
    while width > 0 {
        for l in 0..width {
            v[l] += v[l + width];
        }
        width /= 2;
    }
    v[0]
}

/// An int8 weight `[rows, cols]` (per-row scales), rows padded to a multiple of 64, with
/// each row's sum of values (for the activation zero point).
#[derive(Debug, Clone)]
pub struct PackedI8 {
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    data: Vec<i8>,
    pub scales: Vec<f32>,
    row_sums: Vec<i32>,
}

impl PackedI8 {
    pub fn new(q: &QuantMatrix) -> Self {
        let stride = round_up(q.cols.max(1), I8_LANES);
        let mut data = vec![0i8; q.rows * stride];
        let mut row_sums = Vec::with_capacity(q.rows);
        for r in 0..q.rows {
            let row = &q.data[r * q.cols..(r + 1) * q.cols];
            data[r * stride..r * stride + q.cols].copy_from_slice(row);
            row_sums.push(row.iter().map(|&v| v as i32).sum());
        }
        PackedI8 {
            rows: q.rows,
            cols: q.cols,
            stride,
            data,
            scales: q.scales.clone(),
            row_sums,
        }
    }

    /// As [`PackedF32::apply`] for activations quantised per frame by [`quantize_frames`]:
    /// `xq` holds `n` rows of `stride` bytes, `xs` their `(scale, zero_point)`.
    pub fn apply(
        &self,
        xq: &[u8],
        xs: &[(f32, i32)],
        n: usize,
        bias: Option<&[f32]>,
        relu: bool,
        acc: &mut Vec<i32>,
        out: &mut [f32],
    ) {
        assert!(xq.len() >= n * self.stride && xs.len() >= n && out.len() >= n * self.rows);
        acc.clear();
        acc.resize(n * self.rows, 0);
        #[cfg(target_arch = "x86_64")]
        if has_vnni() {
            // SAFETY: the CPU has AVX-512 VNNI; the slices were checked to cover every access.
            unsafe { avx512::dots_i8(self, xq, n, acc) };
        } else {
            portable_dots_i8(self, xq, n, acc);
        }
        #[cfg(not(target_arch = "x86_64"))]
        portable_dots_i8(self, xq, n, acc);
        for f in 0..n {
            let (sx, zp) = xs[f];
            let o = &mut out[f * self.rows..(f + 1) * self.rows];
            let a = &acc[f * self.rows..(f + 1) * self.rows];
            for r in 0..self.rows {
                let int = a[r] - zp * self.row_sums[r];
                let mut v = int as f32 * (sx * self.scales[r]);
                if let Some(b) = bias {
                    v += b[r];
                }
                o[r] = if relu { v.max(0.0) } else { v };
            }
        }
    }
}

fn portable_dots_i8(w: &PackedI8, xq: &[u8], n: usize, acc: &mut [i32]) {
    for f in 0..n {
        let xf = &xq[f * w.stride..(f + 1) * w.stride];
        for r in 0..w.rows {
            let wr = &w.data[r * w.stride..(r + 1) * w.stride];
            acc[f * w.rows + r] = wr
                .iter()
                .zip(xf)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
        }
    }
}

/// Quantises `n` frames of `dim` values (`x` rows `dim` apart) to u8 rows `stride` apart
/// (padding 0) with onnxruntime's DynamicQuantizeLinear, per frame:
/// `scale = (max(x, 0) - min(x, 0)) / 255`, `zp = round(-min / scale)`,
/// `q = clamp(round(x / scale) + zp, 0, 255)`, rounding half to even. Returns `(scale, zp)`
/// per frame; an all-zero frame gets scale 1, zero point 0.
pub fn quantize_frames(
    x: &[f32],
    n: usize,
    dim: usize,
    stride: usize,
    xq: &mut Vec<u8>,
    params: &mut Vec<(f32, i32)>,
) {
    xq.clear();
    xq.resize(n * stride, 0);
    params.clear();
    for f in 0..n {
        let row = &x[f * dim..(f + 1) * dim];
        let (min, max) = row
            .iter()
            .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let mut scale = (max - min) / 255.0;
        if scale == 0.0 || !scale.is_finite() {
            scale = 1.0;
        }
        // Multiply by the reciprocal (not divide): graph optimisers (tract) rewrite a division
        // by a per-row scalar that way, and the ONNX export must round exactly as we do.
        let inv = 1.0 / scale;
        let zp = (-min * inv).round_ties_even().clamp(0.0, 255.0) as i32;
        let q = &mut xq[f * stride..f * stride + dim];
        for (q, &v) in q.iter_mut().zip(row) {
            *q = ((v * inv).round_ties_even() + zp as f32).clamp(0.0, 255.0) as u8;
        }
        params.push((scale, zp));
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PackedF32, PackedI8, F32_LANES, I8_LANES};

    /// Rows per block: 8 weight streams per pass over a frame's input.
    const RB: usize = 8;
    /// Frames per block when several are given (weights reused from registers and L1).
    const FB: usize = 4;

    /// `out[f * rows + r] = W[r] . x[f]` (no bias).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots_f32(w: &PackedF32, x: &[f32], n: usize, out: &mut [f32]) {
        let k = w.stride;
        let steps = k / F32_LANES;
        let wp = w.data.as_ptr();
        let xp = x.as_ptr();
        let op = out.as_mut_ptr();
        let mut f = 0;
        while f + FB <= n {
            let mut r = 0;
            while r + 2 <= w.rows {
                // 2 rows x 4 frames: 8 accumulators, 6 loads per 8 FMAs.
                let mut acc = [_mm512_setzero_ps(); 2 * FB];
                let w0 = wp.add(r * k);
                let w1 = wp.add((r + 1) * k);
                for s in 0..steps {
                    let a = _mm512_loadu_ps(w0.add(s * F32_LANES));
                    let b = _mm512_loadu_ps(w1.add(s * F32_LANES));
                    for j in 0..FB {
                        let xv = _mm512_loadu_ps(xp.add((f + j) * k + s * F32_LANES));
                        acc[j] = _mm512_fmadd_ps(a, xv, acc[j]);
                        acc[FB + j] = _mm512_fmadd_ps(b, xv, acc[FB + j]);
                    }
                }
                for j in 0..FB {
                    *op.add((f + j) * w.rows + r) = _mm512_reduce_add_ps(acc[j]);
                    *op.add((f + j) * w.rows + r + 1) = _mm512_reduce_add_ps(acc[FB + j]);
                }
                r += 2;
            }
            while r < w.rows {
                for j in 0..FB {
                    *op.add((f + j) * w.rows + r) = dot(wp.add(r * k), xp.add((f + j) * k), steps);
                }
                r += 1;
            }
            f += FB;
        }
        while f < n {
            let xf = xp.add(f * k);
            let mut r = 0;
            while r + RB <= w.rows {
                let mut acc = [_mm512_setzero_ps(); RB];
                for s in 0..steps {
                    let xv = _mm512_loadu_ps(xf.add(s * F32_LANES));
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(_mm512_loadu_ps(wp.add((r + j) * k + s * F32_LANES)), xv, *a);
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    *op.add(f * w.rows + r + j) = _mm512_reduce_add_ps(*a);
                }
                r += RB;
            }
            while r < w.rows {
                *op.add(f * w.rows + r) = dot(wp.add(r * k), xf, steps);
                r += 1;
            }
            f += 1;
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot(w: *const f32, x: *const f32, steps: usize) -> f32 {
        let mut acc = _mm512_setzero_ps();
        for s in 0..steps {
            acc = _mm512_fmadd_ps(
                _mm512_loadu_ps(w.add(s * F32_LANES)),
                _mm512_loadu_ps(x.add(s * F32_LANES)),
                acc,
            );
        }
        _mm512_reduce_add_ps(acc)
    }

    /// `acc[f * rows + r] = sum_k W[r][k] * xq[f][k]` (s8 x u8 in i32, exact).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dots_i8(w: &PackedI8, xq: &[u8], n: usize, acc_out: &mut [i32]) {
        let k = w.stride;
        let steps = k / I8_LANES;
        let wp = w.data.as_ptr();
        let xp = xq.as_ptr();
        let op = acc_out.as_mut_ptr();
        let mut f = 0;
        while f + FB <= n {
            for r in 0..w.rows {
                let mut acc = [_mm512_setzero_si512(); FB];
                let wr = wp.add(r * k);
                for s in 0..steps {
                    let wv = _mm512_loadu_si512(wr.add(s * I8_LANES) as *const _);
                    for (j, a) in acc.iter_mut().enumerate() {
                        let xv = _mm512_loadu_si512(xp.add((f + j) * k + s * I8_LANES) as *const _);
                        *a = _mm512_dpbusd_epi32(*a, xv, wv);
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    *op.add((f + j) * w.rows + r) = _mm512_reduce_add_epi32(*a);
                }
            }
            f += FB;
        }
        while f < n {
            let xf = xp.add(f * k);
            let mut r = 0;
            while r + RB <= w.rows {
                let mut acc = [_mm512_setzero_si512(); RB];
                for s in 0..steps {
                    let xv = _mm512_loadu_si512(xf.add(s * I8_LANES) as *const _);
                    for (j, a) in acc.iter_mut().enumerate() {
                        let wv = _mm512_loadu_si512(wp.add((r + j) * k + s * I8_LANES) as *const _);
                        *a = _mm512_dpbusd_epi32(*a, xv, wv);
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    *op.add(f * w.rows + r + j) = _mm512_reduce_add_epi32(*a);
                }
                r += RB;
            }
            while r < w.rows {
                let mut a = _mm512_setzero_si512();
                for s in 0..steps {
                    let xv = _mm512_loadu_si512(xf.add(s * I8_LANES) as *const _);
                    let wv = _mm512_loadu_si512(wp.add(r * k + s * I8_LANES) as *const _);
                    a = _mm512_dpbusd_epi32(a, xv, wv);
                }
                *op.add(f * w.rows + r) = _mm512_reduce_add_epi32(a);
                r += 1;
            }
            f += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize, seed: u32) -> Matrix {
        let mut s = seed;
        let data = (0..rows * cols)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        Matrix::from_vec(rows, cols, data)
    }

    fn padded(x: &Matrix, stride: usize) -> Vec<f32> {
        let mut v = vec![0f32; x.rows * stride];
        for r in 0..x.rows {
            v[r * stride..r * stride + x.cols].copy_from_slice(x.row(r));
        }
        v
    }

    #[test]
    fn fp32_matches_the_naive_product_and_is_batch_invariant() {
        for (rows, cols, n) in [(7, 5, 1), (13, 40, 9), (32, 80, 4), (3, 17, 6)] {
            let w = matrix(rows, cols, 1);
            let x = matrix(n, cols, 2);
            let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.1 - 0.3).collect();
            let p = PackedF32::new(&w);
            let xp = padded(&x, p.stride);
            let mut all = vec![0f32; n * rows];
            p.apply(&xp, n, Some(&bias), true, &mut all);
            for f in 0..n {
                let mut one = vec![0f32; rows];
                p.apply(&xp[f * p.stride..], 1, Some(&bias), true, &mut one);
                assert_eq!(one, all[f * rows..(f + 1) * rows], "frame {f} alone differs");
                for r in 0..rows {
                    let naive: f32 =
                        w.row(r).iter().zip(x.row(f)).map(|(a, b)| a * b).sum::<f32>() + bias[r];
                    assert!((all[f * rows + r] - naive.max(0.0)).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn int8_dots_are_exact_and_dequantise_close_to_fp32() {
        for (rows, cols, n) in [(9, 70, 5), (16, 64, 4), (5, 3, 1)] {
            let w = matrix(rows, cols, 3);
            let x = matrix(n, cols, 4);
            let q = QuantMatrix::quantize(&w);
            let p = PackedI8::new(&q);
            let (mut xq, mut xs, mut acc) = (Vec::new(), Vec::new(), Vec::new());
            quantize_frames(&x.data, n, cols, p.stride, &mut xq, &mut xs);
            let mut out = vec![0f32; n * rows];
            p.apply(&xq, &xs, n, None, false, &mut acc, &mut out);
            let mut exact = vec![0i32; n * rows];
            portable_dots_i8(&p, &xq, n, &mut exact);
            for f in 0..n {
                let mut one = vec![0f32; rows];
                p.apply(&xq[f * p.stride..], &xs[f..], 1, None, false, &mut acc, &mut one);
                assert_eq!(one, out[f * rows..(f + 1) * rows]);
                for r in 0..rows {
                    let (sx, zp) = xs[f];
                    let want = (exact[f * rows + r] - zp * p.row_sums[r]) as f32 * (sx * p.scales[r]);
                    assert_eq!(out[f * rows + r], want);
                    let fp: f32 = w.row(r).iter().zip(x.row(f)).map(|(a, b)| a * b).sum();
                    assert!((out[f * rows + r] - fp).abs() < 0.02 * (cols as f32).sqrt(), "{} vs {fp}", out[f * rows + r]);
                }
            }
        }
    }

    #[test]
    fn dynamic_quantisation_follows_onnxruntime() {
        let x = [-1.0f32, 0.0, 0.5, 2.0];
        let (mut q, mut p) = (Vec::new(), Vec::new());
        quantize_frames(&x, 1, 4, 64, &mut q, &mut p);
        let scale = 3.0 / 255.0;
        assert_eq!(p[0].0, scale);
        assert_eq!(p[0].1, 85); // round(1 / scale) = round(85.0)
        assert_eq!(q[..4], [0, 85, (0.5f32 / scale).round_ties_even() as u8 + 85, 255]);
        assert!(q[4..].iter().all(|&v| v == 0));
    }
}
