//! [`JsClock`]: the [`Clock`] port over the Workers runtime's time, timers and randomness.

use js_sys::{Date, Function, Math, Promise, Uint8Array};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use super::bindings::global::{get_random_values, set_timeout};
use crate::store::{Clock, Rng};

/// Longest delay `setTimeout` honours (2^31 - 1 ms); a longer one would fire at once.
const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// `Date.now()`, `setTimeout` and `crypto.getRandomValues` of the isolate. In production
/// `Date.now()` does not advance during CPU work, only across I/O (PLATFORM.md).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsClock;

impl JsClock {
    /// The runtime's clock.
    pub fn new() -> Self {
        Self
    }
}

/// A random 64-bit value from `Math.random()` (two 32-bit draws), for when
/// `crypto.getRandomValues` throws (it does at module top level).
fn math_random_u64() -> u64 {
    // Math.random() is in [0, 1): the product is below 2^32, and `as` truncates it exactly.
    let draw = || (Math::random() * 4_294_967_296.0) as u64;
    (draw() << 32) | draw()
}

/// Random bytes fetched from `crypto.getRandomValues` a batch at a time: every operation draws
/// a request id, and one call into the runtime per draw cost more than the id is worth.
struct RandomPool {
    bytes: [u8; RANDOM_POOL_BYTES],
    /// Bytes of `bytes` already handed out; the pool is empty at `RANDOM_POOL_BYTES`.
    used: usize,
}

/// How many random bytes one `crypto.getRandomValues` call fetches (32 draws).
const RANDOM_POOL_BYTES: usize = 256;

thread_local! {
    static RANDOM_POOL: std::cell::RefCell<RandomPool> = const {
        std::cell::RefCell::new(RandomPool { bytes: [0; RANDOM_POOL_BYTES], used: RANDOM_POOL_BYTES })
    };
}

impl RandomPool {
    fn next_u64(&mut self) -> u64 {
        if self.used + 8 > RANDOM_POOL_BYTES {
            let buffer = Uint8Array::new_with_length(RANDOM_POOL_BYTES as u32);
            if get_random_values(&buffer).is_err() {
                return math_random_u64();
            }
            buffer.copy_to(&mut self.bytes);
            self.used = 0;
        }
        let mut draw = [0u8; 8];
        if let Some(bytes) = self.bytes.get(self.used..self.used + 8) {
            draw.copy_from_slice(bytes);
        }
        // Handed out once: a later draw never repeats these bytes.
        self.used += 8;
        u64::from_le_bytes(draw)
    }
}

impl Clock for JsClock {
    fn now_ms(&self) -> i64 {
        // Date.now() is an integral, finite millisecond count; `as` saturates, never panics.
        Date::now() as i64
    }

    async fn sleep(&self, ms: u64) {
        // `ms` fits exactly: it is clamped to 2^31 - 1.
        let delay = ms.min(MAX_TIMEOUT_MS) as f64;
        let timer = Promise::new(&mut |resolve: Function, _reject: Function| {
            if set_timeout(&resolve, delay).is_err() {
                // No timer available: resolve now rather than hang the caller.
                let _ = resolve.call0(&JsValue::UNDEFINED);
            }
        });
        // The promise only ever resolves.
        let _ = JsFuture::from(timer).await;
    }
}

impl Rng for JsClock {
    fn random_u64(&self) -> u64 {
        RANDOM_POOL.with_borrow_mut(RandomPool::next_u64)
    }

    fn fill_secure(&self, out: &mut [u8]) -> Result<(), String> {
        // Not from the pool: key material is drawn for its use alone, and a failure is an
        // error here, never Math.random().
        for chunk in out.chunks_mut(MAX_RANDOM_VALUES_BYTES) {
            let buffer = Uint8Array::new_with_length(chunk.len() as u32);
            get_random_values(&buffer)
                .map_err(|_| "crypto.getRandomValues is not available here".to_owned())?;
            buffer.copy_to(chunk);
        }
        Ok(())
    }
}

/// Most bytes one `crypto.getRandomValues` call fills.
const MAX_RANDOM_VALUES_BYTES: usize = 65_536;

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn now_is_a_plausible_epoch_ms() {
        // After 2025-01-01 and within a second of Date.now().
        let now = JsClock::new().now_ms();
        assert!(now > 1_735_689_600_000, "{now}");
        assert!((now - Date::now() as i64).abs() < 1_000);
    }

    #[test]
    fn random_values_differ() {
        let clock = JsClock::new();
        // More draws than one pool holds, so the pool is refilled on the way.
        let count = 3 * RANDOM_POOL_BYTES / 8 + 1;
        let draws: std::collections::BTreeSet<u64> =
            (0..count).map(|_| clock.random_u64()).collect();
        assert_eq!(draws.len(), count);
        assert_ne!(math_random_u64(), math_random_u64());
    }

    #[test]
    async fn sleep_waits_at_least_the_delay() {
        let clock = JsClock::new();
        let started = Date::now();
        clock.sleep(20).await;
        assert!(Date::now() - started >= 19.0);
    }
}
