//! `supportbot-persistence`: the offline checker. Verifies, inspects and exports a directory
//! copy of the R2 bucket (as `rclone copy` or `wrangler r2 object get` make it) or a store
//! export (NDJSON), with the library's own decoders (`supportbot_persistence::check`). Native
//! only: in wasm the crate is a library and this binary is empty.
//!
//! Exit codes: 0 nothing wrong, 1 a problem in the data, 2 a usage, key or I/O error.

#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod bucket;
#[cfg(not(target_arch = "wasm32"))]
mod erased;
#[cfg(not(target_arch = "wasm32"))]
mod export;
#[cfg(not(target_arch = "wasm32"))]
mod inspect;
#[cfg(not(target_arch = "wasm32"))]
mod progress;
#[cfg(not(target_arch = "wasm32"))]
mod report;
#[cfg(not(target_arch = "wasm32"))]
mod verify;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use args::Command;
    use std::process::ExitCode;

    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("supportbot-persistence: {message}\n\n{}", args::USAGE);
            return ExitCode::from(args::EXIT_USAGE);
        }
    };
    let result = match command {
        Command::Help => {
            println!("{}", args::USAGE);
            Ok(false)
        }
        Command::Verify { source, json } => verify::run(&source, json),
        Command::Inspect {
            file,
            key,
            show_messages,
            json,
        } => inspect::run(&file, key.as_deref(), show_messages, json),
        Command::Export { dir, out } => export::run(&dir, out.as_deref()),
    };
    match result {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(args::EXIT_PROBLEMS),
        Err(message) => {
            eprintln!("supportbot-persistence: {message}");
            ExitCode::from(args::EXIT_USAGE)
        }
    }
}

/// Runs `future` to its end on this thread: the only futures here are the library's ciphers,
/// which natively (RustCrypto's `aes-gcm`) are ready at their first poll.
#[cfg(not(target_arch = "wasm32"))]
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

/// Nothing to run in wasm: the crate is a library there (`cargo clippy --target
/// wasm32-unknown-unknown --all-targets` builds this file too).
#[cfg(target_arch = "wasm32")]
fn main() {}
