//! The fused ops against candle's generic ops and against hand-computed values.

use candle_core::{backprop::GradStore, DType, Device, Module, Tensor, Var, D};
use candle_nn::Optimizer;

use super::*;

fn rand(shape: &[usize], seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| r.gen_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn grads_for(vars: &[&Var], loss: &Tensor) -> (GradStore, Vec<Tensor>) {
    let g = loss.backward().unwrap();
    let v = vars
        .iter()
        .map(|v| g.get(v.as_tensor()).expect("a gradient").clone())
        .collect();
    (g, v)
}

#[test]
fn adamw_two_steps_match_hand_computation() {
    let cfg = AdamWConfig {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let p0 = [1.0f64, -2.0, 0.5];
    let gs = [[0.5f64, -1.0, 2.0], [-0.25, 0.5, 1.0]];
    let var = Var::from_slice(&p0.map(|x| x as f32), 3, &Device::Cpu).unwrap();
    let mut opt = AdamW::new(vec![var.clone()], cfg).unwrap();
    let (mut p, mut m, mut v) = (p0, [0f64; 3], [0f64; 3]);
    for (t, g) in gs.iter().enumerate() {
        let t = t as i32 + 1;
        for i in 0..3 {
            p[i] *= 1.0 - cfg.lr * cfg.weight_decay;
            m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g[i];
            v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g[i] * g[i];
            let mh = m[i] / (1.0 - cfg.beta1.powi(t));
            let vh = v[i] / (1.0 - cfg.beta2.powi(t));
            p[i] -= cfg.lr * mh / (vh.sqrt() + cfg.eps);
        }
        let mut store = store();
        let gt = Tensor::from_slice(&g.map(|x| x as f32), 3, &Device::Cpu).unwrap();
        store.insert(var.as_tensor(), gt);
        opt.step(&store).unwrap();
    }
    let got: Vec<f32> = var.to_vec1().unwrap();
    for i in 0..3 {
        assert!(
            (got[i] as f64 - p[i]).abs() < 1e-6,
            "{i}: {} vs {}",
            got[i],
            p[i]
        );
    }
    let st = opt.state();
    assert_eq!(st.step, 2);
    for i in 0..3 {
        assert!((st.m[0][i] as f64 - m[i]).abs() < 1e-6);
        assert!((st.v[0][i] as f64 - v[i]).abs() < 1e-6);
    }
}

#[test]
fn adamw_matches_candle_on_random_data() {
    let shapes: [&[usize]; 3] = [&[64, 33], &[33], &[70_000]];
    let mk = |s: u64| -> Vec<Var> {
        shapes
            .iter()
            .enumerate()
            .map(|(i, sh)| Var::from_tensor(&rand(sh, s + i as u64)).unwrap())
            .collect()
    };
    let (ours, theirs) = (mk(1), mk(1));
    let cfg = AdamWConfig {
        lr: 3e-3,
        weight_decay: 0.05,
        ..Default::default()
    };
    let mut a = AdamW::new(ours.clone(), cfg).unwrap();
    let mut b = candle_nn::AdamW::new(
        theirs.clone(),
        candle_nn::ParamsAdamW {
            lr: cfg.lr,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        },
    )
    .unwrap();
    for step in 0..5u64 {
        let (mut ga, mut gb) = (store(), store());
        for (i, (x, y)) in ours.iter().zip(&theirs).enumerate() {
            let g = rand(x.dims(), 100 + 10 * step + i as u64);
            ga.insert(x.as_tensor(), g.clone());
            gb.insert(y.as_tensor(), g);
        }
        a.step(&ga).unwrap();
        b.step(&gb).unwrap();
    }
    for (x, y) in ours.iter().zip(&theirs) {
        let d = max_diff(x.as_tensor(), y.as_tensor());
        assert!(d < 1e-6, "diff {d}");
    }
}

#[test]
fn adamw_state_resumes_exactly_and_checks_sizes() {
    let cfg = AdamWConfig::default();
    let run = |split: bool| -> Vec<f32> {
        let var = Var::from_tensor(&rand(&[1000], 5)).unwrap();
        let mut opt = AdamW::new(vec![var.clone()], cfg).unwrap();
        for s in 0..4u64 {
            if split && s == 2 {
                let st = opt.state();
                opt = AdamW::new(vec![var.clone()], cfg).unwrap();
                opt.load_state(st).unwrap();
            }
            let mut g = store();
            g.insert(var.as_tensor(), rand(&[1000], 50 + s));
            opt.step(&g).unwrap();
        }
        var.to_vec1().unwrap()
    };
    assert_eq!(run(false), run(true));
    let var = Var::from_tensor(&rand(&[10], 5)).unwrap();
    let mut opt = AdamW::new(vec![var], cfg).unwrap();
    let bad = AdamWState {
        step: 1,
        m: vec![vec![0.0; 9]],
        v: vec![vec![0.0; 10]],
    };
    assert!(opt.load_state(bad).is_err());
    let bad = AdamWState {
        step: 1,
        m: vec![],
        v: vec![],
    };
    assert!(opt.load_state(bad).is_err());
}

#[test]
fn grad_norm_and_clipping() {
    let a = Var::from_slice(&[0f32; 2], 2, &Device::Cpu).unwrap();
    let b = Var::from_slice(&[0f32; 1], 1, &Device::Cpu).unwrap();
    let mut g = store();
    g.insert(
        a.as_tensor(),
        Tensor::new(&[3f32, 0.0], &Device::Cpu).unwrap(),
    );
    g.insert(b.as_tensor(), Tensor::new(&[4f32], &Device::Cpu).unwrap());
    let vars = [a.clone(), b.clone()];
    assert!((grad_norm(&g, &vars).unwrap() - 5.0).abs() < 1e-9);

    // Clipping inside step equals stepping on pre-scaled gradients.
    let cfg = AdamWConfig {
        weight_decay: 0.0,
        ..Default::default()
    };
    let x = Var::from_tensor(&rand(&[500], 1)).unwrap();
    let y = Var::from_tensor(&rand(&[500], 1)).unwrap();
    let gr = (rand(&[500], 2) * 10.0).unwrap();
    let mut ox = AdamW::new(vec![x.clone()], cfg).unwrap();
    ox.set_max_grad_norm(Some(1.0));
    let mut oy = AdamW::new(vec![y.clone()], cfg).unwrap();
    for _ in 0..3 {
        let mut gx = store();
        gx.insert(x.as_tensor(), gr.clone());
        let mut gy = store();
        gy.insert(y.as_tensor(), gr.clone());
        let n = clip_grad_norm(&mut gy, &[y.clone()], 1.0).unwrap();
        assert!(n > 10.0);
        assert!((grad_norm(&gy, &[y.clone()]).unwrap() - 1.0).abs() < 1e-5);
        ox.step(&gx).unwrap();
        oy.step(&gy).unwrap();
        assert!((ox.last_grad_norm().unwrap() - n).abs() < 1e-9);
    }
    assert!(max_diff(x.as_tensor(), y.as_tensor()) < 1e-6);
}

/// Forward values and the gradients of x, W and b against candle's generic graph.
fn check_linear(relu: bool, x_src: &Tensor, loss_w: &Tensor) {
    let w = Var::from_tensor(&rand(&[24, x_src.dim(D::Minus1).unwrap()], 11)).unwrap();
    let b = Var::from_tensor(&rand(&[24], 12)).unwrap();
    let x = Var::from_tensor(x_src).unwrap();
    let ours = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    let theirs = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    let ya = if relu {
        ours.forward_relu(x.as_tensor())
    } else {
        ours.forward(x.as_tensor())
    }
    .unwrap();
    let yb = theirs.forward(x.as_tensor()).unwrap();
    let yb = if relu { yb.relu().unwrap() } else { yb };
    assert!(max_diff(&ya, &yb) < 1e-5);
    // A non-uniform upstream gradient through a weighted sum.
    let la = ya.broadcast_mul(loss_w).unwrap().sum_all().unwrap();
    let lb = yb.broadcast_mul(loss_w).unwrap().sum_all().unwrap();
    let (_, ga) = grads_for(&[&x, &w, &b], &la);
    let (_, gb) = grads_for(&[&x, &w, &b], &lb);
    for (a, b) in ga.iter().zip(&gb) {
        let d = max_diff(a, b);
        assert!(d < 1e-4, "grad diff {d}");
    }
}

#[test]
fn linear_matches_candle_forward_and_backward() {
    for relu in [false, true] {
        check_linear(relu, &rand(&[37, 19], 1), &rand(&[37, 24], 2));
        // Rank 3 input.
        check_linear(relu, &rand(&[3, 5, 19], 3), &rand(&[3, 5, 24], 4));
        // Non-contiguous (transposed) input.
        let xt = rand(&[19, 37], 5).t().unwrap();
        check_linear(relu, &xt, &rand(&[37, 24], 6));
    }
}

#[test]
fn linear_skips_input_gradient_for_plain_tensors() {
    let w = Var::from_tensor(&rand(&[8, 6], 1)).unwrap();
    let b = Var::from_tensor(&rand(&[8], 2)).unwrap();
    let x = rand(&[4, 6], 3);
    let l = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
    let g = l
        .forward_relu(&x)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(&x).is_none());
    assert!(g.get(w.as_tensor()).is_some() && g.get(b.as_tensor()).is_some());
}

#[test]
fn cross_entropy_matches_candle() {
    let x = Var::from_tensor(&(rand(&[50, 300], 1) * 8.0).unwrap()).unwrap();
    let labels: Vec<u32> = (0..50).map(|i| (i * 37 % 300) as u32).collect();
    let labels = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let la = (cross_entropy(x.as_tensor(), &labels).unwrap() * 3.0).unwrap();
    let lb = (candle_nn::loss::cross_entropy(x.as_tensor(), &labels).unwrap() * 3.0).unwrap();
    assert!(max_diff(&la, &lb) < 1e-5, "{la} vs {lb}");
    let (_, ga) = grads_for(&[&x], &la);
    let (_, gb) = grads_for(&[&x], &lb);
    assert!(max_diff(&ga[0], &gb[0]) < 1e-6);
    // i64 labels and non-contiguous logits.
    let xt = Var::from_tensor(&rand(&[300, 50], 2).t().unwrap()).unwrap();
    let l64 = labels.to_dtype(DType::I64).unwrap();
    let a = cross_entropy(xt.as_tensor(), &l64).unwrap();
    let b = candle_nn::loss::cross_entropy(xt.as_tensor(), &labels).unwrap();
    assert!(max_diff(&a, &b) < 1e-5);
    let bad = Tensor::new(&[300u32; 50], &Device::Cpu).unwrap();
    assert!(cross_entropy(x.as_tensor(), &bad).is_err());
}

#[test]
fn kl_soft_targets_matches_candle() {
    let temp = 2.0;
    let s = Var::from_tensor(&(rand(&[40, 200], 1) * 6.0).unwrap()).unwrap();
    let t = (rand(&[40, 200], 2) * 6.0).unwrap();
    let la = kl_div_soft_targets(s.as_tensor(), &t, temp).unwrap();
    let ls = candle_nn::ops::log_softmax(&(s.as_tensor() / temp).unwrap(), D::Minus1).unwrap();
    let lt = candle_nn::ops::log_softmax(&(&t / temp).unwrap(), D::Minus1).unwrap();
    let lb = (lt.exp().unwrap() * (lt - ls).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let lb = (lb * (temp * temp / 40.0)).unwrap();
    assert!(max_diff(&la, &lb) < 1e-5, "{la} vs {lb}");
    assert!(la.to_scalar::<f32>().unwrap() > 0.0);
    let (_, ga) = grads_for(&[&s], &la);
    let (_, gb) = grads_for(&[&s], &lb);
    assert!(max_diff(&ga[0], &gb[0]) < 1e-6);
    // Equal logits: zero divergence.
    let z = kl_div_soft_targets(&t, &t, temp)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(z.abs() < 1e-5);
}

#[test]
fn log_softmax_last_matches_candle() {
    let x = Var::from_tensor(&(rand(&[30, 77], 1) * 10.0).unwrap()).unwrap();
    let w = rand(&[30, 77], 2);
    let ya = log_softmax_last(x.as_tensor()).unwrap();
    let yb = candle_nn::ops::log_softmax(x.as_tensor(), D::Minus1).unwrap();
    assert!(max_diff(&ya, &yb) < 1e-5);
    let (_, ga) = grads_for(&[&x], &(ya * &w).unwrap().sum_all().unwrap());
    let (_, gb) = grads_for(&[&x], &(yb * &w).unwrap().sum_all().unwrap());
    assert!(max_diff(&ga[0], &gb[0]) < 1e-5);
}

#[test]
fn fast_exp_is_accurate() {
    let mut worst = 0f64;
    let mut x = -80.0f32;
    while x < 80.0 {
        let (a, b) = (kernels::fast_exp(x) as f64, (x as f64).exp());
        worst = worst.max(((a - b) / b).abs());
        x += 0.0137;
    }
    assert!(worst < 5e-7, "relative error {worst}");
}

/// An empty-ish gradient store (candle keeps `GradStore::new` private); holds only the
/// gradient of a constant no test asks for.
fn store() -> GradStore {
    Tensor::new(0f32, &Device::Cpu).unwrap().backward().unwrap()
}
