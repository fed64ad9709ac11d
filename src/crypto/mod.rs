//! Encryption at rest: envelope encryption with AES-256-GCM (docs/FORMAT.md, "Encryption").
//!
//! Key-encryption keys ([`keyring`]) come from a Worker secret and never reach storage. Each
//! owner — a user, or a session without a user — has a random data key, stored in R2 wrapped
//! by the newest KEK ([`data_key`]); every encrypted object is an [`envelope`] under its
//! owner's data key. Rotating KEKs rewraps data keys only; destroying a data key makes every
//! copy of its owner's objects unreadable.

pub mod aead;
pub mod data_key;
pub mod envelope;
pub mod keyring;

/// A test whose body awaits the cipher (or a digest): in wasm a `wasm_bindgen_test` on the JS
/// event loop, where `crypto.subtle`'s promises resolve; natively a `#[test]` that polls it to
/// the end (`aes-gcm` and `sha2` never wait).
#[cfg(test)]
macro_rules! cipher_test {
    ($(#[$meta:meta])* fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() $body

        $(#[$meta])*
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            crate::store::memory::block_on(async $body)
        }
    };
}
#[cfg(test)]
pub(crate) use cipher_test;
