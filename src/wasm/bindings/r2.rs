//! R2: `R2Bucket` and the objects its methods resolve to.

use js_sys::Promise;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// An R2 bucket binding (`env.ARCHIVE_R2`).
    #[wasm_bindgen(extends = js_sys::Object, js_name = R2Bucket)]
    #[derive(Debug, Clone)]
    pub type R2Bucket;

    /// `head(key)`: resolves to an [`R2Object`] or `null`.
    #[wasm_bindgen(method, catch)]
    pub fn head(this: &R2Bucket, key: &str) -> Result<Promise, JsValue>;

    /// `get(key)`: resolves to an [`R2ObjectBody`] or `null`.
    #[wasm_bindgen(method, catch)]
    pub fn get(this: &R2Bucket, key: &str) -> Result<Promise, JsValue>;

    /// `put(key, value, options)`: resolves to an [`R2Object`], or `null` when an `onlyIf`
    /// condition failed.
    #[wasm_bindgen(method, catch)]
    pub fn put(
        this: &R2Bucket,
        key: &str,
        value: &JsValue,
        options: &JsValue,
    ) -> Result<Promise, JsValue>;

    /// `delete(keys)`: `keys` is a string or an array of up to 1000 strings.
    #[wasm_bindgen(method, catch)]
    pub fn delete(this: &R2Bucket, keys: &JsValue) -> Result<Promise, JsValue>;

    /// `list(options)`: resolves to [`R2Objects`].
    #[wasm_bindgen(method, catch)]
    pub fn list(this: &R2Bucket, options: &JsValue) -> Result<Promise, JsValue>;

    /// An object's metadata, as `head`, `put` and `list` return it.
    #[wasm_bindgen(extends = js_sys::Object, js_name = R2Object)]
    #[derive(Debug, Clone)]
    pub type R2Object;

    /// `key`: the object key.
    #[wasm_bindgen(method, catch, getter)]
    pub fn key(this: &R2Object) -> Result<JsValue, JsValue>;

    /// `size`: the body's length in bytes.
    #[wasm_bindgen(method, catch, getter)]
    pub fn size(this: &R2Object) -> Result<JsValue, JsValue>;

    /// `uploaded`: a `Date`.
    #[wasm_bindgen(method, catch, getter)]
    pub fn uploaded(this: &R2Object) -> Result<JsValue, JsValue>;

    /// `etag`: the version's etag, for `onlyIf: { etagMatches }`.
    #[wasm_bindgen(method, catch, getter)]
    pub fn etag(this: &R2Object) -> Result<JsValue, JsValue>;

    /// `customMetadata`: a string record; absent from `list` without `include`.
    #[wasm_bindgen(method, catch, getter, js_name = customMetadata)]
    pub fn custom_metadata(this: &R2Object) -> Result<JsValue, JsValue>;

    /// `checksums`: an [`R2Checksums`].
    #[wasm_bindgen(method, catch, getter)]
    pub fn checksums(this: &R2Object) -> Result<JsValue, JsValue>;

    /// An object with its body, as `get` returns it.
    #[wasm_bindgen(extends = R2Object, js_name = R2ObjectBody)]
    #[derive(Debug, Clone)]
    pub type R2ObjectBody;

    /// `arrayBuffer()`: resolves to the whole body.
    #[wasm_bindgen(method, catch, js_name = arrayBuffer)]
    pub fn array_buffer(this: &R2ObjectBody) -> Result<Promise, JsValue>;

    /// The checksums R2 holds for an object.
    #[wasm_bindgen(extends = js_sys::Object, js_name = R2Checksums)]
    #[derive(Debug, Clone)]
    pub type R2Checksums;

    /// `sha256`: an `ArrayBuffer` of 32 bytes, absent unless the object was put with one.
    #[wasm_bindgen(method, catch, getter)]
    pub fn sha256(this: &R2Checksums) -> Result<JsValue, JsValue>;

    /// One page of `list`.
    #[wasm_bindgen(extends = js_sys::Object, js_name = R2Objects)]
    #[derive(Debug, Clone)]
    pub type R2Objects;

    /// `objects`: an array of [`R2Object`].
    #[wasm_bindgen(method, catch, getter)]
    pub fn objects(this: &R2Objects) -> Result<JsValue, JsValue>;

    /// `truncated`: `true` when more objects follow.
    #[wasm_bindgen(method, catch, getter)]
    pub fn truncated(this: &R2Objects) -> Result<JsValue, JsValue>;

    /// `cursor`: present when `truncated` is `true`.
    #[wasm_bindgen(method, catch, getter)]
    pub fn cursor(this: &R2Objects) -> Result<JsValue, JsValue>;
}
