//! The text of a UIMessage: the `text` of its parts of type `"text"`, joined by a blank line.
//!
//! It is the `content` of the message an archived UIMessage becomes (docs/FORMAT.md, "UIMessage
//! conversations"): computed from the caller's parts when archiving, and, in a format 2
//! document (which keeps each text only in its part), again from the stored parts when the
//! message is read as a chat message. One function for both, so they cannot disagree.

use serde_json::value::RawValue;

use crate::codec::fields::{object_items, FieldError, Fields, Kind};

/// What joins the texts of a message's `text` parts in its `content`.
pub const TEXT_PART_SEPARATOR: &str = "\n\n";

/// The member of an archived message's `metadata` that holds its UIMessage.
pub const UI_MESSAGE_FIELD: &str = "uiMessage";

/// The texts of the `text` parts of `parts` (at `path`), joined by [`TEXT_PART_SEPARATOR`].
/// Checks that `parts` is an array of objects with a string `type`, and that `text` and
/// `reasoning` parts have a string `text`.
pub fn text_of_parts(path: String, parts: &RawValue) -> Result<String, FieldError> {
    let mut content = String::new();
    let mut texts = 0_usize;
    object_items(path, parts, |mut part| {
        let kind = part.string("type")?;
        if matches!(&*kind, "text" | "reasoning") {
            let text = part.string("text")?;
            if kind == "text" {
                if texts > 0 {
                    content.push_str(TEXT_PART_SEPARATOR);
                }
                content.push_str(&text);
                texts += 1;
            }
        }
        Ok(())
    })?;
    Ok(content)
}

/// The content of a stored message that has none of its own (format 2): the text of the parts
/// of its `metadata.uiMessage`. `message_path` names the message; a message without such parts
/// is missing its `content`.
pub fn content_in_parts(
    message_path: &str,
    metadata: Option<&RawValue>,
) -> Result<String, FieldError> {
    let missing = || FieldError::new(format!("{message_path}.content"), "is missing");
    let metadata = metadata.filter(|raw| Kind::of_raw(raw) == Kind::Object);
    let ui_message = metadata
        .and_then(|raw| Fields::of("", raw).ok()?.member(UI_MESSAGE_FIELD))
        .filter(|raw| Kind::of_raw(raw) == Kind::Object)
        .ok_or_else(missing)?;
    let path = format!("{message_path}.metadata.{UI_MESSAGE_FIELD}");
    let parts = Fields::of(path.clone(), ui_message)?
        .member("parts")
        .ok_or_else(missing)?;
    text_of_parts(format!("{path}.parts"), parts)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn joins_only_text_parts_in_order() {
        let parts = raw(
            r#"[{"type":"text","text":"a\n\nb"},{"type":"reasoning","text":"no"},{"type":"step-start"},{"type":"text","text":""},{"type":"text","text":"c"}]"#,
        );
        assert_eq!(text_of_parts("p".into(), parts).unwrap(), "a\n\nb\n\n\n\nc");
        assert_eq!(text_of_parts("p".into(), raw("[]")).unwrap(), "");
    }

    #[test]
    fn a_message_without_content_takes_it_from_its_parts() {
        let metadata = raw(r#"{"uiMessage":{"parts":[{"type":"text","text":"hi"}],"metadata":1}}"#);
        assert_eq!(content_in_parts("m", Some(metadata)).unwrap(), "hi");
        for metadata in [
            None,
            Some(raw("null")),
            Some(raw("[]")),
            Some(raw("{}")),
            Some(raw(r#"{"uiMessage":3}"#)),
            Some(raw(r#"{"uiMessage":{"metadata":{}}}"#)),
            Some(raw(r#"{"uiMessage":{"parts":null}}"#)),
        ] {
            assert_eq!(
                content_in_parts("m", metadata),
                Err(FieldError::new("m.content", "is missing")),
                "{metadata:?}"
            );
        }
        let err = content_in_parts(
            "m",
            Some(raw(r#"{"uiMessage":{"parts":[{"type":"text","text":5}]}}"#)),
        )
        .unwrap_err();
        assert_eq!(err.path, "m.metadata.uiMessage.parts[0].text");
        let err = content_in_parts("m", Some(raw(r#"{"uiMessage":{"parts":{}}}"#))).unwrap_err();
        assert_eq!(err.path, "m.metadata.uiMessage.parts");
    }
}
