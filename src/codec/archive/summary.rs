//! Archive metadata in the small forms storage listings carry: KV `metadata`, the listing
//! summary, so that listing a user's archives needs no `get` per key (KV allows 1024 bytes, so
//! the free-text summary is cut to fit, on a character boundary), and R2 `customMetadata`, so
//! that an object can be identified, sized and checked from an R2 listing alone.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::ArchiveMetadata;
use crate::error::{PersistenceError, Result};
use crate::platform::{KV_MAX_METADATA_BYTES, R2_MAX_METADATA_BYTES};

/// The R2 custom-metadata field holding the SHA-256 (hex) of the stored archive bytes.
pub const CUSTOM_SHA256_FIELD: &str = "sha256";

/// The R2 custom-metadata field holding the archive's JSON size in bytes (decimal).
pub const CUSTOM_RAW_SIZE_FIELD: &str = "rawSize";

/// Budget for the key and value bytes of an archive's R2 `customMetadata`: R2's object
/// metadata limit, less 1024 bytes left for `httpMetadata`.
pub const R2_CUSTOM_METADATA_MAX_BYTES: usize = R2_MAX_METADATA_BYTES - 1024;

/// One archive in a KV listing (see [`listing_summary`]): its metadata, with the topics and
/// the summary that fit.
struct ListingEntry<'a> {
    metadata: &'a ArchiveMetadata,
    key: &'a str,
    topics: &'a [String],
    summary: &'a str,
    summary_truncated: bool,
    form: SummaryForm,
}

/// How a listing entry carries the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryForm {
    /// As text, `summary`.
    Plain,
    /// Encrypted, `encryptedSummary`: base64 of the summary plus this many bytes (the
    /// encryption's header and tag).
    Sealed(usize),
}

impl Serialize for ListingEntry<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let metadata = self.metadata;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("key", self.key)?;
        map.serialize_entry("sessionId", &metadata.session_id)?;
        if let Some(user_id) = &metadata.user_id {
            map.serialize_entry("userId", user_id)?;
        }
        map.serialize_entry("archivedAt", &metadata.archived_at)?;
        map.serialize_entry("messageCount", &metadata.message_count)?;
        map.serialize_entry("duration", &metadata.duration)?;
        map.serialize_entry("topics", self.topics)?;
        map.serialize_entry("rawSize", &metadata.raw_size)?;
        map.serialize_entry("storedSize", &metadata.stored_size)?;
        map.serialize_entry("sha256", &metadata.sha256)?;
        map.serialize_entry("formatVersion", &metadata.format_version)?;
        match self.form {
            SummaryForm::Plain => map.serialize_entry("summary", self.summary)?,
            SummaryForm::Sealed(overhead) => map.serialize_entry(
                ENCRYPTED_SUMMARY_FIELD,
                &SEALED_PLACEHOLDER.repeat((overhead + self.summary.len()).div_ceil(3) * 4),
            )?,
        }
        map.serialize_entry("summaryTruncated", &self.summary_truncated)?;
        map.end()
    }
}

/// The longest prefix of `text`, ending on a character boundary, for which `fits` holds;
/// `fits` must be monotonic (a prefix of a fitting text fits) and no prefix longer than
/// `max_bytes` is tried.
fn longest_fitting_prefix<'t>(
    text: &'t str,
    max_bytes: usize,
    fits: impl Fn(&'t str) -> bool,
) -> &'t str {
    let ends: Vec<usize> = text
        .char_indices()
        .map(|(start, _)| start)
        .skip(1)
        .chain(std::iter::once(text.len()))
        .take_while(|end| *end <= max_bytes)
        .collect();
    let fitting = ends.partition_point(|end| text.get(..*end).is_some_and(&fits));
    fitting
        .checked_sub(1)
        .and_then(|last| ends.get(last))
        .and_then(|end| text.get(..*end))
        .unwrap_or("")
}

/// The archive's KV listing entry, at most [`KV_MAX_METADATA_BYTES`] of JSON:
/// `{key, sessionId, userId?, archivedAt, messageCount, duration, topics, rawSize, storedSize,
/// sha256, formatVersion, summary, summaryTruncated}`. A summary that does not fit is cut (and
/// `summaryTruncated` is true); topics are dropped only if even an empty summary does not fit.
/// Fails with `INVALID_INPUT` when the key and ids alone exceed the limit.
///
/// For an encrypted archive's metadata (its summary only in `encryptedSummary`, as a restore
/// or a re-index has it, without the keys), the entry carries that encrypted summary when it
/// fits, and otherwise none, with `summaryTruncated` true: a ciphertext cannot be cut.
pub fn listing_summary(metadata: &ArchiveMetadata, archive_key: &str) -> Result<Value> {
    let (mut entry, _) = listing_entry(metadata, archive_key, SummaryForm::Plain)?;
    let (Some(sealed), Value::Object(fields)) = (&metadata.encrypted_summary, &mut entry) else {
        return Ok(entry);
    };
    fields.remove("summary");
    fields.insert(
        ENCRYPTED_SUMMARY_FIELD.to_owned(),
        Value::String(sealed.clone()),
    );
    let fits = serde_json::to_vec(fields).is_ok_and(|json| json.len() <= KV_MAX_METADATA_BYTES);
    if !fits {
        fields.remove(ENCRYPTED_SUMMARY_FIELD);
        fields.insert("summaryTruncated".to_owned(), Value::Bool(true));
    }
    Ok(entry)
}

/// The listing entry field holding an encrypted summary.
pub const ENCRYPTED_SUMMARY_FIELD: &str = "encryptedSummary";

/// What a [`SummaryForm::Sealed`] entry holds until the caller puts the encrypted summary in.
const SEALED_PLACEHOLDER: &str = "=";

/// [`listing_summary`] in `form`, and how many bytes of the summary it holds. For
/// [`SummaryForm::Sealed`], `encryptedSummary` holds a placeholder as long as the encrypted
/// prefix will be: the caller encrypts that prefix and puts it in its place.
pub fn listing_entry(
    metadata: &ArchiveMetadata,
    archive_key: &str,
    form: SummaryForm,
) -> Result<(Value, usize)> {
    let entry = |topics, summary, summary_truncated| ListingEntry {
        metadata,
        key: archive_key,
        topics,
        summary,
        summary_truncated,
        form,
    };
    let fits = |entry: &ListingEntry| {
        serde_json::to_vec(entry).is_ok_and(|json| json.len() <= KV_MAX_METADATA_BYTES)
    };
    let to_value = |entry: ListingEntry| {
        serde_json::to_value(entry)
            .map_err(|err| PersistenceError::invalid_input("archive metadata", err.to_string()))
    };

    let whole = entry(&metadata.topics, &metadata.summary, false);
    if fits(&whole) {
        return Ok((to_value(whole)?, metadata.summary.len()));
    }
    let no_topics: &[String] = &[];
    for topics in [metadata.topics.as_slice(), no_topics] {
        if fits(&entry(topics, "", true)) {
            let summary = longest_fitting_prefix(&metadata.summary, KV_MAX_METADATA_BYTES, |cut| {
                fits(&entry(topics, cut, true))
            });
            return Ok((to_value(entry(topics, summary, true))?, summary.len()));
        }
    }
    Err(PersistenceError::invalid_input(
        "archiveKey",
        format!(
            "the key, sessionId and userId alone exceed KV's {KV_MAX_METADATA_BYTES}-byte metadata limit"
        ),
    ))
}

/// The archive's R2 `customMetadata`: `sessionId`, `archivedAt`, `messageCount`, `duration`,
/// `rawSize` (decimal), `sha256` and `formatVersion`, what identifies, sizes and checks the
/// object from a listing alone. The rest stays in the document's `metadata` and the KV listing
/// entry: the user id, which is personal data and would be copied into every listing and
/// every HTTP response header of R2's S3 API, and the free-text summary and topics, which do
/// not belong in header values and would be paid for twice per archive. `storedSize` is R2's
/// own `size`. Fails with `INVALID_INPUT` when the fields exceed
/// [`R2_CUSTOM_METADATA_MAX_BYTES`] (only possible with a session id that bypassed validation).
pub fn r2_custom_metadata(metadata: &ArchiveMetadata) -> Result<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = [
        ("sessionId", metadata.session_id.clone()),
        ("archivedAt", metadata.archived_at.to_string()),
        ("messageCount", metadata.message_count.to_string()),
        ("duration", metadata.duration.to_string()),
        (CUSTOM_RAW_SIZE_FIELD, metadata.raw_size.to_string()),
        (CUSTOM_SHA256_FIELD, metadata.sha256.clone()),
        ("formatVersion", metadata.format_version.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();

    let used: usize = pairs
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    if used > R2_CUSTOM_METADATA_MAX_BYTES {
        return Err(PersistenceError::invalid_input(
            "customMetadata",
            format!("{used} bytes exceed the budget of {R2_CUSTOM_METADATA_MAX_BYTES}"),
        ));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    fn metadata(summary: &str) -> ArchiveMetadata {
        ArchiveMetadata {
            session_id: "session-1".into(),
            user_id: Some("user-1".into()),
            archived_at: 1_736_157_600_000,
            message_count: 12,
            summary: summary.into(),
            topics: vec!["billing".into(), "technical-issue".into()],
            duration: 60_000,
            raw_size: 4_000,
            stored_size: 900,
            sha256: "ab".repeat(32),
            format_version: 1,
            encrypted_summary: None,
        }
    }

    const KEY: &str = "conversations/2025/01/archive_session-1_1736157600000.json.gz";

    fn size(value: &Value) -> usize {
        serde_json::to_vec(value).unwrap().len()
    }

    #[test]
    fn small_summary_is_kept_whole() {
        let value = listing_summary(&metadata("Refund for a double charge."), KEY).unwrap();
        assert_eq!(value["summary"], "Refund for a double charge.");
        assert_eq!(value["summaryTruncated"], false);
        assert_eq!(value["userId"], "user-1");
        assert_eq!(value["key"], KEY);
        assert_eq!(value["topics"], json!(["billing", "technical-issue"]));
        assert_eq!(value["sha256"], "ab".repeat(32));
    }

    #[test]
    fn huge_summary_is_cut_to_fill_the_limit_exactly_or_nearly() {
        for unit in ["a", "é", "日", "😀", "\"", "\n", "\u{1}"] {
            let value = listing_summary(&metadata(&unit.repeat(100_000)), KEY).unwrap();
            let cut = value["summary"].as_str().unwrap();
            assert!(size(&value) <= KV_MAX_METADATA_BYTES, "{unit:?}");
            // One more character would not have fitted.
            let mut longer = value.clone();
            longer["summary"] = Value::from(format!("{cut}{unit}"));
            assert!(size(&longer) > KV_MAX_METADATA_BYTES, "{unit:?}");
            assert!(cut.chars().all(|c| c.to_string() == unit));
            assert_eq!(value["summaryTruncated"], true);
            assert_eq!(value["topics"], json!(["billing", "technical-issue"]));
        }
    }

    #[test]
    fn topics_go_before_ids_when_space_runs_out() {
        let mut crowded = metadata("summary");
        crowded.topics = vec!["t".repeat(400); 2];
        let value = listing_summary(&crowded, KEY).unwrap();
        assert_eq!(value["topics"], json!([]));
        assert_eq!(value["summary"], "summary");
        assert!(size(&value) <= KV_MAX_METADATA_BYTES);

        let err = listing_summary(&metadata(""), &"k".repeat(1100)).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("archiveKey"));
    }

    #[test]
    fn the_longest_ids_with_worst_case_escaping_still_fit_the_kv_limit() {
        // A user id may now hold quotes and backslashes, each escaped to two bytes in JSON.
        let session_id = "s".repeat(crate::keys::MAX_ID_LEN);
        let key = format!("conversations/2025/01/archive_{session_id}_9999999999999.json.gz");
        for unit in ["\"", "\\", "é"] {
            let mut crowded = metadata(&"summary ".repeat(200));
            crowded.session_id = session_id.clone();
            crowded.user_id = Some(unit.repeat(crate::keys::MAX_ID_LEN / unit.len()));
            crowded.archived_at = 9_999_999_999_999;
            crowded.message_count = u64::MAX;
            crowded.duration = u64::MAX;
            crowded.raw_size = u64::MAX;
            crowded.stored_size = u64::MAX;
            let value = listing_summary(&crowded, &key).unwrap();
            assert!(size(&value) <= KV_MAX_METADATA_BYTES, "{unit}");
            assert_eq!(value["userId"], crowded.user_id.clone().unwrap().as_str());
            assert_eq!(value["sessionId"], session_id.as_str());
            assert_eq!(value["summaryTruncated"], true);
        }
    }

    #[test]
    fn custom_metadata_identifies_sizes_and_checks_the_object() {
        let pairs = r2_custom_metadata(&metadata("line one\nline two")).unwrap();
        let names: Vec<&str> = pairs.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sessionId",
                "archivedAt",
                "messageCount",
                "duration",
                "rawSize",
                "sha256",
                "formatVersion"
            ]
        );
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(get("sha256"), Some("ab".repeat(32).as_str()));
        assert_eq!(get("archivedAt"), Some("1736157600000"));
        assert_eq!(get("rawSize"), Some("4000"));
        assert!(
            pairs.iter().all(|(_, value)| value != "user-1"),
            "the user id stays out of R2 metadata"
        );
    }

    #[test]
    fn custom_metadata_of_the_longest_valid_ids_fits_and_oversized_ones_are_refused() {
        let mut longest = metadata("");
        longest.session_id = "s".repeat(crate::keys::MAX_ID_LEN);
        longest.user_id = Some("u".repeat(crate::keys::MAX_ID_LEN));
        longest.archived_at = i64::MIN;
        longest.message_count = u64::MAX;
        longest.duration = u64::MAX;
        longest.raw_size = u64::MAX;
        longest.format_version = u32::MAX;
        assert!(r2_custom_metadata(&longest).is_ok());

        let mut crowded = metadata("");
        crowded.session_id = "s".repeat(R2_CUSTOM_METADATA_MAX_BYTES);
        assert_eq!(
            r2_custom_metadata(&crowded).unwrap_err().code(),
            "INVALID_INPUT"
        );
    }
}
