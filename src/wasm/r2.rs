//! [`JsR2`]: the [`ObjectStore`] port over a real R2 bucket.

use js_sys::{Array, Uint8Array};
use serde_json::json;
use wasm_bindgen::{JsCast, JsValue};

use super::binding_failure::BindingCall;
use super::bindings::{R2Bucket, R2Checksums, R2Object, R2ObjectBody, R2Objects};
use super::convert::{
    array_buffer_bytes, array_buffer_hex, expect_array, expect_bool, expect_date_ms, expect_string,
    expect_u64, js_to_string_map, next_cursor, optional, present, without_nulls,
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

/// The fields every object in an answer has (`list`, `head`, `put`, `get`), with its custom
/// metadata only when `with_metadata`: asked for, it is present even when empty (R2 may omit
/// an empty record).
fn listed_object(
    call: &BindingCall,
    object: &R2Object,
    with_metadata: bool,
) -> StoreResult<ListedR2Object> {
    let custom_metadata = match with_metadata {
        true => {
            let metadata = object.custom_metadata();
            let metadata = call.read("customMetadata", metadata, optional(js_to_string_map))?;
            Some(metadata.unwrap_or_default())
        }
        false => None,
    };
    Ok(ListedR2Object {
        key: call.read("key", object.key(), expect_string)?,
        uploaded_ms: call.read("uploaded", object.uploaded(), expect_date_ms)?,
        size: call.read("size", object.size(), expect_u64)?,
        custom_metadata,
    })
}

/// The metadata of an object `head`, `put` or `get` answered with.
fn object_meta(call: &BindingCall, object: &R2Object) -> StoreResult<ObjectMeta> {
    let listed = listed_object(call, object, true)?;
    let sha256 = match present(call.value(object.checksums())?) {
        Some(checksums) => {
            let checksums: R2Checksums = checksums.unchecked_into();
            let digest = checksums.sha256();
            call.read("checksums.sha256", digest, optional(array_buffer_hex))?
        }
        None => None,
    };
    Ok(ObjectMeta {
        key: listed.key,
        size: listed.size,
        uploaded_ms: listed.uploaded_ms,
        custom_metadata: listed.custom_metadata.unwrap_or_default(),
        sha256,
        etag: call.read("etag", object.etag(), optional(expect_string))?,
    })
}

impl ObjectStore for JsR2 {
    async fn get(&self, key: &str) -> StoreResult<Option<StoredObject>> {
        let call = BindingCall::new(BINDING, format!("get {key}"));
        let Some(answer) = present(call.settle(self.bucket.get(key)).await?) else {
            return Ok(None);
        };
        let object: R2ObjectBody = answer.unchecked_into();
        let meta = object_meta(&call, &object)?;
        let body = call.settle(object.array_buffer()).await?;
        let body = call.check(array_buffer_bytes("body", &body))?;
        Ok(Some(StoredObject { meta, body }))
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let call = BindingCall::new(BINDING, format!("head {key}"));
        let answer = call.settle(self.bucket.head(key)).await?;
        let object = present(answer).map(|object| object_meta(&call, object.unchecked_ref()));
        object.transpose()
    }

    async fn put(
        &self,
        key: &str,
        body: &[u8],
        options: ObjectPutOptions,
    ) -> StoreResult<PutOutcome> {
        let call = BindingCall::new(BINDING, format!("put {key}"));
        let metadata = options.custom_metadata;
        let http_metadata = without_nulls(json!({
            "contentType": options.content_type,
            "contentEncoding": options.content_encoding,
        }));
        let js_options = call.options(json!({
            "customMetadata": (!metadata.is_empty()).then_some(metadata),
            "httpMetadata": (!http_metadata.is_empty()).then_some(http_metadata),
            "sha256": options.sha256,
            "onlyIf": match (&options.if_etag_matches, options.only_if_absent) {
                (Some(etag), _) => Some(json!({ "etagMatches": etag })),
                (None, true) => Some(json!({ "etagDoesNotMatch": "*" })),
                (None, false) => None,
            },
        }))?;
        let js_body = Uint8Array::from(body);
        let answer = call.settle(self.bucket.put(key, &js_body, &js_options));
        match present(answer.await?) {
            Some(object) => Ok(PutOutcome::Stored(object_meta(
                &call,
                object.unchecked_ref(),
            )?)),
            // R2 answers null only when an onlyIf condition failed.
            None if options.if_etag_matches.is_some() => Ok(PutOutcome::Changed),
            None if options.only_if_absent => Ok(PutOutcome::AlreadyExists),
            None => {
                Err(call.unexpected("put answered null without an onlyIf condition".to_owned()))
            }
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
        let call = BindingCall::new(BINDING, operation);
        let js_keys: Array = keys.iter().map(|key| JsValue::from_str(key)).collect();
        call.settle(self.bucket.delete(&js_keys)).await?;
        Ok(())
    }

    async fn list(&self, options: ObjectListOptions) -> StoreResult<ObjectListPage> {
        let prefix = options.prefix.as_deref().unwrap_or("");
        let call = BindingCall::new(BINDING, format!("list prefix={prefix}"));
        let include = options.include_custom_metadata;
        let js_options = call.options(json!({
            "prefix": options.prefix,
            "cursor": options.cursor,
            "startAfter": options.start_after,
            "limit": options.limit,
            "include": include.then_some(["customMetadata"]),
        }))?;
        let answer: R2Objects = call.answer(self.bucket.list(&js_options)).await?;
        let objects = call.read("objects", answer.objects(), expect_array)?;
        let objects = objects
            .iter()
            .map(|object| listed_object(&call, object.unchecked_ref(), include));
        let objects = objects.collect::<StoreResult<Vec<_>>>()?;
        let truncated = call.read("truncated", answer.truncated(), expect_bool)?;
        let cursor = call.value(answer.cursor())?;
        let cursor = call.check(next_cursor("truncated", truncated, cursor))?;
        Ok(ObjectListPage {
            objects,
            truncated,
            cursor,
        })
    }
}
