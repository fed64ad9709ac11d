//! The text of a UIMessage: the `text` of its parts of type `"text"`, joined by a blank line.
//!
//! It is the `content` of the message an archived UIMessage becomes (docs/FORMAT.md, "UIMessage
//! conversations"): computed from the caller's parts when archiving, and, in a format 2
//! document (which keeps each text only in its part), again from the stored parts when the
//! message is read as a chat message. One function for both, so they cannot disagree.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::codec::fields::{object_items, parse_str, CowStr, FieldError, Fields, Kind};

/// What joins the texts of a message's `text` parts in its `content`.
pub const TEXT_PART_SEPARATOR: &str = "\n\n";

/// The member of an archived message's `metadata` that holds its UIMessage.
pub const UI_MESSAGE_FIELD: &str = "uiMessage";

/// The texts of the `text` parts of `parts` (at the path `path` gives), joined by
/// [`TEXT_PART_SEPARATOR`]. Checks that `parts` is an array of objects with a string `type`,
/// and that `text` and `reasoning` parts have a string `text`.
pub fn text_of_parts(
    path: impl FnOnce() -> String,
    parts: &RawValue,
) -> Result<String, FieldError> {
    // Parts are most of a conversation: read them in one pass that holds nothing but the text,
    // and let the reader below name what is wrong with parts that pass cannot read.
    let mut content = String::new();
    let seed = PartsSeed {
        content: &mut content,
        texts: 0,
    };
    match seed.deserialize(&mut serde_json::Deserializer::from_str(parts.get())) {
        Ok(()) => Ok(content),
        Err(_) => checked_text_of_parts(path(), parts),
    }
}

/// [`text_of_parts`], reading each part field by field: the error names the path of what is
/// wrong.
fn checked_text_of_parts(path: String, parts: &RawValue) -> Result<String, FieldError> {
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
    // The parts are most of the metadata: reach them in the pass that reads their text, and
    // take metadata that pass does not read field by field, which names what is wrong.
    if let Some(metadata) = metadata {
        let mut content = String::new();
        let seed = MetadataSeed {
            content: &mut content,
        };
        if seed
            .deserialize(&mut serde_json::Deserializer::from_str(metadata.get()))
            .is_ok()
        {
            return Ok(content);
        }
    }
    checked_content_in_parts(message_path, metadata)
}

/// [`content_in_parts`], reading the metadata field by field.
fn checked_content_in_parts(
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
    text_of_parts(|| format!("{path}.parts"), parts)
}

/// Appends the texts of the parts of `{"uiMessage": {"parts": [...], ...}, ...}` to `content`;
/// fails on anything else, and on a repeated `uiMessage` or `parts` (which
/// [`checked_content_in_parts`] reads by their last value).
struct MetadataSeed<'c> {
    content: &'c mut String,
}

impl<'de> DeserializeSeed<'de> for MetadataSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the metadata of an archived UIMessage")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(CowStr(name)) = map.next_key()? {
            if name != UI_MESSAGE_FIELD {
                map.next_value::<IgnoredAny>()?;
            } else if found {
                return Err(unreadable());
            } else {
                let seed = UiMessageSeed {
                    content: &mut *self.content,
                };
                map.next_value_seed(seed)?;
                found = true;
            }
        }
        if found {
            Ok(())
        } else {
            Err(unreadable())
        }
    }
}

/// The UIMessage of [`MetadataSeed`]: appends the texts of its `parts`.
struct UiMessageSeed<'c> {
    content: &'c mut String,
}

impl<'de> DeserializeSeed<'de> for UiMessageSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for UiMessageSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an archived UIMessage")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(CowStr(name)) = map.next_key()? {
            if name != "parts" {
                map.next_value::<IgnoredAny>()?;
            } else if found {
                return Err(unreadable());
            } else {
                let seed = PartsSeed {
                    content: &mut *self.content,
                    texts: 0,
                };
                map.next_value_seed(seed)?;
                found = true;
            }
        }
        if found {
            Ok(())
        } else {
            Err(unreadable())
        }
    }
}

/// Appends the texts of the parts to `content` (see [`text_of_parts`]); fails on anything
/// [`checked_text_of_parts`] would refuse, and on repeated members (which it reads by their
/// last value).
struct PartsSeed<'c> {
    content: &'c mut String,
    texts: usize,
}

/// Why the one pass stops; the checked reader says what is wrong.
fn unreadable<E: de::Error>() -> E {
    E::custom("a part the one pass does not read")
}

impl<'de> DeserializeSeed<'de> for PartsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PartsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of parts")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(part) = seq.next_element::<Part<'de>>()? {
            let Some(kind) = part.kind else {
                return Err(unreadable());
            };
            if !matches!(&*kind, "text" | "reasoning") {
                continue;
            }
            let text = part
                .text
                .and_then(|raw| parse_str(raw).ok())
                .ok_or_else(unreadable)?;
            if kind == "text" {
                if self.texts > 0 {
                    self.content.push_str(TEXT_PART_SEPARATOR);
                }
                self.content.push_str(&text);
                self.texts += 1;
            }
        }
        Ok(())
    }
}

/// The `type` (a string) and `text` (any JSON value) of a part; nothing else is kept.
struct Part<'de> {
    kind: Option<Cow<'de, str>>,
    text: Option<&'de RawValue>,
}

impl<'de> serde::Deserialize<'de> for Part<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PartVisitor)
    }
}

struct PartVisitor;

impl<'de> Visitor<'de> for PartVisitor {
    type Value = Part<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a part")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Part<'de>, A::Error> {
        let mut part = Part {
            kind: None,
            text: None,
        };
        while let Some(CowStr(name)) = map.next_key()? {
            match &*name {
                // Only a string: null (absent) and other types are the checked reader's to name.
                "type" if part.kind.is_none() => {
                    let CowStr(kind) = map.next_value()?;
                    part.kind = Some(kind);
                }
                "text" if part.text.is_none() => part.text = Some(map.next_value()?),
                "type" | "text" => return Err(unreadable()),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(part)
    }
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
        assert_eq!(
            text_of_parts(|| "p".into(), parts).unwrap(),
            "a\n\nb\n\n\n\nc"
        );
        assert_eq!(text_of_parts(|| "p".into(), raw("[]")).unwrap(), "");
    }

    /// The one pass and the checked reader agree: the same text, or the checked reader's error.
    #[test]
    fn parts_the_one_pass_does_not_read_are_left_to_the_checked_reader() {
        let cases = [
            (r#"[{"type":"text","text":"a","type":"text"}]"#, Ok("a")),
            (
                r#"[{"type":"step-start","type":"text","text":"b"}]"#,
                Ok("b"),
            ),
            (r#"[{"text":"x","type":"text","text":"y"}]"#, Ok("y")),
            (r#"[{"type":"tool-x","text":5}]"#, Ok("")),
            (r#"[{"type":"reasoning","text":"r"}]"#, Ok("")),
            (r#"[{"type":"text","text":"\u00e9 \"q\""}]"#, Ok("é \"q\"")),
            (
                r#"[{"type":null,"text":"x"}]"#,
                Err("p[0].type: is missing"),
            ),
            (
                r#"[{"type":"text","text":null}]"#,
                Err("p[0].text: is missing"),
            ),
            (r#"[{"type":"reasoning"}]"#, Err("p[0].text: is missing")),
            (
                r#"[{"type":7}]"#,
                Err("p[0].type: must be a string, found number"),
            ),
            (
                r#"[{"type":"text","text":["a"]}]"#,
                Err("p[0].text: must be a string, found array"),
            ),
            (
                r#"[{"type":"data-x"},"part"]"#,
                Err("p[1]: must be an object, found string"),
            ),
            (
                r#"{"type":"text"}"#,
                Err("p: must be an array, found object"),
            ),
            (r#"[{"type":"text","text":"\ud800"}]"#, Err("p[0].text")),
        ];
        for (parts, expected) in cases {
            let read = text_of_parts(|| "p".into(), raw(parts));
            let checked = checked_text_of_parts("p".into(), raw(parts));
            assert_eq!(read, checked, "{parts}");
            match expected {
                Ok(text) => assert_eq!(read.unwrap(), text, "{parts}"),
                Err(needle) => {
                    let err = read.unwrap_err();
                    let err = format!("{}: {}", err.path, err.reason);
                    assert!(err.contains(needle), "{err} lacks {needle}");
                }
            }
        }
    }

    /// The one pass and the checked reader agree on metadata too.
    #[test]
    fn metadata_the_one_pass_does_not_read_is_left_to_the_checked_reader() {
        for metadata in [
            r#"{"uiMessage":{"metadata":{"parts":1},"parts":[{"type":"text","text":"a"}]},"x":[]}"#,
            r#"{"uiMessage":{"parts":[{"type":"text","text":"a"}],"parts":[]}}"#,
            r#"{"uiMessage":{"parts":[]},"uiMessage":{"parts":[{"type":"text","text":"b"}]}}"#,
            r#"{"uiMessage":{"parts":null}}"#,
            r#"{"uiMessage":[]}"#,
            r#"{"other":{"parts":[]}}"#,
            r#"{"uiMessage":{"parts":[{"type":"text"}]}}"#,
            "[]",
        ] {
            let read = content_in_parts("m", Some(raw(metadata)));
            assert_eq!(
                read,
                checked_content_in_parts("m", Some(raw(metadata))),
                "{metadata}"
            );
        }
        assert_eq!(
            content_in_parts(
                "m",
                Some(raw(
                    r#"{"uiMessage":{"metadata":{"parts":1},"parts":[{"type":"text","text":"a"}]},"x":[]}"#
                ))
            ),
            Ok("a".to_owned())
        );
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
