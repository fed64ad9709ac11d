//! A virtual clock: time moves only when a test (or a `sleep`) moves it, and chance is a seeded
//! sequence, so every run of a native test is the same run.

use std::cell::Cell;
use std::rc::Rc;

use crate::store::{Clock, Rng};

/// A settable clock with a deterministic random source, shared by handle (clones see the same
/// time). `sleep` advances the time and returns at once.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    state: Rc<ClockState>,
}

#[derive(Debug)]
struct ClockState {
    now_ms: Cell<i64>,
    slept_ms: Cell<u64>,
    sleeps: Cell<u64>,
    random_state: Cell<u64>,
}

impl VirtualClock {
    /// A clock reading `start_ms` (epoch ms) whose random values follow from `seed`.
    pub fn new(start_ms: i64, seed: u64) -> Self {
        VirtualClock {
            state: Rc::new(ClockState {
                now_ms: Cell::new(start_ms),
                slept_ms: Cell::new(0),
                sleeps: Cell::new(0),
                random_state: Cell::new(seed),
            }),
        }
    }

    /// Sets the time to `epoch_ms` (may go backwards, e.g. to write "old" objects).
    pub fn set_ms(&self, epoch_ms: i64) {
        self.state.now_ms.set(epoch_ms);
    }

    /// Moves the time forward by `ms`.
    pub fn advance_ms(&self, ms: u64) {
        let step = i64::try_from(ms).unwrap_or(i64::MAX);
        self.state
            .now_ms
            .set(self.state.now_ms.get().saturating_add(step));
    }

    /// Total milliseconds passed to [`Clock::sleep`] so far.
    pub fn slept_ms(&self) -> u64 {
        self.state.slept_ms.get()
    }

    /// How many times [`Clock::sleep`] was called.
    pub fn sleeps(&self) -> u64 {
        self.state.sleeps.get()
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.state.now_ms.get()
    }

    async fn sleep(&self, ms: u64) {
        self.state
            .slept_ms
            .set(self.state.slept_ms.get().saturating_add(ms));
        self.state.sleeps.set(self.state.sleeps.get() + 1);
        self.advance_ms(ms);
    }
}

impl Rng for VirtualClock {
    /// splitmix64: tiny, full-period, and good enough for jitter and nonces in tests.
    fn random_u64(&self) -> u64 {
        let next = self
            .state
            .random_state
            .get()
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.state.random_state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The same sequence, eight bytes a draw: deterministic, for tests only (this clock is a
    /// test double; the wasm clock draws from `crypto.getRandomValues`).
    fn fill_secure(&self, out: &mut [u8]) -> Result<(), String> {
        for chunk in out.chunks_mut(8) {
            let draw = self.random_u64().to_le_bytes();
            chunk.copy_from_slice(&draw[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::store::memory::block_on;

    #[test]
    fn sleep_advances_time_and_is_recorded() {
        let clock = VirtualClock::new(1_000, 7);
        let other_handle = clock.clone();
        block_on(clock.sleep(250));
        block_on(clock.sleep(50));
        assert_eq!(other_handle.now_ms(), 1_300);
        assert_eq!(clock.slept_ms(), 300);
        assert_eq!(clock.sleeps(), 2);
        clock.advance_ms(700);
        assert_eq!(clock.now_ms(), 2_000);
        assert_eq!(clock.slept_ms(), 300);
        clock.set_ms(5);
        assert_eq!(other_handle.now_ms(), 5);
    }

    #[test]
    fn random_values_follow_the_seed() {
        let a = VirtualClock::new(0, 42);
        let b = VirtualClock::new(0, 42);
        let c = VirtualClock::new(0, 43);
        let from_a: Vec<u64> = (0..4).map(|_| a.random_u64()).collect();
        let from_b: Vec<u64> = (0..4).map(|_| b.random_u64()).collect();
        assert_eq!(from_a, from_b);
        assert_ne!(from_a[0], from_a[1]);
        assert_ne!(from_a[0], c.random_u64());
        // splitmix64's published first output for seed 0.
        assert_eq!(VirtualClock::new(0, 0).random_u64(), 0xe220_a839_7b1d_cdaf);
    }
}
