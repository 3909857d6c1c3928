//! GMM-HMMs trained from a flat start (Kaldi's `train_mono.sh`, then `train_deltas.sh`): the
//! generative first passes that give a DNN flat start acoustically anchored phone boundaries.
//!
//! ```text
//! log-mel [frames, bins] --per-speaker mean norm--> DCT (13) + lifter 22
//!   --> + deltas, delta-deltas = cepstra [frames, 39]
//! equal alignment (sil + phones + sil, each phone's frames split over its 3 states)
//! iteration i: (realign with Viterbi when i is in the realign schedule)
//!   -> accumulate component posteriors per state -> re-estimate
//!   -> split towards the Gaussian target
//! ```
//!
//! A monophone model has one diagonal-covariance GMM per (phone, HMM state), emission id
//! `phone * NUM_STATES + state`; a context-dependent one has one per leaf of a senone tree
//! (built by `build-tree` on the monophone alignment), emission id the senone.
//!
//! Why GMMs first: a DNN trained on its own Viterbi labels can keep labels that trail the
//! spectrum round after round; a GMM state's likelihood depends on its frame (and deltas)
//! alone, so realignment moves boundaries to where the spectrum changes. On the synthetic
//! corpus the monophone flat start agrees with the true phone times on 85.5% of frames
//! against 81.0% for the DNN flat start (recipes/synth/RESULTS.md).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::align::corpus::AlignConfig;
use crate::align::hmm::UttGraph;
use crate::error::{Error, Result};
use crate::features::matrix::Matrix;
use crate::labels::frame_labels::NUM_STATES;

/// Cepstral coefficients kept (Kaldi's `--num-ceps` default).
pub const NUM_CEPS: usize = 13;
/// Cepstral lifter (Kaldi's `--cepstral-lifter` default).
const LIFTER: f32 = 22.0;
/// Delta window, frames each side (Kaldi's `add-deltas` default).
const DELTA_WINDOW: usize = 2;

/// Log-mel filterbank frames -> MFCC-style cepstra with deltas and delta-deltas,
/// `[frames, bins]` -> `[frames, 3 * NUM_CEPS]`. The input is expected mean-normalised (the
/// DCT is linear, so normalising the log-mel energies normalises the cepstra).
#[derive(Debug, Clone)]
pub struct Cepstra {
    bins: usize,
    /// `[NUM_CEPS, bins]`: orthonormal DCT-II rows times the lifter.
    basis: Vec<f32>,
}

impl Cepstra {
    /// For log-mel frames of `bins` bins (at least `NUM_CEPS`).
    pub fn new(bins: usize) -> Result<Self> {
        if bins < NUM_CEPS {
            return Err(Error::config(format!(
                "{bins} filterbank bins: cepstra need at least {NUM_CEPS}"
            )));
        }
        let n = bins as f32;
        let mut basis = Vec::with_capacity(NUM_CEPS * bins);
        for i in 0..NUM_CEPS {
            let norm = if i == 0 {
                (1.0 / n).sqrt()
            } else {
                (2.0 / n).sqrt()
            };
            let lift = 1.0 + 0.5 * LIFTER * (std::f32::consts::PI * i as f32 / LIFTER).sin();
            for j in 0..bins {
                let c = (std::f32::consts::PI * i as f32 * (j as f32 + 0.5) / n).cos();
                basis.push(norm * lift * c);
            }
        }
        Ok(Cepstra { bins, basis })
    }

    /// Output dimension.
    pub fn dim(&self) -> usize {
        3 * NUM_CEPS
    }

    /// Cepstra with deltas and delta-deltas of `fbank` (`[frames, bins]`).
    pub fn features(&self, fbank: &Matrix) -> Result<Matrix> {
        if fbank.cols != self.bins {
            return Err(Error::Mismatch(format!(
                "features have {} bins, the cepstra were set up for {}",
                fbank.cols, self.bins
            )));
        }
        let mut ceps = Matrix::zeros(fbank.rows, NUM_CEPS);
        for (t, x) in fbank.rows_iter().enumerate() {
            let out = ceps.row_mut(t);
            for (i, o) in out.iter_mut().enumerate() {
                let b = &self.basis[i * self.bins..(i + 1) * self.bins];
                *o = b.iter().zip(x).map(|(a, v)| a * v).sum();
            }
        }
        let d1 = deltas(&ceps);
        let d2 = deltas(&d1);
        let mut out = Matrix::zeros(fbank.rows, 3 * NUM_CEPS);
        for t in 0..fbank.rows {
            let row = out.row_mut(t);
            row[..NUM_CEPS].copy_from_slice(ceps.row(t));
            row[NUM_CEPS..2 * NUM_CEPS].copy_from_slice(d1.row(t));
            row[2 * NUM_CEPS..].copy_from_slice(d2.row(t));
        }
        Ok(out)
    }
}

/// Regression deltas over `DELTA_WINDOW` frames each side, edges repeated:
/// `d_t = sum_n n (x_{t+n} - x_{t-n}) / (2 sum_n n^2)`.
fn deltas(x: &Matrix) -> Matrix {
    let mut out = Matrix::zeros(x.rows, x.cols);
    if x.rows == 0 {
        return out;
    }
    let denom: f32 = 2.0 * (1..=DELTA_WINDOW).map(|n| (n * n) as f32).sum::<f32>();
    let last = x.rows - 1;
    for t in 0..x.rows {
        for n in 1..=DELTA_WINDOW {
            let (a, b) = ((t + n).min(last), t.saturating_sub(n));
            let w = n as f32 / denom;
            for c in 0..x.cols {
                out.data[t * x.cols + c] += w * (x.data[a * x.cols + c] - x.data[b * x.cols + c]);
            }
        }
    }
    out
}

/// A diagonal-covariance Gaussian mixture over `dim`-dimensional frames.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiagGmm {
    pub dim: usize,
    /// `[components]`, summing to 1.
    pub weights: Vec<f32>,
    /// `[components, dim]`, row-major.
    pub means: Vec<f32>,
    /// `[components, dim]` variances.
    pub vars: Vec<f32>,
    /// Per component: `ln w - 0.5 (dim ln 2 pi + sum ln var)`; derived, rebuilt by `prepare`.
    #[serde(skip)]
    gconsts: Vec<f32>,
    /// `[components, dim]` of `1 / var`; derived.
    #[serde(skip)]
    inv_vars: Vec<f32>,
}

impl DiagGmm {
    /// One component with this mean and variance.
    pub fn single(mean: Vec<f32>, var: Vec<f32>) -> Self {
        let mut g = DiagGmm {
            dim: mean.len(),
            weights: vec![1.0],
            means: mean,
            vars: var,
            gconsts: Vec::new(),
            inv_vars: Vec::new(),
        };
        g.prepare();
        g
    }

    /// Number of components.
    pub fn num_components(&self) -> usize {
        self.weights.len()
    }

    /// Rebuilds the cached constants after the parameters change or are read.
    pub fn prepare(&mut self) {
        let ln2pi = (2.0 * std::f32::consts::PI).ln();
        self.inv_vars = self.vars.iter().map(|v| 1.0 / v).collect();
        self.gconsts = (0..self.num_components())
            .map(|k| {
                let lv: f32 = self.vars[k * self.dim..(k + 1) * self.dim]
                    .iter()
                    .map(|v| v.ln())
                    .sum();
                self.weights[k].ln() - 0.5 * (self.dim as f32 * ln2pi + lv)
            })
            .collect();
    }

    /// Per-component log of `w_k N(x; mu_k, var_k)` into `out` (`[components]`).
    fn component_logliks(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        for k in 0..self.num_components() {
            let m = &self.means[k * self.dim..(k + 1) * self.dim];
            let iv = &self.inv_vars[k * self.dim..(k + 1) * self.dim];
            let mut q = 0.0f32;
            for d in 0..self.dim {
                let e = x[d] - m[d];
                q += e * e * iv[d];
            }
            out.push(self.gconsts[k] - 0.5 * q);
        }
    }

    /// `ln p(x)`.
    pub fn log_likelihood(&self, x: &[f32]) -> f32 {
        let mut buf = Vec::with_capacity(self.num_components());
        self.component_logliks(x, &mut buf);
        log_sum_exp(&buf)
    }

    /// Splits the heaviest component in two, means moved `0.2` standard deviations apart.
    fn split_heaviest(&mut self) {
        let k = (0..self.num_components())
            .max_by(|&a, &b| self.weights[a].total_cmp(&self.weights[b]))
            .expect("a GMM has a component");
        let d = self.dim;
        let mean: Vec<f32> = self.means[k * d..(k + 1) * d].to_vec();
        let var: Vec<f32> = self.vars[k * d..(k + 1) * d].to_vec();
        self.weights[k] *= 0.5;
        self.weights.push(self.weights[k]);
        for i in 0..d {
            let delta = 0.2 * var[i].sqrt();
            self.means[k * d + i] = mean[i] + delta;
            self.means.push(mean[i] - delta);
        }
        self.vars.extend_from_slice(&var);
    }
}

fn log_sum_exp(v: &[f32]) -> f32 {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    max + v.iter().map(|&x| (x - max).exp()).sum::<f32>().ln()
}

/// Sufficient statistics of one GMM: per component its occupancy and first and second
/// moments.
#[derive(Debug, Clone)]
struct GmmStats {
    occ: Vec<f64>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl GmmStats {
    fn new(components: usize, dim: usize) -> Self {
        GmmStats {
            occ: vec![0.0; components],
            sum: vec![0.0; components * dim],
            sum_sq: vec![0.0; components * dim],
        }
    }

    fn add(&mut self, other: &GmmStats) {
        for (a, b) in self.occ.iter_mut().zip(&other.occ) {
            *a += b;
        }
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&other.sum_sq) {
            *a += b;
        }
    }

    fn total(&self) -> f64 {
        self.occ.iter().sum()
    }
}

/// A GMM-HMM acoustic model over [`Cepstra`] of mean-normalised log-mel frames: one GMM per
/// `(phone, HMM state)` ([`emission_id`]), or per senone of a tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GmmModel {
    /// The phone set's phone names, in id order (checked against the set it aligns with).
    pub phones: Vec<String>,
    /// Filterbank bins of the features it was trained on.
    pub bins: usize,
    /// The identity of the senone table its GMMs are the senones of (`senones_identity`);
    /// `None`: monophone.
    pub senones: Option<String>,
    /// `[phones * NUM_STATES]` or `[senones]`.
    pub gmms: Vec<DiagGmm>,
}

/// The GMM index of HMM state `state` of `phone`.
pub fn emission_id(phone: u32, state: u8) -> usize {
    phone as usize * NUM_STATES as usize + state as usize
}

impl GmmModel {
    /// Reads a model written by [`GmmModel::save`].
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut m: GmmModel = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not a GMM-HMM model: {e}")))?;
        if m.senones.is_none() && m.gmms.len() != m.phones.len() * NUM_STATES as usize {
            return Err(Error::format(
                path,
                format!("{} GMMs for {} phones", m.gmms.len(), m.phones.len()),
            ));
        }
        for g in &mut m.gmms {
            g.prepare();
        }
        Ok(m)
    }

    /// Writes the model as JSON, atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_string(self)
            .map_err(|e| Error::format(path, format!("serialising the GMM-HMM: {e}")))?;
        crate::atomic::write_atomic(path, |w| {
            use std::io::Write as _;
            w.write_all(text.as_bytes())
        })
    }

    /// Total Gaussians.
    pub fn num_gaussians(&self) -> usize {
        self.gmms.iter().map(DiagGmm::num_components).sum()
    }

    /// `[frames, ids.len()]` row-major: `scale * ln p(x_t | ids[j])` for cepstra `feats`.
    pub fn log_likelihoods(&self, feats: &Matrix, ids: &[usize], scale: f32) -> Vec<f32> {
        let mut out = Vec::with_capacity(feats.rows * ids.len());
        let mut buf = Vec::new();
        for x in feats.rows_iter() {
            for &id in ids {
                self.gmms[id].component_logliks(x, &mut buf);
                out.push(scale * log_sum_exp(&buf));
            }
        }
        out
    }
}

/// Training schedule (Kaldi's `train_mono.sh` defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct GmmConfig {
    /// EM iterations.
    pub iters: usize,
    /// Iterations (0-based) that realign with Viterbi before accumulating; the others reuse
    /// the last alignment.
    pub realign_iters: Vec<usize>,
    /// Gaussians in the whole model at the end of the growth.
    pub total_gaussians: usize,
    /// The iteration by which the model reaches `total_gaussians`.
    pub grow_until: usize,
    /// A component with less occupancy (frames) is dropped; a GMM is not split past
    /// `occupancy / min_component_occupancy` components.
    pub min_component_occupancy: f64,
    /// Variances are floored at this fraction of the global variance.
    pub variance_floor: f32,
}

impl Default for GmmConfig {
    fn default() -> Self {
        GmmConfig {
            iters: 40,
            realign_iters: vec![
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 29, 32, 35, 38,
            ],
            total_gaussians: 1000,
            grow_until: 30,
            min_component_occupancy: 20.0,
            variance_floor: 0.01,
        }
    }
}

/// One training utterance: its cepstra and its transcript's graph.
pub struct GmmUtt {
    /// `[frames, 3 * NUM_CEPS]`.
    pub feats: Matrix,
    pub graph: UttGraph,
    /// Each graph state's emission id.
    pub ids: Vec<usize>,
    /// The alignment to start from: emission id per frame.
    pub initial: Vec<usize>,
}

/// Emission ids per frame for runs `(phone, first, end)`, each run's frames split evenly over
/// its 3 states (Kaldi's `align-equal`); `id(run index, state)` gives the emission id of a
/// run's state, `None` (no id) fails the whole alignment.
pub fn equal_state_alignment(
    runs: &[(u32, usize, usize)],
    mut id: impl FnMut(usize, u8) -> Option<usize>,
) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    let n = NUM_STATES as usize;
    for (r, &(_, a, b)) in runs.iter().enumerate() {
        let len = b - a;
        for i in 0..len {
            out.push(id(r, (i * n / len.max(1)) as u8)?);
        }
    }
    Some(out)
}

/// Viterbi-aligns `utt` with `model`: emission id per frame, or `None` when no path
/// survives the beams.
fn align_with(
    model: &GmmModel,
    utt: &GmmUtt,
    scale: f32,
    beam: f32,
    retry_beam: f32,
) -> Option<Vec<usize>> {
    let (feats, graph, ids) = (&utt.feats, &utt.graph, &utt.ids);
    let (unique, column) = unique_columns(ids);
    let ll = model.log_likelihoods(feats, &unique, scale);
    let col: Vec<u32> = column.iter().map(|&c| c as u32).collect();
    let path = crate::align::align_states(graph, &col, &ll, unique.len(), beam, retry_beam).ok()?;
    Some(path.states.iter().map(|&s| ids[s]).collect())
}

/// Each graph state's monophone emission id.
pub fn graph_emission_ids(graph: &UttGraph) -> Vec<usize> {
    graph
        .states
        .iter()
        .map(|s| emission_id(s.phone, s.state))
        .collect()
}

/// The distinct ids, and each input's column among them.
pub(crate) fn unique_columns(ids: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut unique: Vec<usize> = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let column = ids
        .iter()
        .map(|id| unique.binary_search(id).expect("present"))
        .collect();
    (unique, column)
}

/// What one iteration did, for the log.
#[derive(Debug, Clone)]
pub struct IterReport {
    pub iter: usize,
    pub realigned: bool,
    /// Utterances that failed to realign (they keep their previous alignment).
    pub failed: usize,
    /// Average per-frame log-likelihood of the aligned states before the update.
    pub avg_loglik: f64,
    pub gaussians: usize,
}

/// What a model to train is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct GmmShape {
    /// The phone set's phone names, in id order.
    pub phones: Vec<String>,
    /// Filterbank bins of the features.
    pub bins: usize,
    /// The tree's senone table identity; `None`: monophone.
    pub senones: Option<String>,
    /// Number of GMMs (emission ids).
    pub num_ids: usize,
}

/// Trains a model of `shape` on `utts` from their initial alignments, realigning with the
/// beams and acoustic scale of `search`. Returns the model and each utterance's last alignment
/// (emission ids).
pub fn train_gmm(
    utts: &[GmmUtt],
    shape: GmmShape,
    cfg: &GmmConfig,
    search: &AlignConfig,
    mut report: impl FnMut(&IterReport),
) -> Result<(GmmModel, Vec<Vec<usize>>)> {
    let (scale, beam, retry_beam) = (search.acoustic_scale, search.beam, search.retry_beam);
    let num_ids = shape.num_ids;
    let dim = utts
        .first()
        .map(|u| u.feats.cols)
        .ok_or_else(|| Error::config("no utterance to train a GMM-HMM on"))?;
    // Global mean and variance: the initial GMMs and the variance floor.
    let (mut sum, mut sum_sq, mut n) = (vec![0.0f64; dim], vec![0.0f64; dim], 0.0f64);
    for u in utts {
        for x in u.feats.rows_iter() {
            for d in 0..dim {
                sum[d] += x[d] as f64;
                sum_sq[d] += (x[d] as f64).powi(2);
            }
            n += 1.0;
        }
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let var: Vec<f32> = sum_sq
        .iter()
        .zip(&mean)
        .map(|(s, &m)| ((s / n) as f32 - m * m).max(1e-6))
        .collect();
    let floor: Vec<f32> = var.iter().map(|v| v * cfg.variance_floor).collect();
    let mut model = GmmModel {
        phones: shape.phones,
        bins: shape.bins,
        senones: shape.senones,
        gmms: vec![DiagGmm::single(mean.clone(), var.clone()); num_ids],
    };
    let mut alignments: Vec<Vec<usize>> = utts.iter().map(|u| u.initial.clone()).collect();
    let mut target = num_ids as f64;
    let step = (cfg.total_gaussians as f64 - target).max(0.0) / cfg.grow_until.max(1) as f64;
    for iter in 0..cfg.iters {
        let realign = cfg.realign_iters.contains(&iter);
        let mut failed = 0;
        if realign {
            let new: Vec<Option<Vec<usize>>> = utts
                .par_iter()
                .map(|u| align_with(&model, u, scale, beam, retry_beam))
                .collect();
            for (a, new) in alignments.iter_mut().zip(new) {
                match new {
                    Some(n) => *a = n,
                    None => failed += 1,
                }
            }
        }
        let (stats, loglik) = accumulate(&model, utts, &alignments);
        let frames: f64 = stats.iter().map(GmmStats::total).sum();
        update(&mut model, &stats, &floor, cfg.min_component_occupancy);
        if iter < cfg.grow_until {
            target += step;
            split_towards(&mut model, &stats, target.round() as usize, cfg);
        }
        report(&IterReport {
            iter,
            realigned: realign,
            failed,
            avg_loglik: loglik / frames.max(1.0),
            gaussians: model.num_gaussians(),
        });
    }
    Ok((model, alignments))
}

/// Statistics of every GMM from the frames aligned to it (component posteriors under the
/// current model), and the total log-likelihood of those frames.
fn accumulate(model: &GmmModel, utts: &[GmmUtt], ali: &[Vec<usize>]) -> (Vec<GmmStats>, f64) {
    let empty = || {
        let stats: Vec<GmmStats> = model
            .gmms
            .iter()
            .map(|g| GmmStats::new(g.num_components(), g.dim))
            .collect();
        (stats, 0.0f64)
    };
    utts.par_iter()
        .zip(ali)
        .fold(empty, |(mut stats, mut ll), (u, a)| {
            let mut buf = Vec::new();
            for (x, &id) in u.feats.rows_iter().zip(a) {
                let g = &model.gmms[id];
                g.component_logliks(x, &mut buf);
                let total = log_sum_exp(&buf);
                ll += total as f64;
                let s = &mut stats[id];
                for (k, &l) in buf.iter().enumerate() {
                    let post = ((l - total) as f64).exp();
                    if post < 1e-5 {
                        continue;
                    }
                    s.occ[k] += post;
                    let range = k * g.dim..(k + 1) * g.dim;
                    let moments = s.sum[range.clone()].iter_mut().zip(&mut s.sum_sq[range]);
                    for ((sum, sum_sq), &v) in moments.zip(x) {
                        let v = v as f64;
                        *sum += post * v;
                        *sum_sq += post * v * v;
                    }
                }
            }
            (stats, ll)
        })
        .reduce(empty, |(mut a, la), (b, lb)| {
            for (x, y) in a.iter_mut().zip(&b) {
                x.add(y);
            }
            (a, la + lb)
        })
}

/// Maximum-likelihood update; components below `min_occ` frames are dropped (a GMM keeps at
/// least its heaviest), GMMs with no frames keep their parameters.
fn update(model: &mut GmmModel, stats: &[GmmStats], floor: &[f32], min_occ: f64) {
    for (g, s) in model.gmms.iter_mut().zip(stats) {
        let total = s.total();
        if total <= 0.0 {
            continue;
        }
        let d = g.dim;
        let heaviest = (0..s.occ.len())
            .max_by(|&a, &b| s.occ[a].total_cmp(&s.occ[b]))
            .expect("a GMM has a component");
        let keep: Vec<usize> = (0..s.occ.len())
            .filter(|&k| k == heaviest || s.occ[k] >= min_occ)
            .collect();
        let kept_occ: f64 = keep.iter().map(|&k| s.occ[k]).sum();
        let (mut w, mut m, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for &k in &keep {
            let occ = s.occ[k];
            w.push((occ / kept_occ) as f32);
            let range = k * d..(k + 1) * d;
            for ((sum, sum_sq), &fl) in s.sum[range.clone()].iter().zip(&s.sum_sq[range]).zip(floor)
            {
                let mean = sum / occ;
                let var = sum_sq / occ - mean * mean;
                m.push(mean as f32);
                v.push((var as f32).max(fl));
            }
        }
        g.weights = w;
        g.means = m;
        g.vars = v;
        g.prepare();
    }
}

/// Splits components until the model has about `target` Gaussians, shared among the GMMs in
/// proportion to occupancy^0.2 (Kaldi's `--power`), none past its occupancy allows.
fn split_towards(model: &mut GmmModel, stats: &[GmmStats], target: usize, cfg: &GmmConfig) {
    let weights: Vec<f64> = stats.iter().map(|s| s.total().powf(0.2)).collect();
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return;
    }
    for ((g, s), w) in model.gmms.iter_mut().zip(stats).zip(&weights) {
        let share = (target as f64 * w / sum).round() as usize;
        let allowed = (s.total() / cfg.min_component_occupancy).floor() as usize;
        let want = share.min(allowed).max(1);
        let mut changed = false;
        while g.num_components() < want {
            g.split_heaviest();
            changed = true;
        }
        if changed {
            g.prepare();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_gaussian_log_likelihood_matches_the_formula() {
        let g = DiagGmm::single(vec![1.0, -2.0], vec![4.0, 0.25]);
        let x = [2.0f32, -1.5];
        let want = -0.5
            * (2.0 * (2.0 * std::f32::consts::PI).ln()
                + 4.0f32.ln()
                + 0.25f32.ln()
                + 1.0 / 4.0
                + 0.25 / 0.25);
        assert!((g.log_likelihood(&x) - want).abs() < 1e-5);
    }

    #[test]
    fn deltas_of_a_ramp_are_its_slope_inside_the_window() {
        let x = Matrix::from_vec(7, 1, (0..7).map(|t| 3.0 * t as f32).collect());
        let d = deltas(&x);
        for t in 2..5 {
            assert!((d.data[t] - 3.0).abs() < 1e-5, "frame {t}: {}", d.data[t]);
        }
        // Edges repeat the end frames, so the slope there is smaller.
        assert!(d.data[0] < 3.0 && d.data[6] < 3.0);
    }

    #[test]
    fn cepstrum_zero_is_the_scaled_mean_of_the_log_energies() {
        let c = Cepstra::new(20).unwrap();
        let fb = Matrix::from_vec(1, 20, vec![2.0; 20]);
        let f = c.features(&fb).unwrap();
        // Orthonormal DCT of a constant: c0 = sqrt(N) * value, the rest 0.
        assert!((f.data[0] - 20f32.sqrt() * 2.0).abs() < 1e-4);
        assert!(f.data[1..NUM_CEPS].iter().all(|v| v.abs() < 1e-4));
        assert_eq!(f.cols, 39);
    }

    /// Utterances of silence and two phones with well-separated 2-d Gaussian frames and
    /// uneven durations: training from the equal alignment finds every true boundary.
    #[test]
    fn training_from_an_equal_alignment_recovers_the_true_segmentation() {
        use crate::align::hmm::{HmmConfig, UttGraph};
        use crate::align::{phone_runs, uniform_segments};
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let centre = [[0.0f32, 0.0], [6.0, 0.0], [0.0, 6.0]];
        let (sil, cfg) = (0u32, HmmConfig::default());
        let mut utts = Vec::new();
        let mut truths = Vec::new();
        for _ in 0..20 {
            let words: Vec<u32> = (0..rng.gen_range(2..6))
                .map(|i| if i % 2 == 0 { 1 } else { 2 })
                .collect();
            let mut truth = Vec::new();
            for &p in std::iter::once(&sil)
                .chain(&words)
                .chain(std::iter::once(&sil))
            {
                truth.extend(std::iter::repeat_n(p, rng.gen_range(4..25)));
            }
            let mut feats = Matrix::zeros(truth.len(), 2);
            for (row, &p) in feats.data.chunks_mut(2).zip(&truth) {
                for (v, c) in row.iter_mut().zip(centre[p as usize]) {
                    *v = c + rng.gen_range(-1.0..1.0);
                }
            }
            let prons: Vec<Vec<Vec<u32>>> = words.iter().map(|&w| vec![vec![w]]).collect();
            let mut phones = vec![sil];
            phones.extend(&words);
            phones.push(sil);
            let runs = uniform_segments(&phones, truth.len()).unwrap();
            let graph = UttGraph::build(&prons, sil, &cfg).unwrap();
            utts.push(GmmUtt {
                feats,
                ids: graph_emission_ids(&graph),
                graph,
                initial: equal_state_alignment(&runs, |r, s| Some(emission_id(runs[r].0, s)))
                    .unwrap(),
            });
            truths.push(truth);
        }
        let names: Vec<String> = ["sil", "a", "b"].map(String::from).to_vec();
        let cfg = GmmConfig {
            iters: 8,
            grow_until: 4,
            total_gaussians: 18,
            ..GmmConfig::default()
        };
        let mut logliks = Vec::new();
        let shape = GmmShape {
            phones: names,
            bins: 2,
            senones: None,
            num_ids: 9,
        };
        let search = AlignConfig {
            acoustic_scale: 1.0,
            beam: f32::INFINITY,
            retry_beam: f32::INFINITY,
            ..AlignConfig::default()
        };
        let (model, ali) =
            train_gmm(&utts, shape, &cfg, &search, |r| logliks.push(r.avg_loglik)).unwrap();
        assert!(
            model.num_gaussians() > 9,
            "{} Gaussians",
            model.num_gaussians()
        );
        assert!(logliks.last() > logliks.first(), "{logliks:?}");
        let n = NUM_STATES as usize;
        for (a, truth) in ali.iter().zip(&truths) {
            let phones: Vec<u32> = a.iter().map(|&id| (id / n) as u32).collect();
            assert_eq!(phone_runs(&phones), phone_runs(truth));
        }
    }

    #[test]
    fn equal_alignment_splits_each_phone_over_its_states() {
        let runs = [(0, 0, 3), (2, 3, 9)];
        let a = equal_state_alignment(&runs, |r, s| Some(emission_id(runs[r].0, s)));
        assert_eq!(a.unwrap(), [0, 1, 2, 6, 6, 7, 7, 8, 8]);
        assert!(equal_state_alignment(&runs, |r, _| (r == 0).then_some(0)).is_none());
    }
}
