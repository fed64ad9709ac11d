//! Topic tags for an archived conversation, found by whole-word keyword matching.
//!
//! Text is split into words at every character that is not alphanumeric in Unicode's sense and
//! lowercased, so `"Login"`, `"LOGIN"` and `"login,"` all match `login`, while `"debugger"` does
//! not match `bug` and `"bugé"` is one word. A keyword also matches its plural with `-s` or
//! `-es` (`errors`, `crashes`); other inflections that matter are listed as keywords of their
//! own. Multi-word keywords (`log in`) match consecutive words.

use std::sync::OnceLock;

use super::model::{Form, Message};

/// Topics in the order they are reported, each with its keywords (words separated by spaces).
#[rustfmt::skip] // A table: several keywords a line.
const TOPICS: [(&str, &[&str]); 5] = [
    ("authentication", &[
        "password", "passcode", "login", "log in", "logged in", "logging in", "signin",
        "sign in", "signed in", "2fa", "mfa", "two factor", "authentication", "authenticate",
        "locked out",
    ]),
    ("billing", &[
        "billing", "payment", "invoice", "refund", "charge", "charged", "subscription",
        "receipt", "credit card",
    ]),
    ("technical-issue", &[
        "bug", "error", "crash", "crashed", "crashing", "broken", "not working", "exception",
        "glitch", "outage", "timeout", "failure",
    ]),
    // Plain "request" is not a keyword: "refund request" or "password reset request" are not
    // feature requests.
    ("feature-request", &[
        "feature", "suggestion", "suggest", "enhancement", "wishlist", "would be nice",
    ]),
    ("account-management", &[
        "account", "profile", "settings", "username", "email address", "preferences",
        "deactivate",
    ]),
];

/// The topics the messages touch, in the fixed order authentication, billing, technical-issue,
/// feature-request, account-management, each at most once.
pub fn extract_topics<F: Form>(messages: &[Message<F>]) -> Vec<String> {
    let mut finder = TopicFinder::default();
    for message in messages {
        if finder.is_complete() {
            break;
        }
        // The finder's buffer, as large as the largest message, is gone before the caller
        // goes on (the encoder compresses next).
        finder.add(&F::content_text(&message.content));
    }
    finder.topics()
}

/// Collects the topics of texts given one at a time (see [`extract_topics`]), so that a text
/// only needs to exist while it is looked at.
#[derive(Default)]
struct TopicFinder {
    /// The topics found so far, bit `i` standing for `TOPICS[i]`.
    found: u8,
    /// The text being looked at, lowercased; kept so that the next ASCII text reuses its
    /// allocation.
    lowercase: String,
}

const _: () = assert!(
    TOPICS.len() <= u8::BITS as usize,
    "TopicFinder::found has one bit per topic"
);

/// `TopicFinder::found` once every topic is found.
const ALL_FOUND: u8 = u8::MAX >> (u8::BITS as usize - TOPICS.len());

impl TopicFinder {
    /// Looks for topics in one more text.
    fn add(&mut self, text: &str) {
        if self.is_complete() {
            return;
        }
        // Lowercasing comes before splitting into words because a lowercase form can split
        // differently ('İ' becomes "i̇", whose combining dot is not alphanumeric). ASCII
        // lowercases byte for byte, into the buffer of the previous text.
        if text.is_ascii() {
            self.lowercase.clear();
            self.lowercase.push_str(text);
            self.lowercase.make_ascii_lowercase();
        } else {
            self.lowercase = text.to_lowercase();
        }
        self.found = find_topics(&self.lowercase, self.found);
    }

    /// Whether every topic has been found (more text cannot change the result).
    fn is_complete(&self) -> bool {
        self.found == ALL_FOUND
    }

    /// The topics found, in their fixed order.
    fn topics(&self) -> Vec<String> {
        TOPICS
            .iter()
            .enumerate()
            .filter(|(topic, _)| self.found & 1 << topic != 0)
            .map(|(_, (name, _))| (*name).to_owned())
            .collect()
    }
}

/// `found` with the topics of the lowercase `text` added.
///
/// Each word is compared only with the keywords whose first word starts with the same byte,
/// and the following words are looked at only for a keyword whose first word matches.
fn find_topics(text: &str, mut found: u8) -> u8 {
    let mut words = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty());
    while let Some(word) = words.next() {
        for keyword in keywords_sharing_first_byte(word) {
            if found & keyword.topic_bit == 0
                && is_word_or_plural(word, keyword.first_word)
                && continues(words.clone(), keyword.other_words)
            {
                found |= keyword.topic_bit;
                if found == ALL_FOUND {
                    return found;
                }
            }
        }
    }
    found
}

/// A keyword of [`TOPICS`], split for looking it up by its first word.
struct IndexedKeyword {
    /// The keyword's first word.
    first_word: &'static str,
    /// The words after the first, separated by spaces; empty for a one-word keyword.
    other_words: &'static str,
    /// The bit of the keyword's topic in `TopicFinder::found`.
    topic_bit: u8,
}

/// The keywords whose first word starts with the same byte as `word`: the only ones that can
/// match it.
fn keywords_sharing_first_byte(word: &str) -> &'static [IndexedKeyword] {
    static BY_FIRST_BYTE: OnceLock<[Vec<IndexedKeyword>; 256]> = OnceLock::new();
    let by_first_byte = BY_FIRST_BYTE.get_or_init(|| {
        let mut by_first_byte: [Vec<IndexedKeyword>; 256] = std::array::from_fn(|_| Vec::new());
        for ((_, keywords), topic) in TOPICS.iter().zip(0_u8..) {
            for keyword in *keywords {
                let (first_word, other_words) = keyword.split_once(' ').unwrap_or((keyword, ""));
                if let Some(bucket) = by_first_byte.get_mut(first_byte(first_word)) {
                    bucket.push(IndexedKeyword {
                        first_word,
                        other_words,
                        topic_bit: 1 << topic,
                    });
                }
            }
        }
        by_first_byte
    });
    by_first_byte
        .get(first_byte(word))
        .map_or(&[], Vec::as_slice)
}

/// The first byte of `word` (0 if it is empty, which no keyword or text word is).
fn first_byte(word: &str) -> usize {
    word.bytes().next().map_or(0, usize::from)
}

/// Whether the text's next words match `other_words`, the rest of a keyword.
fn continues<'a>(mut next_words: impl Iterator<Item = &'a str>, other_words: &str) -> bool {
    other_words.split_whitespace().all(|wanted| {
        next_words
            .next()
            .is_some_and(|word| is_word_or_plural(word, wanted))
    })
}

/// Whether `word` is `wanted` or its plural with `-s` / `-es`.
fn is_word_or_plural(word: &str, wanted: &str) -> bool {
    word.strip_prefix(wanted)
        .is_some_and(|suffix| matches!(suffix, "" | "s" | "es"))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codec::archive::model::{ChatMessage, JsonObject, Role};

    fn messages(texts: &[&str]) -> Vec<ChatMessage> {
        texts
            .iter()
            .map(|text| ChatMessage {
                id: "m".into(),
                session_id: "s".into(),
                content: (*text).into(),
                role: Role::User,
                timestamp: 0,
                metadata: None,
                extra: JsonObject::new(),
            })
            .collect()
    }

    fn topics(texts: &[&str]) -> Vec<String> {
        extract_topics(&messages(texts))
    }

    #[test]
    fn matches_whole_words_only() {
        assert_eq!(topics(&["I attached a debugger"]), Vec::<String>::new());
        assert_eq!(topics(&["there is a bug."]), ["technical-issue"]);
        assert_eq!(topics(&["bugé", "accountant", "billings-ish"]), ["billing"]);
        assert_eq!(
            topics(&["Terrorism", "mistakes were made"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn plurals_count_but_other_suffixes_do_not() {
        assert_eq!(topics(&["two bugs"]), ["technical-issue"]);
        assert_eq!(topics(&["so many crashes"]), ["technical-issue"]);
        assert_eq!(topics(&["Errors everywhere"]), ["technical-issue"]);
        assert_eq!(topics(&["bugsy", "errorless"]), Vec::<String>::new());
    }

    #[test]
    fn is_case_insensitive_and_unicode_aware() {
        assert_eq!(topics(&["PASSWORD"]), ["authentication"]);
        assert_eq!(topics(&["«Invoice»—please"]), ["billing"]);
        // Letters of any script glue a word together; punctuation of any script splits it.
        assert_eq!(topics(&["日本語bug報告"]), Vec::<String>::new());
        assert_eq!(topics(&["日本語、bug、報告"]), ["technical-issue"]);
        assert_eq!(topics(&["ΑΚΟΥΝΤ account"]), ["account-management"]);
    }

    #[test]
    fn phrases_match_consecutive_words() {
        assert_eq!(topics(&["I can't log in!"]), ["authentication"]);
        assert_eq!(topics(&["Sign-in fails"]), ["authentication"]);
        assert_eq!(topics(&["the log is in /tmp"]), Vec::<String>::new());
        assert_eq!(topics(&["it would be nice to export"]), ["feature-request"]);
        assert_eq!(topics(&["a refund request"]), ["billing"]);
    }

    #[test]
    fn reports_each_topic_once_in_fixed_order() {
        let found = topics(&[
            "my profile settings",
            "feature suggestion",
            "app crash",
            "refund my payment",
            "reset password",
            "another crash and password",
        ]);
        assert_eq!(
            found,
            [
                "authentication",
                "billing",
                "technical-issue",
                "feature-request",
                "account-management"
            ]
        );
        assert!(topics(&[]).is_empty());
    }

    #[test]
    fn lowercases_before_splitting() {
        // 'İ' lowercases to 'i' and a combining dot, which ends a word.
        assert_eq!(topics(&["İbug"]), ["technical-issue"]);
        // The Kelvin sign lowercases to an ASCII 'k'.
        assert_eq!(topics(&["LOC\u{212A}ED OUT"]), ["authentication"]);
    }

    #[test]
    fn keywords_are_lowercase_words_separated_by_single_spaces() {
        // Text words are lowercase and alphanumeric, so any other keyword could never match.
        for (_, keywords) in TOPICS {
            for keyword in keywords {
                assert!(
                    keyword.split(' ').all(|word| !word.is_empty()
                        && word.chars().all(|c| c.is_alphanumeric())
                        && word.to_lowercase() == word),
                    "{keyword:?}"
                );
            }
        }
    }

    #[test]
    fn finds_every_keyword_and_its_plurals() {
        for (topic, keywords) in TOPICS {
            for keyword in keywords {
                for suffix in ["", "s", "es"] {
                    let plural: Vec<String> = keyword
                        .split(' ')
                        .map(|word| format!("{word}{suffix}"))
                        .collect();
                    let alone = plural.join(" ");
                    let in_a_sentence = format!("Oh, {}!", plural.join(" ").to_uppercase());
                    assert_eq!(topics(&[&alone]), [topic], "{alone:?}");
                    assert_eq!(topics(&[&in_a_sentence]), [topic], "{in_a_sentence:?}");
                }
            }
        }
    }

    #[test]
    fn later_texts_do_not_see_earlier_ones() {
        let mut finder = TopicFinder::default();
        finder.add("a long message about how to log");
        finder.add("in");
        finder.add("Ünïcödé LOG");
        finder.add("IN");
        assert!(finder.topics().is_empty());
        finder.add("bug");
        assert_eq!(finder.topics(), ["technical-issue"]);
    }
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))] // proptest runs natively only
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// The topics of `texts` as found by the straightforward algorithm: every window of the
    /// text's words against every keyword.
    fn reference_topics(texts: &[String]) -> Vec<String> {
        let mut found = [false; TOPICS.len()];
        for text in texts {
            let text = text.to_lowercase();
            let words: Vec<&str> = text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|word| !word.is_empty())
                .collect();
            for ((_, keywords), seen) in TOPICS.iter().zip(&mut found) {
                *seen = *seen
                    || keywords.iter().any(|keyword| {
                        let wanted: Vec<&str> = keyword.split(' ').collect();
                        words.windows(wanted.len()).any(|window| {
                            window.iter().zip(&wanted).all(|(word, wanted)| {
                                word == wanted
                                    || *word == format!("{wanted}s")
                                    || *word == format!("{wanted}es")
                            })
                        })
                    });
            }
        }
        TOPICS
            .iter()
            .zip(found)
            .filter(|(_, seen)| *seen)
            .map(|((topic, _), _)| (*topic).to_owned())
            .collect()
    }

    /// A word of some keyword, whole, inflected or cut short, or a word of no keyword.
    fn word() -> impl Strategy<Value = String> {
        let keyword_words: Vec<&str> = TOPICS
            .iter()
            .flat_map(|(_, keywords)| keywords.iter().flat_map(|keyword| keyword.split(' ')))
            .collect();
        let keyword_word = (
            prop::sample::select(keyword_words),
            prop::sample::select(vec!["", "", "", "s", "es", "ed", "ing", "x"]),
            prop::sample::select(vec!["", "", "", "", "de", "re"]),
            any::<bool>(),
        )
            .prop_map(|(word, suffix, prefix, cut_short)| {
                let word = if cut_short {
                    &word[..word.len() - 1]
                } else {
                    word
                };
                format!("{prefix}{word}{suffix}")
            });
        let other = prop::sample::select(vec![
            "the",
            "i",
            "is",
            "it",
            "s",
            "es",
            "İ",
            "Σ",
            "ß",
            "É",
            "日本語",
            "\u{307}",
            "ǅ",
            "\u{212A}",
            "ﬁ",
            "ΑΚΟΥΝΤ",
            "42",
        ])
        .prop_map(str::to_owned);
        prop_oneof![3 => keyword_word, 1 => other]
    }

    /// A text of words in any case, joined by separators that do or do not split words.
    fn text() -> impl Strategy<Value = String> {
        let separator = prop::sample::select(vec![
            " ", " ", " ", "  ", ", ", "-", "—", "、", "\n", "", "'", "«",
        ]);
        let case = prop::sample::select(vec!["as is", "upper", "capitalized"]);
        prop::collection::vec((word(), case, separator), 0..12).prop_map(|words| {
            words
                .into_iter()
                .map(|(word, case, separator)| {
                    let word = match case {
                        "upper" => word.to_uppercase(),
                        "capitalized" => {
                            let mut chars = word.chars();
                            chars.next().map_or_else(String::new, |first| {
                                first.to_uppercase().chain(chars).collect()
                            })
                        }
                        _ => word,
                    };
                    word + separator
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn finds_what_the_reference_finds(texts in prop::collection::vec(text(), 1..5)) {
            let mut finder = TopicFinder::default();
            for (count, text) in texts.iter().enumerate() {
                finder.add(text);
                let expected = reference_topics(&texts[..=count]);
                prop_assert_eq!(finder.is_complete(), expected.len() == TOPICS.len());
                prop_assert_eq!(finder.topics(), expected);
            }
        }
    }
}
