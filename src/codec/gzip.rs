//! gzip framing shared by the archive and backup codecs.
//!
//! Inflating is bounded: a small stored object must not be able to expand into more memory
//! than the caller allows (a "zip bomb" in R2 would otherwise exhaust a 128 MB isolate).

use std::io::{Read, Write};

use flate2::{read::GzDecoder, write::GzEncoder, Compression};

use crate::error::{PersistenceError, Result};

/// The gzip level used when the caller does not choose one (zlib's own default).
pub const DEFAULT_LEVEL: u32 = 6;

/// Checks a caller-chosen compression level (0 = store, 9 = smallest).
pub fn check_level(level: u32) -> Result<u32> {
    if level > 9 {
        return Err(PersistenceError::invalid_input(
            "compressionLevel",
            format!("{level} is not a gzip level (0-9)"),
        ));
    }
    Ok(level)
}

/// gzip-compresses `bytes` at `level` (0–9; see [`check_level`]).
pub fn compress(bytes: &[u8], level: u32) -> Result<Vec<u8>> {
    let level = check_level(level)?;
    // Compressed chat text is ~1/5 of its size; start there to avoid regrowing.
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::new(level),
    );
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|err| PersistenceError::invalid_input("compression", err.to_string()))
}

/// Inflates one gzip member from `bytes`, refusing to produce more than `max_output` bytes.
/// `what` names the object in errors.
pub fn decompress(what: &str, bytes: &[u8], max_output: u64) -> Result<Vec<u8>> {
    let mut decoder = GzDecoder::new(bytes).take(max_output.saturating_add(1));
    let mut out = Vec::new();
    decoder
        .read_to_end(&mut out)
        .map_err(|err| PersistenceError::corrupt(what, format!("gzip: {err}")))?;
    if out.len() as u64 > max_output {
        return Err(PersistenceError::corrupt(
            what,
            format!("inflates to more than {max_output} bytes"),
        ));
    }
    Ok(out)
}

/// Whether `bytes` start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn round_trips_at_every_level() {
        let text = "the quick brown fox jumps over the lazy dog ".repeat(50);
        for level in 0..=9 {
            let packed = compress(text.as_bytes(), level).unwrap();
            assert!(is_gzip(&packed));
            assert_eq!(decompress("t", &packed, 10_000).unwrap(), text.as_bytes());
        }
    }

    #[test]
    fn refuses_level_ten() {
        assert_eq!(compress(b"x", 10).unwrap_err().code(), "INVALID_INPUT");
    }

    #[test]
    fn bounded_inflate_stops_bombs() {
        let packed = compress(&vec![0u8; 1_000_000], 9).unwrap();
        assert!(packed.len() < 5_000);
        let err = decompress("bomb", &packed, 1000).unwrap_err();
        assert_eq!(err.code(), "CORRUPT_DATA");
        assert!(err.to_string().contains("bomb"));
    }

    #[test]
    fn truncated_or_garbage_input_is_corrupt_not_a_panic() {
        let packed = compress(b"hello world hello world", 6).unwrap();
        for cut in 0..packed.len() {
            let result = decompress("t", &packed[..cut], 1000);
            assert!(result.is_err(), "truncated at {cut} decoded");
        }
        assert_eq!(
            decompress("t", b"not gzip", 1000).unwrap_err().code(),
            "CORRUPT_DATA"
        );
    }
}
