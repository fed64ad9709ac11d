//! JSON text in ASCII, for large texts handed to JavaScript.
//!
//! wasm-bindgen hands a string to JavaScript through `TextDecoder`, and V8 decodes UTF-8 that
//! is all ASCII about 4× faster than UTF-8 with a few characters beyond it, which make the
//! whole string two bytes a character (measured on 1.8 MB of UIMessages with ~1000 such
//! characters: 0.76 ms against 3.05 ms; `JSON.parse` takes the same time for both). Outside
//! ASCII, JSON text can only hold characters inside strings, where a `\u` escape means the same
//! character: `JSON.parse` gives the same value.

use std::fmt::Write;

/// `json` (JSON text) with every character outside ASCII written as a `\uXXXX` escape (a
/// UTF-16 surrogate pair above U+FFFF): the same JSON value, in ASCII. The text itself when it
/// is ASCII already.
pub fn ascii_json(json: String) -> String {
    let Some(first) = next_non_ascii(&json, 0) else {
        return json;
    };
    // Each escape takes 6 or 12 bytes for the 2 to 4 it replaces.
    let mut out = String::with_capacity(json.len() + json.len() / 8);
    let mut copied = 0;
    let mut at = Some(first);
    while let Some(position) = at {
        let (Some(ascii), Some(character)) = (
            json.get(copied..position),
            json.get(position..).and_then(|rest| rest.chars().next()),
        ) else {
            break;
        };
        out.push_str(ascii);
        let mut units = [0_u16; 2];
        for unit in character.encode_utf16(&mut units) {
            // Writing to a String does not fail.
            let _ = write!(out, "\\u{unit:04x}");
        }
        copied = position + character.len_utf8();
        at = next_non_ascii(&json, copied);
    }
    out.push_str(json.get(copied..).unwrap_or_default());
    out
}

/// Where the first byte outside ASCII at or after `from` is, eight bytes at a time.
fn next_non_ascii(text: &str, from: usize) -> Option<usize> {
    let rest = text.as_bytes().get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut offset = from;
    for word in &mut words {
        let bits = u64::from_le_bytes(word.try_into().ok()?);
        if bits & 0x8080_8080_8080_8080 != 0 {
            return word
                .iter()
                .position(|byte| !byte.is_ascii())
                .map(|at| offset + at);
        }
        offset += 8;
    }
    words
        .remainder()
        .iter()
        .position(|byte| !byte.is_ascii())
        .map(|at| offset + at)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn escapes_every_character_beyond_ascii_and_keeps_the_value() {
        let value = json!({"Grüße": ["👋 é", "plain", "\u{7f}\u{80}\u{ffff}\u{10000}"],
                           "n": 1.5, "long": "x".repeat(100) + "ü" + &"y".repeat(9)});
        let text = serde_json::to_string(&value).unwrap();
        let ascii = ascii_json(text.clone());
        assert!(ascii.is_ascii(), "{ascii}");
        assert_eq!(serde_json::from_str::<Value>(&ascii).unwrap(), value);
        assert!(ascii.contains(r#""Gr\u00fc\u00dfe""#), "{ascii}");
        assert!(ascii.contains(r#""\ud83d\udc4b \u00e9""#), "{ascii}");
        assert!(
            ascii.contains("\u{7f}\\u0080\\uffff\\ud800\\udc00"),
            "{ascii}"
        );
    }

    #[test]
    fn ascii_text_is_given_back_as_it_is() {
        for text in ["", "{}", r#"{"a":"\u00e9"}"#, &"[1,2]".repeat(50)] {
            assert_eq!(ascii_json(text.to_owned()), text);
        }
    }

    #[test]
    fn characters_at_every_offset_of_a_word() {
        for offset in 0..20 {
            let text = format!("\"{}é{}\"", "a".repeat(offset), "b".repeat(offset));
            let ascii = ascii_json(text.clone());
            assert_eq!(
                ascii,
                format!("\"{}\\u00e9{}\"", "a".repeat(offset), "b".repeat(offset))
            );
        }
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    proptest! {
        #[test]
        fn any_json_string_means_the_same_in_ascii(text in any::<String>()) {
            let json = serde_json::to_string(&text).unwrap();
            let ascii = ascii_json(json);
            prop_assert!(ascii.is_ascii());
            prop_assert_eq!(serde_json::from_str::<Value>(&ascii).unwrap(), Value::String(text));
        }
    }
}
