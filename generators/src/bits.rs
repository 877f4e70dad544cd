//! Bits of knowledge of a bioS dataset (Part 3.3, Def. 4.3), in closed form.
//!
//! bits = N·log2(N0 / e^{p1}) + N·log2(S0 / e^{p2}), where p1 is the mean summed loss (nats) of a name at the
//! start of a biography and p2 the mean summed loss of the counted values. A perfect model has p1 = ln N, p2 = 0.

use crate::pools::Pools;

/// log2 S0: the number of possible (pronoun, birth date, birth city, university, major, employer) tuples.
/// The pronoun factor 2 is counted only when the text shows the pronoun. With the paper's pools
/// log2 S0 = log2(2·67200·200·300·100·263) ≈ 47.59.
pub fn log2_s0(pools: &Pools, pronoun: bool) -> f64 {
    let mut s = (pools.n_birth_dates() as f64).log2()
        + (pools.cities.len() as f64).log2()
        + (pools.universities.len() as f64).log2()
        + (pools.majors.len() as f64).log2()
        + (pools.companies.len() as f64).log2();
    if pronoun {
        s += 1.0;
    }
    s
}

/// Bits of knowledge (Def. 4.3) for N people from the losses p1, p2 in nats.
pub fn bios_bits(n: usize, log2_n0: f64, log2_s0: f64, p1: f64, p2: f64) -> f64 {
    let ln2 = std::f64::consts::LN_2;
    n as f64 * (log2_n0 - p1 / ln2) + n as f64 * (log2_s0 - p2 / ln2)
}

/// Bits stored by a perfect model: p1 = ln N, p2 = 0.
pub fn bios_perfect_bits(n: usize, log2_n0: f64, log2_s0: f64) -> f64 {
    bios_bits(n, log2_n0, log2_s0, (n as f64).ln(), 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §4: log2 S0 ≈ 47.59 and 61.56 bits/person at N = 10K, 58.24 at 100K, 54.91 at 1M (derived figures).
    #[test]
    fn perfect_recall_matches_spec_closed_form() {
        let pools = Pools::embedded();
        let s0 = log2_s0(&pools, true);
        assert!((s0 - 47.59).abs() < 0.005, "log2 S0 = {s0}");
        let n0 = pools.n0().log2();
        for (n, expected) in [(10_000, 61.56), (100_000, 58.24), (1_000_000, 54.91)] {
            let per_person = bios_perfect_bits(n, n0, s0) / n as f64;
            assert!(
                (per_person - expected).abs() < 0.005,
                "N={n}: {per_person} vs {expected}"
            );
        }
    }

    /// A model that guesses uniformly over the pools has p1 = ln N0 and p2 = ln S0: it stores 0 bits, and one
    /// that is uniform over a vocabulary of V words for each of the 3 name tokens stores N·(log2 N0 − 3·log2 V).
    #[test]
    fn uniform_guess_stores_what_the_formula_predicts() {
        let pools = Pools::embedded();
        let (n0, s0) = (pools.n0().log2(), log2_s0(&pools, true));
        let ln2 = std::f64::consts::LN_2;
        let bits = bios_bits(5000, n0, s0, n0 * ln2, s0 * ln2);
        assert!(bits.abs() < 1e-6, "{bits}");
        let v = 3000f64;
        let bits = bios_bits(5000, n0, s0, 3.0 * v.ln(), s0 * ln2);
        let expected = 5000.0 * (n0 - 3.0 * v.log2());
        assert!((bits - expected).abs() < 1e-6 * expected.abs());
    }
}
