//! Choosing the next token: greedy at temperature 0, otherwise seeded
//! sampling with transformers' warpers in its order (temperature, top-k,
//! top-p).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How one sequence picks its tokens.
#[derive(Debug)]
pub enum Sampler {
    /// Arg-max (the first index on ties, as torch does).
    Greedy,
    /// Multinomial sampling.
    Random {
        /// Logits are divided by this.
        temperature: f64,
        /// Keep the `top_k` most likely tokens (0 = all).
        top_k: usize,
        /// Keep the smallest set whose probability reaches `top_p`.
        top_p: f64,
        /// The sequence's own generator (boxed: it is large, and greedy
        /// samplers need none).
        rng: Box<StdRng>,
    },
}

impl Sampler {
    /// Greedy when `temperature <= 0`, else seeded sampling.
    pub fn new(temperature: f64, top_k: usize, top_p: f64, seed: u64) -> Self {
        if temperature <= 0.0 {
            Sampler::Greedy
        } else {
            Sampler::Random {
                temperature,
                top_k,
                top_p,
                rng: Box::new(StdRng::seed_from_u64(seed)),
            }
        }
    }

    /// The next token for one row of logits.
    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        match self {
            Sampler::Greedy => argmax(logits),
            Sampler::Random {
                temperature,
                top_k,
                top_p,
                rng,
            } => sample(logits, *temperature, *top_k, *top_p, rng),
        }
    }
}

/// Index of the largest value; the first one on ties.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn sample(logits: &[f32], temperature: f64, top_k: usize, top_p: f64, rng: &mut StdRng) -> u32 {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if top_k > 0 && top_k < order.len() {
        order.truncate(top_k);
    }
    let max = logits[order[0]] as f64 / temperature;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| (logits[i] as f64 / temperature - max).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut keep = weights.len();
    if top_p < 1.0 {
        let mut cumulative = 0.0;
        for (n, w) in weights.iter().enumerate() {
            cumulative += w / total;
            if cumulative >= top_p {
                keep = n + 1;
                break;
            }
        }
    }
    let kept_total: f64 = weights[..keep].iter().sum();
    let mut target = rng.random::<f64>() * kept_total;
    for (n, w) in weights[..keep].iter().enumerate() {
        if target < *w {
            return order[n] as u32;
        }
        target -= w;
    }
    order[keep - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn sampling_is_reproducible_with_a_seed_and_respects_top_k() {
        let logits = [1.0, 2.0, 3.0, 0.5, 2.5];
        let draw = |seed| {
            let mut s = Sampler::new(1.0, 2, 1.0, seed);
            (0..50).map(|_| s.pick(&logits)).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert!(a.iter().all(|&t| t == 2 || t == 4), "{a:?}");
        assert!(a.contains(&2) && a.contains(&4));
    }

    #[test]
    fn small_top_p_keeps_only_the_best_token() {
        let mut s = Sampler::new(0.7, 0, 0.01, 1);
        for _ in 0..20 {
            assert_eq!(s.pick(&[0.0, 5.0, 1.0]), 1);
        }
    }
}
