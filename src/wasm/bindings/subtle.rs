//! `crypto.subtle` (the Web Crypto API's `SubtleCrypto`): the AES-GCM of envelope encryption,
//! and the SHA-256 of stored objects.

use js_sys::{Array, Object, Promise};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `SubtleCrypto`, as `globalThis.crypto.subtle` holds it.
    #[derive(Debug, Clone)]
    pub type SubtleCrypto;

    /// `subtle.importKey(format, keyData, algorithm, extractable, keyUsages)`: resolves to a
    /// `CryptoKey`. The key bytes are copied before it returns (Web Crypto copies every
    /// `BufferSource` argument synchronously), so a view of wasm memory is safe to pass.
    #[wasm_bindgen(method, catch, js_name = importKey)]
    pub fn import_key(
        this: &SubtleCrypto,
        format: &str,
        key_data: &[u8],
        algorithm: &str,
        extractable: bool,
        key_usages: &Array,
    ) -> Result<Promise, JsValue>;

    /// `subtle.encrypt(algorithm, key, data)`: resolves to an `ArrayBuffer`; `data` is copied
    /// before it returns.
    #[wasm_bindgen(method, catch)]
    pub fn encrypt(
        this: &SubtleCrypto,
        algorithm: &Object,
        key: &JsValue,
        data: &[u8],
    ) -> Result<Promise, JsValue>;

    /// `subtle.decrypt(algorithm, key, data)`: resolves to an `ArrayBuffer`, rejects with an
    /// `OperationError` when authentication fails; `data` is copied before it returns.
    #[wasm_bindgen(method, catch)]
    pub fn decrypt(
        this: &SubtleCrypto,
        algorithm: &Object,
        key: &JsValue,
        data: &[u8],
    ) -> Result<Promise, JsValue>;

    /// `subtle.digest(algorithm, data)`: resolves to an `ArrayBuffer`; `data` is copied before
    /// it returns.
    #[wasm_bindgen(method, catch)]
    pub fn digest(this: &SubtleCrypto, algorithm: &str, data: &[u8]) -> Result<Promise, JsValue>;
}
