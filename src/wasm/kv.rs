//! [`JsKv`]: the [`KvStore`] port over a real Workers KV namespace.

use js_sys::Uint8Array;
use serde_json::{Map, Value};
use wasm_bindgen::{JsCast, JsValue};

use super::binding_failure::{invalid, options_object, settle, thrown};
use super::bindings::{KVNamespace, KVNamespaceGetWithMetadataResult, KVNamespaceListResult};
use super::convert::{
    array_buffer_bytes, expect_bool, js_to_json, next_cursor, present, u64_to_js_number,
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

/// Metadata as `getWithMetadata` and `list` give it: absent, or any JSON value.
fn metadata_from_js(operation: &str, what: &str, value: JsValue) -> StoreResult<Option<Value>> {
    present(value)
        .map(|metadata| js_to_json(what, &metadata))
        .transpose()
        .map_err(invalid(BINDING, operation))
}

/// The keys of a `list` page, converted with one `JSON.stringify` of the whole array rather
/// than three property reads and a stringify per key (one crossing of the JS boundary
/// instead of four per key; ~4 % of the CPU of listing 100 archives).
fn listed_keys(operation: &str, keys: &JsValue) -> StoreResult<Vec<ListedKvKey>> {
    let keys = match js_to_json("keys", keys).map_err(invalid(BINDING, operation))? {
        Value::Array(keys) => keys,
        other => {
            let reason = format!("keys is {other}, expected an array");
            return Err(invalid(BINDING, operation)(reason));
        }
    };
    keys.into_iter()
        .enumerate()
        .map(|(index, entry)| listed_key(index, entry).map_err(invalid(BINDING, operation)))
        .collect()
}

/// Key `index` of a `list` page, as JSON.
fn listed_key(index: usize, entry: Value) -> Result<ListedKvKey, String> {
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
        let operation = format!("get {key}");
        let mut fields = Map::new();
        fields.insert("type".into(), "arrayBuffer".into());
        let options = options_object(BINDING, &operation, fields)?;
        let answer = settle(
            BINDING,
            &operation,
            self.namespace.get_with_metadata(key, &options),
        )
        .await?;
        let Some(answer) = present(answer) else {
            return Ok(None);
        };
        let answer: KVNamespaceGetWithMetadataResult = answer.unchecked_into();
        let thrown = thrown(BINDING, &operation);
        let Some(value) = present(answer.value().map_err(&thrown)?) else {
            return Ok(None);
        };
        let value = array_buffer_bytes("value", &value).map_err(invalid(BINDING, &operation))?;
        let metadata =
            metadata_from_js(&operation, "metadata", answer.metadata().map_err(&thrown)?)?;
        Ok(Some(KvValue { value, metadata }))
    }

    async fn put(&self, key: &str, value: &[u8], options: KvPutOptions) -> StoreResult<()> {
        let operation = format!("put {key}");
        let mut fields = Map::new();
        if let Some(ttl) = options.expiration_ttl_secs {
            // JSON.parse would round a TTL above 2^53 - 1 silently.
            u64_to_js_number("expirationTtl", ttl).map_err(invalid(BINDING, &operation))?;
            fields.insert("expirationTtl".into(), ttl.into());
        }
        if let Some(metadata) = options.metadata {
            fields.insert("metadata".into(), metadata);
        }
        let options = options_object(BINDING, &operation, fields)?;
        let body = Uint8Array::from(value);
        settle(
            BINDING,
            &operation,
            self.namespace.put(key, &body, &options),
        )
        .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let operation = format!("delete {key}");
        settle(BINDING, &operation, self.namespace.delete(key)).await?;
        Ok(())
    }

    async fn list(&self, options: KvListOptions) -> StoreResult<KvListPage> {
        let operation = format!("list prefix={}", options.prefix.as_deref().unwrap_or(""));
        let mut fields = Map::new();
        if let Some(prefix) = options.prefix {
            fields.insert("prefix".into(), prefix.into());
        }
        if let Some(cursor) = options.cursor {
            fields.insert("cursor".into(), cursor.into());
        }
        if let Some(limit) = options.limit {
            fields.insert("limit".into(), limit.into());
        }
        let js_options = options_object(BINDING, &operation, fields)?;
        let answer: KVNamespaceListResult =
            settle(BINDING, &operation, self.namespace.list(&js_options))
                .await?
                .unchecked_into();
        let thrown = thrown(BINDING, &operation);
        let keys = listed_keys(&operation, &answer.keys().map_err(&thrown)?)?;
        let list_complete = expect_bool("list_complete", &answer.list_complete().map_err(&thrown)?)
            .map_err(invalid(BINDING, &operation))?;
        let cursor = next_cursor(
            "list_complete",
            !list_complete,
            answer.cursor().map_err(&thrown)?,
        )
        .map_err(invalid(BINDING, &operation))?;
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
        let keys = listed_keys("list", &page).unwrap();
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
            let err = listed_keys("list", &page).unwrap_err();
            assert!(err.to_string().contains(reason), "{err}");
        }
        let err = listed_keys("list", &JsValue::from_str("keys")).unwrap_err();
        assert!(err.to_string().contains("expected an array"), "{err}");
    }
}
