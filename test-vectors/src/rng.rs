//! Random number generators for running vectors: one that replays a vector's
//! recorded randomness, and a seeded one for randomness no vector fixes.
//!
//! Neither is a cryptographic RNG. Both implement [`CryptoRng`] only so that
//! wallet-core's and frost's APIs accept them in tests.

use rand_core::{CryptoRng, RngCore};

/// Yields exactly the bytes it was given, in order, and panics when asked for
/// more, so a test notices when the code under test draws randomness in a
/// different order or amount than the vector assumes.
#[derive(Debug, Clone)]
pub struct ReplayRng {
    bytes: Vec<u8>,
    position: usize,
}

impl ReplayRng {
    /// A generator that yields the concatenation of `chunks`.
    pub fn new<I, B>(chunks: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let bytes = chunks
            .into_iter()
            .flat_map(|c| c.as_ref().to_vec())
            .collect();
        ReplayRng { bytes, position: 0 }
    }

    /// Bytes not yet drawn.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }
}

impl RngCore for ReplayRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let end = self.position + dest.len();
        let Some(src) = self.bytes.get(self.position..end) else {
            panic!(
                "ReplayRng exhausted: asked for {} bytes with {} left (the code drew more randomness than the vector records)",
                dest.len(),
                self.remaining()
            );
        };
        dest.copy_from_slice(src);
        self.position = end;
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for ReplayRng {}

/// A small deterministic generator (SplitMix64) for the randomness a test
/// needs but no vector fixes (dealer polynomials, signing nonces), so runs
/// are reproducible. Not secure; tests only.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for SeededRng {}
