//! Training / inference throughput on random data, the rows of `peers/bench_train.py`, for
//! plain candle (`candle_nn::linear` + `relu` + `candle_nn::loss::cross_entropy` +
//! `candle_nn::AdamW`) and for `amdistill::nn` (fused Linear+ReLU, fused losses, fused AdamW).
//!
//! ```text
//! cargo bench --bench train -- [--threads 1,2] [--seconds 8] [--impl both|candle|ours] [--breakdown]
//! ```
//!
//! Shapes follow the real job: input 880 (80 fbank x 11 frames), 2000 senones, batches of 512.
//! Teacher 880-6x1024-2000 ReLU, student 880-3x256-2000; KD loss 0.5*KL(T=2)*T^2 + 0.5*CE with
//! the teacher logits precomputed; AdamW lr 1e-3. Each figure is the best of 4 windows of
//! seconds/4 after a few warm-up steps (best-of because a window that shares the CPU is slower,
//! never faster). The thread count sets both a rayon pool and `RAYON_NUM_THREADS`, which
//! candle's gemm reads on every call.

use std::time::Instant;

use amdistill::nn as fnn;
use candle_core::{DType, Device, Module, Result, Tensor, Var, D};
use candle_nn::{Optimizer, VarBuilder, VarMap};

const IN_DIM: usize = 880;
const SENONES: usize = 2000;
const BATCH: usize = 512;
const POOL: usize = 8;
const TEMP: f64 = 2.0;
const ALPHA: f64 = 0.5;

/// PyTorch 2.11 CPU (MKL) figures from `peers/results.md` (AMD EPYC, this machine kind):
/// (row key, frames/s at 1 thread, at 2 threads).
const TORCH: [(&str, f64, f64); 5] = [
    ("teacher_train", 2076.0, 3864.0),
    ("teacher_infer", 6722.0, 12573.0),
    ("kd_excl", 15570.0, 29161.0),
    ("student_b1", 13345.0, 12796.0),
    ("student_b512", 63361.0, 113113.0),
];

const ROWS: [(&str, &str, usize); 5] = [
    ("teacher_train", "teacher train (CE + AdamW)", BATCH),
    ("teacher_infer", "teacher inference", BATCH),
    (
        "kd_excl",
        "student KD train, teacher logits precomputed",
        BATCH,
    ),
    ("student_b1", "student inference, streaming", 1),
    ("student_b512", "student inference", BATCH),
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Impl {
    Candle,
    Ours,
}

impl Impl {
    fn label(self) -> &'static str {
        match self {
            Impl::Candle => "candle 0.11",
            Impl::Ours => "amdistill::nn",
        }
    }
}

enum Layer {
    Candle(candle_nn::Linear),
    Ours(fnn::Linear),
}

/// An MLP `880 -> n x hidden (ReLU) -> 2000` and its variables.
struct Mlp {
    layers: Vec<Layer>,
    vars: Vec<Var>,
}

impl Mlp {
    fn new(imp: Impl, hidden: usize, n: usize) -> Result<Self> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let mut layers = Vec::new();
        let mut d = IN_DIM;
        for i in 0..=n {
            let o = if i == n { SENONES } else { hidden };
            let vb = vb.pp(format!("l{i}"));
            layers.push(match imp {
                Impl::Candle => Layer::Candle(candle_nn::linear(d, o, vb)?),
                Impl::Ours => Layer::Ours(fnn::linear(d, o, vb)?),
            });
            d = o;
        }
        Ok(Mlp {
            layers,
            vars: vm.all_vars(),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = match (l, i == last) {
                (Layer::Candle(l), true) => l.forward(&h)?,
                (Layer::Candle(l), false) => l.forward(&h)?.relu()?,
                (Layer::Ours(l), true) => l.forward(&h)?,
                (Layer::Ours(l), false) => l.forward_relu(&h)?,
            };
        }
        Ok(h)
    }
}

enum Opt {
    Candle(candle_nn::AdamW),
    Ours(fnn::AdamW),
}

impl Opt {
    fn new(imp: Impl, vars: Vec<Var>) -> Result<Self> {
        Ok(match imp {
            Impl::Candle => Opt::Candle(candle_nn::AdamW::new(
                vars,
                candle_nn::ParamsAdamW {
                    lr: 1e-3,
                    ..Default::default()
                },
            )?),
            Impl::Ours => Opt::Ours(fnn::AdamW::new(
                vars,
                fnn::AdamWConfig {
                    lr: 1e-3,
                    ..Default::default()
                },
            )?),
        })
    }
    fn step(&mut self, g: &candle_core::backprop::GradStore) -> Result<()> {
        match self {
            Opt::Candle(o) => o.step(g),
            Opt::Ours(o) => o.step(g),
        }
    }
}

fn ce(imp: Impl, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    match imp {
        Impl::Candle => candle_nn::loss::cross_entropy(logits, labels),
        Impl::Ours => fnn::cross_entropy(logits, labels),
    }
}

/// `ALPHA * KL(T) * T^2 + (1 - ALPHA) * CE`, as in the Python harness.
fn kd_loss(imp: Impl, s: &Tensor, t: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let kl = match imp {
        Impl::Candle => {
            let ls = candle_nn::ops::log_softmax(&(s / TEMP)?, D::Minus1)?;
            let lt = candle_nn::ops::log_softmax(&(t / TEMP)?, D::Minus1)?;
            let n = s.dim(0)? as f64;
            (lt.exp()? * (lt - ls)?)?
                .sum_all()?
                .affine(TEMP * TEMP / n, 0.0)?
        }
        Impl::Ours => fnn::kl_div_soft_targets(s, t, TEMP)?,
    };
    (kl * ALPHA)? + (ce(imp, s, labels)? * (1.0 - ALPHA))?
}

/// Best of `windows` windows -> (frames/s, seconds per step).
fn measure(
    step: &mut dyn FnMut() -> Result<()>,
    frames: usize,
    seconds: f64,
    warmup: usize,
    min_steps: usize,
) -> Result<(f64, f64)> {
    const WINDOWS: usize = 4;
    for _ in 0..warmup {
        step()?;
    }
    let mut best = (0.0, f64::INFINITY);
    for _ in 0..WINDOWS {
        let t0 = Instant::now();
        let mut n = 0usize;
        let el = loop {
            step()?;
            n += 1;
            let el = t0.elapsed().as_secs_f64();
            if el >= seconds / WINDOWS as f64 && n >= min_steps {
                break el;
            }
        };
        let fps = (n * frames) as f64 / el;
        if fps > best.0 {
            best = (fps, el / n as f64);
        }
    }
    Ok(best)
}

struct Data {
    xs: Vec<Tensor>,
    ys: Vec<Tensor>,
    frames: Tensor,
}

fn data() -> Result<Data> {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for _ in 0..POOL {
        let x: Vec<f32> = (0..BATCH * IN_DIM)
            .map(|_| r.gen_range(-1.7f32..1.7))
            .collect();
        let y: Vec<u32> = (0..BATCH).map(|_| r.gen_range(0..SENONES as u32)).collect();
        xs.push(Tensor::from_vec(x, (BATCH, IN_DIM), &Device::Cpu)?);
        ys.push(Tensor::from_vec(y, BATCH, &Device::Cpu)?);
    }
    let frames = Tensor::cat(&xs, 0)?;
    Ok(Data { xs, ys, frames })
}

/// All rows for one implementation in the current thread pool: key -> (frames/s, s/step).
fn bench(
    imp: Impl,
    d: &Data,
    seconds: f64,
    breakdown: bool,
) -> Result<Vec<(&'static str, (f64, f64))>> {
    let mut res = Vec::new();
    let mut it = 0usize;
    let mut nxt = move || {
        it += 1;
        it % POOL
    };
    let teacher = Mlp::new(imp, 1024, 6)?;
    let student = Mlp::new(imp, 256, 3)?;

    let mut opt_t = Opt::new(imp, teacher.vars.clone())?;
    let mut step = || -> Result<()> {
        let i = nxt();
        let g = ce(imp, &teacher.forward(&d.xs[i])?, &d.ys[i])?.backward()?;
        opt_t.step(&g)
    };
    res.push(("teacher_train", measure(&mut step, BATCH, seconds, 3, 3)?));
    if breakdown {
        let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
        let n = 10;
        for k in 0..n {
            let i = k % POOL;
            let t0 = Instant::now();
            let loss = ce(imp, &teacher.forward(&d.xs[i])?, &d.ys[i])?;
            loss.to_scalar::<f32>()?;
            let t1 = Instant::now();
            let g = loss.backward()?;
            let t2 = Instant::now();
            opt_t.step(&g)?;
            let t3 = Instant::now();
            tf += (t1 - t0).as_secs_f64();
            tb += (t2 - t1).as_secs_f64();
            to += (t3 - t2).as_secs_f64();
        }
        let ms = |t: f64| 1e3 * t / n as f64;
        println!(
            "  {:<14} teacher step: forward+loss {:.1} ms, backward {:.1} ms, AdamW {:.1} ms",
            imp.label(),
            ms(tf),
            ms(tb),
            ms(to)
        );
    }

    let mut step = || -> Result<()> {
        teacher.forward(&d.xs[nxt()])?;
        Ok(())
    };
    res.push(("teacher_infer", measure(&mut step, BATCH, seconds, 3, 3)?));

    let cache: Vec<Tensor> =
        d.xs.iter()
            .map(|x| teacher.forward(x).map(|t| t.detach()))
            .collect::<Result<_>>()?;
    let mut opt_s = Opt::new(imp, student.vars.clone())?;
    let mut step = || -> Result<()> {
        let i = nxt();
        let g = kd_loss(imp, &student.forward(&d.xs[i])?, &cache[i], &d.ys[i])?.backward()?;
        opt_s.step(&g)
    };
    res.push(("kd_excl", measure(&mut step, BATCH, seconds, 3, 3)?));

    let total = d.frames.dim(0)?;
    let mut j = 0usize;
    let mut step = || -> Result<()> {
        j = (j + 1) % total;
        student.forward(&d.frames.narrow(0, j, 1)?)?;
        Ok(())
    };
    res.push(("student_b1", measure(&mut step, 1, seconds, 50, 100)?));

    let mut step = || -> Result<()> {
        student.forward(&d.xs[nxt()])?;
        Ok(())
    };
    res.push(("student_b512", measure(&mut step, BATCH, seconds, 3, 3)?));
    Ok(res)
}

fn main() -> Result<()> {
    run(std::env::args().skip(1).collect())
}

/// The bench with its command-line arguments (program name excluded).
fn run(argv: Vec<String>) -> Result<()> {
    let mut threads = vec![1usize, 2];
    let mut seconds = 8.0;
    let mut imps = vec![Impl::Candle, Impl::Ours];
    let mut breakdown = false;
    let mut args = argv.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => {
                threads = args
                    .next()
                    .expect("--threads N,M")
                    .split(',')
                    .map(|s| s.trim().parse().expect("thread count"))
                    .collect()
            }
            "--seconds" => seconds = args.next().expect("--seconds S").parse().expect("seconds"),
            "--impl" => {
                imps = match args.next().as_deref() {
                    Some("candle") => vec![Impl::Candle],
                    Some("ours") => vec![Impl::Ours],
                    Some("both") => vec![Impl::Candle, Impl::Ours],
                    other => panic!("--impl both|candle|ours, got {other:?}"),
                }
            }
            "--breakdown" => breakdown = true,
            // cargo bench passes --bench; ignore it and anything else libtest would take.
            _ => {}
        }
    }
    let d = data()?;
    // results[thread index][impl index] = rows
    let mut results = Vec::new();
    for &n in &threads {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("rayon pool");
        let mut per = Vec::new();
        for &imp in &imps {
            println!("== {} threads, {}", n, imp.label());
            let r = pool.install(|| bench(imp, &d, seconds, breakdown))?;
            for (k, (fps, s)) in &r {
                println!("  {k:<14} {fps:>10.0} frames/s {:>9.3} ms/step", 1e3 * s);
            }
            per.push(r);
        }
        results.push(per);
    }

    let mut head = vec!["measure".to_string(), "batch".to_string()];
    for &n in &threads {
        for imp in &imps {
            head.push(format!("{} @{n} thr", imp.label()));
        }
        head.push(format!("PyTorch @{n} thr"));
    }
    println!();
    println!("frames/s (best of 4 windows, {seconds} s per figure)");
    println!();
    println!("| {} |", head.join(" | "));
    println!(
        "|{}|",
        head.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for (key, label, batch) in ROWS {
        let mut row = vec![label.to_string(), batch.to_string()];
        for (ti, &n) in threads.iter().enumerate() {
            for per in &results[ti] {
                let fps = per
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.0)
                    .unwrap_or(f64::NAN);
                row.push(format!("{fps:.0}"));
            }
            let t = TORCH.iter().find(|(k, _, _)| *k == key).expect("peer row");
            row.push(match n {
                1 => format!("{:.0}", t.1),
                2 => format!("{:.0}", t.2),
                _ => "-".into(),
            });
        }
        println!("| {} |", row.join(" | "));
    }
    Ok(())
}
