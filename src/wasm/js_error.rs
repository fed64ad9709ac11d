//! Conversion of [`PersistenceError`] into a JavaScript `Error` carrying a stable `.code`.

use js_sys::{Error as JsError, Reflect};
use wasm_bindgen::JsValue;

use crate::PersistenceError;

/// Builds `new Error(message)` with `name = "PersistenceError"` and `code = err.code()`.
pub(crate) fn to_js_error(err: &PersistenceError) -> JsValue {
    js_error_with_message(err, &err.to_string())
}

/// The family of a failed call, which decides its message prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Archive,
    Cache,
    Backup,
    Restore,
    Retention,
    Metrics,
    Config,
    Export,
    Import,
    Verify,
}

impl Operation {
    /// The prefixes of the earlier TypeScript implementation (code written against it matches
    /// on them; new code matches on `.code`), plus ones for the calls it did not have.
    fn prefix(self) -> &'static str {
        match self {
            Operation::Archive => "Archive operation failed",
            Operation::Cache => "Cache operation failed",
            Operation::Backup => "Backup operation failed",
            Operation::Restore => "Restore operation failed",
            Operation::Retention => "Retention operation failed",
            Operation::Metrics => "Metrics operation failed",
            Operation::Config => "Configuration failed",
            Operation::Export => "Export operation failed",
            Operation::Import => "Import operation failed",
            Operation::Verify => "Verification operation failed",
        }
    }
}

/// Like [`to_js_error`], with the message prefixed as the earlier TypeScript implementation
/// wrote them (`"Archive operation failed: ..."`); a restore that fails verification also says
/// "Backup data integrity check failed", as it did.
pub(crate) fn to_js_error_in(operation: Operation, err: &PersistenceError) -> JsValue {
    let prefix = operation.prefix();
    let message = match err {
        PersistenceError::ChecksumMismatch { .. } if operation == Operation::Restore => {
            format!("{prefix}: Backup data integrity check failed: {err}")
        }
        _ => format!("{prefix}: {err}"),
    };
    js_error_with_message(err, &message)
}

fn js_error_with_message(err: &PersistenceError, message: &str) -> JsValue {
    let js_error = JsError::new(message);
    js_error.set_name("PersistenceError");
    // Reflect::set only fails on frozen or proxied objects; a fresh Error is neither.
    let _ = Reflect::set(&js_error, &"code".into(), &err.code().into());
    js_error.into()
}
