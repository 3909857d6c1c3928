//! Cepstral mean and variance normalisation: statistics per utterance, per speaker or over a
//! whole corpus (Kaldi's `compute-cmvn-stats`), and applying them (Kaldi's `apply-cmvn`).
//!
//! Statistics are stored as Kaldi stores them: a `[2, dim + 1]` double matrix, row 0 the sums
//! of each coefficient then the frame count, row 1 the sums of squares then 0. Tables of them
//! are a binary archive `cmvn.ark` with its script `cmvn.scp`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::features::kaldi_io::{ArkWriter, DoubleMatrix, ScpReader};
use crate::features::matrix::Matrix;

/// Variances below this are floored before taking `1/sqrt`, as in Kaldi's `ApplyCmvn`.
pub const VARIANCE_FLOOR: f64 = 1.0e-20;

/// Accumulated first and second order statistics of feature frames.
#[derive(Debug, Clone, PartialEq)]
pub struct CmvnStats {
    /// Number of frames.
    pub count: f64,
    /// Per coefficient: sum over frames, `[dim]`.
    pub sum: Vec<f64>,
    /// Per coefficient: sum of squares over frames, `[dim]`.
    pub sum_sq: Vec<f64>,
}

impl CmvnStats {
    /// Empty statistics for `dim`-dimensional features.
    pub fn new(dim: usize) -> Self {
        CmvnStats {
            count: 0.0,
            sum: vec![0.0; dim],
            sum_sq: vec![0.0; dim],
        }
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.sum.len()
    }

    /// Adds every frame of `feats` (`[frames, dim]`).
    pub fn accumulate(&mut self, feats: &Matrix) -> Result<()> {
        if feats.rows > 0 && feats.cols != self.dim() {
            return Err(Error::Mismatch(format!(
                "CMVN statistics of dimension {} cannot accumulate {}-dimensional features",
                self.dim(),
                feats.cols
            )));
        }
        for row in feats.rows_iter() {
            self.count += 1.0;
            for ((s, q), &x) in self.sum.iter_mut().zip(self.sum_sq.iter_mut()).zip(row) {
                // Kaldi's AccCmvnStats squares in float and accumulates in double.
                *s += x as f64;
                *q += (x * x) as f64;
            }
        }
        Ok(())
    }

    /// Adds another set of statistics of the same dimension.
    pub fn add(&mut self, other: &CmvnStats) -> Result<()> {
        if other.dim() != self.dim() {
            return Err(Error::Mismatch(format!(
                "cannot add CMVN statistics of dimension {} to dimension {}",
                other.dim(),
                self.dim()
            )));
        }
        self.count += other.count;
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&other.sum_sq) {
            *a += b;
        }
        Ok(())
    }

    /// Per-coefficient mean, `[dim]` (NaN with no frames).
    pub fn mean(&self) -> Vec<f64> {
        self.sum.iter().map(|s| s / self.count).collect()
    }

    /// Per-coefficient (biased) variance `E[x^2] - E[x]^2`, `[dim]`, unfloored.
    pub fn variance(&self) -> Vec<f64> {
        self.sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(s, q)| {
                let m = s / self.count;
                q / self.count - m * m
            })
            .collect()
    }

    /// Kaldi's `[2, dim + 1]` double matrix: `[sums.., count; sums of squares.., 0]`.
    pub fn to_kaldi_matrix(&self) -> DoubleMatrix {
        let dim = self.dim();
        let mut data = Vec::with_capacity(2 * (dim + 1));
        data.extend_from_slice(&self.sum);
        data.push(self.count);
        data.extend_from_slice(&self.sum_sq);
        data.push(0.0);
        DoubleMatrix {
            rows: 2,
            cols: dim + 1,
            data,
        }
    }

    /// Reads Kaldi's `[2, dim + 1]` layout back.
    pub fn from_kaldi_matrix(m: &DoubleMatrix) -> Result<Self> {
        if m.rows != 2 || m.cols < 2 || m.data.len() != m.rows * m.cols {
            return Err(Error::Mismatch(format!(
                "CMVN statistics must be a 2 x (dim+1) matrix with dim >= 1, got {} x {}",
                m.rows, m.cols
            )));
        }
        let dim = m.cols - 1;
        Ok(CmvnStats {
            count: m.data[dim],
            sum: m.data[..dim].to_vec(),
            sum_sq: m.data[dim + 1..2 * dim + 1].to_vec(),
        })
    }

    /// Normalises `feats` (`[frames, dim]`) in place as Kaldi's `ApplyCmvn` does: subtract the
    /// mean; with `norm_vars`, also scale to unit variance (variance floored at
    /// [`VARIANCE_FLOOR`]). Fewer than one frame of statistics is an error, as in Kaldi.
    pub fn apply(&self, feats: &mut Matrix, norm_vars: bool) -> Result<()> {
        let dim = self.dim();
        if feats.rows > 0 && feats.cols != dim {
            return Err(Error::Mismatch(format!(
                "CMVN statistics have dimension {dim}, features have {}",
                feats.cols
            )));
        }
        // Kaldi's threshold; a NaN count fails it too.
        if self.count.is_nan() || self.count < 1.0 || self.count.is_infinite() {
            return Err(Error::Mismatch(format!(
                "insufficient statistics for CMVN: count = {}",
                self.count
            )));
        }
        // Statistics read from a corrupt file would turn every feature into NaN or inf.
        let bad = |d: usize| {
            Err(Error::Mismatch(format!(
                "NaN or infinity in CMVN statistics (coefficient {d})"
            )))
        };
        if let Some(d) =
            (0..dim).find(|&d| !(self.sum[d].is_finite() && self.sum_sq[d].is_finite()))
        {
            return bad(d);
        }
        if !norm_vars {
            // Kaldi: offset.AddVec(-1.0 / count, mean_stats) with a float alpha.
            let alpha = (-1.0 / self.count) as f32;
            let offset: Vec<f32> = self
                .sum
                .iter()
                .map(|&s| (alpha as f64 * s) as f32)
                .collect();
            // Finite statistics can still overflow f32.
            if let Some(d) = offset.iter().position(|o| !o.is_finite()) {
                return bad(d);
            }
            for r in 0..feats.rows {
                for (x, o) in feats.row_mut(r).iter_mut().zip(&offset) {
                    *x += o;
                }
            }
            return Ok(());
        }
        let mut offset = vec![0f32; dim];
        let mut scale = vec![0f32; dim];
        for d in 0..dim {
            let mean = self.sum[d] / self.count;
            let var = (self.sum_sq[d] / self.count - mean * mean).max(VARIANCE_FLOOR);
            let sc = 1.0 / var.sqrt();
            if !sc.is_finite() || sc == 0.0 || !((mean * sc) as f32).is_finite() {
                return bad(d);
            }
            offset[d] = (-(mean * sc)) as f32;
            scale[d] = sc as f32;
        }
        for r in 0..feats.rows {
            for ((x, o), s) in feats.row_mut(r).iter_mut().zip(&offset).zip(&scale) {
                *x = *x * s + o;
            }
        }
        Ok(())
    }
}

/// Writes a table of statistics as Kaldi's `compute-cmvn-stats ark,scp:ARK,SCP` does: a
/// binary archive of `DM` matrices and a script of `key ARK:OFFSET` lines, both atomically.
/// The script names the archive by the path given here (give an absolute one for Kaldi).
pub fn write_cmvn_table<'a>(
    ark: &Path,
    scp: &Path,
    stats: impl IntoIterator<Item = (&'a str, &'a CmvnStats)>,
) -> Result<()> {
    let mut writer = ArkWriter::create(ark)?;
    let mut lines = Vec::new();
    for (key, s) in stats {
        let spec = writer.write_double_matrix(key, &s.to_kaldi_matrix())?;
        lines.push(format!("{key} {spec}\n"));
    }
    writer.commit()?;
    write_atomic(scp, |w| {
        for l in &lines {
            w.write_all(l.as_bytes())?;
        }
        Ok(())
    })
}

/// Reads every entry of a CMVN script (`cmvn.scp`) into `key -> statistics`.
pub fn read_cmvn_table(scp: &Path) -> Result<BTreeMap<String, CmvnStats>> {
    let reader = ScpReader::open(scp)?;
    let mut out = BTreeMap::new();
    for i in 0..reader.len() {
        let m = reader.read_double(i)?;
        let stats = CmvnStats::from_kaldi_matrix(&m)
            .map_err(|e| Error::format(scp, format!("key '{}': {e}", reader.key(i))))?;
        out.insert(reader.key(i).to_string(), stats);
    }
    Ok(out)
}
