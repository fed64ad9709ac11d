//! The command line: subcommands and their options, parsed by hand (four subcommands and a few
//! flags do not need a parser crate), and the key-encryption keys from the environment.

use std::ffi::OsString;
use std::path::PathBuf;

use supportbot_persistence::crypto::keyring::KeyRing;

/// Exit code when the data has a problem.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code for a usage, key or I/O error: nothing was (fully) checked.
pub const EXIT_USAGE: u8 = 2;

/// The environment variable holding the KEKs: the Worker secret's name and format.
pub const KEYS_VAR: &str = "PERSISTENCE_ENCRYPTION_KEYS";

/// The help text.
pub const USAGE: &str = "\
usage:
  supportbot-persistence verify <bucket-dir | export.ndjson> [--json]
      Checks every object of a directory copy of the R2 bucket, or every line of a store
      export (or of a person's export), and prints a line per object and totals. Exit 0: nothing wrong; 1: a problem;
      2: usage, key or I/O error.
  supportbot-persistence inspect <file> [--key <r2 key>] [--show-messages] [--json]
      Says what one object (or export) is: kind, format, session, sizes, checksum, header.
      The key is taken from the path when it holds one (…/conversations/…); message text is
      shown only with --show-messages.
  supportbot-persistence export <bucket-dir> [-o <out.ndjson>]
      Writes every archived conversation of the copy, decrypted, as the NDJSON lines of a
      person's export (exportUserData), newest first, with its end line; archives an erasure
      tombstone of the copy covers are left out.

environment:
  PERSISTENCE_ENCRYPTION_KEYS  the Worker secret's JSON ([{\"id\":…,\"key\":…}]): encrypted
                               archives are decrypted and checked in full; without it they
                               are checked up to their data key and reported not decrypted.
  PERSISTENCE_HASH_SECRET      the Worker secret (the store's hashSecret), when it has one:
                               archives of users an erasure tombstone of the copy names are
                               recognised by their hashed user id, left out of export and
                               reported erased by verify.";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the usage.
    Help,
    /// Check a bucket copy or an export.
    Verify {
        /// A directory (bucket copy) or a file (store export).
        source: PathBuf,
        /// Print the report as JSON.
        json: bool,
    },
    /// Describe one object.
    Inspect {
        /// The object's file.
        file: PathBuf,
        /// Its R2 key, when the path does not say it.
        key: Option<String>,
        /// Print the conversation.
        show_messages: bool,
        /// Print as JSON.
        json: bool,
    },
    /// Write a bucket copy's conversations as NDJSON.
    Export {
        /// The bucket copy.
        dir: PathBuf,
        /// Where to write (standard output when `None`).
        out: Option<PathBuf>,
    },
}

/// Parses the arguments after the program name.
pub fn parse(args: impl Iterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.peekable();
    let Some(name) = args.next() else {
        return Err("no command given".to_owned());
    };
    let name = name.to_string_lossy().into_owned();
    let (mut paths, mut json, mut show_messages) = (Vec::new(), false, false);
    let (mut key, mut out) = (None, None);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--json") => json = true,
            Some("--show-messages") => show_messages = true,
            Some("--key") => key = Some(value_of("--key", args.next())?),
            Some("-o" | "--output") => out = Some(PathBuf::from(value_of("-o", args.next())?)),
            Some("-h" | "--help") => return Ok(Command::Help),
            Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option {flag}"));
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    let only_path = |paths: Vec<PathBuf>| -> Result<PathBuf, String> {
        let mut paths = paths.into_iter();
        match (paths.next(), paths.next()) {
            (Some(path), None) => Ok(path),
            (None, _) => Err(format!("{name}: a path is required")),
            (Some(_), Some(extra)) => Err(format!("{name}: unexpected {}", extra.display())),
        }
    };
    let refuse = |given: bool, option: &str| -> Result<(), String> {
        if given {
            Err(format!("{option} is not an option of {name}"))
        } else {
            Ok(())
        }
    };
    match name.as_str() {
        "help" | "-h" | "--help" => Ok(Command::Help),
        "verify" => {
            refuse(key.is_some(), "--key")?;
            refuse(show_messages, "--show-messages")?;
            refuse(out.is_some(), "-o")?;
            Ok(Command::Verify {
                source: only_path(paths)?,
                json,
            })
        }
        "inspect" => {
            refuse(out.is_some(), "-o")?;
            Ok(Command::Inspect {
                file: only_path(paths)?,
                key,
                show_messages,
                json,
            })
        }
        "export" => {
            refuse(key.is_some(), "--key")?;
            refuse(show_messages, "--show-messages")?;
            refuse(json, "--json")?;
            Ok(Command::Export {
                dir: only_path(paths)?,
                out,
            })
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

fn value_of(option: &str, value: Option<OsString>) -> Result<String, String> {
    value
        .and_then(|value| value.into_string().ok())
        .ok_or_else(|| format!("{option} needs a value"))
}

/// The KEKs of [`KEYS_VAR`], when it is set and not empty. Its errors name the entry, never a
/// key.
pub fn keys_from_env() -> Result<Option<KeyRing>, String> {
    let Some(value) = std::env::var_os(KEYS_VAR) else {
        return Ok(None);
    };
    let text = value
        .into_string()
        .map_err(|_| format!("{KEYS_VAR} is not UTF-8"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    KeyRing::from_text(KEYS_VAR, &text)
        .map(Some)
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn reads_each_command_and_refuses_what_it_does_not_take() {
        assert_eq!(
            parsed(&["verify", "copy", "--json"]),
            Ok(Command::Verify {
                source: "copy".into(),
                json: true
            })
        );
        assert_eq!(
            parsed(&["inspect", "--key", "keys/sessions/s1.json", "x.json"]),
            Ok(Command::Inspect {
                file: "x.json".into(),
                key: Some("keys/sessions/s1.json".into()),
                show_messages: false,
                json: false
            })
        );
        assert_eq!(
            parsed(&["export", "copy", "-o", "out.ndjson"]),
            Ok(Command::Export {
                dir: "copy".into(),
                out: Some("out.ndjson".into())
            })
        );
        assert_eq!(parsed(&["verify", "--help"]), Ok(Command::Help));
        for wrong in [
            &["verify"][..],
            &["verify", "a", "b"],
            &["verify", "a", "--show-messages"],
            &["export", "a", "--json"],
            &["inspect", "a", "--key"],
            &["verify", "a", "--frobnicate"],
            &["check", "a"],
            &[],
        ] {
            assert!(parsed(wrong).is_err(), "{wrong:?}");
        }
    }
}
