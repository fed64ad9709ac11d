//! Cache entries stored as KV values: embeddings in a compact binary layout, query results as
//! JSON text. Both carry `{createdAt, expiresAt, metadata, value}`.
//!
//! Expiry is decided from the entry's own `expiresAt`, not from KV's TTL: KV refuses TTLs under
//! 60 s and deletes lazily, so a logical TTL shorter than that is enforced here on every read.
//! The byte layouts are documented in docs/FORMAT.md ("Cache entries").

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{FieldError, Fields, Kind};
use super::json_text;
use crate::error::{PersistenceError, Result};
use crate::platform::{KV_MAX_VALUE_BYTES, KV_MIN_EXPIRATION_TTL_SECS};

/// Most dimensions an embedding may have; real models use at most a few thousand.
pub const MAX_EMBEDDING_DIMS: u32 = 65_536;

/// Largest caller metadata object, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Largest query entry, in bytes of JSON text: KV's value limit, so the refusal comes from us
/// with a field name instead of from KV.
pub const MAX_QUERY_ENTRY_BYTES: usize = KV_MAX_VALUE_BYTES;

/// First bytes of every binary embedding entry.
const EMBEDDING_MAGIC: &[u8; 3] = b"SBE";
/// Version of the binary embedding layout written by this code.
const EMBEDDING_VERSION: u8 = 1;
/// Element type byte: the width of one value in bytes.
const ELEMENT_F32: u8 = 4;
const ELEMENT_F64: u8 = 8;
/// Fixed header; a multiple of 8 so the values that follow are aligned for a zero-copy
/// `Float32Array` / `Float64Array` view in JavaScript.
const EMBEDDING_HEADER_LEN: usize = 32;

/// Whether an entry that expires at `expires_at_ms` is expired at `now_ms` (expiry is inclusive).
pub fn is_expired(expires_at_ms: i64, now_ms: i64) -> bool {
    now_ms >= expires_at_ms
}

/// The `expirationTtl` to hand to KV for a logical TTL of `ttl_ms`: whole seconds, rounded up,
/// and never below [`KV_MIN_EXPIRATION_TTL_SECS`].
pub fn kv_expiration_ttl_secs(ttl_ms: u64) -> u64 {
    ttl_ms.div_ceil(1000).max(KV_MIN_EXPIRATION_TTL_SECS)
}

/// When a cache entry was written and from when on it is no longer served (epoch ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryTimes {
    /// When the entry was written.
    pub created_at_ms: i64,
    /// The first instant at which the entry is expired.
    pub expires_at_ms: i64,
}

impl EntryTimes {
    /// Times of an entry written at `now_ms` that lives for `ttl_ms` (> 0).
    pub fn starting_at(now_ms: i64, ttl_ms: u64) -> Result<Self> {
        if ttl_ms == 0 {
            return Err(PersistenceError::invalid_input(
                "cacheTTL",
                "must be positive",
            ));
        }
        let expires_at_ms = i64::try_from(ttl_ms)
            .ok()
            .and_then(|ttl| now_ms.checked_add(ttl))
            .ok_or_else(|| {
                PersistenceError::invalid_input(
                    "cacheTTL",
                    format!("{ttl_ms} ms after {now_ms} overflows"),
                )
            })?;
        let times = Self {
            created_at_ms: now_ms,
            expires_at_ms,
        };
        times.problem().map_or(Ok(times), |(field, reason)| {
            Err(PersistenceError::invalid_input(field, reason))
        })
    }

    /// Whether the entry is expired at `now_ms`; see [`is_expired`].
    pub fn is_expired(&self, now_ms: i64) -> bool {
        is_expired(self.expires_at_ms, now_ms)
    }

    /// The first field that is out of range, with why.
    fn problem(&self) -> Option<(&'static str, String)> {
        if self.created_at_ms < 0 {
            Some((
                "createdAt",
                format!("{} is before 1970", self.created_at_ms),
            ))
        } else if self.expires_at_ms < self.created_at_ms {
            Some((
                "expiresAt",
                format!(
                    "{} is before createdAt {}",
                    self.expires_at_ms, self.created_at_ms
                ),
            ))
        } else {
            None
        }
    }

    fn check_input(&self) -> Result<()> {
        self.problem().map_or(Ok(()), |(field, reason)| {
            Err(PersistenceError::invalid_input(field, reason))
        })
    }

    fn check_stored(&self, what: &str) -> Result<()> {
        self.problem().map_or(Ok(()), |(field, reason)| {
            Err(PersistenceError::corrupt(
                what,
                format!("{field}: {reason}"),
            ))
        })
    }
}

/// The outcome of reading a cache entry: the entry, or the fact that it is expired (a miss
/// that the caller may delete).
#[derive(Debug, Clone, PartialEq)]
pub enum CacheLookup<T> {
    /// The entry is live.
    Hit(T),
    /// The entry is well-formed but expired at the time of reading.
    Expired {
        /// When it expired (epoch ms).
        expires_at_ms: i64,
    },
}

impl<T> CacheLookup<T> {
    /// A hit converted by `convert`; an expired entry stays expired.
    fn and_then<U>(self, convert: impl FnOnce(T) -> Result<U>) -> Result<CacheLookup<U>> {
        match self {
            Self::Hit(hit) => convert(hit).map(CacheLookup::Hit),
            Self::Expired { expires_at_ms } => Ok(CacheLookup::Expired { expires_at_ms }),
        }
    }
}

/// Caller metadata of a cache entry (`{source, model, ...}`): a JSON object of bounded size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheMetadata(Map<String, Value>);

impl CacheMetadata {
    /// Parses caller metadata from JSON text; it must be an object of at most
    /// [`MAX_METADATA_BYTES`].
    pub fn parse(json: &str) -> Result<Self> {
        Self::parse_as(json, |reason| {
            PersistenceError::invalid_input("metadata", reason)
        })
    }

    /// Wraps an object, checking its size.
    pub fn from_map(map: Map<String, Value>) -> Result<Self> {
        let metadata = Self(map);
        match metadata.size_problem() {
            Some(reason) => Err(PersistenceError::invalid_input("metadata", reason)),
            None => Ok(metadata),
        }
    }

    /// The metadata object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The metadata object, to extend (then checked again by [`CacheMetadata::from_map`]).
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// Compact JSON text of the object (keys in their original order).
    pub fn to_json(&self) -> String {
        json_text(&self.0)
    }

    /// Parses an object, reporting any problem through `error` (input vs stored data).
    fn parse_as(json: &str, error: impl Fn(String) -> PersistenceError) -> Result<Self> {
        // Bound the parsing work first; only whitespace can make valid text longer than its
        // compact form, so four times the limit is generous.
        if json.len() > 4 * MAX_METADATA_BYTES {
            return Err(error(metadata_too_large(json.len())));
        }
        let metadata = match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(map)) => Self(map),
            Ok(other) => {
                let kind = Kind::of_value(&other).with_article();
                return Err(error(format!("must be a JSON object, not {kind}")));
            }
            Err(err) => return Err(error(format!("not JSON: {err}"))),
        };
        match metadata.size_problem() {
            Some(reason) => Err(error(reason)),
            None => Ok(metadata),
        }
    }

    fn size_problem(&self) -> Option<String> {
        let size = self.to_json().len();
        (size > MAX_METADATA_BYTES).then(|| metadata_too_large(size))
    }
}

fn metadata_too_large(size: usize) -> String {
    format!("{size} bytes of JSON exceed the limit of {MAX_METADATA_BYTES}")
}

/// A decoded embedding entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingEntry {
    /// When it was written and when it expires.
    pub times: EntryTimes,
    /// Caller metadata.
    pub metadata: CacheMetadata,
    /// The embedding, exactly the values that were encoded.
    pub embedding: Vec<f64>,
}

/// Encodes an embedding entry in the binary layout of docs/FORMAT.md. Values are stored as f32
/// when every one of them converts to f32 and back bit-exactly, else as f64.
///
/// Errors: `INVALID_INPUT` for an empty or oversized vector, a NaN or infinite value (naming
/// `embedding[i]`), or out-of-range times.
pub fn encode_embedding_entry(
    embedding: &[f64],
    metadata: &CacheMetadata,
    times: EntryTimes,
) -> Result<Vec<u8>> {
    times.check_input()?;
    let dims = check_embedding(embedding)?;
    let metadata_json = metadata.to_json();
    let metadata_len = u32::try_from(metadata_json.len())
        .map_err(|_| PersistenceError::invalid_input("metadata", "too large"))?;
    let all_f32 = embedding.iter().all(|&value| fits_f32(value));
    let element = if all_f32 { ELEMENT_F32 } else { ELEMENT_F64 };

    let mut out = Vec::with_capacity(
        EMBEDDING_HEADER_LEN + embedding.len() * usize::from(element) + metadata_json.len(),
    );
    out.extend_from_slice(EMBEDDING_MAGIC);
    out.push(EMBEDDING_VERSION);
    out.push(element);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&dims.to_le_bytes());
    out.extend_from_slice(&metadata_len.to_le_bytes());
    // check_input guarantees both are non-negative.
    out.extend_from_slice(&times.created_at_ms.unsigned_abs().to_le_bytes());
    out.extend_from_slice(&times.expires_at_ms.unsigned_abs().to_le_bytes());
    for &value in embedding {
        if all_f32 {
            // Exact: fits_f32 checked that the value survives the conversion.
            out.extend_from_slice(&(value as f32).to_le_bytes());
        } else {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.extend_from_slice(metadata_json.as_bytes());
    Ok(out)
}

/// Decodes a binary embedding entry read from the KV key `what`. A well-formed but expired
/// entry is reported as [`CacheLookup::Expired`] as soon as its header is checked, without
/// decoding values or metadata.
///
/// Errors: `CORRUPT_DATA` naming `what` (bad magic, truncation, trailing bytes, impossible
/// dimensions or times, non-finite values, bad metadata); `UNSUPPORTED_FORMAT` for a newer version.
pub fn decode_embedding_entry(
    what: &str,
    bytes: &[u8],
    now_ms: i64,
) -> Result<CacheLookup<EmbeddingEntry>> {
    decode_embedding_parts(what, bytes, now_ms)?.and_then(|parts| {
        Ok(EmbeddingEntry {
            times: parts.times,
            metadata: CacheMetadata::parse_as(parts.metadata_json, stored_metadata_error(what))?,
            embedding: parts.embedding,
        })
    })
}

/// What a cache read needs of an embedding entry: its values and the model it was cached for.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedEmbedding {
    /// The embedding, exactly the values that were encoded.
    pub values: Vec<f64>,
    /// The metadata's `model`; `None` when it names none.
    pub model: Option<String>,
}

/// The one metadata field a cache read looks at; every other field is skipped unbuilt.
#[derive(Deserialize)]
struct RecordedModel<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// The values and model of a binary entry, as [`decode_embedding_entry`] checks it, except that
/// of the metadata only `model` is built (a cache read returns only the values, and building
/// the object was most of a small entry's decoding). So metadata no writer of this library
/// produces, such as `1e400` in another field, passes here.
pub fn decode_embedding(
    what: &str,
    bytes: &[u8],
    now_ms: i64,
) -> Result<CacheLookup<CachedEmbedding>> {
    decode_embedding_parts(what, bytes, now_ms)?.and_then(|parts| {
        let json = parts.metadata_json;
        // A struct also deserializes from an array: only an object is metadata.
        if json.trim_start().starts_with('{') {
            if let Ok(recorded) = serde_json::from_str::<RecordedModel<'_>>(json) {
                return Ok(CachedEmbedding {
                    values: parts.embedding,
                    model: recorded.model.map(Cow::into_owned),
                });
            }
        }
        // The full parse names what is wrong.
        CacheMetadata::parse_as(json, stored_metadata_error(what))?;
        Err(stored_metadata_error(what)(
            "must be a JSON object whose model is a string".into(),
        ))
    })
}

/// How a problem with a stored entry's metadata is reported.
fn stored_metadata_error(what: &str) -> impl Fn(String) -> PersistenceError + '_ {
    move |reason| PersistenceError::corrupt(what, format!("metadata: {reason}"))
}

/// An embedding entry with its header and values checked, its metadata still text.
struct EmbeddingParts<'a> {
    times: EntryTimes,
    embedding: Vec<f64>,
    metadata_json: &'a str,
}

/// Checks an embedding entry's header and decodes its values (see [`decode_embedding_entry`]).
fn decode_embedding_parts<'a>(
    what: &str,
    bytes: &'a [u8],
    now_ms: i64,
) -> Result<CacheLookup<EmbeddingParts<'a>>> {
    let corrupt = |reason: String| PersistenceError::corrupt(what, reason);
    let header = bytes.get(..EMBEDDING_HEADER_LEN).ok_or_else(|| {
        corrupt(format!(
            "truncated: {} bytes, the header alone is {EMBEDDING_HEADER_LEN}",
            bytes.len()
        ))
    })?;
    let mut reader = Reader { bytes: header };
    if reader.take::<3>() != Some(*EMBEDDING_MAGIC) {
        return Err(corrupt(
            "not an embedding entry (magic is not \"SBE\")".into(),
        ));
    }
    match reader.u8() {
        Some(EMBEDDING_VERSION) => {}
        Some(version) if version > EMBEDDING_VERSION => {
            return Err(PersistenceError::UnsupportedFormat {
                what: what.to_owned(),
                version: u64::from(version),
            })
        }
        version => return Err(corrupt(format!("bad version {version:?}"))),
    }
    let element = match reader.u8() {
        Some(element @ (ELEMENT_F32 | ELEMENT_F64)) => element,
        element => return Err(corrupt(format!("bad element type {element:?}"))),
    };
    if reader.take::<3>() != Some([0, 0, 0]) {
        return Err(corrupt("reserved header bytes are not zero".into()));
    }
    let (Some(dims), Some(metadata_len), Some(created_at), Some(expires_at)) =
        (reader.u32(), reader.u32(), reader.u64(), reader.u64())
    else {
        return Err(corrupt("truncated header".into()));
    };
    if dims == 0 || dims > MAX_EMBEDDING_DIMS {
        return Err(corrupt(format!(
            "dims {dims} outside 1..={MAX_EMBEDDING_DIMS}"
        )));
    }
    if metadata_len as usize > MAX_METADATA_BYTES {
        return Err(corrupt(format!(
            "metadata length {metadata_len} exceeds {MAX_METADATA_BYTES}"
        )));
    }
    // Both factors are bounded above, so this cannot overflow even on 32-bit wasm.
    let values_len = dims as usize * usize::from(element);
    let expected_len = EMBEDDING_HEADER_LEN + values_len + metadata_len as usize;
    if bytes.len() != expected_len {
        let state = if bytes.len() < expected_len {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(corrupt(format!(
            "{state}: {} bytes, {dims} values of {element} bytes and {metadata_len} bytes of \
             metadata need {expected_len}",
            bytes.len()
        )));
    }
    let times = EntryTimes {
        created_at_ms: i64::try_from(created_at)
            .map_err(|_| corrupt(format!("createdAt {created_at} out of range")))?,
        expires_at_ms: i64::try_from(expires_at)
            .map_err(|_| corrupt(format!("expiresAt {expires_at} out of range")))?,
    };
    times.check_stored(what)?;
    if times.is_expired(now_ms) {
        return Ok(CacheLookup::Expired {
            expires_at_ms: times.expires_at_ms,
        });
    }

    let body = bytes.get(EMBEDDING_HEADER_LEN..).unwrap_or_default();
    let (values_bytes, metadata_bytes) = body
        .split_at_checked(values_len)
        .ok_or_else(|| corrupt("truncated values".into()))?;
    let embedding =
        decode_values(values_bytes, element).ok_or_else(|| corrupt("truncated values".into()))?;
    if let Some(index) = embedding.iter().position(|value| !value.is_finite()) {
        return Err(corrupt(format!("embedding[{index}] is not finite")));
    }
    let metadata_json = std::str::from_utf8(metadata_bytes)
        .map_err(|err| corrupt(format!("metadata is not UTF-8: {err}")))?;
    Ok(CacheLookup::Hit(EmbeddingParts {
        times,
        embedding,
        metadata_json,
    }))
}

/// A decoded query-result entry.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryEntry {
    /// When it was written and when it expires.
    pub times: EntryTimes,
    /// Caller metadata.
    pub metadata: CacheMetadata,
    /// The cached result, any JSON value, with object keys in their stored order.
    pub value: Value,
}

impl QueryEntry {
    /// The cached result as compact JSON text (what crosses back to JavaScript).
    pub fn value_json(&self) -> String {
        json_text(&self.value)
    }
}

/// Encodes a query-result entry as JSON text
/// `{"createdAt":..,"expiresAt":..,"metadata":{..},"value":..}`; `value_json` is any JSON text
/// (from `JSON.stringify`) and is stored as a JSON value, keeping its key order.
///
/// Errors: `INVALID_INPUT` naming `value` (not JSON, or the entry would exceed
/// [`MAX_QUERY_ENTRY_BYTES`]) or the out-of-range time field.
pub fn encode_query_entry(
    value_json: &str,
    metadata: &CacheMetadata,
    times: EntryTimes,
) -> Result<String> {
    times.check_input()?;
    if value_json.len() > MAX_QUERY_ENTRY_BYTES {
        return Err(value_too_large(value_json.len()));
    }
    let value: Value = serde_json::from_str(value_json)
        .map_err(|err| PersistenceError::invalid_input("value", format!("not JSON: {err}")))?;
    let mut entry = Map::with_capacity(4);
    entry.insert("createdAt".into(), times.created_at_ms.into());
    entry.insert("expiresAt".into(), times.expires_at_ms.into());
    entry.insert("metadata".into(), Value::Object(metadata.as_map().clone()));
    entry.insert("value".into(), value);
    let text = Value::Object(entry).to_string();
    if text.len() > MAX_QUERY_ENTRY_BYTES {
        return Err(value_too_large(text.len()));
    }
    Ok(text)
}

/// Decodes a query-result entry read from the KV key `what`; an expired one is reported as
/// [`CacheLookup::Expired`].
///
/// Errors: `CORRUPT_DATA` naming `what` and the missing or ill-typed field.
pub fn decode_query_entry(what: &str, text: &str, now_ms: i64) -> Result<CacheLookup<QueryEntry>> {
    let corrupt = |reason: String| PersistenceError::corrupt(what, reason);
    if text.len() > MAX_QUERY_ENTRY_BYTES {
        return Err(corrupt(format!(
            "{} bytes exceed {MAX_QUERY_ENTRY_BYTES}",
            text.len()
        )));
    }
    let entry =
        serde_json::from_str::<Value>(text).map_err(|err| corrupt(format!("not JSON: {err}")))?;
    let mut entry = open_entry(what, "entry must be a JSON object", entry)?;
    let times = read_times(what, &mut entry)?;
    if times.is_expired(now_ms) {
        return Ok(CacheLookup::Expired {
            expires_at_ms: times.expires_at_ms,
        });
    }
    let metadata = entry.optional_convert("metadata", Kind::Object, |metadata| match metadata {
        Value::Object(map) => Ok(CacheMetadata(map)),
        _ => Err(String::new()),
    });
    let metadata = stored_field(what, "metadata", metadata)?;
    let value = stored_field(what, "value", Ok(entry.member("value")))?;
    Ok(CacheLookup::Hit(QueryEntry {
        times,
        metadata,
        value,
    }))
}

/// The KV `metadata` to store with a cache key, `{"createdAt":..,"expiresAt":..}` (well under
/// KV's 1024-byte limit), so a retention sweep decides expiry from `list()` without a `get`.
pub fn cache_list_metadata(times: EntryTimes) -> Value {
    let mut map = Map::with_capacity(2);
    map.insert("createdAt".into(), times.created_at_ms.into());
    map.insert("expiresAt".into(), times.expires_at_ms.into());
    Value::Object(map)
}

/// Reads back [`cache_list_metadata`] listed with the KV key `key`.
///
/// Errors: `CORRUPT_DATA` naming `key` and the missing or ill-typed field.
pub fn parse_cache_list_metadata(key: &str, metadata: &Value) -> Result<EntryTimes> {
    let mut fields = open_entry(key, "list metadata must be an object", metadata.clone())?;
    read_times(key, &mut fields)
}

/// A stored entry (or its list metadata) `value`, read from `what`, to read field by field;
/// `not_object` says what it must be.
fn open_entry(what: &str, not_object: &str, value: Value) -> Result<Fields<'static, Value>> {
    let kind = Kind::of_value(&value);
    Fields::of("", value).map_err(|_| {
        PersistenceError::corrupt(what, format!("{not_object}, not {}", kind.with_article()))
    })
}

/// The `createdAt` and `expiresAt` of a stored entry read from `what`.
fn read_times(what: &str, entry: &mut Fields<'_, Value>) -> Result<EntryTimes> {
    const WANTED: &str = "an integer of epoch ms";
    let times = EntryTimes {
        created_at_ms: stored_field(
            what,
            "createdAt",
            entry.optional_number("createdAt", WANTED),
        )?,
        expires_at_ms: stored_field(
            what,
            "expiresAt",
            entry.optional_number("expiresAt", WANTED),
        )?,
    };
    times.check_stored(what)?;
    Ok(times)
}

/// Field `name` of a stored entry read from `what`, in the words of this format's errors.
fn stored_field<T>(what: &str, name: &str, read: Result<Option<T>, FieldError>) -> Result<T> {
    match read {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(PersistenceError::corrupt(
            what,
            format!("missing field {name}"),
        )),
        Err(err) => Err(PersistenceError::corrupt(
            what,
            format!("{} {}", err.path, err.reason),
        )),
    }
}

/// Checks an embedding to encode and returns its dimension count.
fn check_embedding(embedding: &[f64]) -> Result<u32> {
    if embedding.is_empty() {
        return Err(PersistenceError::invalid_input(
            "embedding",
            "must not be empty",
        ));
    }
    let dims = u32::try_from(embedding.len())
        .ok()
        .filter(|&dims| dims <= MAX_EMBEDDING_DIMS)
        .ok_or_else(|| {
            PersistenceError::invalid_input(
                "embedding",
                format!(
                    "{} dimensions exceed the limit of {MAX_EMBEDDING_DIMS}",
                    embedding.len()
                ),
            )
        })?;
    if let Some((index, value)) = embedding
        .iter()
        .enumerate()
        .find(|(_, value)| !value.is_finite())
    {
        return Err(PersistenceError::invalid_input(
            format!("embedding[{index}]"),
            format!("{value} is not a finite number"),
        ));
    }
    Ok(dims)
}

/// Whether `value` converts to f32 and back without changing a bit (sign of zero included).
fn fits_f32(value: f64) -> bool {
    f64::from(value as f32).to_bits() == value.to_bits()
}

/// Little-endian values of `element` bytes each; `None` if the length is not a multiple.
fn decode_values(bytes: &[u8], element: u8) -> Option<Vec<f64>> {
    if element == ELEMENT_F32 {
        let chunks = bytes.chunks_exact(4);
        if !chunks.remainder().is_empty() {
            return None;
        }
        chunks
            .map(|chunk| {
                <[u8; 4]>::try_from(chunk)
                    .ok()
                    .map(f32::from_le_bytes)
                    .map(f64::from)
            })
            .collect()
    } else {
        let chunks = bytes.chunks_exact(8);
        if !chunks.remainder().is_empty() {
            return None;
        }
        chunks
            .map(|chunk| <[u8; 8]>::try_from(chunk).ok().map(f64::from_le_bytes))
            .collect()
    }
}

fn value_too_large(size: usize) -> PersistenceError {
    PersistenceError::invalid_input(
        "value",
        format!("a {size}-byte entry exceeds KV's limit of {MAX_QUERY_ENTRY_BYTES} bytes"),
    )
}

/// Reads little-endian fields from the front of a byte slice; `None` when it runs out.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[byte]| byte)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const T0: i64 = 1_736_157_600_000;

    fn times() -> EntryTimes {
        EntryTimes::starting_at(T0, 86_400_000).unwrap()
    }

    fn metadata() -> CacheMetadata {
        CacheMetadata::parse(r#"{"source":"knowledge_base","model":"text-embedding-ada-002"}"#)
            .unwrap()
    }

    fn hit<T: std::fmt::Debug>(lookup: CacheLookup<T>) -> T {
        match lookup {
            CacheLookup::Hit(entry) => entry,
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    /// The error both decoders give for `bytes`: they agree on every fault except metadata
    /// that scans as a JSON object but cannot be built (see
    /// `values_decoder_checks_metadata_only_as_a_json_object`).
    fn decode_err(bytes: &[u8]) -> PersistenceError {
        let err = decode_embedding_entry("embedding:abc", bytes, T0).unwrap_err();
        assert_eq!(
            decode_embedding("embedding:abc", bytes, T0).unwrap_err(),
            err
        );
        err
    }

    /// What a cache read gets of [`small_entry`] (with `model` in its metadata).
    fn small_hit(model: Option<&str>) -> CachedEmbedding {
        CachedEmbedding {
            values: vec![1.0, -0.5, 0.25],
            model: model.map(str::to_owned),
        }
    }

    /// A valid entry with three f32 values and `{"a":1}` metadata.
    fn small_entry() -> Vec<u8> {
        let metadata = CacheMetadata::parse(r#"{"a":1}"#).unwrap();
        encode_embedding_entry(&[1.0, -0.5, 0.25], &metadata, times()).unwrap()
    }

    /// A pseudo-random f32-representable value in [-0.1, 0.1), like a normalized embedding.
    fn typical_embedding(dims: usize) -> Vec<f64> {
        let mut state: u32 = 0x9e37_79b9;
        (0..dims)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                f64::from((state >> 8) as f32 / (1u32 << 24) as f32 * 0.2 - 0.1)
            })
            .collect()
    }

    #[test]
    fn kv_ttl_is_whole_seconds_rounded_up_and_at_least_sixty() {
        assert_eq!(kv_expiration_ttl_secs(0), 60);
        assert_eq!(kv_expiration_ttl_secs(1), 60);
        assert_eq!(kv_expiration_ttl_secs(59_999), 60);
        assert_eq!(kv_expiration_ttl_secs(60_000), 60);
        assert_eq!(kv_expiration_ttl_secs(60_001), 61);
        assert_eq!(kv_expiration_ttl_secs(86_400_000), 86_400);
        assert_eq!(kv_expiration_ttl_secs(u64::MAX), u64::MAX / 1000 + 1);
    }

    #[test]
    fn expiry_is_inclusive_of_expires_at() {
        assert!(!is_expired(T0, T0 - 1));
        assert!(is_expired(T0, T0));
        assert!(is_expired(T0, T0 + 1));
        let times = EntryTimes::starting_at(T0, 5_000).unwrap();
        assert_eq!(times.expires_at_ms, T0 + 5_000);
        assert!(!times.is_expired(T0 + 4_999));
        assert!(times.is_expired(T0 + 5_000));
    }

    #[test]
    fn entry_times_reject_zero_ttl_overflow_and_negative_times() {
        let err = EntryTimes::starting_at(T0, 0).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("cacheTTL"), "{err}");
        let err = EntryTimes::starting_at(i64::MAX - 10, 11).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("overflows"), "{err}");
        let err = EntryTimes::starting_at(T0, u64::MAX).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        let err = EntryTimes::starting_at(-1, 10).unwrap_err();
        assert!(err.to_string().contains("createdAt"), "{err}");
        let backwards = EntryTimes {
            created_at_ms: T0,
            expires_at_ms: T0 - 1,
        };
        let err = encode_embedding_entry(&[1.0], &metadata(), backwards).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("expiresAt"), "{err}");
    }

    #[test]
    fn binary_layout_matches_format_md() {
        // The `xxd` dump of the example in docs/FORMAT.md.
        let documented = "5342 4501 0400 0000 0300 0000 0700 0000 \
                          0099 0e3b 9401 0000 00f5 3440 9401 0000 \
                          0000 803f 0000 00bf 0000 803e 7b22 6122 \
                          3a31 7d";
        let hex: String = documented.split_whitespace().collect();
        let expected: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(small_entry(), expected);
        assert_eq!(expected.len(), 51);
    }

    #[test]
    fn embedding_round_trips_as_f32_when_exact() {
        let embedding = vec![0.5, -0.0, 3.0, f64::from(0.1f32)];
        let bytes = encode_embedding_entry(&embedding, &metadata(), times()).unwrap();
        assert_eq!(bytes[4], ELEMENT_F32);
        let entry = hit(decode_embedding_entry("embedding:abc", &bytes, T0).unwrap());
        let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&entry.embedding), bits(&embedding));
        assert_eq!(entry.times, times());
        assert_eq!(entry.metadata, metadata());
        assert_eq!(
            entry.metadata.to_json(),
            r#"{"source":"knowledge_base","model":"text-embedding-ada-002"}"#
        );
    }

    #[test]
    fn embedding_falls_back_to_f64_when_any_value_is_not_exact_in_f32() {
        for odd in [0.1, 1e-40, 1e39, f64::MIN_POSITIVE] {
            let embedding = vec![0.5, odd, 0.25];
            let bytes = encode_embedding_entry(&embedding, &metadata(), times()).unwrap();
            assert_eq!(bytes[4], ELEMENT_F64, "{odd}");
            let entry = hit(decode_embedding_entry("k", &bytes, T0).unwrap());
            assert_eq!(entry.embedding, embedding);
        }
    }

    #[test]
    fn encoder_rejects_empty_non_finite_and_oversized_vectors() {
        let err = encode_embedding_entry(&[], &metadata(), times()).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert_eq!(
            err.to_string(),
            "invalid input: embedding: must not be empty"
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut embedding = vec![0.5; 20];
            embedding[17] = bad;
            let err = encode_embedding_entry(&embedding, &metadata(), times()).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT");
            assert!(err.to_string().contains("embedding[17]"), "{err}");
        }
        let huge = vec![0.5; MAX_EMBEDDING_DIMS as usize + 1];
        let err = encode_embedding_entry(&huge, &metadata(), times()).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("65537 dimensions"), "{err}");
        let largest = vec![0.5; MAX_EMBEDDING_DIMS as usize];
        assert!(encode_embedding_entry(&largest, &metadata(), times()).is_ok());
    }

    #[test]
    fn a_768_dim_f32_embedding_is_at_most_035_of_its_json_text() {
        let embedding = typical_embedding(768);
        let bytes = encode_embedding_entry(&embedding, &metadata(), times()).unwrap();
        let json = serde_json::to_string(&embedding).unwrap();
        assert_eq!(bytes[4], ELEMENT_F32);
        assert_eq!(bytes.len(), 32 + 768 * 4 + metadata().to_json().len());
        assert!(
            bytes.len() * 100 <= json.len() * 35,
            "{} bytes binary vs {} bytes JSON",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let bytes = small_entry();
        for cut in 0..bytes.len() {
            let err = decode_err(&bytes[..cut]);
            assert_eq!(err.code(), "CORRUPT_DATA", "cut at {cut}");
            assert!(err.to_string().contains("embedding:abc"), "{err}");
            assert!(err.to_string().contains("truncated"), "{err}");
        }
    }

    #[test]
    fn header_faults_are_reported_by_name() {
        let cases: [(usize, u8, &str, &str); 8] = [
            (0, b'X', "CORRUPT_DATA", "magic"),
            (3, 0, "CORRUPT_DATA", "bad version"),
            (3, 2, "UNSUPPORTED_FORMAT", "version 2"),
            (4, 2, "CORRUPT_DATA", "element type"),
            (5, 1, "CORRUPT_DATA", "reserved"),
            (7, 1, "CORRUPT_DATA", "reserved"),
            (8, 2, "CORRUPT_DATA", "trailing bytes"),
            (8, 4, "CORRUPT_DATA", "truncated"),
        ];
        for (offset, byte, code, text) in cases {
            let mut bytes = small_entry();
            bytes[offset] = byte;
            let err = decode_err(&bytes);
            assert_eq!(err.code(), code, "offset {offset}");
            assert!(err.to_string().contains(text), "offset {offset}: {err}");
            assert!(err.to_string().contains("embedding:abc"), "{err}");
        }
    }

    #[test]
    fn impossible_dims_and_lengths_are_corrupt() {
        let with_u32 = |offset: usize, value: u32| {
            let mut bytes = small_entry();
            bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
            decode_err(&bytes).to_string()
        };
        assert!(with_u32(8, 0).contains("dims 0 outside"));
        assert!(with_u32(8, MAX_EMBEDDING_DIMS + 1).contains("dims 65537 outside"));
        assert!(with_u32(12, u32::MAX).contains("metadata length"));
        let mut trailing = small_entry();
        trailing.push(0);
        assert!(decode_err(&trailing).to_string().contains("trailing bytes"));
    }

    #[test]
    fn impossible_times_are_corrupt() {
        let with_u64 = |offset: usize, value: u64| {
            let mut bytes = small_entry();
            bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
            decode_err(&bytes)
        };
        let err = with_u64(16, u64::MAX);
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("createdAt"), "{err}");
        let err = with_u64(24, u64::MAX);
        assert!(err.to_string().contains("expiresAt"), "{err}");
        let err = with_u64(24, (T0 - 1) as u64);
        assert!(err.to_string().contains("before createdAt"), "{err}");
    }

    #[test]
    fn stored_non_finite_values_and_bad_metadata_are_corrupt() {
        let mut bytes = small_entry();
        bytes[36..40].copy_from_slice(&f32::NAN.to_le_bytes());
        let err = decode_err(&bytes);
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("embedding[1]"), "{err}");

        let mut bytes = small_entry();
        bytes[44] = 0xff;
        assert!(decode_err(&bytes).to_string().contains("not UTF-8"));

        let mut bytes = small_entry();
        bytes[44..51].copy_from_slice(b"[1,2,3]");
        assert!(decode_err(&bytes)
            .to_string()
            .contains("metadata: must be a JSON object"));

        let mut bytes = small_entry();
        bytes[50] = b',';
        assert!(decode_err(&bytes)
            .to_string()
            .contains("metadata: not JSON"));
    }

    #[test]
    fn values_decoder_checks_metadata_only_as_a_json_object() {
        // Metadata this library never writes (the encoder builds it from parsed JSON), but
        // another writer could: syntactically an object, yet not buildable as values.
        for metadata in [r#"{"a":1e400}"#, r#"{"a":"\ud800"}"#] {
            let mut bytes = small_entry()[..44].to_vec();
            bytes[12..16].copy_from_slice(&(metadata.len() as u32).to_le_bytes());
            bytes.extend_from_slice(metadata.as_bytes());
            assert_eq!(
                decode_embedding("k", &bytes, T0).unwrap(),
                CacheLookup::Hit(small_hit(None)),
                "{metadata}"
            );
            let err = decode_embedding_entry("k", &bytes, T0).unwrap_err();
            assert_eq!(err.code(), "CORRUPT_DATA", "{metadata}");
            assert!(err.to_string().contains("metadata"), "{err}");
        }
    }

    #[test]
    fn values_decoder_reads_the_recorded_model() {
        let metadata =
            CacheMetadata::parse(r#"{"source":"kb","model":"ada","nested":{"model":"x"}}"#)
                .unwrap();
        let bytes = encode_embedding_entry(&[1.0, -0.5, 0.25], &metadata, times()).unwrap();
        assert_eq!(
            decode_embedding("k", &bytes, T0).unwrap(),
            CacheLookup::Hit(small_hit(Some("ada")))
        );
        // Stored by hand: a model that is not a string is damage, named.
        let metadata = r#"{"model":7}"#;
        let mut bytes = small_entry()[..44].to_vec();
        bytes[12..16].copy_from_slice(&(metadata.len() as u32).to_le_bytes());
        bytes.extend_from_slice(metadata.as_bytes());
        let err = decode_embedding("k", &bytes, T0).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("model is a string"), "{err}");
    }

    #[test]
    fn expired_entries_are_reported_not_returned() {
        let bytes = small_entry();
        let expires_at_ms = T0 + 86_400_000;
        assert_eq!(
            decode_embedding_entry("k", &bytes, expires_at_ms).unwrap(),
            CacheLookup::Expired { expires_at_ms }
        );
        assert_eq!(
            decode_embedding("k", &bytes, expires_at_ms).unwrap(),
            CacheLookup::Expired { expires_at_ms }
        );
        assert_eq!(
            decode_embedding("k", &bytes, expires_at_ms - 1).unwrap(),
            CacheLookup::Hit(small_hit(None))
        );
        assert!(matches!(
            decode_embedding_entry("k", &bytes, expires_at_ms - 1).unwrap(),
            CacheLookup::Hit(_)
        ));
    }

    #[test]
    fn metadata_must_be_a_bounded_object() {
        for (json, reason) in [
            ("[1]", "must be a JSON object, not an array"),
            ("\"x\"", "must be a JSON object, not a string"),
            ("{", "not JSON"),
        ] {
            let err = CacheMetadata::parse(json).unwrap_err();
            assert_eq!(err.code(), "INVALID_INPUT");
            assert!(err.to_string().contains("metadata"), "{err}");
            assert!(err.to_string().contains(reason), "{err}");
        }
        let big = format!(r#"{{"note":"{}"}}"#, "x".repeat(MAX_METADATA_BYTES));
        let err = CacheMetadata::parse(&big).unwrap_err();
        assert!(err.to_string().contains("exceed the limit"), "{err}");
        let padded = format!("{{{}}}", " ".repeat(5 * MAX_METADATA_BYTES));
        assert_eq!(
            CacheMetadata::parse(&padded).unwrap_err().code(),
            "INVALID_INPUT"
        );
        let mut map = Map::new();
        map.insert("note".into(), "x".repeat(MAX_METADATA_BYTES).into());
        assert_eq!(
            CacheMetadata::from_map(map).unwrap_err().code(),
            "INVALID_INPUT"
        );
        assert_eq!(CacheMetadata::default().to_json(), "{}");
    }

    #[test]
    fn query_entry_text_is_exact_and_keeps_key_order() {
        let metadata =
            CacheMetadata::parse(r#"{"confidence":0.95,"source":"support_bot"}"#).unwrap();
        let text = encode_query_entry(
            r#"{"z":1,"a":[true,null,"s"],"m":{"y":2,"b":1.5}}"#,
            &metadata,
            times(),
        )
        .unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"createdAt":{T0},"expiresAt":{},"metadata":{{"confidence":0.95,"source":"support_bot"}},"value":{{"z":1,"a":[true,null,"s"],"m":{{"y":2,"b":1.5}}}}}}"#,
                T0 + 86_400_000
            )
        );
        let entry = hit(decode_query_entry("query:abc", &text, T0).unwrap());
        assert_eq!(
            entry.value_json(),
            r#"{"z":1,"a":[true,null,"s"],"m":{"y":2,"b":1.5}}"#
        );
        assert_eq!(entry.metadata, metadata);
        assert_eq!(entry.times, times());
    }

    #[test]
    fn query_value_must_be_json() {
        let err = encode_query_entry("{nope", &metadata(), times()).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(
            err.to_string()
                .starts_with("invalid input: value: not JSON"),
            "{err}"
        );
        let err = encode_query_entry(
            "1",
            &metadata(),
            EntryTimes {
                created_at_ms: -5,
                expires_at_ms: 0,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("createdAt"), "{err}");
    }

    #[test]
    fn query_decoder_names_the_faulty_field() {
        let cases = [
            ("nope", "not JSON"),
            ("[1]", "entry must be a JSON object, not an array"),
            (
                r#"{"expiresAt":2,"metadata":{},"value":1}"#,
                "missing field createdAt",
            ),
            (
                r#"{"createdAt":"1","expiresAt":2,"metadata":{},"value":1}"#,
                "createdAt must be an integer",
            ),
            (
                r#"{"createdAt":1,"expiresAt":1.5,"metadata":{},"value":1}"#,
                "expiresAt must be",
            ),
            (
                r#"{"createdAt":3,"expiresAt":2,"metadata":{},"value":1}"#,
                "before createdAt",
            ),
            (
                &format!(r#"{{"createdAt":1,"expiresAt":{},"value":1}}"#, T0 + 1),
                "missing field metadata",
            ),
            (
                &format!(
                    r#"{{"createdAt":1,"expiresAt":{},"metadata":[],"value":1}}"#,
                    T0 + 1
                ),
                "metadata must be an object",
            ),
            (
                &format!(
                    r#"{{"createdAt":1,"expiresAt":{},"metadata":{{}}}}"#,
                    T0 + 1
                ),
                "missing field value",
            ),
        ];
        for (text, reason) in cases {
            let err = decode_query_entry("query:abc", text, T0).unwrap_err();
            assert_eq!(err.code(), "CORRUPT_DATA", "{text}");
            assert!(err.to_string().contains("query:abc"), "{err}");
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn expired_query_entries_are_reported() {
        let text = encode_query_entry("42", &metadata(), times()).unwrap();
        let expires_at_ms = T0 + 86_400_000;
        assert_eq!(
            decode_query_entry("q", &text, expires_at_ms).unwrap(),
            CacheLookup::Expired { expires_at_ms }
        );
        assert_eq!(
            hit(decode_query_entry("q", &text, expires_at_ms - 1).unwrap()).value,
            Value::from(42)
        );
    }

    #[test]
    fn list_metadata_round_trips_within_kv_limit() {
        let metadata = cache_list_metadata(times());
        let text = metadata.to_string();
        assert_eq!(
            text,
            format!(r#"{{"createdAt":{T0},"expiresAt":{}}}"#, T0 + 86_400_000)
        );
        assert!(text.len() <= 1024);
        assert_eq!(
            parse_cache_list_metadata("embedding:k", &metadata).unwrap(),
            times()
        );
    }

    #[test]
    fn list_metadata_parser_names_the_key() {
        for bad in [
            serde_json::json!(null),
            serde_json::json!({"createdAt": 1}),
            serde_json::json!({"createdAt": 1, "expiresAt": "soon"}),
            serde_json::json!({"createdAt": -1, "expiresAt": 5}),
        ] {
            let err = parse_cache_list_metadata("embedding:k", &bad).unwrap_err();
            assert_eq!(err.code(), "CORRUPT_DATA", "{bad}");
            assert!(err.to_string().contains("embedding:k"), "{err}");
        }
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;

    use super::*;

    const T0: i64 = 1_736_157_600_000;

    fn finite_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            any::<f32>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(f64::from),
        ]
    }

    fn times() -> EntryTimes {
        EntryTimes::starting_at(T0, 1000).unwrap()
    }

    proptest! {
        #[test]
        fn finite_vectors_round_trip_bit_exactly(
            embedding in prop::collection::vec(finite_f64(), 1..64),
        ) {
            let bytes = encode_embedding_entry(&embedding, &CacheMetadata::default(), times())
                .unwrap();
            let all_f32 = embedding.iter().all(|&v| f64::from(v as f32).to_bits() == v.to_bits());
            prop_assert_eq!(bytes[4], if all_f32 { ELEMENT_F32 } else { ELEMENT_F64 });
            let CacheLookup::Hit(entry) = decode_embedding_entry("k", &bytes, T0).unwrap() else {
                panic!("expired");
            };
            let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&entry.embedding), bits(&embedding));
            let CacheLookup::Hit(hit) = decode_embedding("k", &bytes, T0).unwrap() else {
                panic!("expired");
            };
            prop_assert_eq!(bits(&hit.values), bits(&embedding));
        }

        #[test]
        fn f32_vectors_are_stored_in_four_bytes_per_value(
            values in prop::collection::vec(
                any::<f32>().prop_filter("finite", |v| v.is_finite()), 1..128),
        ) {
            let embedding: Vec<f64> = values.iter().copied().map(f64::from).collect();
            let bytes = encode_embedding_entry(&embedding, &CacheMetadata::default(), times())
                .unwrap();
            prop_assert_eq!(bytes[4], ELEMENT_F32);
            prop_assert_eq!(bytes.len(), 32 + 4 * embedding.len() + 2);
        }

        #[test]
        fn embedding_decoder_never_panics_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = decode_embedding_entry("k", &bytes, T0);
        }

        #[test]
        fn embedding_decoder_never_panics_on_damaged_entries(
            embedding in prop::collection::vec(finite_f64(), 1..16),
            position in any::<prop::sample::Index>(),
            mask in 1u8..,
            cut in any::<prop::sample::Index>(),
        ) {
            let metadata = CacheMetadata::parse(r#"{"model":"m"}"#).unwrap();
            let bytes = encode_embedding_entry(&embedding, &metadata, times()).unwrap();
            let mut flipped = bytes.clone();
            flipped[position.index(bytes.len())] ^= mask;
            // One flipped byte cannot turn this metadata into an object that scans but cannot
            // be built, the one thing only the full decoder refuses: both reach the same verdict.
            let full = decode_embedding_entry("k", &flipped, T0)
                .map(|lookup| match lookup {
                    CacheLookup::Hit(entry) => CacheLookup::Hit(CachedEmbedding {
                        model: entry.metadata.as_map().get("model")
                            .and_then(Value::as_str).map(str::to_owned),
                        values: entry.embedding,
                    }),
                    CacheLookup::Expired { expires_at_ms } => CacheLookup::Expired { expires_at_ms },
                });
            prop_assert_eq!(decode_embedding("k", &flipped, T0), full);
            let cut = cut.index(bytes.len());
            prop_assert_eq!(
                decode_embedding_entry("k", &bytes[..cut], T0).unwrap_err().code(),
                "CORRUPT_DATA"
            );
        }

        #[test]
        fn query_decoder_never_panics_on_arbitrary_text(text in ".{0,200}") {
            let _ = decode_query_entry("q", &text, T0);
        }

        #[test]
        fn query_values_round_trip(
            value in prop::collection::btree_map("[a-z]{1,4}", any::<i64>(), 0..8),
        ) {
            let json = serde_json::to_string(&value).unwrap();
            let text = encode_query_entry(&json, &CacheMetadata::default(), times()).unwrap();
            let CacheLookup::Hit(entry) = decode_query_entry("q", &text, T0).unwrap() else {
                panic!("expired");
            };
            prop_assert_eq!(entry.value_json(), json);
        }
    }
}
