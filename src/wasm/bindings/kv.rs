//! Workers KV: `KVNamespace` and the shapes its methods resolve to.

use js_sys::Promise;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// A Workers KV namespace binding (`env.CHAT_KV`).
    #[wasm_bindgen(extends = js_sys::Object, js_name = KVNamespace)]
    #[derive(Debug, Clone)]
    pub type KVNamespace;

    /// `getWithMetadata(key, options)`: resolves to a [`KVNamespaceGetWithMetadataResult`].
    #[wasm_bindgen(method, catch, js_name = getWithMetadata)]
    pub fn get_with_metadata(
        this: &KVNamespace,
        key: &str,
        options: &JsValue,
    ) -> Result<Promise, JsValue>;

    /// `put(key, value, options)`: resolves to `undefined`.
    #[wasm_bindgen(method, catch)]
    pub fn put(
        this: &KVNamespace,
        key: &str,
        value: &JsValue,
        options: &JsValue,
    ) -> Result<Promise, JsValue>;

    /// `delete(key)`: resolves to `undefined`.
    #[wasm_bindgen(method, catch)]
    pub fn delete(this: &KVNamespace, key: &str) -> Result<Promise, JsValue>;

    /// `list(options)`: resolves to a [`KVNamespaceListResult`].
    #[wasm_bindgen(method, catch)]
    pub fn list(this: &KVNamespace, options: &JsValue) -> Result<Promise, JsValue>;

    /// What `getWithMetadata` resolves to for a stored key (`null` for a missing one).
    #[wasm_bindgen(extends = js_sys::Object, js_name = KVNamespaceGetWithMetadataResult)]
    #[derive(Debug, Clone)]
    pub type KVNamespaceGetWithMetadataResult;

    /// `value`: an `ArrayBuffer` with `type: "arrayBuffer"`, `null` when the key is missing.
    #[wasm_bindgen(method, catch, getter)]
    pub fn value(this: &KVNamespaceGetWithMetadataResult) -> Result<JsValue, JsValue>;

    /// `metadata`: the key's metadata, `null` when it has none.
    #[wasm_bindgen(method, catch, getter)]
    pub fn metadata(this: &KVNamespaceGetWithMetadataResult) -> Result<JsValue, JsValue>;

    /// One page of `list`.
    #[wasm_bindgen(extends = js_sys::Object, js_name = KVNamespaceListResult)]
    #[derive(Debug, Clone)]
    pub type KVNamespaceListResult;

    /// `keys`: an array of `{name, expiration?, metadata?}`.
    #[wasm_bindgen(method, catch, getter)]
    pub fn keys(this: &KVNamespaceListResult) -> Result<JsValue, JsValue>;

    /// `list_complete`: `true` on the last page.
    #[wasm_bindgen(method, catch, getter, js_name = list_complete)]
    pub fn list_complete(this: &KVNamespaceListResult) -> Result<JsValue, JsValue>;

    /// `cursor`: present when `list_complete` is `false`.
    #[wasm_bindgen(method, catch, getter)]
    pub fn cursor(this: &KVNamespaceListResult) -> Result<JsValue, JsValue>;

}
