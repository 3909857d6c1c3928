//! Matrix kernels of the runtime: `out[f][r] = W[r] . x[f] + b[r]` for one or many frames, in
//! fp32 and int8.
//!
//! Weights are packed once into panels of 16 rows (one AVX-512 register of outputs):
//! fp32 `[panel][k][16]`, int8 `[panel][k / 4][16][4]` (VNNI's groups of four). A kernel
//! tile holds up to 6 frames x 4 panels (24 accumulators) and walks the input once,
//! broadcasting one input value (fp32) or four (int8) per step, so a batch reuses each
//! weight load across 6 frames and each input load across 64 rows: the register-blocked
//! GEMM of BLAS libraries. Frames are taken in blocks of 96 so that a block's inputs and a
//! 64-row weight strip stay in L2.
//!
//! Every fp32 output is one accumulator running over the input in order, whatever the tile
//! shape or the number of frames in the call, so a frame pushed alone in streaming gets bit
//! for bit the values it gets inside a batch offline (int8 sums are exact in any order).
//! AVX-512 (VNNI for int8) is used where the CPU has it, portable loops elsewhere; each
//! path is self-consistent, the two differ in fp32 rounding.

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

/// Output rows per panel (one 16-lane fp32 or i32 register).
const PANEL: usize = 16;

/// An fp32 weight `[rows, cols]` packed in panels of 16 rows: `data[(p * cols + k) * 16 + l]`
/// is `W[16 p + l][k]` (rows past the end are zero). Inputs come `stride` apart (a multiple
/// of 16, as the engine lays them out); only the first `cols` values of each are read.
#[derive(Debug, Clone)]
pub struct PackedF32 {
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    data: Vec<f32>,
}

impl PackedF32 {
    pub fn new(m: &Matrix) -> Self {
        let panels = m.rows.div_ceil(PANEL);
        let mut data = vec![0f32; panels * m.cols * PANEL];
        for r in 0..m.rows {
            let (p, l) = (r / PANEL, r % PANEL);
            for (k, &v) in m.row(r).iter().enumerate() {
                data[(p * m.cols + k) * PANEL + l] = v;
            }
        }
        PackedF32 {
            rows: m.rows,
            cols: m.cols,
            stride: round_up(m.cols.max(1), F32_LANES),
            data,
        }
    }

    fn at(&self, r: usize, k: usize) -> f32 {
        self.data[((r / PANEL) * self.cols + k) * PANEL + r % PANEL]
    }

    /// `out[f * rows + r] = W[r] . x[f * stride ..] (+ bias[r]) (relu)` for `n` frames whose
    /// inputs lie `stride` apart in `x`.
    pub fn apply(&self, x: &[f32], n: usize, bias: Option<&[f32]>, relu: bool, out: &mut [f32]) {
        assert!(n == 0 || x.len() >= (n - 1) * self.stride + self.cols);
        assert!(out.len() >= n * self.rows && bias.map_or(true, |b| b.len() >= self.rows));
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: the CPU has AVX-512F; the slices were checked to cover every load and store.
            unsafe { avx512::gemm_f32(self, x, n, bias, relu, out) };
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

/// The portable path: one accumulator per output over the input in order.
fn portable_dots_f32(w: &PackedF32, x: &[f32], n: usize, out: &mut [f32]) {
    for f in 0..n {
        let xf = &x[f * w.stride..f * w.stride + w.cols];
        for r in 0..w.rows {
            out[f * w.rows + r] = xf
                .iter()
                .enumerate()
                .fold(0f32, |a, (k, &v)| w.at(r, k).mul_add(v, a));
        }
    }
}

/// An int8 weight `[rows, cols]` (per-row scales) packed in panels of 16 rows and groups of
/// four inputs: `data[((p * groups + g) * 16 + l) * 4 + j]` is `W[16 p + l][4 g + j]` (zero
/// past the ends), with each row's sum of values (for the activation zero point). Inputs
/// come `stride` bytes apart (a multiple of 64, zero-padded by [`quantize_frames`]).
#[derive(Debug, Clone)]
pub struct PackedI8 {
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    groups: usize,
    data: Vec<i8>,
    pub scales: Vec<f32>,
    row_sums: Vec<i32>,
}

impl PackedI8 {
    pub fn new(q: &QuantMatrix) -> Self {
        let panels = q.rows.div_ceil(PANEL);
        let groups = q.cols.div_ceil(4);
        let mut data = vec![0i8; panels * groups * PANEL * 4];
        let mut row_sums = Vec::with_capacity(q.rows);
        for r in 0..q.rows {
            let row = &q.data[r * q.cols..(r + 1) * q.cols];
            let (p, l) = (r / PANEL, r % PANEL);
            for (k, &v) in row.iter().enumerate() {
                data[((p * groups + k / 4) * PANEL + l) * 4 + k % 4] = v;
            }
            row_sums.push(row.iter().map(|&v| v as i32).sum());
        }
        PackedI8 {
            rows: q.rows,
            cols: q.cols,
            stride: round_up(q.cols.max(1), I8_LANES),
            groups,
            data,
            scales: q.scales.clone(),
            row_sums,
        }
    }

    fn at(&self, r: usize, k: usize) -> i8 {
        self.data[(((r / PANEL) * self.groups + k / 4) * PANEL + r % PANEL) * 4 + k % 4]
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
        if let Some(b) = bias {
            assert!(b.len() >= self.rows);
        }
        #[cfg(target_arch = "x86_64")]
        if has_vnni() {
            // SAFETY: the CPU has AVX-512 VNNI; the slices were checked to cover every access.
            unsafe { avx512::gemm_i8(self, xq, xs, n, bias, relu, out) };
            return;
        }
        acc.clear();
        acc.resize(n * self.rows, 0);
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
        let xf = &xq[f * w.stride..f * w.stride + w.cols];
        for r in 0..w.rows {
            acc[f * w.rows + r] = xf
                .iter()
                .enumerate()
                .map(|(k, &b)| w.at(r, k) as i32 * b as i32)
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

    use super::{PackedF32, PackedI8, PANEL};

    /// Frames per tile (weight loads shared across them).
    const MR: usize = 6;
    /// Panels per tile (input loads shared across 64 rows).
    const NR: usize = 4;
    /// Panels per tile for a single frame (more independent accumulators).
    const NR_ONE: usize = 8;
    /// Frames per cache block.
    const FRAME_BLOCK: usize = 96;

    /// Calls `$f::<mr, nr>` for runtime `mr` in 1..=6 and `nr` in 1..=4 (or 8 for one frame).
    macro_rules! dispatch {
        ($f:ident, $mr:expr, $nr:expr, $($arg:expr),*) => {
            match ($mr, $nr) {
                (1, 8) => $f::<1, 8>($($arg),*), (1, 7) => $f::<1, 7>($($arg),*),
                (1, 6) => $f::<1, 6>($($arg),*), (1, 5) => $f::<1, 5>($($arg),*),
                (1, 4) => $f::<1, 4>($($arg),*), (1, 3) => $f::<1, 3>($($arg),*),
                (1, 2) => $f::<1, 2>($($arg),*), (1, 1) => $f::<1, 1>($($arg),*),
                (2, 4) => $f::<2, 4>($($arg),*), (2, 3) => $f::<2, 3>($($arg),*),
                (2, 2) => $f::<2, 2>($($arg),*), (2, 1) => $f::<2, 1>($($arg),*),
                (3, 4) => $f::<3, 4>($($arg),*), (3, 3) => $f::<3, 3>($($arg),*),
                (3, 2) => $f::<3, 2>($($arg),*), (3, 1) => $f::<3, 1>($($arg),*),
                (4, 4) => $f::<4, 4>($($arg),*), (4, 3) => $f::<4, 3>($($arg),*),
                (4, 2) => $f::<4, 2>($($arg),*), (4, 1) => $f::<4, 1>($($arg),*),
                (5, 4) => $f::<5, 4>($($arg),*), (5, 3) => $f::<5, 3>($($arg),*),
                (5, 2) => $f::<5, 2>($($arg),*), (5, 1) => $f::<5, 1>($($arg),*),
                (6, 4) => $f::<6, 4>($($arg),*), (6, 3) => $f::<6, 3>($($arg),*),
                (6, 2) => $f::<6, 2>($($arg),*), (6, 1) => $f::<6, 1>($($arg),*),
                _ => unreachable!("tile {}x{}", $mr, $nr),
            }
        };
    }

    /// Where the tiles of an `n`-frame product over `panels` panels go: calls
    /// `tile(first frame, frames, first panel, panels)` in cache-blocked order.
    fn for_tiles(n: usize, panels: usize, mut tile: impl FnMut(usize, usize, usize, usize)) {
        if n == 1 {
            for p in (0..panels).step_by(NR_ONE) {
                tile(0, 1, p, NR_ONE.min(panels - p));
            }
            return;
        }
        for f0 in (0..n).step_by(FRAME_BLOCK) {
            let f_end = n.min(f0 + FRAME_BLOCK);
            for p in (0..panels).step_by(NR) {
                let mut f = f0;
                while f < f_end {
                    let mr = MR.min(f_end - f);
                    tile(f, mr, p, NR.min(panels - p));
                    f += mr;
                }
            }
        }
    }

    /// Mask of the valid rows of panel `p` of `rows`.
    fn row_mask(rows: usize, p: usize) -> u16 {
        let valid = rows - p * PANEL;
        if valid >= PANEL {
            u16::MAX
        } else {
            (1u16 << valid) - 1
        }
    }

    /// What a tile does with its sums before storing them.
    #[derive(Clone, Copy)]
    pub struct Epilogue {
        /// `rows` biases, or null.
        bias: *const f32,
        relu: bool,
        /// int8 only: the weight's per-row sums and scales (`rows` each) and the frames'
        /// `(scale, zero point)`, indexed from the tile's first frame.
        row_sums: *const i32,
        scales: *const f32,
        frames: *const (f32, i32),
    }

    impl Epilogue {
        /// `v + bias`, then `max(v, 0)`: the order of the portable `finish_f32`.
        #[target_feature(enable = "avx512f")]
        #[inline]
        unsafe fn finish(&self, mut v: __m512, r0: usize, mask: u16) -> __m512 {
            if !self.bias.is_null() {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, self.bias.add(r0)));
            }
            if self.relu {
                v = _mm512_max_ps(v, _mm512_setzero_ps());
            }
            v
        }
    }

    /// `out[f * rows + r] = W[r] . x[f] (+ bias[r]) (relu)`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gemm_f32(
        w: &PackedF32,
        x: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
    ) {
        let panels = w.rows.div_ceil(PANEL);
        let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
        let e = Epilogue {
            bias: bias.map_or(std::ptr::null(), |b| b.as_ptr()),
            relu,
            row_sums: std::ptr::null(),
            scales: std::ptr::null(),
            frames: std::ptr::null(),
        };
        for_tiles(n, panels, |f, mr, p, nr| {
            let wp = w.data.as_ptr().add(p * w.cols * PANEL);
            let xf = xp.add(f * w.stride);
            let of = op.add(f * w.rows + p * PANEL);
            dispatch!(tile_f32, mr, nr, wp, w.cols, xf, w.stride, of, w.rows, p, e);
        });
    }

    /// One tile: `M` frames (inputs `xs` apart from `x`) x `N` panels (from `w`, each
    /// `k * 16` floats), written to `out` (frames `rows` apart) for the valid rows.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_f32<const M: usize, const N: usize>(
        w: *const f32,
        k: usize,
        x: *const f32,
        xs: usize,
        out: *mut f32,
        rows: usize,
        panel0: usize,
        e: Epilogue,
    ) {
        let mut acc = [[_mm512_setzero_ps(); N]; M];
        for kk in 0..k {
            let mut wv = [_mm512_setzero_ps(); N];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(w.add((j * k + kk) * PANEL));
            }
            for (i, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.add(i * xs + kk));
                for (a, v) in a.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(*v, xv, *a);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            for (j, a) in a.iter().enumerate() {
                let mask = row_mask(rows, panel0 + j);
                let v = e.finish(*a, (panel0 + j) * PANEL, mask);
                _mm512_mask_storeu_ps(out.add(i * rows + j * PANEL), mask, v);
            }
        }
    }

    /// `out[f * rows + r] = ((sum_k W[r][k] xq[f][k]) - zp_f rowsum_r) (scale_f scale_r)
    /// (+ bias[r]) (relu)`: s8 x u8 sums in i32 (exact), dequantised as the portable path.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn gemm_i8(
        w: &PackedI8,
        xq: &[u8],
        frames: &[(f32, i32)],
        n: usize,
        bias: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
    ) {
        let panels = w.rows.div_ceil(PANEL);
        let (xp, op) = (xq.as_ptr(), out.as_mut_ptr());
        let e = Epilogue {
            bias: bias.map_or(std::ptr::null(), |b| b.as_ptr()),
            relu,
            row_sums: w.row_sums.as_ptr(),
            scales: w.scales.as_ptr(),
            frames: frames.as_ptr(),
        };
        for_tiles(n, panels, |f, mr, p, nr| {
            let wp = w.data.as_ptr().add(p * w.groups * PANEL * 4);
            let xf = xp.add(f * w.stride);
            let of = op.add(f * w.rows + p * PANEL);
            let ef = Epilogue {
                frames: e.frames.add(f),
                ..e
            };
            dispatch!(tile_i8, mr, nr, wp, w.groups, xf, w.stride, of, w.rows, p, ef);
        });
    }

    /// As [`tile_f32`] with VNNI: each step multiplies four input bytes (broadcast) by the
    /// four weights of each of 16 rows and adds the products into the row's i32 lane.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_i8<const M: usize, const N: usize>(
        w: *const i8,
        groups: usize,
        x: *const u8,
        xs: usize,
        out: *mut f32,
        rows: usize,
        panel0: usize,
        e: Epilogue,
    ) {
        let mut acc = [[_mm512_setzero_si512(); N]; M];
        for g in 0..groups {
            let mut wv = [_mm512_setzero_si512(); N];
            for (j, v) in wv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(w.add((j * groups + g) * PANEL * 4) as *const _);
            }
            for (i, a) in acc.iter_mut().enumerate() {
                let four = (x.add(i * xs + 4 * g) as *const i32).read_unaligned();
                let xv = _mm512_set1_epi32(four);
                for (a, v) in a.iter_mut().zip(&wv) {
                    *a = _mm512_dpbusd_epi32(*a, xv, *v);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            let (sx, zp) = *e.frames.add(i);
            for (j, a) in a.iter().enumerate() {
                let r0 = (panel0 + j) * PANEL;
                let mask = row_mask(rows, panel0 + j);
                let sums = _mm512_maskz_loadu_epi32(mask, e.row_sums.add(r0));
                let int = _mm512_sub_epi32(*a, _mm512_mullo_epi32(_mm512_set1_epi32(zp), sums));
                let scale = _mm512_mul_ps(
                    _mm512_set1_ps(sx),
                    _mm512_maskz_loadu_ps(mask, e.scales.add(r0)),
                );
                let v = e.finish(_mm512_mul_ps(_mm512_cvtepi32_ps(int), scale), r0, mask);
                _mm512_mask_storeu_ps(out.add(i * rows + j * PANEL), mask, v);
            }
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
                assert_eq!(
                    one,
                    all[f * rows..(f + 1) * rows],
                    "frame {f} alone differs"
                );
                for r in 0..rows {
                    let naive: f32 = w
                        .row(r)
                        .iter()
                        .zip(x.row(f))
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        + bias[r];
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
                p.apply(
                    &xq[f * p.stride..],
                    &xs[f..],
                    1,
                    None,
                    false,
                    &mut acc,
                    &mut one,
                );
                assert_eq!(one, out[f * rows..(f + 1) * rows]);
                for r in 0..rows {
                    let (sx, zp) = xs[f];
                    let want =
                        (exact[f * rows + r] - zp * p.row_sums[r]) as f32 * (sx * p.scales[r]);
                    assert_eq!(out[f * rows + r], want);
                    let fp: f32 = w.row(r).iter().zip(x.row(f)).map(|(a, b)| a * b).sum();
                    assert!(
                        (out[f * rows + r] - fp).abs() < 0.02 * (cols as f32).sqrt(),
                        "{} vs {fp}",
                        out[f * rows + r]
                    );
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
        assert_eq!(
            q[..4],
            [0, 85, (0.5f32 / scale).round_ties_even() as u8 + 85, 255]
        );
        assert!(q[4..].iter().all(|&v| v == 0));
    }
}
