//! The training loop: batches from [`crate::train::data`], a model from [`crate::models`],
//! AdamW with warm-up and decay, gradient clipping, validation every epoch, early stopping,
//! checkpoints and exact resume, metrics as JSON lines.
//!
//! Exact resume: the data order depends only on (seed, epoch), initial weights only on the
//! seed, and a checkpoint holds the weights, the AdamW moments and the position (epoch,
//! batch within it, running sums); `--resume` continues from the newest checkpoint and ends
//! with the same weights as an uninterrupted run (tests/train_cli.rs checks it).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::features::cmvn::CmvnStats;
use crate::features::store::FeatureStore;
use crate::labels::kaldi_ali::read_alignments;
use crate::labels::tree::{read_senones, senones_identity};
use crate::models::AcousticModel;
use crate::nn::{AdamW, AdamWConfig};
use crate::train::checkpoint::{load_safetensors, load_vars, save_safetensors, sorted_vars};
use crate::train::config::{CmvnMode, Schedule, TrainConfig};
use crate::train::data::{Batch, TrainData, PAD_LABEL, UNLABELLED};
use crate::train::kd::Distiller;
use crate::train::loss::cross_entropy;
use crate::train::trained::{log_priors, CmvnCard, GlobalCmvn, ModelCard, MODEL_FORMAT};

/// The trained weights, written when training ends (the best by validation accuracy).
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// Under OUT/checkpoints: the best weights so far, while training runs.
const BEST_WEIGHTS: &str = "best.safetensors";
const CHECKPOINTS: &str = "checkpoints";

/// Metadata key of a checkpoint's [`Progress`].
const PROGRESS_KEY: &str = "amdistill.progress";

/// Where training stands; saved in every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimiser steps taken.
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Batches of `epoch` already trained on.
    pub batch_in_epoch: u64,
    /// Running sums over the epoch so far (for its train loss and accuracy).
    pub epoch_loss_sum: f64,
    pub epoch_correct: u64,
    /// Aligned frames of the epoch so far (the train accuracy's denominator).
    pub epoch_frames: u64,
    pub epoch_batches: u64,
    /// Best validation accuracy so far and the epoch (1-based) it came from.
    pub best_valid_acc: f64,
    pub best_epoch: u64,
    pub epochs_since_best: u64,
    /// Set when training stopped (all epochs, max_steps or early stopping).
    pub finished: bool,
}

/// Validation figures of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalResult {
    pub frames: u64,
    pub accuracy: f64,
    /// Cross-entropy of the alignment labels, nats per frame.
    pub cross_entropy: f64,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub epochs: u64,
    pub best_valid_acc: Option<f64>,
    pub seconds: f64,
    pub frames_per_second: f64,
}

/// Trains the model of `cfg` into `out`. With `resume`, continues from the newest
/// checkpoint in `out/checkpoints` (starting afresh if there is none); a fresh start first
/// clears an earlier run's checkpoints and weights from `out`.
pub fn train(cfg: &TrainConfig, out: &Path, resume: bool, quiet: bool) -> Result<TrainSummary> {
    let t_start = Instant::now();
    let device = device()?;
    std::fs::create_dir_all(out.join(CHECKPOINTS)).map_err(|e| Error::io(out, e))?;
    crate::atomic::remove_stale_temporaries(out)?;
    crate::atomic::remove_stale_temporaries(out.join(CHECKPOINTS))?;

    // Senones, features, labels.
    let senones = read_senones(&cfg.data.senones)?;
    let num_senones = senones.len();
    let senones_id = senones_identity(&cfg.data.senones)?;
    let train_store = FeatureStore::open(&cfg.data.train)?;
    let dim = train_store.dim();
    let cmvn = cmvn_card(cfg, &train_store)?;
    let train_ali = read_alignments(&cfg.data.train_ali)?;
    let priors = log_priors(&train_ali, num_senones);
    let normaliser = cmvn.normaliser(&train_store)?;
    let frame_shift = train_store.frame_shift();
    let fbank = train_store.options().cloned();
    let untranscribed = cfg.kd.as_ref().is_some_and(|kd| kd.untranscribed);
    let (train_data, skipped) = if untranscribed {
        TrainData::with_untranscribed(train_store, normaliser, train_ali, num_senones)?
    } else {
        TrainData::new(train_store, normaliser, train_ali, num_senones)?
    };
    report_skipped(&cfg.data.train, &skipped, quiet);
    let valid_data = match (&cfg.data.valid, &cfg.data.valid_ali) {
        (Some(v), Some(a)) => {
            let store = FeatureStore::open(v)?;
            check_same_features(&cfg.data.train, dim, frame_shift, &store)?;
            let n = cmvn.normaliser(&store)?;
            let (d, skipped) = TrainData::new(store, n, read_alignments(a)?, num_senones)?;
            report_skipped(v, &skipped, quiet);
            Some(d)
        }
        _ => None,
    };

    // The model, initialised from the seed alone.
    let varmap = VarMap::new();
    let vb = crate::nn::seeded_var_builder(&varmap, cfg.train.seed, DType::F32, &device);
    let model = cfg
        .model
        .build(dim, num_senones, vb)
        .map_err(cerr("building the model"))?;
    let vars = sorted_vars(&varmap);
    let summary = cfg.model.summary(dim, num_senones);

    // A teacher, for students.
    let distiller = match &cfg.kd {
        Some(kd) => Some(Distiller::new(
            kd,
            &train_data,
            &senones_id,
            frame_shift,
            &device,
        )?),
        None => None,
    };
    let mut ctx = model.context();
    if let Some(d) = &distiller {
        let t = d.context();
        ctx.left = ctx.left.max(t.left);
        ctx.right = ctx.right.max(t.right);
    }

    let card = ModelCard {
        format: MODEL_FORMAT.to_string(),
        name: cfg.model.describe(dim, num_senones),
        model: cfg.model.clone(),
        input_dim: dim,
        num_senones,
        senones_id: senones_id.clone(),
        context: model.context(),
        params: summary.params,
        mflops_per_frame: summary.mflops_per_frame,
        frame_shift,
        fbank,
        cmvn,
        log_priors: priors,
        training: serde_json::json!({ "config": cfg, "teacher": distiller.as_ref().map(|d| d.describe()) }),
    };

    let mut opt = AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        AdamWConfig {
            lr: cfg.optim.lr,
            beta1: cfg.optim.beta1,
            beta2: cfg.optim.beta2,
            eps: cfg.optim.eps,
            weight_decay: cfg.optim.weight_decay,
        },
    )
    .map_err(cerr("creating the optimiser"))?;
    if cfg.optim.max_grad_norm > 0.0 {
        opt.set_max_grad_norm(Some(cfg.optim.max_grad_norm));
    }

    let metrics_path = out.join("metrics.jsonl");
    let mut progress = Progress::default();
    if resume {
        if let Some(ck) = newest_checkpoint(out)? {
            check_same_config(out, cfg)?;
            progress = load_checkpoint(&ck, &vars, &mut opt, &device)?;
            truncate_metrics(&metrics_path, progress.step)?;
            if !quiet {
                eprintln!(
                    "resuming from {} (epoch {}, step {})",
                    ck.display(),
                    progress.epoch + 1,
                    progress.step
                );
            }
        } else if !quiet {
            eprintln!(
                "--resume: no checkpoint in {}, starting afresh",
                out.join(CHECKPOINTS).display()
            );
        }
    }
    if progress.step == 0 {
        clear_earlier_run(out)?;
    }
    write_json(&out.join("model.json"), &card)?;
    std::fs::copy(&cfg.data.senones, out.join("senones.txt"))
        .map_err(|e| Error::io(out.join("senones.txt"), e))?;
    // The phone set the senones index (build-tree writes it beside senones.txt), so scoring
    // can map senones to phones from the model directory alone.
    if let Some(tree_dir) = cfg.data.senones.parent() {
        for f in ["phones.txt", "phone_classes.txt"] {
            if tree_dir.join(f).exists() {
                std::fs::copy(tree_dir.join(f), out.join(f))
                    .map_err(|e| Error::io(out.join(f), e))?;
            }
        }
    }
    write_atomic(out.join("train.toml"), |w| {
        w.write_all(toml::to_string(cfg).unwrap_or_default().as_bytes())
    })?;
    if progress.finished {
        if !quiet {
            eprintln!("{}: training already finished", out.display());
        }
        return Ok(TrainSummary {
            steps: progress.step,
            epochs: progress.epoch,
            best_valid_acc: valid_data.as_ref().map(|_| progress.best_valid_acc),
            seconds: 0.0,
            frames_per_second: 0.0,
        });
    }

    let batches_per_epoch = train_data.batches_per_epoch(&cfg.loader);
    let total_steps = batches_per_epoch * cfg.train.epochs;
    let schedule = LrSchedule {
        peak: cfg.optim.lr,
        warmup: cfg.optim.warmup_steps,
        total: total_steps.max(1),
        kind: cfg.optim.schedule,
        final_ratio: cfg.optim.final_lr_ratio,
    };
    let mut metrics = MetricsLog::open(&metrics_path)?;
    if !quiet {
        eprintln!(
            "training {} ({} params, {:.2} MFLOPs/frame, context -{}/+{}) on {} frames, {} batches/epoch, {} epochs{}",
            card.name,
            card.params,
            card.mflops_per_frame,
            card.context.left,
            card.context.right,
            train_data.total_frames(),
            batches_per_epoch,
            cfg.train.epochs,
            distiller.as_ref().map(|d| format!(", {}", d.describe())).unwrap_or_default()
        );
    }

    let epoch_end = EpochEnd {
        valid: valid_data.as_ref(),
        model: model.as_ref(),
        vars: &vars,
        out,
        card: &card,
        patience: cfg.train.patience,
        device: &device,
        quiet,
    };
    let mut frames_trained: u64 = 0;
    let t_loop = Instant::now();
    'epochs: while progress.epoch < cfg.train.epochs {
        let epoch = progress.epoch;
        let bar = crate::progress::bar(batches_per_epoch, &format!("epoch {}", epoch + 1));
        bar.set_position(progress.batch_in_epoch);
        let iter = train_data.epoch(
            &cfg.loader,
            ctx.left,
            ctx.right,
            cfg.train.seed,
            epoch,
            progress.batch_in_epoch,
        )?;
        let t_epoch = Instant::now();
        let mut epoch_frames_now: u64 = 0;
        for batch in iter {
            let batch = batch?;
            let lr = schedule.at(progress.step);
            opt.set_lr(lr);
            // Dropout masks from (seed, step): reruns and resumes draw the same ones.
            crate::models::seed_dropout(cfg.train.seed, progress.step);
            let out_step = train_step(
                model.as_ref(),
                &batch,
                ctx,
                cfg,
                distiller.as_ref(),
                &device,
            )?;
            if !out_step.loss.is_finite() {
                return Err(Error::config(format!(
                    "{}: loss is {} at step {} (epoch {}, batch {}); the last good checkpoint is kept in {} — lower [optim] lr or raise warmup_steps",
                    out.display(),
                    out_step.loss,
                    progress.step + 1,
                    epoch + 1,
                    progress.batch_in_epoch + 1,
                    out.join(CHECKPOINTS).display()
                )));
            }
            let grads = out_step.grads.as_ref().expect("finite loss has gradients");
            opt.step(grads).map_err(cerr("optimiser step"))?;
            progress.step += 1;
            model
                .after_step(progress.step)
                .map_err(cerr("after-step constraint"))?;
            progress.batch_in_epoch += 1;
            progress.epoch_batches += 1;
            progress.epoch_loss_sum += out_step.loss;
            progress.epoch_correct += out_step.correct;
            progress.epoch_frames += out_step.aligned;
            frames_trained += out_step.frames;
            epoch_frames_now += out_step.frames;
            bar.inc(1);
            let fps = epoch_frames_now as f64 / t_epoch.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "epoch {} loss {:.3} {:.0} frames/s",
                epoch + 1,
                out_step.loss,
                fps
            ));
            if cfg.train.log_every > 0 && progress.step % cfg.train.log_every == 0 {
                metrics.write(&serde_json::json!({
                    "kind": "step", "step": progress.step, "epoch": epoch + 1, "lr": lr,
                    "loss": out_step.loss, "soft_loss": out_step.soft, "hard_loss": out_step.hard,
                    "acc": out_step.correct as f64 / out_step.aligned.max(1) as f64,
                    "frames_per_s": fps,
                }))?;
            }
            if cfg.train.checkpoint_every > 0 && progress.step % cfg.train.checkpoint_every == 0 {
                save_checkpoint(out, &vars, &opt, &progress, cfg.train.keep_checkpoints)?;
            }
            if cfg.train.max_steps > 0 && progress.step >= cfg.train.max_steps {
                bar.finish_and_clear();
                progress.finished = true;
                epoch_end.finish(&mut progress, &mut metrics, false)?;
                break 'epochs;
            }
        }
        bar.finish_and_clear();
        let stop = epoch_end.finish(&mut progress, &mut metrics, true)?;
        if stop {
            progress.finished = true;
            break;
        }
    }
    progress.finished = true;
    // model.safetensors appears only now, so its presence says that training finished.
    let best = out.join(CHECKPOINTS).join(BEST_WEIGHTS);
    if valid_data.is_some() && best.exists() {
        copy_atomic(&best, &out.join(MODEL_WEIGHTS))?;
    } else {
        save_weights(&out.join(MODEL_WEIGHTS), &vars, &card)?;
    }
    save_checkpoint(out, &vars, &opt, &progress, cfg.train.keep_checkpoints)?;
    let secs = t_loop.elapsed().as_secs_f64();
    let summary = TrainSummary {
        steps: progress.step,
        epochs: progress.epoch,
        best_valid_acc: valid_data.as_ref().map(|_| progress.best_valid_acc),
        seconds: t_start.elapsed().as_secs_f64(),
        frames_per_second: frames_trained as f64 / secs.max(1e-9),
    };
    metrics.write(&serde_json::json!({ "kind": "done", "summary": summary }))?;
    Ok(summary)
}

/// What the end of an epoch needs, fixed for the run.
struct EpochEnd<'a> {
    valid: Option<&'a TrainData>,
    model: &'a dyn AcousticModel,
    vars: &'a [(String, candle_core::Var)],
    out: &'a Path,
    card: &'a ModelCard,
    /// Epochs without improvement before stopping (0 = never).
    patience: u64,
    device: &'a Device,
    quiet: bool,
}

impl EpochEnd<'_> {
    /// The end of an epoch (or of training at max_steps): validation, metrics, the best
    /// model, early stopping. Returns whether to stop.
    fn finish(
        &self,
        p: &mut Progress,
        metrics: &mut MetricsLog,
        whole_epoch: bool,
    ) -> Result<bool> {
        let train_acc = p.epoch_correct as f64 / p.epoch_frames.max(1) as f64;
        let train_loss = p.epoch_loss_sum / p.epoch_batches.max(1) as f64;
        let eval = match self.valid {
            Some(v) => Some(evaluate(self.model, v, self.device)?),
            None => None,
        };
        let epoch_no = p.epoch + 1;
        let mut line = serde_json::json!({
            "kind": "epoch", "epoch": epoch_no, "step": p.step, "complete": whole_epoch,
            "train_acc": train_acc, "train_loss": train_loss,
        });
        let mut stop = false;
        if let Some(e) = eval {
            line["valid_acc"] = e.accuracy.into();
            line["valid_loss"] = e.cross_entropy.into();
            if e.accuracy > p.best_valid_acc || p.best_epoch == 0 {
                p.best_valid_acc = e.accuracy;
                p.best_epoch = epoch_no;
                p.epochs_since_best = 0;
                let best = self.out.join(CHECKPOINTS).join(BEST_WEIGHTS);
                save_weights(&best, self.vars, self.card)?;
            } else {
                p.epochs_since_best += 1;
            }
            stop = self.patience > 0 && p.epochs_since_best >= self.patience;
        }
        if !self.quiet {
            eprintln!(
                "epoch {epoch_no}: train loss {train_loss:.4} acc {:.2}%{}{}",
                100.0 * train_acc,
                eval.map(|e| format!(
                    ", valid loss {:.4} acc {:.2}%",
                    e.cross_entropy,
                    100.0 * e.accuracy
                ))
                .unwrap_or_default(),
                if stop { " (early stopping)" } else { "" }
            );
        }
        metrics.write(&line)?;
        if whole_epoch {
            p.epoch += 1;
            p.batch_in_epoch = 0;
            p.epoch_loss_sum = 0.0;
            p.epoch_correct = 0;
            p.epoch_frames = 0;
            p.epoch_batches = 0;
        }
        Ok(stop)
    }
}

/// One step's outcome.
struct StepOutput {
    /// None when the loss is not finite (nothing to step with).
    grads: Option<candle_core::backprop::GradStore>,
    loss: f64,
    soft: Option<f64>,
    hard: Option<f64>,
    /// Argmax equal to the label, of `aligned` frames.
    correct: u64,
    /// Frames trained on (padding excluded).
    frames: u64,
    /// Of those, frames with an alignment (not untranscribed).
    aligned: u64,
}

/// Forward, loss and backward of one batch.
fn train_step(
    model: &dyn AcousticModel,
    batch: &Batch,
    ctx: crate::models::Context,
    cfg: &TrainConfig,
    distiller: Option<&Distiller>,
    device: &Device,
) -> Result<StepOutput> {
    let c = cerr("training step");
    let xs = Tensor::from_slice(&batch.feats, (batch.chunks, batch.width, batch.dim), device)
        .map_err(&c)?;
    let own = model.context();
    let xs_model = narrow_context(&xs, ctx, own, batch.chunk_frames).map_err(&c)?;
    let logits = model.forward_t(&xs_model, true).map_err(&c)?;
    let s = logits.dim(D::Minus1).map_err(&c)?;
    let logits = logits
        .reshape((batch.chunks * batch.chunk_frames, s))
        .map_err(&c)?;
    // Padded frames (past an utterance's end) carry no label: drop their rows.
    let rows: Vec<u32> = (0..batch.labels.len() as u32)
        .filter(|&i| batch.labels[i as usize] != PAD_LABEL)
        .collect();
    let labels: Vec<u32> = rows.iter().map(|&i| batch.labels[i as usize]).collect();
    let n = rows.len();
    let all_valid = n == batch.labels.len();
    let logits = if all_valid {
        logits
    } else {
        let idx = Tensor::from_vec(rows.clone(), n, device).map_err(&c)?;
        logits.index_select(&idx, 0).map_err(&c)?
    };
    let labels_t = Tensor::from_vec(labels.clone(), n, device).map_err(&c)?;
    let (loss, soft, hard) = match distiller {
        None => {
            // The fused kernel (one pass, gradient ready) where no smoothing is asked for.
            let l = if cfg.optim.label_smoothing == 0.0 {
                crate::nn::cross_entropy(&logits, &labels_t)
            } else {
                cross_entropy(&logits, &labels_t, cfg.optim.label_smoothing)
            }
            .map_err(&c)?;
            (l, None, None)
        }
        Some(d) => {
            let (l, soft, hard) = d
                .loss(&logits, &labels_t, batch, &rows, &xs, ctx)
                .map_err(&c)?;
            (l, Some(soft), Some(hard))
        }
    };
    let loss_value = loss
        .to_dtype(DType::F64)
        .and_then(|l| l.to_scalar::<f64>())
        .map_err(&c)?;
    let pred: Vec<u32> = logits
        .argmax(D::Minus1)
        .and_then(|p| p.to_vec1())
        .map_err(&c)?;
    let correct = pred.iter().zip(&labels).filter(|(a, b)| a == b).count() as u64;
    // Accuracy is over aligned frames; untranscribed ones have nothing to compare with.
    let aligned = labels.iter().filter(|&&y| y != UNLABELLED).count();
    let grads = if loss_value.is_finite() {
        Some(loss.backward().map_err(&c)?)
    } else {
        None
    };
    Ok(StepOutput {
        grads,
        loss: loss_value,
        soft,
        hard,
        correct,
        frames: n as u64,
        aligned: aligned as u64,
    })
}

/// The part of a batch `[chunks, chunk + ctx.left + ctx.right, dim]` that a model with
/// context `own` reads: `[chunks, chunk + own.left + own.right, dim]`.
pub fn narrow_context(
    xs: &Tensor,
    ctx: crate::models::Context,
    own: crate::models::Context,
    chunk: usize,
) -> candle_core::Result<Tensor> {
    if ctx == own {
        return Ok(xs.clone());
    }
    xs.narrow(1, ctx.left - own.left, chunk + own.left + own.right)
}

/// Frame accuracy and cross-entropy over every validation utterance (no dropout).
pub fn evaluate(
    model: &dyn AcousticModel,
    data: &TrainData,
    device: &Device,
) -> Result<EvalResult> {
    let own = model.context();
    let c = cerr("validation");
    let mut frames = 0u64;
    let mut correct = 0u64;
    let mut nll = 0f64;
    for i in 0..data.utts().len() {
        let b = data.utterance(i, own.left, own.right)?;
        if b.chunk_frames == 0 {
            continue;
        }
        let xs = Tensor::from_slice(&b.feats, (1, b.width, b.dim), device).map_err(&c)?;
        let logits = model
            .forward_t(&xs, false)
            .and_then(|l| l.squeeze(0))
            .map_err(&c)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).map_err(&c)?;
        let labels = Tensor::from_slice(&b.labels, b.labels.len(), device).map_err(&c)?;
        let picked: Vec<f32> = logp
            .gather(&labels.unsqueeze(1).map_err(&c)?, 1)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .map_err(&c)?;
        let pred: Vec<u32> = logits
            .argmax(D::Minus1)
            .and_then(|p| p.to_vec1())
            .map_err(&c)?;
        correct += pred.iter().zip(&b.labels).filter(|(a, b)| a == b).count() as u64;
        nll -= picked.iter().map(|&x| x as f64).sum::<f64>();
        frames += b.labels.len() as u64;
    }
    Ok(EvalResult {
        frames,
        accuracy: correct as f64 / frames.max(1) as f64,
        cross_entropy: nll / frames.max(1) as f64,
    })
}

/// Learning rate at a step: linear warm-up, then the configured decay to
/// `peak * final_ratio` at `total`.
#[derive(Debug, Clone, Copy)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup: u64,
    pub total: u64,
    pub kind: Schedule,
    pub final_ratio: f64,
}

impl LrSchedule {
    /// The rate for the step after `step` steps were taken.
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let x = ((step - self.warmup) as f64 / span).min(1.0);
        let f = self.final_ratio;
        match self.kind {
            Schedule::Constant => self.peak,
            Schedule::Cosine => {
                self.peak * (f + (1.0 - f) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos()))
            }
            Schedule::Exponential => self.peak * f.max(1e-12).powf(x),
        }
    }
}

/// The CMVN of `cfg`, with the training set's global statistics when `mode = global`.
fn cmvn_card(cfg: &TrainConfig, store: &FeatureStore) -> Result<CmvnCard> {
    let global = if cfg.data.cmvn == CmvnMode::Global {
        let dim = store.dim();
        let stats = store
            .utts()
            .par_iter()
            .map(|u| {
                let m = store.get(u)?;
                let mut s = CmvnStats::new(dim);
                s.accumulate(&m)?;
                Ok(s)
            })
            .try_reduce(
                || CmvnStats::new(dim),
                |mut a, b| {
                    a.add(&b)?;
                    Ok(a)
                },
            )?;
        Some(GlobalCmvn::from_stats(&stats))
    } else {
        None
    };
    Ok(CmvnCard {
        mode: cfg.data.cmvn,
        norm_vars: cfg.data.norm_vars,
        global,
    })
}

fn check_same_features(train: &Path, dim: usize, shift: f64, other: &FeatureStore) -> Result<()> {
    if other.dim() != dim || (other.frame_shift() - shift).abs() > 1e-9 {
        return Err(Error::Mismatch(format!(
            "{} has dimension {} and frame shift {} s, {} has {} and {} s",
            other.dir().display(),
            other.dim(),
            other.frame_shift(),
            train.display(),
            dim,
            shift
        )));
    }
    Ok(())
}

fn report_skipped(what: &Path, skipped: &[String], quiet: bool) {
    if quiet || skipped.is_empty() {
        return;
    }
    eprintln!("{}: {} utterances left out:", what.display(), skipped.len());
    for s in skipped.iter().take(20) {
        eprintln!("  {s}");
    }
    if skipped.len() > 20 {
        eprintln!("  ... and {} more", skipped.len() - 20);
    }
}

fn save_weights(path: &Path, vars: &[(String, candle_core::Var)], card: &ModelCard) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let meta = HashMap::from([(
        "amdistill.model".to_string(),
        serde_json::to_string(card).unwrap_or_default(),
    )]);
    save_safetensors(path, &tensors, meta)
}

/// Writes `checkpoints/step-N.safetensors` (weights `model.*`, moments `opt.m.*`/`opt.v.*`,
/// progress in the metadata) and keeps the newest `keep`.
fn save_checkpoint(
    out: &Path,
    vars: &[(String, candle_core::Var)],
    opt: &AdamW,
    progress: &Progress,
    keep: usize,
) -> Result<()> {
    let dir = out.join(CHECKPOINTS);
    let path = dir.join(format!("step-{:08}.safetensors", progress.step));
    let state = opt.state();
    let c = cerr("writing a checkpoint");
    let mut tensors = Vec::with_capacity(3 * vars.len());
    for (i, (n, v)) in vars.iter().enumerate() {
        tensors.push((format!("model.{n}"), v.as_tensor().clone()));
        tensors.push((
            format!("opt.m.{n}"),
            Tensor::from_slice(&state.m[i], v.dims(), &Device::Cpu).map_err(&c)?,
        ));
        tensors.push((
            format!("opt.v.{n}"),
            Tensor::from_slice(&state.v[i], v.dims(), &Device::Cpu).map_err(&c)?,
        ));
    }
    let meta = HashMap::from([
        (
            PROGRESS_KEY.to_string(),
            serde_json::to_string(progress).unwrap_or_default(),
        ),
        ("amdistill.opt_step".to_string(), state.step.to_string()),
    ]);
    save_safetensors(&path, &tensors, meta)?;
    let mut all = list_checkpoints(out)?;
    while all.len() > keep.max(1) {
        let old = all.remove(0);
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

fn load_checkpoint(
    path: &Path,
    vars: &[(String, candle_core::Var)],
    opt: &mut AdamW,
    device: &Device,
) -> Result<Progress> {
    let (tensors, meta) = load_safetensors(path, device)?;
    let progress: Progress = meta
        .get(PROGRESS_KEY)
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| Error::format(path, "not an amdistill checkpoint (no progress metadata)"))?;
    let weights: HashMap<String, Tensor> = tensors
        .iter()
        .filter_map(|(k, t)| k.strip_prefix("model.").map(|n| (n.to_string(), t.clone())))
        .collect();
    load_vars(vars, &weights, "", path)?;
    let c = |e: candle_core::Error| Error::format(path, e.to_string());
    let mut m = Vec::with_capacity(vars.len());
    let mut v = Vec::with_capacity(vars.len());
    for (n, _) in vars {
        let get = |k: String| -> Result<Vec<f32>> {
            tensors
                .get(&k)
                .ok_or_else(|| Error::format(path, format!("no optimiser state '{k}'")))?
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(c)
        };
        m.push(get(format!("opt.m.{n}"))?);
        v.push(get(format!("opt.v.{n}"))?);
    }
    let step: u64 = meta
        .get("amdistill.opt_step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::format(path, "no optimiser step count"))?;
    opt.load_state(crate::nn::adamw::AdamWState { step, m, v })
        .map_err(|e| Error::format(path, e.to_string()))?;
    Ok(progress)
}

fn list_checkpoints(out: &Path) -> Result<Vec<PathBuf>> {
    let dir = out.join(CHECKPOINTS);
    let mut v: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-") && n.ends_with(".safetensors"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    v.sort();
    Ok(v)
}

fn newest_checkpoint(out: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(out)?.pop())
}

/// `--resume` continues a run only with the configuration it was started with (`out/
/// train.toml`): other data, targets, model, loader or optimiser settings, or another seed,
/// would silently give a model of neither configuration, or (when the run had finished) the old
/// model under the new name. The loop's length (`[train]` but its seed) may change.
fn check_same_config(out: &Path, cfg: &TrainConfig) -> Result<()> {
    let path = out.join("train.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(()); // a checkpoint without its config: nothing to compare with
    };
    // Read back through TrainConfig, so settings added since that run was started compare
    // at their defaults; one this build cannot read is left to the checkpoint's own checks.
    let Ok(old) = TrainConfig::parse(&text, &path, &[]) else {
        return Ok(());
    };
    let (old, new) = (settings(&old)?, settings(cfg)?);
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    match names.into_iter().find(|n| old.get(*n) != new.get(*n)) {
        None => Ok(()),
        Some(name) => {
            let show = |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
            Err(Error::Mismatch(format!(
                "{}: --resume with another configuration: {name} was {}, now {}; \
                 train into another directory, or leave out --resume to start afresh there",
                out.display(),
                show(old.get(name)),
                show(new.get(name))
            )))
        }
    }
}

/// `[section] key` -> value of every setting that decides what a run learns: all of them but
/// `[train]`'s, whose seed alone counts (the loop's length may change on a resume).
fn settings(cfg: &TrainConfig) -> Result<BTreeMap<String, toml::Value>> {
    let table = toml::Table::try_from(cfg).map_err(|e| Error::config(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (section, value) in table {
        let Some(fields) = value.as_table() else {
            out.insert(section, value);
            continue;
        };
        for (key, v) in fields {
            if section != "train" || key == "seed" {
                out.insert(format!("[{section}] {key}"), v.clone());
            }
        }
    }
    Ok(out)
}

/// A fresh start in `out`: nothing of an earlier run may survive there to be taken for this
/// run's (its checkpoints would be resumed, its weights loaded with this run's model.json).
fn clear_earlier_run(out: &Path) -> Result<()> {
    let mut stale = list_checkpoints(out)?;
    stale.extend([
        out.join(CHECKPOINTS).join(BEST_WEIGHTS),
        out.join(MODEL_WEIGHTS),
        out.join("metrics.jsonl"),
    ]);
    for p in stale {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&p, e)),
            _ => {}
        }
    }
    Ok(())
}

/// Copies `from` to `to` through a temporary, so `to` is never seen half-copied.
fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let mut src = std::fs::File::open(from).map_err(|e| Error::io(from, e))?;
    write_atomic(to, |w| std::io::copy(&mut src, w).map(|_| ()))
}

/// Drops metrics lines written after `step` (by the killed run, past its last checkpoint).
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) => return Ok(()),
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomic(path, |w| w.write_all(kept.as_bytes()))
}

/// Appends JSON lines, flushed each time (a reader may follow it while training runs).
struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog {
            file,
            path: path.to_path_buf(),
        })
    }
    fn write(&mut self, v: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}")
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::format(path, e.to_string()))?;
    write_atomic(path, |w| w.write_all(text.as_bytes()))
}

/// The device: a CUDA GPU when built with the `cuda` feature and one is present, else the CPU.
pub fn device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    {
        if candle_core::utils::cuda_is_available() {
            return Device::new_cuda(0).map_err(|e| Error::config(format!("CUDA device 0: {e}")));
        }
    }
    Ok(Device::Cpu)
}

/// Maps a candle error to a library error with what was being done.
pub fn cerr(what: &'static str) -> impl Fn(candle_core::Error) -> Error {
    move |e| Error::config(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_final_ratio() {
        let s = LrSchedule {
            peak: 1.0,
            warmup: 10,
            total: 110,
            kind: Schedule::Cosine,
            final_ratio: 0.1,
        };
        assert!((s.at(0) - 0.1).abs() < 1e-12);
        assert!((s.at(9) - 1.0).abs() < 1e-12);
        assert!((s.at(10) - 1.0).abs() < 1e-12);
        assert!((s.at(60) - 0.55).abs() < 1e-9);
        assert!((s.at(110) - 0.1).abs() < 1e-12);
        let e = LrSchedule {
            kind: Schedule::Exponential,
            ..s
        };
        assert!((e.at(60) - 0.1f64.sqrt()).abs() < 1e-9);
        let c = LrSchedule {
            kind: Schedule::Constant,
            ..s
        };
        assert_eq!(c.at(100), 1.0);
    }
}
