//! Topic tags for an archived conversation, found by whole-word keyword matching.
//!
//! Text is split into words at every character that is not alphanumeric in Unicode's sense and
//! lowercased, so `"Login"`, `"LOGIN"` and `"login,"` all match `login`, while `"debugger"` does
//! not match `bug` and `"bugé"` is one word. A keyword also matches its plural with `-s` or
//! `-es` (`errors`, `crashes`); other inflections that matter are listed as keywords of their
//! own. Multi-word keywords (`log in`) match consecutive words.

use super::model::ChatMessage;

/// Topics in the order they are reported, each with its keywords (words separated by spaces).
const TOPICS: [(&str, &[&str]); 5] = [
    (
        "authentication",
        &[
            "password",
            "passcode",
            "login",
            "log in",
            "logged in",
            "logging in",
            "signin",
            "sign in",
            "signed in",
            "2fa",
            "mfa",
            "two factor",
            "authentication",
            "authenticate",
            "locked out",
        ],
    ),
    (
        "billing",
        &[
            "billing",
            "payment",
            "invoice",
            "refund",
            "charge",
            "charged",
            "subscription",
            "receipt",
            "credit card",
        ],
    ),
    (
        "technical-issue",
        &[
            "bug",
            "error",
            "crash",
            "crashed",
            "crashing",
            "broken",
            "not working",
            "exception",
            "glitch",
            "outage",
            "timeout",
            "failure",
        ],
    ),
    // Plain "request" is not a keyword: "refund request" or "password reset request" are not
    // feature requests.
    (
        "feature-request",
        &[
            "feature",
            "suggestion",
            "suggest",
            "enhancement",
            "wishlist",
            "would be nice",
        ],
    ),
    (
        "account-management",
        &[
            "account",
            "profile",
            "settings",
            "username",
            "email address",
            "preferences",
            "deactivate",
        ],
    ),
];

/// The topics the messages touch, in the fixed order authentication, billing, technical-issue,
/// feature-request, account-management, each at most once.
pub fn extract_topics(messages: &[ChatMessage]) -> Vec<String> {
    let mut finder = TopicFinder::default();
    for message in messages {
        if finder.is_complete() {
            break;
        }
        finder.add(&message.content);
    }
    finder.topics()
}

/// Collects the topics of texts given one at a time (see [`extract_topics`]), so that a text
/// only needs to exist while it is looked at.
#[derive(Default)]
pub struct TopicFinder {
    found: [bool; TOPICS.len()],
}

impl TopicFinder {
    /// Looks for topics in one more text.
    pub fn add(&mut self, text: &str) {
        let text = text.to_lowercase();
        let words: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
            .collect();
        for ((_, keywords), seen) in TOPICS.iter().zip(self.found.iter_mut()) {
            if !*seen {
                *seen = keywords.iter().any(|keyword| mentions(&words, keyword));
            }
        }
    }

    /// Whether every topic has been found (more text cannot change the result).
    pub fn is_complete(&self) -> bool {
        self.found.iter().all(|seen| *seen)
    }

    /// The topics found, in their fixed order.
    pub fn topics(&self) -> Vec<String> {
        TOPICS
            .iter()
            .zip(self.found)
            .filter(|(_, seen)| *seen)
            .map(|((topic, _), _)| (*topic).to_owned())
            .collect()
    }
}

/// Whether the keyword's words occur consecutively in `words`.
fn mentions(words: &[&str], keyword: &str) -> bool {
    let keyword_words: Vec<&str> = keyword.split(' ').collect();
    words.windows(keyword_words.len()).any(|window| {
        window
            .iter()
            .zip(&keyword_words)
            .all(|(word, wanted)| is_word_or_plural(word, wanted))
    })
}

/// Whether `word` is `wanted` or its plural with `-s` / `-es`.
fn is_word_or_plural(word: &str, wanted: &str) -> bool {
    word.strip_prefix(wanted)
        .is_some_and(|suffix| matches!(suffix, "" | "s" | "es"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codec::archive::model::{JsonObject, Role};

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
}
