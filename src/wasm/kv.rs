//! [`JsKv`]: the [`KvStore`] port over a real Workers KV namespace.

use js_sys::Uint8Array;
use serde_json::{json, Value};
use wasm_bindgen::{JsCast, JsValue};

use super::binding_failure::BindingCall;
use super::bindings::{KVNamespace, KVNamespaceGetWithMetadataResult, KVNamespaceListResult};
use super::convert::{
    array_buffer_bytes, expect_bool, js_to_json, next_cursor, optional, present, u64_to_js_number,
};
use crate::store::{
    Binding, KvListOptions, KvListPage, KvPutOptions, KvStore, KvValue, ListedKvKey, StoreResult,
};

/// The binding every error of this adapter names.
const BINDING: Binding = Binding::Kv;

/// Workers KV through its binding: values cross as bytes (`Uint8Array` in, `ArrayBuffer` out),
/// metadata as JSON.
#[derive(Debug, Clone)]
pub struct JsKv {
    namespace: KVNamespace,
}

impl JsKv {
    /// Wraps the `KVNamespace` binding (`env.CHAT_KV`).
    pub fn new(namespace: KVNamespace) -> Self {
        Self { namespace }
    }
}

/// The keys of a `list` page, converted with one `JSON.stringify` of the whole array rather
/// than three property reads and a stringify per key (one crossing of the JS boundary
/// instead of four per key; ~4 % of the CPU of listing 100 archives).
fn listed_keys(what: &str, keys: &JsValue) -> Result<Vec<ListedKvKey>, String> {
    match js_to_json(what, keys)? {
        Value::Array(keys) => keys.into_iter().enumerate().map(listed_key).collect(),
        other => Err(format!("{what} is {other}, expected an array")),
    }
}

/// Key `index` of a `list` page, as JSON.
fn listed_key((index, entry): (usize, Value)) -> Result<ListedKvKey, String> {
    let Value::Object(mut entry) = entry else {
        return Err(format!("keys[{index}] is {entry}, expected an object"));
    };
    let name = match entry.remove("name") {
        Some(Value::String(name)) => name,
        other => {
            let shown = other.map_or_else(|| "absent".to_owned(), |value| value.to_string());
            return Err(format!("keys[{index}].name is {shown}, expected a string"));
        }
    };
    let expiration_s = match entry.remove("expiration") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().ok_or_else(|| {
            format!("keys[{index}].expiration is {value}, expected a non-negative integer")
        })?),
    };
    Ok(ListedKvKey {
        name,
        expiration_s,
        metadata: entry
            .remove("metadata")
            .filter(|metadata| !metadata.is_null()),
    })
}

impl KvStore for JsKv {
    async fn get(&self, key: &str) -> StoreResult<Option<KvValue>> {
        let call = BindingCall::new(BINDING, format!("get {key}"));
        let options = call.options(json!({ "type": "arrayBuffer" }))?;
        let answer = call.settle(self.namespace.get_with_metadata(key, &options));
        let Some(answer) = present(answer.await?) else {
            return Ok(None);
        };
        let answer: KVNamespaceGetWithMetadataResult = answer.unchecked_into();
        let Some(value) = call.read("value", answer.value(), optional(array_buffer_bytes))? else {
            return Ok(None);
        };
        let metadata = call.read("metadata", answer.metadata(), optional(js_to_json))?;
        Ok(Some(KvValue { value, metadata }))
    }

    async fn put(&self, key: &str, value: &[u8], options: KvPutOptions) -> StoreResult<()> {
        let call = BindingCall::new(BINDING, format!("put {key}"));
        if let Some(ttl) = options.expiration_ttl_secs {
            // JSON.parse would round a TTL above 2^53 - 1 silently.
            call.check(u64_to_js_number("expirationTtl", ttl))?;
        }
        let options = call.options(json!({
            "expirationTtl": options.expiration_ttl_secs,
            "metadata": options.metadata,
        }))?;
        let body = Uint8Array::from(value);
        call.settle(self.namespace.put(key, &body, &options))
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let call = BindingCall::new(BINDING, format!("delete {key}"));
        call.settle(self.namespace.delete(key)).await?;
        Ok(())
    }

    async fn list(&self, options: KvListOptions) -> StoreResult<KvListPage> {
        let prefix = options.prefix.as_deref().unwrap_or("");
        let call = BindingCall::new(BINDING, format!("list prefix={prefix}"));
        let js_options = call.options(json!({
            "prefix": options.prefix,
            "cursor": options.cursor,
            "limit": options.limit,
        }))?;
        let answer: KVNamespaceListResult = call.answer(self.namespace.list(&js_options)).await?;
        let keys = call.read("keys", answer.keys(), listed_keys)?;
        let list_complete = call.read("list_complete", answer.list_complete(), expect_bool)?;
        let cursor = call.value(answer.cursor())?;
        let cursor = call.check(next_cursor("list_complete", !list_complete, cursor))?;
        Ok(KvListPage {
            keys,
            list_complete,
            cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_page_is_read_from_one_json_text() {
        let page = js_sys::JSON::parse(
            r#"[{"name": "a", "expiration": 1736157600, "metadata": {"key": "x"}},
                {"name": "b", "metadata": null}, {"name": "c"}]"#,
        )
        .unwrap();
        let keys = listed_keys("keys", &page).unwrap();
        assert_eq!(
            keys,
            [
                ListedKvKey {
                    name: "a".into(),
                    expiration_s: Some(1_736_157_600),
                    metadata: Some(json!({"key": "x"})),
                },
                ListedKvKey {
                    name: "b".into(),
                    expiration_s: None,
                    metadata: None,
                },
                ListedKvKey {
                    name: "c".into(),
                    expiration_s: None,
                    metadata: None,
                },
            ]
        );
    }

    #[test]
    fn a_malformed_key_is_named_by_its_index() {
        for (entry, reason) in [
            (json!(5), "keys[1] is 5, expected an object"),
            (json!({}), "keys[1].name is absent, expected a string"),
            (json!({"name": 7}), "keys[1].name is 7, expected a string"),
            (
                json!({"name": "b", "expiration": -1}),
                "keys[1].expiration is -1, expected a non-negative integer",
            ),
        ] {
            let page = js_sys::JSON::parse(&json!([{"name": "a"}, entry]).to_string()).unwrap();
            let err = listed_keys("keys", &page).unwrap_err();
            assert!(err.contains(reason), "{err}");
        }
        let err = listed_keys("keys", &JsValue::from_str("keys")).unwrap_err();
        assert!(err.contains("expected an array"), "{err}");
    }
}
