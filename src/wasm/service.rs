//! The service over the Worker's real bindings, exported to JavaScript as
//! `DataPersistenceService` (which js/api.ts wraps in the spec's class of the same name).
//!
//! Methods return Promises built from `'static` futures that own an `Rc` of the service, so
//! any number of calls can be in flight at once (a Worker isolate serves concurrent requests);
//! no Rust borrow is held across an await. Values cross as JSON text or typed arrays, never as
//! object graphs (DESIGN.md: JSON.stringify in JS is cheaper than walking objects from Rust).

use std::future::Future;
use std::rc::Rc;

use js_sys::{Float64Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::analytics::{recorded, Analytics};
use super::bindings::{KVNamespace, OperationRecorder, R2Bucket};
use super::clock::JsClock;
use super::convert::{integer_arg, page_limit_arg};
use super::js_error::{to_js_error_in, Operation};
use super::kv::JsKv;
use super::log::ConsoleLog;
use super::r2::JsR2;
use crate::codec::ascii_json::ascii_json;
use crate::codec::json_text;
use crate::error::PersistenceError;
use crate::platform::JS_MAX_SAFE_INTEGER;
use crate::policy::{self, DataRetentionPolicy, PolicyOverrides};
use crate::service::{
    DataPersistenceService, RestoreTally, RunBudget, Sample, ServiceOptions, VerifyOptions,
};
use crate::store::Clock;

pub(super) type Service = DataPersistenceService<JsKv, JsR2, JsClock>;

/// The persistence service bound to a Worker's `CHAT_KV` and `ARCHIVE_R2`.
#[wasm_bindgen(js_name = DataPersistenceService)]
pub struct BoundService {
    pub(super) service: Rc<Service>,
    /// The data points of its calls, when a `PERSISTENCE_ANALYTICS` dataset is bound.
    pub(super) analytics: Option<Rc<Analytics>>,
}

/// Runs `work` on a clone of the service and turns its result into a Promise; errors become
/// `PersistenceError`s whose message starts with the operation's prefix. With analytics, the
/// call is measured and recorded when it settles.
pub(super) fn spawn<F, Fut, T>(
    bound: &BoundService,
    operation: Operation,
    name: &'static str,
    work: F,
) -> Promise
where
    F: FnOnce(Rc<Service>) -> Fut + 'static,
    Fut: Future<Output = Result<T, PersistenceError>> + 'static,
    T: Into<JsValue>,
{
    let service = Rc::clone(&bound.service);
    let analytics = bound.analytics.clone();
    future_to_promise(async move {
        recorded(analytics, name, work(service))
            .await
            .map(Into::into)
            .map_err(|err| to_js_error_in(operation, &err))
    })
}

/// JSON text handed over in parts, so a large conversation never exists in JavaScript as one
/// string (UTF-16, up to twice its UTF-8 size) or one byte array beside its copy in wasm: the
/// caller stringifies one message at a time and `TextEncoder.encodeInto`s it straight into
/// this buffer ([`JsonInput::spare_bytes`], then [`JsonInput::commit`]), so its UTF-8 exists
/// only here. Not wasm-bindgen's string passing: it copies a string that is not ASCII
/// into a buffer of three bytes per UTF-16 unit before shrinking it, and linear memory never
/// shrinks.
#[wasm_bindgen]
pub struct JsonInput {
    bytes: Vec<u8>,
    /// Bytes past `bytes.len()` lent out by the last `spare_bytes` (zeroed, so initialized).
    lent: usize,
}

#[wasm_bindgen]
impl JsonInput {
    /// An empty input with room for `capacity` bytes (a hint; it grows as needed).
    #[wasm_bindgen(constructor)]
    pub fn new(capacity: usize) -> JsonInput {
        JsonInput {
            bytes: Vec::with_capacity(capacity),
            lent: 0,
        }
    }

    /// A view of `len` zeroed bytes after the input, for `TextEncoder.encodeInto` to fill;
    /// [`JsonInput::commit`] appends what was written. Only this input's own methods move the
    /// bytes; if another call grows linear memory meanwhile, the view is detached (it then
    /// takes no more writes), and what was written through it stays where it was.
    #[wasm_bindgen(js_name = spareBytes)]
    pub fn spare_bytes(&mut self, len: usize) -> js_sys::Uint8Array {
        let start = self.bytes.len();
        // Zeroed rather than uninitialized: `commit` may be told any count within the view.
        self.bytes.resize(start.saturating_add(len), 0);
        self.bytes.truncate(start);
        self.lent = len;
        let spare = self.bytes.spare_capacity_mut();
        // SAFETY: the view covers `len` bytes of this Vec's own allocation (reserved and zeroed
        // by `resize` above), which only this input's methods reallocate, and growing linear
        // memory detaches the view rather than moving the bytes; JavaScript writes into it only
        // through the view, before calling `commit`.
        unsafe { js_sys::Uint8Array::view_mut_raw(spare.as_mut_ptr().cast::<u8>(), len) }
    }

    /// Appends the first `written` bytes of the last [`JsonInput::spare_bytes`] view (UTF-8,
    /// checked once the input is used). Throws when `written` exceeds the view.
    pub fn commit(&mut self, written: usize) -> Result<(), JsError> {
        if written > self.lent {
            return Err(JsError::new(&format!(
                "JsonInput: committed {written} bytes of a {}-byte view",
                self.lent
            )));
        }
        let len = self.bytes.len().saturating_add(written);
        // SAFETY: `written` bytes past the length lie within the view `spare_bytes` zeroed
        // (and JavaScript may have overwritten), all within the capacity.
        unsafe { self.bytes.set_len(len) };
        self.lent = 0;
        Ok(())
    }
}

/// `bytes` as text; INVALID_INPUT naming `field` when they are not UTF-8.
fn utf8(field: &str, bytes: Vec<u8>) -> Result<String, PersistenceError> {
    String::from_utf8(bytes)
        .map_err(|err| PersistenceError::invalid_input(field, format!("is not UTF-8: {err}")))
}

/// `text` read as a `T`; INVALID_INPUT naming `field` and what does not fit.
fn from_json<T: serde::de::DeserializeOwned>(
    field: &str,
    text: &str,
) -> Result<T, PersistenceError> {
    serde_json::from_str(text)
        .map_err(|err| PersistenceError::invalid_input(field, err.to_string()))
}

/// `null` for absent (wasm-bindgen would give `undefined`, which the API does not promise).
fn json_or_null(found: Option<String>) -> JsValue {
    found.map_or(JsValue::NULL, JsValue::from)
}

/// An archive's JSON text (a conversation or UIMessages, up to tens of MB), or `null`, in ASCII
/// (`ascii_json`): JavaScript decodes it ~4× faster than UTF-8 with a few other characters.
fn archive_json_or_null(found: Option<String>) -> JsValue {
    json_or_null(found.map(ascii_json))
}

fn optional_json(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

#[wasm_bindgen(js_class = DataPersistenceService)]
impl BoundService {
    /// A service over `kv` and `r2`, and `replica` (`ARCHIVE_R2_REPLICA`) when given;
    /// `analytics` (js/analytics.ts over `PERSISTENCE_ANALYTICS`) records each call.
    /// `policy_json` is a (partial) DataRetentionPolicy and `options_json` the
    /// PersistenceOptions, both as JSON text. Throws INVALID_CONFIG.
    #[wasm_bindgen(constructor)]
    pub fn new(
        kv: KVNamespace,
        r2: R2Bucket,
        policy_json: &str,
        options_json: &str,
        replica: Option<R2Bucket>,
        analytics: Option<OperationRecorder>,
    ) -> Result<BoundService, JsValue> {
        let build = || -> Result<Service, PersistenceError> {
            let policy =
                PolicyOverrides::from_json(policy_json)?.apply(DataRetentionPolicy::default())?;
            let options = ServiceOptions::from_json(options_json)?;
            let service = DataPersistenceService::new(
                JsKv::new(kv),
                JsR2::new(r2),
                JsClock::new(),
                Rc::new(ConsoleLog::new()),
                policy,
                options,
            )?;
            Ok(match replica {
                Some(replica) => service.with_replica(JsR2::new(replica)),
                None => service,
            })
        };
        let service = build().map_err(|err| to_js_error_in(Operation::Config, &err))?;
        Ok(BoundService {
            service: Rc::new(service),
            analytics: analytics.map(|recorder| Rc::new(Analytics::new(recorder))),
        })
    }

    /// The policy in force, as JSON text.
    #[wasm_bindgen(js_name = policyJson)]
    pub fn policy_json(&self) -> String {
        json_text(self.service.policy())
    }

    /// Archives the conversation whose JSON text was filled into `memory` (see [`JsonInput`])
    /// and the session state given as UTF-8 JSON bytes; resolves to the R2 key of the archive.
    #[wasm_bindgen(js_name = archiveConversation)]
    pub fn archive_conversation(&self, memory: JsonInput, session_json: Vec<u8>) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "archiveConversation",
            async move |service| {
                let memory_json = utf8("memory", memory.bytes)?;
                let session_json = utf8("session", session_json)?;
                service
                    .archive_conversation(&memory_json, &session_json)
                    .await
            },
        )
    }

    /// The newest archive of a session as conversation JSON text, or `null`.
    #[wasm_bindgen(js_name = retrieveArchivedConversation)]
    pub fn retrieve_archived_conversation(&self, session_id: String) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "retrieveArchivedConversation",
            async move |service| {
                let found = service.retrieve_archived_conversation(&session_id).await?;
                Ok(archive_json_or_null(found))
            },
        )
    }

    /// Archives the AI SDK UIMessages of session `session_id`, whose JSON array was filled into
    /// `messages` (see [`JsonInput`]), with the options `{userId?, summary?}` as JSON text;
    /// resolves to the R2 key of the archive.
    #[wasm_bindgen(js_name = archiveUIMessages)]
    pub fn archive_ui_messages(
        &self,
        session_id: String,
        messages: JsonInput,
        options_json: String,
    ) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "archiveUIMessages",
            async move |service| {
                let messages_json = utf8("messages", messages.bytes)?;
                service
                    .archive_ui_messages(&session_id, &messages_json, &options_json)
                    .await
            },
        )
    }

    /// The newest archive of a session as the JSON text of a UIMessage array, or `null`.
    #[wasm_bindgen(js_name = retrieveUIMessages)]
    pub fn retrieve_ui_messages(&self, session_id: String) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "retrieveUIMessages",
            async move |service| {
                let found = service.retrieve_ui_messages(&session_id).await?;
                Ok(archive_json_or_null(found))
            },
        )
    }

    /// Archives the UIMessages filled into `messages` as segment `seq` of session `session_id`
    /// (the Agents SDK offload); resolves to the R2 key of the segment's archive.
    #[wasm_bindgen(js_name = archiveSegment)]
    pub fn archive_segment(&self, session_id: String, seq: u32, messages: JsonInput) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "archiveSegment",
            async move |service| {
                let messages_json = utf8("messages", messages.bytes)?;
                service
                    .archive_segment(&session_id, seq, &messages_json)
                    .await
            },
        )
    }

    /// The archive or segment under an R2 key as the JSON text of a UIMessage array, or `null`.
    #[wasm_bindgen(js_name = retrieveUIMessagesByKey)]
    pub fn retrieve_ui_messages_by_key(&self, archive_key: String) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "retrieveUIMessagesByKey",
            async move |service| {
                let found = service.retrieve_ui_messages_by_key(&archive_key).await?;
                Ok(archive_json_or_null(found))
            },
        )
    }

    /// One page of archive summaries, newest first, as JSON text.
    #[wasm_bindgen(js_name = listArchivedConversations)]
    pub fn list_archived_conversations(
        &self,
        user_id: Option<String>,
        limit: f64,
        cursor: Option<String>,
    ) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "listArchivedConversations",
            async move |service| {
                let limit = page_limit_arg(limit)?;
                let listing = service
                    .list_archived_conversations(user_id.as_deref(), limit, cursor.as_deref())
                    .await?;
                Ok(json_text(&listing))
            },
        )
    }

    /// Caches an embedding (Float64Array) for `text`.
    #[wasm_bindgen(js_name = cacheEmbedding)]
    pub fn cache_embedding(
        &self,
        text: String,
        embedding: Float64Array,
        metadata_json: Option<String>,
    ) -> Promise {
        let values = embedding.to_vec();
        spawn(
            self,
            Operation::Cache,
            "cacheEmbedding",
            async move |service| {
                service
                    .cache_embedding(&text, &values, optional_json(metadata_json).as_deref())
                    .await
                    .map(|()| JsValue::UNDEFINED)
            },
        )
    }

    /// The cached embedding of `text` under `model`, or `null`: resolves to what `copy`
    /// returned, called with a Float64Array viewing the values in wasm memory.
    ///
    /// A view, not a copy: `copy` (which must not call into wasm) builds the caller's array
    /// from it, so no typed array is allocated for a value that is only read once.
    #[wasm_bindgen(js_name = getCachedEmbedding)]
    pub fn get_cached_embedding(
        &self,
        text: String,
        model: Option<String>,
        copy: js_sys::Function,
    ) -> Promise {
        let service = Rc::clone(&self.service);
        let analytics = self.analytics.clone();
        future_to_promise(async move {
            let lookup = service.get_cached_embedding(&text, model.as_deref());
            let Some(values) = recorded(analytics, "getCachedEmbedding", lookup)
                .await
                .map_err(|err| to_js_error_in(Operation::Cache, &err))?
            else {
                return Ok(JsValue::NULL);
            };
            // SAFETY: the view is only used during this call of `copy`, which does not call
            // into wasm, so linear memory cannot grow (and move) while it exists; `values`
            // outlives the call. Whatever `copy` throws rejects the promise as it is.
            let view = unsafe { Float64Array::view(&values) };
            copy.call1(&JsValue::NULL, &view)
        })
    }

    /// Caches a query result (JSON text) for `query`.
    #[wasm_bindgen(js_name = cacheFrequentQuery)]
    pub fn cache_frequent_query(
        &self,
        query: String,
        result_json: String,
        metadata_json: Option<String>,
    ) -> Promise {
        spawn(
            self,
            Operation::Cache,
            "cacheFrequentQuery",
            async move |service| {
                service
                    .cache_frequent_query(
                        &query,
                        &result_json,
                        optional_json(metadata_json).as_deref(),
                    )
                    .await
                    .map(|()| JsValue::UNDEFINED)
            },
        )
    }

    /// The cached result of `query` as JSON text, or `null`.
    #[wasm_bindgen(js_name = getCachedQueryResult)]
    pub fn get_cached_query_result(&self, query: String) -> Promise {
        spawn(
            self,
            Operation::Cache,
            "getCachedQueryResult",
            async move |service| {
                let found = service.get_cached_query_result(&query).await?;
                Ok(json_or_null(found))
            },
        )
    }

    /// Backs up the newest archives of `session_ids`, all of them `user_id`'s when it is
    /// given; resolves to the backup id.
    #[wasm_bindgen(js_name = createBackup)]
    pub fn create_backup(
        &self,
        session_ids: Vec<String>,
        user_id: Option<String>,
        keep: bool,
    ) -> Promise {
        spawn(
            self,
            Operation::Backup,
            "createBackup",
            async move |service| {
                service
                    .create_backup(&session_ids, user_id.as_deref(), keep)
                    .await
            },
        )
    }

    /// One page of backups, newest first, with the backup policy's decisions, as JSON text.
    #[wasm_bindgen(js_name = listBackups)]
    pub fn list_backups(
        &self,
        user_id: Option<String>,
        limit: f64,
        cursor: Option<String>,
    ) -> Promise {
        spawn(
            self,
            Operation::Backup,
            "listBackups",
            async move |service| {
                let limit = page_limit_arg(limit)?;
                let listing = service
                    .list_backups(user_id.as_deref(), limit, cursor.as_deref())
                    .await?;
                Ok(json_text(&listing))
            },
        )
    }

    /// Restores a backup after verifying it whole, only one made for `user_id` when it is
    /// given; resolves to the restored and skipped session ids as JSON text (`tally_json`).
    #[wasm_bindgen(js_name = restoreFromBackup)]
    pub fn restore_from_backup(&self, backup_id: String, user_id: Option<String>) -> Promise {
        spawn(
            self,
            Operation::Restore,
            "restoreFromBackup",
            async move |service| {
                let tally = service
                    .restore_backup(&backup_id, user_id.as_deref())
                    .await?;
                Ok(tally_json(&tally))
            },
        )
    }

    /// Erases everything stored of `user_id` (or continues its unfinished erasure) within the
    /// budget (as `runJob`); resolves to the receipt as JSON text.
    #[wasm_bindgen(js_name = eraseUserData)]
    pub fn erase_user_data(
        &self,
        user_id: String,
        max_storage_calls: Option<f64>,
        time_budget_ms: Option<f64>,
    ) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "eraseUserData",
            async move |service| {
                let budget = budget_args(&service, max_storage_calls, time_budget_ms)?;
                Ok(json_text(&service.erase_user_data(&user_id, budget).await?))
            },
        )
    }

    /// Runs (or continues) a verification pass of the `sample` (`"1/n"` or `"all"`, default
    /// all), repairing what it can when `repair`, within the budget (as `runJob`); resolves
    /// to its report as JSON text.
    #[wasm_bindgen(js_name = verifyStorage)]
    pub fn verify_storage(
        &self,
        sample: Option<String>,
        repair: bool,
        max_storage_calls: Option<f64>,
        time_budget_ms: Option<f64>,
    ) -> Promise {
        spawn(
            self,
            Operation::Verify,
            "verifyStorage",
            async move |service| {
                let sample = sample.as_deref().map(Sample::parse).transpose()?;
                let options = VerifyOptions {
                    sample: sample.unwrap_or_default(),
                    repair,
                };
                let budget = budget_args(&service, max_storage_calls, time_budget_ms)?;
                Ok(json_text(&service.verify_storage(options, budget).await?))
            },
        )
    }

    /// Continues every unfinished erasure within the budget (as `runJob`); resolves to their
    /// receipts as JSON text (an array).
    #[wasm_bindgen(js_name = resumeErasures)]
    pub fn resume_erasures(
        &self,
        max_storage_calls: Option<f64>,
        time_budget_ms: Option<f64>,
    ) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "resumeErasures",
            async move |service| {
                let budget = budget_args(&service, max_storage_calls, time_budget_ms)?;
                Ok(json_text(&service.resume_erasures(budget).await?))
            },
        )
    }

    /// The plan step of an automated backup (`BackupWorkflow`): its id, time, and what it is
    /// incremental to, as JSON text, for the request (JSON text: `{since?, sessionIds?,
    /// userId?, keep?}`) and `max_sessions` archives per pack step.
    #[wasm_bindgen(js_name = planBackup)]
    pub fn plan_backup(&self, request_json: String, max_sessions: f64) -> Promise {
        spawn(
            self,
            Operation::Backup,
            "planBackup",
            async move |service| {
                let request = from_json("request", &request_json)?;
                let max_sessions = integer_arg("maxSessions", max_sessions, 1, u32::MAX.into())?;
                // At most u32::MAX: checked above.
                let plan = service.plan_backup(request, max_sessions as u32).await?;
                Ok(json_text(&plan))
            },
        )
    }

    /// One pack step of an automated backup (JSON text `{plan, pack, from}`); its report as
    /// JSON text.
    #[wasm_bindgen(js_name = backupPack)]
    pub fn backup_pack(&self, step_json: String) -> Promise {
        spawn(
            self,
            Operation::Backup,
            "backupPack",
            async move |service| {
                let report = service.backup_pack(from_json("step", &step_json)?).await?;
                Ok(json_text(&report))
            },
        )
    }

    /// The commit step of an automated backup (JSON text `{plan, packs, missingSessionIds}`);
    /// resolves to the backup id.
    #[wasm_bindgen(js_name = commitBackup)]
    pub fn commit_backup(&self, commit_json: String) -> Promise {
        spawn(
            self,
            Operation::Backup,
            "commitBackup",
            async move |service| {
                service
                    .commit_backup(from_json("commit", &commit_json)?)
                    .await
            },
        )
    }

    /// What a restore of `backup_id` restores, a step at a time: `[[backupId, packs,
    /// [archives of each pack]], ...]` of its chain, oldest first, as JSON text.
    #[wasm_bindgen(js_name = planRestore)]
    pub fn plan_restore(&self, backup_id: String, user_id: Option<String>) -> Promise {
        spawn(
            self,
            Operation::Restore,
            "planRestore",
            async move |service| {
                let units = service.plan_restore(&backup_id, user_id.as_deref()).await?;
                Ok(json_text(&units))
            },
        )
    }

    /// Restores archives `first..first + count` of one pack of a backup (the whole pack when
    /// they are omitted); resolves to their restored and skipped session ids as JSON text
    /// (`tally_json`).
    #[wasm_bindgen(js_name = restorePack)]
    pub fn restore_pack(
        &self,
        backup_id: String,
        pack: f64,
        user_id: Option<String>,
        first: Option<f64>,
        count: Option<f64>,
    ) -> Promise {
        spawn(
            self,
            Operation::Restore,
            "restorePack",
            async move |service| {
                let max = u32::MAX.into();
                // Each checked to fit u32, so to fit usize.
                let index = integer_arg("pack", pack, 0, max)? as usize;
                let first = first.map(|n| integer_arg("first", n, 0, max)).transpose()?;
                let count = count.map(|n| integer_arg("count", n, 1, max)).transpose()?;
                let start = first.unwrap_or(0) as usize;
                let end = count.map_or(usize::MAX, |count| start.saturating_add(count as usize));
                let tally = service
                    .restore_pack_slice(&backup_id, index, user_id.as_deref(), start..end)
                    .await?;
                Ok(tally_json(&tally))
            },
        )
    }

    /// The health report as JSON text (never rejects: failures are reported in it).
    #[wasm_bindgen(js_name = healthCheck)]
    pub fn health_check(&self) -> Promise {
        spawn(
            self,
            Operation::Metrics,
            "healthCheck",
            async move |service| Ok(json_text(&service.health_check().await)),
        )
    }

    /// The archive stored under an R2 key, as conversation JSON text, or `null`; reads R2 only
    /// (strongly consistent).
    #[wasm_bindgen(js_name = retrieveArchive)]
    pub fn retrieve_archive(&self, archive_key: String) -> Promise {
        spawn(
            self,
            Operation::Archive,
            "retrieveArchive",
            async move |service| {
                let found = service.retrieve_archive(&archive_key).await?;
                Ok(archive_json_or_null(found))
            },
        )
    }

    /// Runs (or resumes) the maintenance job `job` on the run driver within at most
    /// `max_storage_calls` storage calls (1..=2^32-1) and `time_budget_ms` milliseconds from now
    /// (1..=2^53-1), each INVALID_INPUT naming it otherwise; resolves to its report as JSON
    /// text. The jobs are the service's methods of the same names; any other name is
    /// INVALID_INPUT naming `job`.
    #[wasm_bindgen(js_name = runJob)]
    pub fn run_job(
        &self,
        job: String,
        max_storage_calls: Option<f64>,
        time_budget_ms: Option<f64>,
    ) -> Promise {
        let operation = match job.as_str() {
            "enforceRetentionPolicy" | "previewRetentionPolicy" => Operation::Retention,
            "getStorageMetrics" => Operation::Metrics,
            _ => Operation::Archive,
        };
        // The job's name as analytics records it: one of the known names, never the caller's.
        let name = JOBS
            .iter()
            .find(|name| **name == job)
            .map_or("runJob", |name| *name);
        spawn(self, operation, name, async move |service| {
            let budget = budget_args(&service, max_storage_calls, time_budget_ms)?;
            Ok(match job.as_str() {
                "enforceRetentionPolicy" => {
                    json_text(&service.enforce_retention_policy(budget).await?)
                }
                "previewRetentionPolicy" => {
                    json_text(&service.preview_retention_policy(budget).await?)
                }
                "getStorageMetrics" => json_text(&service.get_storage_metrics(budget).await?),
                "indexLegacyArchives" => json_text(&service.index_legacy_archives(budget).await?),
                "reindexUserArchives" => json_text(&service.reindex_user_archives(budget).await?),
                "encryptExistingArchives" => {
                    json_text(&service.encrypt_existing_archives(budget).await?)
                }
                "rotateEncryptionKeys" => json_text(&service.rotate_encryption_keys(budget).await?),
                "syncReplica" => json_text(&service.sync_replica(budget).await?),
                other => {
                    return Err(PersistenceError::invalid_input(
                        "job",
                        format!("{other:?} is not a maintenance job"),
                    ))
                }
            })
        })
    }
}

/// The maintenance jobs [`BoundService::run_job`] runs.
const JOBS: [&str; 8] = [
    "enforceRetentionPolicy",
    "previewRetentionPolicy",
    "getStorageMetrics",
    "indexLegacyArchives",
    "reindexUserArchives",
    "encryptExistingArchives",
    "rotateEncryptionKeys",
    "syncReplica",
];

/// The budget of a run from its JavaScript options: at most `max_storage_calls` storage calls
/// (1..=2^32-1) and `time_budget_ms` milliseconds from now (1..=2^53-1), each INVALID_INPUT
/// naming it otherwise.
pub(super) fn budget_args(
    service: &Service,
    max_storage_calls: Option<f64>,
    time_budget_ms: Option<f64>,
) -> Result<RunBudget, PersistenceError> {
    let max_storage_calls = max_storage_calls
        .map(|calls| integer_arg("maxStorageCalls", calls, 1, u32::MAX.into()))
        .transpose()?
        .map(|calls| calls as u32); // At most u32::MAX: checked above.
    let now_ms = service.clock().now_ms();
    let deadline_ms = time_budget_ms
        .map(|ms| integer_arg("timeBudgetMs", ms, 1, JS_MAX_SAFE_INTEGER))
        .transpose()?
        .map(|ms| now_ms.saturating_add_unsigned(ms));
    Ok(RunBudget {
        max_storage_calls,
        deadline_ms,
    })
}

/// A restore's outcome as JSON text: `{"restored": [...], "skipped": [...]}` (sessions of
/// erased users).
fn tally_json(tally: &RestoreTally) -> String {
    json_text(&serde_json::json!({ "restored": tally.restored, "skipped": tally.skipped }))
}

/// The names of the wrangler.toml `[vars]` that [`policy_from_vars`] reads (the spec's five and
/// the four `BACKUP_KEEP_*`).
#[wasm_bindgen(js_name = policyVarNames)]
pub fn policy_var_names() -> Vec<String> {
    policy::ENV_VARS
        .iter()
        .map(|var| var.name.to_owned())
        .collect()
}

/// The DataRetentionPolicy described by wrangler.toml `[vars]` (SESSION_TTL_HOURS, ...), given
/// the vars as a JSON object of strings; JSON text of the policy. Throws INVALID_CONFIG naming
/// the variable.
#[wasm_bindgen(js_name = policyFromVars)]
pub fn policy_from_vars(vars_json: &str) -> Result<String, JsValue> {
    let parse = || -> Result<String, PersistenceError> {
        let vars: serde_json::Map<String, serde_json::Value> = serde_json::from_str(vars_json)
            .map_err(|err| PersistenceError::invalid_input("env", err.to_string()))?;
        let lookup = |name: &str| match vars.get(name) {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        let policy = policy::from_env_vars(lookup)?;
        serde_json::to_string(&policy)
            .map_err(|err| PersistenceError::invalid_input("policy", err.to_string()))
    };
    parse().map_err(|err| to_js_error_in(Operation::Config, &err))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn json_input_takes_exactly_what_was_committed_from_its_view() {
        let mut input = JsonInput::new(0);
        let view = input.spare_bytes(8);
        assert_eq!(view.length(), 8);
        view.subarray(0, 7).copy_from(br#"{"a":1}"#);
        assert!(input.commit(7).is_ok());
        assert_eq!(input.bytes, br#"{"a":1}"#);

        // A commit needs a view of its own, and may not exceed it.
        assert!(input.commit(1).is_err());
        let _ = input.spare_bytes(4);
        assert!(input.commit(5).is_err());
        assert_eq!(input.bytes, br#"{"a":1}"#);

        // Bytes lent but not written are zeros, never stale memory.
        let _ = input.spare_bytes(3);
        assert!(input.commit(3).is_ok());
        assert_eq!(&input.bytes[7..], [0, 0, 0]);
    }
}
