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
