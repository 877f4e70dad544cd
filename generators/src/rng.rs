//! Named, independent random streams (ChaCha8), one per purpose and index, so that any person, biography or
//! document can be generated in parallel and out of order and still give the same bytes — whatever the thread
//! count or shard size.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream is for. Each purpose gives statistically independent streams from one recipe seed.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Purpose {
    People = 0x7065_6f70_6c65,
    Templates = 0x7465_6d70_6c74,
    DataOrder = 0x006f_7264_6572,
    EvalSampling = 0x6576_616c,
    /// The keyed permutation that gives people their unique full names.
    Names = 0x006e_616d_6573,
    /// Question and task documents (which template, which partner, which hint form).
    Tasks = 0x0074_6173_6b73,
    /// Token corpora (Zipf, Markov, uniform, bioD values): one stream per document or per table.
    Corpus = 0x636f_7270_7573,
    /// Mixing windows from several streams.
    Mixture = 0x6d69_7874,
}

/// splitmix64 finaliser: a bijective 64-bit mixer (Steele et al. 2014).
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The stream for `purpose` and `index` under `seed`.
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let key = mix64(mix64(seed ^ purpose as u64).wrapping_add(index));
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    rng.set_stream(purpose as u64);
    rng
}

/// A keyed pseudo-random permutation of `0..domain` (a balanced Feistel network over the smallest even power of
/// two that holds the domain, with cycle walking). It is a bijection by construction, so distinct inputs give
/// distinct outputs: people `i < N` get distinct names without a table of the names already used, and any person
/// can be generated on its own.
#[derive(Clone, Debug)]
pub struct Permutation {
    domain: u64,
    half_bits: u32,
    keys: [u64; Self::ROUNDS],
}

impl Permutation {
    const ROUNDS: usize = 6;

    pub fn new(seed: u64, purpose: Purpose, index: u64, domain: u64) -> Self {
        assert!(domain >= 1, "a permutation needs a non-empty domain");
        let bits = 64 - (domain - 1).leading_zeros().min(63);
        let half_bits = bits.div_ceil(2).max(1);
        let mut keys = [0u64; Self::ROUNDS];
        let base = mix64(mix64(seed ^ purpose as u64).wrapping_add(index) ^ 0x5045_524d);
        for (r, k) in keys.iter_mut().enumerate() {
            *k = mix64(base.wrapping_add(r as u64));
        }
        Permutation {
            domain,
            half_bits,
            keys,
        }
    }

    pub fn domain(&self) -> u64 {
        self.domain
    }

    fn round(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for k in self.keys {
            let f = mix64(r ^ k) & mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half_bits) | r
    }

    /// The image of `x` (`x < domain`).
    pub fn apply(&self, x: u64) -> u64 {
        debug_assert!(x < self.domain);
        let mut y = self.round(x);
        // Cycle walking: the network permutes 0..4^half_bits, which holds the domain; walking along the cycle
        // of x until it re-enters the domain restricts it to a permutation of the domain.
        while y >= self.domain {
            y = self.round(y);
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_bijection_for_awkward_domains() {
        for domain in [1u64, 2, 3, 7, 100, 1000, 4097, 65_537] {
            let p = Permutation::new(7, Purpose::Names, 0, domain);
            let mut seen = vec![false; domain as usize];
            for x in 0..domain {
                let y = p.apply(x) as usize;
                assert!(!seen[y], "domain {domain}: {y} hit twice");
                seen[y] = true;
            }
        }
    }

    #[test]
    fn permutation_depends_on_the_seed() {
        let a = Permutation::new(1, Purpose::Names, 0, 1 << 20);
        let b = Permutation::new(2, Purpose::Names, 0, 1 << 20);
        let same = (0..1000).filter(|&x| a.apply(x) == b.apply(x)).count();
        assert!(same < 5, "{same} of 1000 images agree");
    }
}
