//! A small xorshift generator for picking steal victims.

/// xorshift64*: fast, not cryptographic; seeds differ per worker.
#[derive(Debug)]
pub(crate) struct FastRand {
    state: u64,
}

impl FastRand {
    pub(crate) fn new(seed: u64) -> FastRand {
        FastRand {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((r >> 32) as usize * n) >> 32
    }
}
