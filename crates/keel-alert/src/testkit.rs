//! Seeded synthetic series for the tests: the same seed gives the same
//! series on every machine.

/// xorshift64*: small, fast and good enough for test noise.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        // A zero state would stay zero; mix the seed so nearby seeds differ.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A day in milliseconds.
pub(crate) const DAY_MS: u64 = 24 * 3600 * 1000;

/// `mean` swinging by `amplitude` (a fraction of the mean) over 24 h.
pub(crate) fn daily_swing(t_ms: u64, mean: f64, amplitude: f64) -> f64 {
    let phase = (t_ms % DAY_MS) as f64 / DAY_MS as f64;
    mean * (1.0 + amplitude * (std::f64::consts::TAU * phase).sin())
}
