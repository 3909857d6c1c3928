//! Small CPU kernels shared by the fused ops: a vectorisable `exp`, slice access to f32
//! tensors, and the chunk size for rayon splits.

use candle_core::{backend::BackendStorage, bail, CpuStorage, Layout, Result, Storage, Tensor};

/// Elements per rayon task in element-wise kernels: large enough that the split costs
/// nothing next to the work, small enough that two threads get balanced halves.
pub(crate) const CHUNK: usize = 1 << 15;

/// `e^x` for f32, written so that LLVM vectorises loops over it (no calls, no branches):
/// Cephes' `expf` (range reduction by `ln 2`, degree-6 polynomial, exponent by bit
/// arithmetic). Relative error below 2e-7 on `[-87, 88]`; inputs are clamped to that range,
/// so `exp(-inf)` gives ~1e-38 instead of 0, which softmax sums do not notice.
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let fx = (x * LOG2E + 0.5).floor();
    let r = x - fx * C1 - fx * C2;
    let mut y = 1.987_569_1e-4_f32;
    y = y * r + 1.398_199_9e-3;
    y = y * r + 8.333_452e-3;
    y = y * r + 4.166_579_6e-2;
    y = y * r + 1.666_666_5e-1;
    y = y * r + 5.000_000_1e-1;
    let y = y * r * r + r + 1.0;
    let pow2 = f32::from_bits(((fx as i32 + 127) as u32) << 23);
    y * pow2
}

/// The contiguous f32 values a CPU storage holds under `l`, or an error naming `what`.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let v = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("{what}: expected f32, got {:?}", other.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!(
            "{what}: needs a contiguous tensor (got strides {:?})",
            l.stride()
        ),
    }
}

/// Runs `f` over the contiguous f32 values of a CPU tensor.
pub(crate) fn with_f32<R>(
    t: &Tensor,
    what: &str,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    match &*s {
        Storage::Cpu(c) => f(f32_slice(c, l, what)?),
        _ => bail!("{what}: expected a CPU tensor"),
    }
}

/// True when every tensor is f32 on the CPU (the fused kernels' domain; others fall back
/// to candle's generic ops).
pub(crate) fn all_cpu_f32(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32)
}
