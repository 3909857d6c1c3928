//! Acoustic models: features `[batch, frames + left + right, feat]` to senone logits
//! `[batch, frames, senones]`.
