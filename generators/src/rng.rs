//! Named, independent random streams (ChaCha8), one per purpose and index, so that any person or biography can be
//! generated in parallel and out of order and still give the same bytes.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream is for. Each purpose gives statistically independent streams from one recipe seed.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Purpose {
    People = 0x7065_6f70_6c65,
    Templates = 0x7465_6d70_6c74,
    DataOrder = 0x6f72_6465_72,
    EvalSampling = 0x6576_616c,
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
