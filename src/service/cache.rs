//! `cacheEmbedding` / `getCachedEmbedding` and `cacheFrequentQuery` / `getCachedQueryResult`.
//!
//! Keys are hashes (`embedding:<hash of options.embeddingModel and text>`, `query:<hash of the
//! query>`), so no text reaches a key or a log line.
//!
//! Embedding keys are namespaced by the service's `embeddingModel` option, not by the model a
//! call names: the spec caches with `{model: 'text-embedding-ada-002'}` in the metadata and
//! reads with `getCachedEmbedding(text)`, and that must hit. The model an entry was cached for
//! (the metadata's `model`, else the option) is recorded in the entry, and a read that names a
//! model (or runs on a service with the option) returns only an entry recorded for exactly
//! that model: vectors of different models are not interchangeable. One service therefore
//! keeps one vector per text; a service per model (each with its `embeddingModel`) keeps one
//! per model. Entries carry their own `expiresAt`
//! (`policy.cacheTTL` after writing) and are enforced on read; KV's `expirationTtl` (at least
//! 60 s) only collects garbage. Each entry is written with list metadata `{createdAt,
//! expiresAt}` so the retention sweep needs no `get` per key.
//!
//! Graceful degradation (spec): a read that fails for any reason (storage error, open circuit,
//! a corrupt or newer-format entry) is a miss, logged as a warning with its error code; an
//! expired entry is a miss and is deleted on a best-effort basis. Writes report failures as
//! errors (`STORAGE_UNAVAILABLE`, `CIRCUIT_OPEN`): the caller asked for something to be stored.
//! Bad input (empty text, NaN in an embedding, metadata that is not an object) is refused with
//! `INVALID_INPUT` by reads and writes alike, and nothing is stored.

use serde_json::{json, Map, Value};

use super::log::OpLog;
use super::DataPersistenceService;
use crate::codec::cache::{
    cache_list_metadata, decode_embedding, decode_query_entry, encode_embedding_entry,
    encode_query_entry, kv_expiration_ttl_secs, CacheLookup, CacheMetadata, EntryTimes,
};
use crate::error::{PersistenceError, Result};
use crate::keys::{embedding_key, query_key};
use crate::store::{Clock, KvPutOptions, KvStore, ObjectStore, Rng};

/// Longest text or query accepted, in UTF-8 bytes. Texts are only hashed, never stored, so this
/// bounds work, not storage. Embedding models take a few thousand tokens (tens of KB) and
/// support queries are shorter still: a text over 1 MiB is a caller's mistake (a whole document
/// or a conversation passed by accident), refused rather than hashed.
pub const MAX_CACHE_TEXT_BYTES: usize = 1024 * 1024;

/// Metadata field naming the embedding model an entry was cached for.
const MODEL_FIELD: &str = "model";

/// Checks a text to be hashed into a key; `field` names it in errors.
fn check_text(field: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        Err(PersistenceError::invalid_input(
            field,
            if text.is_empty() {
                "must not be empty"
            } else {
                "must not be only whitespace"
            },
        ))
    } else if text.len() > MAX_CACHE_TEXT_BYTES {
        Err(PersistenceError::invalid_input(
            field,
            format!(
                "{} bytes exceed the limit of {MAX_CACHE_TEXT_BYTES}",
                text.len()
            ),
        ))
    } else {
        Ok(())
    }
}

/// Parses caller metadata (absent: `{}`) and adds `length_field`: the text's length in UTF-16
/// code units, as JavaScript's `text.length` (the earlier implementation's field), never the
/// text itself. Returned as a map for the caller to finish.
fn metadata_with_length(
    metadata_json: Option<&str>,
    length_field: &str,
    text: &str,
) -> Result<Map<String, Value>> {
    let mut map = match metadata_json {
        Some(json) => CacheMetadata::parse(json)?.into_map(),
        None => Map::new(),
    };
    map.insert(length_field.to_owned(), json!(text.encode_utf16().count()));
    Ok(map)
}

/// A model name a read asks for: an empty name counts as none.
fn non_empty(model: Option<&str>) -> Option<&str> {
    model.filter(|model| !model.is_empty())
}

impl<K: KvStore, R: ObjectStore, C: Clock + Rng> DataPersistenceService<K, R, C> {
    /// Caches `embedding` of `text` for `policy.cacheTTL`. `metadata_json` is an optional JSON
    /// object (`{source, model, ...}`); its `model` (a string), else
    /// `options.default_embedding_model`, is recorded as the model the entry was cached for.
    /// The key is the text's hash in the option's namespace (see the module docs), so caching
    /// the same text again replaces the entry. Stored metadata gains `textLength` (and `model`
    /// from the option when it names none).
    ///
    /// Costs 1 KV put. Errors: `INVALID_INPUT` naming `text`, `embedding` / `embedding[i]`
    /// (empty, too long, NaN or infinite), `metadata` / `metadata.model`;
    /// `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN` when the write failed.
    pub async fn cache_embedding(
        &self,
        text: &str,
        embedding: &[f64],
        metadata_json: Option<&str>,
    ) -> Result<()> {
        let log = self.begin("cacheEmbedding");
        check_text("text", text)?;
        let mut metadata = metadata_with_length(metadata_json, "textLength", text)?;
        match metadata.get(MODEL_FIELD) {
            None | Some(Value::Null) => {
                if let Some(model) = &self.options.default_embedding_model {
                    metadata.insert(MODEL_FIELD.to_owned(), Value::String(model.clone()));
                }
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(PersistenceError::invalid_input(
                    "metadata.model",
                    format!("must be a string, found {other}"),
                ))
            }
        }
        let key = self.embedding_cache_key(text);
        let times = EntryTimes::starting_at(self.clock.now_ms(), self.policy.cache_ttl_ms)?;
        let entry = encode_embedding_entry(embedding, &CacheMetadata::from_map(metadata)?, times)?;
        self.put_cache_entry(&log, &key, &entry, times).await
    }

    /// The cached embedding of `text`, or `None` on a miss. With a `model` (absent or empty:
    /// `options.default_embedding_model`), only an entry cached for exactly that model is a
    /// hit; with neither, any entry of the text is.
    ///
    /// Costs 1 KV get. Never fails because of storage: failures and damaged entries are logged
    /// misses. Errors: `INVALID_INPUT` naming `text` (empty, only whitespace, or longer than
    /// [`MAX_CACHE_TEXT_BYTES`]).
    pub async fn get_cached_embedding(
        &self,
        text: &str,
        model: Option<&str>,
    ) -> Result<Option<Vec<f64>>> {
        let log = self.begin("getCachedEmbedding");
        check_text("text", text)?;
        let found = self.lookup_embedding(&log, text, model).await;
        log.cache_lookup(found.is_some());
        Ok(found)
    }

    async fn lookup_embedding(
        &self,
        log: &OpLog<'_>,
        text: &str,
        model: Option<&str>,
    ) -> Option<Vec<f64>> {
        let wanted = non_empty(model).or(self.options.default_embedding_model.as_deref());
        let key = self.embedding_cache_key(text);
        let bytes = self.read_cache_entry(log, &key).await?;
        let lookup = decode_embedding(&key, &bytes, self.clock.now_ms());
        let hit = self.settle_lookup(log, &key, lookup)?;
        match wanted {
            Some(wanted) if hit.model.as_deref() != Some(wanted) => {
                log.debug(
                    "cached for another model; serving a miss",
                    json!({ "key": key, "cachedFor": hit.model, "wanted": wanted }),
                );
                None
            }
            _ => Some(hit.values),
        }
    }

    /// Caches `result_json` (any JSON text) as the result of `query` for `policy.cacheTTL`.
    /// The key is the hash of the normalized query unless `options.normalize_queries` is off.
    /// Stored metadata gains `queryLength`.
    ///
    /// Costs 1 KV put. Errors: `INVALID_INPUT` naming `query`, `result` (not JSON, or the entry
    /// would exceed KV's 25 MiB) or `metadata`; `STORAGE_UNAVAILABLE` / `CIRCUIT_OPEN` when the
    /// write failed.
    pub async fn cache_frequent_query(
        &self,
        query: &str,
        result_json: &str,
        metadata_json: Option<&str>,
    ) -> Result<()> {
        let log = self.begin("cacheFrequentQuery");
        check_text("query", query)?;
        let metadata =
            CacheMetadata::from_map(metadata_with_length(metadata_json, "queryLength", query)?)?;
        let key = self.query_cache_key(query);
        let times = EntryTimes::starting_at(self.clock.now_ms(), self.policy.cache_ttl_ms)?;
        let entry = encode_query_entry(result_json, &metadata, times).map_err(|err| match err {
            // The codec calls it `value`; the caller passed it as `result`.
            PersistenceError::InvalidInput { field, reason } if field == "value" => {
                PersistenceError::invalid_input("result", reason)
            }
            other => other,
        })?;
        self.put_cache_entry(&log, &key, entry.as_bytes(), times)
            .await
    }

    /// The cached result of `query` as JSON text, or `None` on a miss.
    ///
    /// Costs 1 KV get. Never fails because of storage: failures and damaged entries are logged
    /// misses. Errors: `INVALID_INPUT` naming `query` (empty, only whitespace, or longer than
    /// [`MAX_CACHE_TEXT_BYTES`]).
    pub async fn get_cached_query_result(&self, query: &str) -> Result<Option<String>> {
        let log = self.begin("getCachedQueryResult");
        check_text("query", query)?;
        let key = self.query_cache_key(query);
        let found = match self.read_cache_entry(&log, &key).await {
            None => None,
            Some(bytes) => {
                let lookup = match std::str::from_utf8(&bytes) {
                    Ok(text) => decode_query_entry(&key, text, self.clock.now_ms()),
                    Err(err) => Err(PersistenceError::corrupt(&key, format!("not UTF-8: {err}"))),
                };
                self.settle_lookup(&log, &key, lookup)
                    .map(|entry| entry.value_json())
            }
        };
        log.cache_lookup(found.is_some());
        Ok(found)
    }

    fn embedding_cache_key(&self, text: &str) -> String {
        let namespace = self.options.default_embedding_model.as_deref();
        embedding_key(&self.options.hasher.embedding_cache_hash(namespace, text))
    }

    fn query_cache_key(&self, query: &str) -> String {
        query_key(
            &self
                .options
                .hasher
                .query_cache_hash(query, self.options.normalize_queries),
        )
    }

    /// Writes a cache entry with its KV garbage-collection TTL and list metadata.
    async fn put_cache_entry(
        &self,
        log: &OpLog<'_>,
        key: &str,
        entry: &[u8],
        times: EntryTimes,
    ) -> Result<()> {
        let options = KvPutOptions {
            expiration_ttl_secs: Some(kv_expiration_ttl_secs(self.policy.cache_ttl_ms)),
            metadata: Some(cache_list_metadata(times)),
        };
        self.kv_put(log, key, entry, options).await?;
        log.debug("cached", json!({ "key": key, "bytes": entry.len() }));
        Ok(())
    }

    /// The stored bytes under `key`; a failed read is logged and reads as a miss.
    async fn read_cache_entry(&self, log: &OpLog<'_>, key: &str) -> Option<Vec<u8>> {
        match self.kv_get(log, key).await {
            Ok(found) => found.map(|value| value.value),
            Err(err) => {
                warn_miss(log, key, &err);
                None
            }
        }
    }

    /// Turns a decoded lookup into a hit or a miss. An expired entry is a miss and is left to
    /// KV's own TTL (at most 60 s later; `kv_expiration_ttl_secs`) and the retention sweep: a
    /// read that deleted it would make every read of a popular expired key a write, subject to
    /// KV's one-write-a-second limit per key, and could delete an entry rewritten since the
    /// (up to 60 s stale) value was read. A damaged entry is logged and left in place: the
    /// caller's next write replaces it, and one written by a newer version of this library
    /// must survive a rolling deploy.
    fn settle_lookup<T>(
        &self,
        log: &OpLog<'_>,
        key: &str,
        lookup: Result<CacheLookup<T>>,
    ) -> Option<T> {
        match lookup {
            Ok(CacheLookup::Hit(entry)) => Some(entry),
            Ok(CacheLookup::Expired { expires_at_ms }) => {
                log.debug(
                    "expired cache entry",
                    json!({ "key": key, "expiresAt": expires_at_ms }),
                );
                None
            }
            Err(err) => {
                warn_miss(log, key, &err);
                None
            }
        }
    }
}

/// Logs a cache read that failed and is served as a miss.
fn warn_miss(log: &OpLog<'_>, key: &str, err: &PersistenceError) {
    log.event(
        "warn",
        "cache read failed; serving a miss",
        json!({ "key": key, "code": err.code(), "error": err.to_string() }),
    );
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn texts_must_hold_something_and_stay_bounded() {
        assert!(check_text("text", "x").is_ok());
        for (text, reason) in [
            ("", "must not be empty"),
            (" \t\n", "must not be only whitespace"),
        ] {
            let err = check_text("text", text).unwrap_err();
            assert_eq!(err, PersistenceError::invalid_input("text", reason));
        }
        let long = "a".repeat(MAX_CACHE_TEXT_BYTES + 1);
        let err = check_text("query", &long).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("query"), "{err}");
        assert!(check_text("query", &long[1..]).is_ok());
    }

    #[test]
    fn metadata_gains_the_utf16_length_but_never_the_text() {
        let metadata =
            metadata_with_length(Some(r#"{"source":"kb"}"#), "textLength", "a😀é").unwrap();
        assert_eq!(
            serde_json::to_string(&metadata).unwrap(),
            r#"{"source":"kb","textLength":4}"#
        );
        let empty = metadata_with_length(None, "queryLength", "abc").unwrap();
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"queryLength":3}"#
        );
        let err = metadata_with_length(Some("[1]"), "textLength", "a").unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("metadata"), "{err}");
    }

    #[test]
    fn empty_model_counts_as_none() {
        assert_eq!(non_empty(Some("")), None);
        assert_eq!(non_empty(Some("m")), Some("m"));
        assert_eq!(non_empty(None), None);
    }
}
