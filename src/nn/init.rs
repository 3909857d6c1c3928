//! Seeded initialisation: a [`VarBuilder`] over a [`VarMap`] whose new variables are drawn
//! from a generator seeded by (seed, variable name), so that initial weights depend on the
//! seed alone. candle's CPU generator cannot be seeded, and exact resume and reproducible
//! runs need this.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// A [`VarBuilder`] that creates the variables of `varmap` deterministically from `seed`.
pub fn seeded_var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let backend: Box<dyn SimpleBackend> = Box::new(Seeded {
        varmap: varmap.clone(),
        seed,
    });
    VarBuilder::from_backend(backend, dtype, device.clone())
}

struct Seeded {
    varmap: VarMap,
    seed: u64,
}

/// 64-bit FNV-1a of a variable name: its own generator stream, so adding a layer does not
/// change the others' initial values.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Values of `init` for `shape`, drawn from `rng` (candle's meaning of each `Init`).
fn draw(init: Init, shape: &Shape, rng: &mut impl Rng) -> Vec<f32> {
    let n = shape.elem_count();
    let normal = |rng: &mut dyn rand::RngCore, mean: f64, std: f64| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                (mean + std * z) as f32
            })
            .collect()
    };
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Randn { mean, stdev } => normal(rng, mean, stdev),
        Init::Uniform { lo, up } => (0..n).map(|_| rng.gen_range(lo..up) as f32).collect(),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                NormalOrUniform::Normal => normal(rng, 0.0, std),
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n)
                        .map(|_| rng.gen_range(-bound..bound) as f32)
                        .collect()
                }
            }
        }
    }
}

impl SimpleBackend for Seeded {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.varmap.data().lock().expect("varmap lock");
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!("shape mismatch on {name}: {s:?} <> {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ name_hash(name));
        let values = draw(h, &s, &mut rng);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!(
            "{name}: a seeded VarMap creates variables, it has none to read unchecked"
        )
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(seed: u64) -> Vec<f32> {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, seed, DType::F32, &Device::Cpu);
        let l = crate::nn::linear(16, 8, vb.pp("a")).unwrap();
        let mut v: Vec<f32> = l.weight().flatten_all().unwrap().to_vec1().unwrap();
        v.extend(l.bias().unwrap().to_vec1::<f32>().unwrap());
        v
    }

    #[test]
    fn same_seed_same_weights_other_seed_other_weights() {
        assert_eq!(build(3), build(3));
        assert_ne!(build(3), build(4));
        // The spread of the initialisation the layer asks for, not of a constant.
        let w = build(3);
        let mean = w.iter().sum::<f32>() / w.len() as f32;
        let std = (w.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / w.len() as f32).sqrt();
        assert!(std > 0.05 && std < 1.0, "std {std}");
    }
}
