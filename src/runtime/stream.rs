//! The streaming executor: frames in one at a time, log-posteriors out as soon as the
//! model's right context allows, equal bit for bit to [`Runtime::forward`] on the whole
//! input (the same kernels and per-frame code run on the same values).
//!
//! Each node keeps a ring of its last few output frames, as many as its consumers look back.
//! After every input frame the nodes run in order and each emits the frames its inputs now
//! allow (one per input frame once warm). A node's *delay* is how far behind the newest
//! input frame its newest output is: a splice adds its largest offset, a trim its right
//! edge; the output's delay is the model's latency in frames. LSTMs carry their state from
//! frame to frame; a backward LSTM needs the whole utterance and cannot stream.
//!
//! [`FrameStream`] adds the utterance edges as offline does (the first frame repeated
//! `left` times, the last `right` times at [`FrameStream::finish`]).

use std::sync::Arc;

use super::engine::{affine, frame_op, lstm_step, NodeKernel, Runtime, Scratch};
use super::graph::{NodeId, Op};
use crate::error::{Error, Result};

/// The last `cap` frames of one node, frame `t` in slot `t mod cap`.
#[derive(Debug, Clone)]
struct Ring {
    dim: usize,
    cap: usize,
    data: Vec<f32>,
}

impl Ring {
    fn slot(&self, t: i64) -> usize {
        t.rem_euclid(self.cap as i64) as usize
    }
    fn get(&self, t: i64) -> &[f32] {
        let s = self.slot(t) * self.dim;
        &self.data[s..s + self.dim]
    }
    fn get_mut(&mut self, t: i64) -> &mut [f32] {
        let s = self.slot(t) * self.dim;
        &mut self.data[s..s + self.dim]
    }
}

/// Graph-level streaming state: feed it the graph's input frames (context padding included).
pub struct GraphStream {
    rt: Arc<Runtime>,
    rings: Vec<Ring>,
    /// Time of each node's next output frame.
    next: Vec<i64>,
    /// `(node, frames beyond t it must have)` needed before each node emits `t`.
    needs: Vec<Vec<(NodeId, i64)>>,
    lstm: Vec<Option<(Vec<f32>, Vec<f32>)>>,
    scratch: Scratch,
    gates: Vec<f32>,
    cell: Vec<f32>,
    latency: i64,
}

impl GraphStream {
    /// Streaming state for `rt`; fails for graphs with a backward LSTM.
    pub fn new(rt: Arc<Runtime>) -> Result<Self> {
        let g = rt.graph();
        if !g.is_streamable() {
            return Err(Error::config(
                "a bidirectional LSTM needs the whole utterance and cannot stream; run it offline",
            ));
        }
        let nodes = &g.nodes;
        // Read window (min, max offset) of each consumer edge, and each node's delay.
        let mut needs: Vec<Vec<(NodeId, i64)>> = Vec::with_capacity(nodes.len());
        let mut reads: Vec<Vec<(NodeId, i64)>> = Vec::with_capacity(nodes.len());
        let mut delay = vec![0i64; nodes.len()];
        for (id, n) in nodes.iter().enumerate() {
            let (need, read): (Vec<(NodeId, i64)>, Vec<(NodeId, i64)>) = match &n.op {
                Op::Input => (vec![], vec![]),
                Op::Splice { input, offsets } => (
                    vec![(*input, *offsets.last().unwrap() as i64)],
                    vec![(*input, offsets[0] as i64)],
                ),
                Op::Trim { input, right, .. } => (vec![(*input, *right as i64)], vec![(*input, 0)]),
                op => {
                    let ins = op.inputs();
                    (
                        ins.iter().map(|&i| (i, 0)).collect(),
                        ins.iter().map(|&i| (i, 0)).collect(),
                    )
                }
            };
            delay[id] = need.iter().map(|&(i, o)| delay[i] + o).max().unwrap_or(0);
            needs.push(need);
            reads.push(read);
        }
        let mut cap = vec![1i64; nodes.len()];
        for (c, read) in reads.iter().enumerate() {
            for &(n, min_off) in read {
                cap[n] = cap[n].max(delay[c] - delay[n] - min_off + 1);
            }
        }
        let rings = nodes
            .iter()
            .zip(&cap)
            .map(|(n, &c)| Ring {
                dim: n.dim,
                cap: c as usize,
                data: vec![0f32; c as usize * n.dim],
            })
            .collect();
        let latency = delay[nodes.len() - 1];
        Ok(GraphStream {
            next: nodes.iter().map(|n| n.span.lead).collect(),
            lstm: vec![None; nodes.len()],
            rings,
            needs,
            scratch: Scratch::default(),
            gates: Vec::new(),
            cell: Vec::new(),
            latency,
            rt,
        })
    }

    /// Input frames between a frame going in and its log-posteriors coming out.
    pub fn latency(&self) -> usize {
        self.latency.max(0) as usize
    }

    /// Forgets the utterance (LSTM state included).
    pub fn reset(&mut self) {
        let g = self.rt.graph();
        for (n, node) in self.next.iter_mut().zip(&g.nodes) {
            *n = node.span.lead;
        }
        for s in &mut self.lstm {
            *s = None;
        }
    }

    /// Pushes one input frame (`input_dim` values); appends the output frames it completes
    /// (`senones` values each) to `out` and returns how many.
    pub fn push(&mut self, frame: &[f32], out: &mut Vec<f32>) -> usize {
        let rt = Arc::clone(&self.rt);
        let nodes = &rt.graph().nodes;
        assert_eq!(frame.len(), nodes[0].dim, "input frame size");
        let t_in = self.next[0];
        self.rings[0].get_mut(t_in).copy_from_slice(frame);
        self.next[0] += 1;
        let last = nodes.len() - 1;
        let mut emitted = 0;
        for id in 1..nodes.len() {
            loop {
                let t = self.next[id];
                if !self.needs[id].iter().all(|&(i, o)| t + o < self.next[i]) {
                    break;
                }
                self.step(id, t);
                self.next[id] += 1;
                if id == last {
                    out.extend_from_slice(self.rings[id].get(t));
                    emitted += 1;
                }
            }
        }
        emitted
    }

    /// Computes node `id` at time `t` into its ring.
    fn step(&mut self, id: NodeId, t: i64) {
        let rt = Arc::clone(&self.rt);
        let nodes = &rt.graph().nodes;
        let node = &nodes[id];
        let (before, rest) = self.rings.split_at_mut(id);
        let ring = &mut rest[0];
        match (&node.op, &rt.kernels[id]) {
            (
                Op::Affine {
                    input, bias, relu, ..
                },
                NodeKernel::Affine(w),
            ) => {
                let x = before[*input].get(t);
                affine(
                    w,
                    x,
                    1,
                    x.len(),
                    bias.as_deref(),
                    *relu,
                    &mut self.scratch,
                    ring.get_mut(t),
                );
            }
            (Op::Lstm(op), NodeKernel::Lstm { ih, hh, proj }) => {
                let x = before[op.input].get(t);
                let mut gates_in = vec![0f32; 4 * op.hidden];
                affine(
                    ih,
                    x,
                    1,
                    x.len(),
                    Some(&op.bias),
                    false,
                    &mut self.scratch,
                    &mut gates_in,
                );
                let (h, c) = self.lstm[id]
                    .get_or_insert_with(|| (vec![0f32; op.rec()], vec![0f32; op.hidden]));
                lstm_step(
                    op,
                    hh,
                    proj.as_ref(),
                    &gates_in,
                    h,
                    c,
                    &mut self.gates,
                    &mut self.cell,
                );
                ring.get_mut(t).copy_from_slice(h);
            }
            _ => {
                let frame = |i: NodeId, t: i64| -> &[f32] { before[i].get(t) };
                frame_op(node, nodes, frame, t, ring.get_mut(t));
            }
        }
    }
}

/// Utterance-level streaming of normalised feature frames: the edges are padded as offline
/// ([`Runtime::forward_utterance`]), so the concatenated output equals it.
pub struct FrameStream {
    graph: GraphStream,
    left: usize,
    right: usize,
    last: Option<Vec<f32>>,
    pushed: usize,
    emitted: usize,
}

impl FrameStream {
    pub fn new(rt: Arc<Runtime>) -> Result<Self> {
        let ctx = rt.context();
        Ok(FrameStream {
            graph: GraphStream::new(rt)?,
            left: ctx.left,
            right: ctx.right,
            last: None,
            pushed: 0,
            emitted: 0,
        })
    }

    /// Frames between a feature frame going in and its log-posteriors coming out.
    /// (Feature frame `j` comes out when frame `j + latency` goes in, or at `finish`.)
    pub fn latency(&self) -> usize {
        self.graph.latency()
    }

    /// Feature frames pushed and log-posterior frames returned in this utterance.
    pub fn counts(&self) -> (usize, usize) {
        (self.pushed, self.emitted)
    }

    /// Pushes one normalised feature frame; appends completed log-posterior frames to `out`.
    pub fn push(&mut self, frame: &[f32], out: &mut Vec<f32>) -> usize {
        let mut n = 0;
        if self.last.is_none() {
            for _ in 0..self.left {
                n += self.graph.push(frame, out);
            }
        }
        n += self.graph.push(frame, out);
        match &mut self.last {
            Some(l) => l.copy_from_slice(frame),
            None => self.last = Some(frame.to_vec()),
        }
        self.pushed += 1;
        self.emitted += n;
        n
    }

    /// Ends the utterance: pads the right edge, appends the remaining frames to `out`, and
    /// makes the stream ready for the next utterance.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> usize {
        let mut n = 0;
        if let Some(last) = self.last.take() {
            for _ in 0..self.right {
                n += self.graph.push(&last, out);
            }
        }
        self.emitted += n;
        debug_assert_eq!(self.emitted, self.pushed, "one output per input frame");
        self.reset();
        n
    }

    /// Drops the utterance in progress (its pending frames are lost).
    pub fn reset(&mut self) {
        self.graph.reset();
        self.last = None;
        self.pushed = 0;
        self.emitted = 0;
    }
}
