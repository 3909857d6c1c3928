//! The teacher side of student training: soft targets read from a store (offline) or
//! computed by a teacher inside the loop (online), turned into the distillation loss.

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::labels::soft_targets::{SoftTargetStore, UttTargets};
use crate::models::Context;
use crate::train::config::KdSection;
use crate::train::data::{Batch, TrainData};
use crate::train::loss::{kd_loss, KdConfig, SoftBatch};
use crate::train::teacher::Ensemble;

enum Source {
    /// Dumped top-k teacher logits, by utterance.
    Offline {
        store: SoftTargetStore,
        /// Training utterance index -> the same utterance in the store.
        index: Vec<String>,
    },
    /// A teacher (or ensemble) run on each batch.
    Online(Ensemble),
}

/// Soft targets for training batches and the KD loss over them.
pub struct Distiller {
    source: Source,
    cfg: KdConfig,
    num_senones: usize,
    device: Device,
    what: String,
}

impl Distiller {
    /// Opens the teacher of `kd` and checks it against the student's data: the senone
    /// table, the frame shift, and (offline) that every training utterance has targets with
    /// its frame count.
    pub fn new(
        kd: &KdSection,
        data: &TrainData,
        senones_id: &str,
        frame_shift: f64,
        device: &Device,
    ) -> Result<Self> {
        let cfg = KdConfig {
            temperature: kd.temperature,
            alpha: kd.alpha,
            conditional: kd.conditional,
        };
        let num_senones;
        let (source, what) = if let Some(dir) = &kd.targets {
            let store = SoftTargetStore::open(dir)?;
            num_senones = store.meta().num_senones;
            store.check_compatible(num_senones, senones_id, frame_shift)?;
            for utt in data.utts() {
                let want = data.num_frames(utt);
                match store.num_frames(utt) {
                    None => {
                        return Err(Error::Mismatch(format!(
                            "{}: no soft targets for training utterance {utt}",
                            dir.display()
                        )))
                    }
                    Some(n) if n != want => {
                        return Err(Error::Mismatch(format!(
                            "{}: utterance {utt} has {n} frames of soft targets, the training features {want}",
                            dir.display()
                        )))
                    }
                    Some(_) => {}
                }
            }
            let what = format!(
                "soft targets {} (top-{}, T={}, alpha={})",
                dir.display(),
                store.meta().k,
                kd.temperature,
                kd.alpha
            );
            (
                Source::Offline {
                    store,
                    index: data.utts().to_vec(),
                },
                what,
            )
        } else {
            let ens = Ensemble::load(&kd.teachers, device)?;
            if ens.senones_id() != senones_id {
                return Err(Error::Mismatch(format!(
                    "teacher has senones '{}', the student's table has '{senones_id}'",
                    ens.senones_id()
                )));
            }
            if (ens.frame_shift() - frame_shift).abs() > 1e-9 {
                return Err(Error::Mismatch(format!(
                    "teacher was trained on a frame shift of {} s, the student's features have {frame_shift} s",
                    ens.frame_shift()
                )));
            }
            num_senones = ens.num_senones();
            let what = format!(
                "online teacher {} (T={}, alpha={})",
                ens.describe(),
                kd.temperature,
                kd.alpha
            );
            (Source::Online(ens), what)
        };
        Ok(Distiller {
            source,
            cfg,
            num_senones,
            device: device.clone(),
            what,
        })
    }

    /// Frames of context the teacher needs (online; none offline).
    pub fn context(&self) -> Context {
        match &self.source {
            Source::Offline { .. } => Context { left: 0, right: 0 },
            Source::Online(e) => e.context(),
        }
    }

    /// One line about the teacher and the loss.
    pub fn describe(&self) -> String {
        self.what.clone()
    }

    /// The KD loss of student `logits` (`[n, S]`, the batch's unpadded rows `rows`, labels
    /// `labels`) and its soft and hard parts. `xs` is the batch with context `ctx` (for an
    /// online teacher).
    pub fn loss(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        batch: &Batch,
        rows: &[u32],
        xs: &Tensor,
        ctx: Context,
    ) -> candle_core::Result<(Tensor, f64, f64)> {
        let soft = match &self.source {
            Source::Offline { store, index } => {
                // Only the frames of each chunk are decoded, not its whole utterance.
                let decoded: Vec<UttTargets> = batch
                    .spans
                    .iter()
                    .map(|sp| {
                        store
                            .get_frames(&index[sp.utt as usize], sp.start as usize, sp.len as usize)
                            .map_err(|e| candle_core::Error::Msg(e.to_string()))
                    })
                    .collect::<candle_core::Result<_>>()?;
                let spans: Vec<(&UttTargets, usize, usize)> =
                    decoded.iter().map(|t| (t, 0, t.frames)).collect();
                let soft = SoftBatch::from_spans(
                    &spans,
                    self.cfg.temperature as f32,
                    self.num_senones,
                    &self.device,
                )?;
                let n = soft.probs().dim(0)?;
                if n != rows.len() {
                    return Err(candle_core::Error::Msg(format!(
                        "soft targets cover {n} frames of the batch, labels {}",
                        rows.len()
                    )));
                }
                soft
            }
            Source::Online(ens) => {
                let t = ens.logits(xs, ctx, batch.chunk_frames)?;
                let s = self.num_senones;
                let t = t.reshape((batch.chunks * batch.chunk_frames, s))?;
                let t = if rows.len() == batch.chunks * batch.chunk_frames {
                    t
                } else {
                    t.index_select(&Tensor::from_slice(rows, rows.len(), &self.device)?, 0)?
                };
                SoftBatch::from_logits(&t, self.cfg.temperature)?
            }
        };
        let l = kd_loss(logits, &soft, labels, &self.cfg)?;
        Ok((l.total, l.soft, l.hard))
    }
}
