//! What the retention planner reads: entries of KV and R2 `list()` pages, as plain Rust values.

use std::collections::BTreeMap;

use serde_json::Value;

/// One key of a Workers KV `list()` page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedKvKey {
    /// The key.
    pub name: String,
    /// KV's own expiration (epoch seconds), if one was set. Not used for decisions: KV deletes
    /// such keys itself.
    pub expiration_s: Option<u64>,
    /// The key's list `metadata`, parsed from JSON.
    pub metadata: Option<Value>,
}

/// One object of an R2 `list()` page, listed with `include: ["customMetadata"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedR2Object {
    /// The object key.
    pub key: String,
    /// When R2 stored the object (epoch ms).
    pub uploaded_ms: i64,
    /// Size of the stored object in bytes.
    pub size: u64,
    /// The object's custom metadata, if the listing included it.
    pub custom_metadata: Option<BTreeMap<String, String>>,
}
