//! [`JsKv`]: the [`KvStore`] port over a real Workers KV namespace.

use js_sys::Uint8Array;
use serde_json::{Map, Value};
use wasm_bindgen::{JsCast, JsValue};

use super::bindings::{
    KVNamespace, KVNamespaceGetWithMetadataResult, KVNamespaceListKey, KVNamespaceListResult,
};
use super::convert::{
    array_buffer_bytes, expect_array, expect_bool, expect_string, expect_u64, js_to_json,
    next_cursor, present, u64_to_js_number,
};
use super::failure::{invalid, options_object, settle, thrown};
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

/// One key of a `list` page.
fn listed_key(operation: &str, entry: JsValue) -> StoreResult<ListedKvKey> {
    let entry: KVNamespaceListKey = entry.unchecked_into();
    let thrown = thrown(BINDING, operation);
    let name = expect_string("keys[].name", &entry.name().map_err(&thrown)?)
        .map_err(invalid(BINDING, operation))?;
    let expiration_s = present(entry.expiration().map_err(&thrown)?)
        .map(|expiration| expect_u64("keys[].expiration", &expiration))
        .transpose()
        .map_err(invalid(BINDING, operation))?;
    let metadata = metadata_from_js(
        operation,
        "keys[].metadata",
        entry.metadata().map_err(&thrown)?,
    )?;
    Ok(ListedKvKey {
        name,
        expiration_s,
        metadata,
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
        let keys = expect_array("keys", answer.keys().map_err(&thrown)?)
            .map_err(invalid(BINDING, &operation))?;
        let keys = keys
            .iter()
            .map(|entry| listed_key(&operation, entry))
            .collect::<StoreResult<Vec<_>>>()?;
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
