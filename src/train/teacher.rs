//! Teachers: one trained model or an ensemble of several (different seeds or
//! architectures) whose averaged posteriors act as one model.

use std::path::PathBuf;

use candle_core::{Device, Tensor, D};

use crate::error::{Error, Result};
use crate::features::store::FeatureStore;
use crate::features::Matrix;
use crate::labels::senone_pipeline::Normaliser;
use crate::models::Context;
use crate::train::trained::{pad_edges, TrainedModel};

/// One or more trained models over the same senones and features.
pub struct Ensemble {
    pub members: Vec<TrainedModel>,
}

impl Ensemble {
    /// Loads every directory of `dirs`; they must share the senone table, the input
    /// dimension, the frame shift and the feature normalisation (errors name both sides).
    pub fn load(dirs: &[PathBuf], device: &Device) -> Result<Self> {
        if dirs.is_empty() {
            return Err(Error::config(
                "a teacher needs at least one model directory",
            ));
        }
        let members: Vec<TrainedModel> = dirs
            .iter()
            .map(|d| TrainedModel::load(d, None, device))
            .collect::<Result<_>>()?;
        let first = &members[0];
        for m in &members[1..] {
            let (a, b) = (&first.card, &m.card);
            let both = |what: &str, x: String, y: String| {
                Error::Mismatch(format!(
                    "ensemble members disagree on {what}: {} has {x}, {} has {y}",
                    first.dir.display(),
                    m.dir.display()
                ))
            };
            if a.senones_id != b.senones_id {
                return Err(both(
                    "the senone table",
                    a.senones_id.clone(),
                    b.senones_id.clone(),
                ));
            }
            if a.input_dim != b.input_dim {
                return Err(both(
                    "the input dimension",
                    a.input_dim.to_string(),
                    b.input_dim.to_string(),
                ));
            }
            if (a.frame_shift - b.frame_shift).abs() > 1e-9 {
                return Err(both(
                    "the frame shift",
                    a.frame_shift.to_string(),
                    b.frame_shift.to_string(),
                ));
            }
            if a.cmvn != b.cmvn {
                return Err(both(
                    "feature normalisation",
                    format!("{:?}", a.cmvn.mode),
                    format!("{:?} (or other statistics)", b.cmvn.mode),
                ));
            }
        }
        Ok(Ensemble { members })
    }

    /// The widest context of any member.
    pub fn context(&self) -> Context {
        let mut c = Context { left: 0, right: 0 };
        for m in &self.members {
            let o = m.model.context();
            c.left = c.left.max(o.left);
            c.right = c.right.max(o.right);
        }
        c
    }

    pub fn num_senones(&self) -> usize {
        self.members[0].card.num_senones
    }

    pub fn senones_id(&self) -> &str {
        &self.members[0].card.senones_id
    }

    pub fn frame_shift(&self) -> f64 {
        self.members[0].card.frame_shift
    }

    /// `name` of one member, or `ensemble of N: a + b + ...`.
    pub fn describe(&self) -> String {
        if self.members.len() == 1 {
            format!(
                "{} ({})",
                self.members[0].card.name,
                self.members[0].dir.display()
            )
        } else {
            format!(
                "ensemble of {}: {}",
                self.members.len(),
                self.members
                    .iter()
                    .map(|m| format!("{} ({})", m.card.name, m.dir.display()))
                    .collect::<Vec<_>>()
                    .join(" + ")
            )
        }
    }

    /// The normaliser the members expect for `store` (they share it), after checking that
    /// `store` has the features the members were trained on.
    pub fn normaliser(&self, store: &FeatureStore) -> Result<Normaliser> {
        for m in &self.members {
            m.card.check_features(store, &m.dir)?;
        }
        self.members[0].card.cmvn.normaliser(store)
    }

    /// Teacher logits `[chunks, chunk, senones]` for a batch `xs` of
    /// `[chunks, chunk + ctx.left + ctx.right, dim]` (no dropout). One member: its logits.
    /// Several: the log of the averaged posteriors (logits whose softmax is that average).
    pub fn logits(&self, xs: &Tensor, ctx: Context, chunk: usize) -> candle_core::Result<Tensor> {
        if self.members.len() == 1 {
            let m = &self.members[0];
            let x = crate::train::trainer::narrow_context(xs, ctx, m.model.context(), chunk)?;
            return m.model.forward_t(&x, false);
        }
        let mut sum: Option<Tensor> = None;
        for m in &self.members {
            let x = crate::train::trainer::narrow_context(xs, ctx, m.model.context(), chunk)?;
            let p = candle_nn::ops::softmax_last_dim(&m.model.forward_t(&x, false)?)?;
            sum = Some(match sum {
                None => p,
                Some(s) => (s + p)?,
            });
        }
        let mean = (sum.expect("at least one member") / self.members.len() as f64)?;
        // Floor before the log: an average of softmaxes is never exactly 0 in exact
        // arithmetic, but can underflow in f32.
        mean.clamp(1e-30f32, 1.0f32)?.log()
    }

    /// Logits `[frames, senones]` of one utterance's normalised features (edges padded).
    pub fn utterance_logits(&self, feats: &Matrix, device: &Device) -> candle_core::Result<Tensor> {
        let ctx = self.context();
        let padded = pad_edges(feats, ctx.left, ctx.right);
        let xs = Tensor::from_vec(
            padded,
            (1, feats.rows + ctx.left + ctx.right, feats.cols),
            device,
        )?;
        self.logits(&xs, ctx, feats.rows)?.squeeze(0)
    }
}

/// The argmax of each row of `[frames, senones]` logits.
pub fn argmax_rows(logits: &Tensor) -> candle_core::Result<Vec<u32>> {
    logits.argmax(D::Minus1)?.to_vec1()
}
