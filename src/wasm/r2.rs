//! [`JsR2`]: the [`ObjectStore`] port over a real R2 bucket.

use std::collections::BTreeMap;

use js_sys::{Array, Date, Uint8Array};
use serde_json::{Map, Value};
use wasm_bindgen::{JsCast, JsValue};

use super::binding_failure::{invalid, options_object, settle, thrown, unexpected_answer};
use super::bindings::{R2Bucket, R2Checksums, R2Object, R2ObjectBody, R2Objects};
use super::convert::{
    array_buffer_bytes, array_buffer_hex, expect_array, expect_bool, expect_string, expect_u64,
    js_number_to_i64, js_to_string_map, next_cursor, present,
};
use crate::store::{
    Binding, ListedR2Object, ObjectListOptions, ObjectListPage, ObjectMeta, ObjectPutOptions,
    ObjectStore, PutOutcome, StoreResult, StoredObject,
};

/// The binding every error of this adapter names.
const BINDING: Binding = Binding::R2;

/// R2 through its binding: bodies cross as bytes (`Uint8Array` in, `arrayBuffer()` out).
#[derive(Debug, Clone)]
pub struct JsR2 {
    bucket: R2Bucket,
}

impl JsR2 {
    /// Wraps the `R2Bucket` binding (`env.ARCHIVE_R2`).
    pub fn new(bucket: R2Bucket) -> Self {
        Self { bucket }
    }
}

/// `uploaded` (a `Date`) in epoch milliseconds.
fn uploaded_ms(operation: &str, object: &R2Object) -> StoreResult<i64> {
    let uploaded = object.uploaded().map_err(thrown(BINDING, operation))?;
    let date = uploaded.dyn_ref::<Date>().ok_or_else(|| {
        invalid(BINDING, operation)(format!("uploaded is {uploaded:?}, expected a Date"))
    })?;
    js_number_to_i64("uploaded", date.get_time()).map_err(invalid(BINDING, operation))
}

/// `customMetadata`, absent when the answer has none (a `list` without `include`).
fn custom_metadata(
    operation: &str,
    object: &R2Object,
) -> StoreResult<Option<BTreeMap<String, String>>> {
    present(
        object
            .custom_metadata()
            .map_err(thrown(BINDING, operation))?,
    )
    .map(|metadata| js_to_string_map("customMetadata", &metadata))
    .transpose()
    .map_err(invalid(BINDING, operation))
}

/// The metadata of an object `head`, `put` or `get` answered with.
fn object_meta(operation: &str, object: &R2Object) -> StoreResult<ObjectMeta> {
    let key = expect_string("key", &object.key().map_err(thrown(BINDING, operation))?)
        .map_err(invalid(BINDING, operation))?;
    let size = expect_u64("size", &object.size().map_err(thrown(BINDING, operation))?)
        .map_err(invalid(BINDING, operation))?;
    let sha256 = match present(object.checksums().map_err(thrown(BINDING, operation))?) {
        Some(checksums) => {
            let checksums: R2Checksums = checksums.unchecked_into();
            present(checksums.sha256().map_err(thrown(BINDING, operation))?)
                .map(|digest| array_buffer_hex("checksums.sha256", &digest))
                .transpose()
                .map_err(invalid(BINDING, operation))?
        }
        None => None,
    };
    Ok(ObjectMeta {
        key,
        size,
        uploaded_ms: uploaded_ms(operation, object)?,
        custom_metadata: custom_metadata(operation, object)?.unwrap_or_default(),
        sha256,
    })
}

/// One object of a `list` page.
fn listed_object(
    operation: &str,
    entry: JsValue,
    include_custom_metadata: bool,
) -> StoreResult<ListedR2Object> {
    let object: R2Object = entry.unchecked_into();
    let key = expect_string(
        "objects[].key",
        &object.key().map_err(thrown(BINDING, operation))?,
    )
    .map_err(invalid(BINDING, operation))?;
    let size = expect_u64(
        "objects[].size",
        &object.size().map_err(thrown(BINDING, operation))?,
    )
    .map_err(invalid(BINDING, operation))?;
    // Asked for, custom metadata is present even when empty; R2 may omit an empty record.
    let custom_metadata = if include_custom_metadata {
        Some(custom_metadata(operation, &object)?.unwrap_or_default())
    } else {
        None
    };
    Ok(ListedR2Object {
        key,
        uploaded_ms: uploaded_ms(operation, &object)?,
        size,
        custom_metadata,
    })
}

impl ObjectStore for JsR2 {
    async fn get(&self, key: &str) -> StoreResult<Option<StoredObject>> {
        let operation = format!("get {key}");
        let answer = settle(BINDING, &operation, self.bucket.get(key)).await?;
        let Some(answer) = present(answer) else {
            return Ok(None);
        };
        let object: R2ObjectBody = answer.unchecked_into();
        let meta = object_meta(&operation, &object)?;
        let body = settle(BINDING, &operation, object.array_buffer()).await?;
        let body = array_buffer_bytes("body", &body).map_err(invalid(BINDING, &operation))?;
        Ok(Some(StoredObject { meta, body }))
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let operation = format!("head {key}");
        let answer = settle(BINDING, &operation, self.bucket.head(key)).await?;
        present(answer)
            .map(|object| object_meta(&operation, object.unchecked_ref()))
            .transpose()
    }

    async fn put(
        &self,
        key: &str,
        body: &[u8],
        options: ObjectPutOptions,
    ) -> StoreResult<PutOutcome> {
        let operation = format!("put {key}");
        let mut fields = Map::new();
        if !options.custom_metadata.is_empty() {
            let metadata = options
                .custom_metadata
                .into_iter()
                .map(|(name, value)| (name, Value::String(value)))
                .collect();
            fields.insert("customMetadata".into(), Value::Object(metadata));
        }
        let mut http_metadata = Map::new();
        if let Some(content_type) = options.content_type {
            http_metadata.insert("contentType".into(), content_type.into());
        }
        if let Some(content_encoding) = options.content_encoding {
            http_metadata.insert("contentEncoding".into(), content_encoding.into());
        }
        if !http_metadata.is_empty() {
            fields.insert("httpMetadata".into(), Value::Object(http_metadata));
        }
        if let Some(sha256) = options.sha256 {
            fields.insert("sha256".into(), sha256.into());
        }
        if options.only_if_absent {
            let mut condition = Map::new();
            condition.insert("etagDoesNotMatch".into(), "*".into());
            fields.insert("onlyIf".into(), Value::Object(condition));
        }
        let js_options = options_object(BINDING, &operation, fields)?;
        let js_body = Uint8Array::from(body);
        let answer = settle(
            BINDING,
            &operation,
            self.bucket.put(key, &js_body, &js_options),
        )
        .await?;
        match present(answer) {
            Some(object) => Ok(PutOutcome::Stored(object_meta(
                &operation,
                object.unchecked_ref(),
            )?)),
            // R2 answers null only when an onlyIf condition failed.
            None if options.only_if_absent => Ok(PutOutcome::AlreadyExists),
            None => Err(unexpected_answer(
                BINDING,
                &operation,
                "put answered null without an onlyIf condition",
            )),
        }
    }

    async fn delete(&self, keys: &[String]) -> StoreResult<()> {
        let Some(first) = keys.first() else {
            return Ok(());
        };
        let operation = match keys.len() {
            1 => format!("delete {first}"),
            n => format!("delete {first} and {} more", n - 1),
        };
        let js_keys: Array = keys.iter().map(|key| JsValue::from_str(key)).collect();
        settle(BINDING, &operation, self.bucket.delete(&js_keys)).await?;
        Ok(())
    }

    async fn list(&self, options: ObjectListOptions) -> StoreResult<ObjectListPage> {
        let operation = format!("list prefix={}", options.prefix.as_deref().unwrap_or(""));
        let mut fields = Map::new();
        if let Some(prefix) = options.prefix {
            fields.insert("prefix".into(), prefix.into());
        }
        if let Some(cursor) = options.cursor {
            fields.insert("cursor".into(), cursor.into());
        }
        if let Some(start_after) = options.start_after {
            fields.insert("startAfter".into(), start_after.into());
        }
        if let Some(limit) = options.limit {
            fields.insert("limit".into(), limit.into());
        }
        if options.include_custom_metadata {
            fields.insert(
                "include".into(),
                Value::Array(vec!["customMetadata".into()]),
            );
        }
        let js_options = options_object(BINDING, &operation, fields)?;
        let answer: R2Objects = settle(BINDING, &operation, self.bucket.list(&js_options))
            .await?
            .unchecked_into();
        let objects = expect_array(
            "objects",
            answer.objects().map_err(thrown(BINDING, &operation))?,
        )
        .map_err(invalid(BINDING, &operation))?
        .iter()
        .map(|entry| listed_object(&operation, entry, options.include_custom_metadata))
        .collect::<StoreResult<Vec<_>>>()?;
        let truncated = expect_bool(
            "truncated",
            &answer.truncated().map_err(thrown(BINDING, &operation))?,
        )
        .map_err(invalid(BINDING, &operation))?;
        let cursor = next_cursor(
            "truncated",
            truncated,
            answer.cursor().map_err(thrown(BINDING, &operation))?,
        )
        .map_err(invalid(BINDING, &operation))?;
        Ok(ObjectListPage {
            objects,
            truncated,
            cursor,
        })
    }
}
