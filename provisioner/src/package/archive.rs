//! Deterministic Lambda zips: one `bootstrap` entry with a fixed timestamp (1980-01-01,
//! the zip epoch), fixed permissions (0755) and fixed compression, so the same binary
//! always gives the same bytes and the same sha256, and an unchanged function never
//! redeploys.

use std::io::{Cursor, Write};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// The entry name the `provided.al2023` runtime executes.
pub const BOOTSTRAP: &str = "bootstrap";

/// A finished zip and its digest.
#[derive(Debug, Clone)]
pub struct FunctionZip {
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes`.
    pub sha256: String,
}

/// Zips `binary` as `bootstrap`, byte for byte reproducibly.
pub fn zip_bootstrap(binary: &[u8]) -> Result<FunctionZip, zip::result::ZipError> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(9))
        .last_modified_time(DateTime::default())
        .unix_permissions(0o755)
        .large_file(false);
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer.start_file(BOOTSTRAP, options)?;
    writer.write_all(binary)?;
    let bytes = writer.finish()?.into_inner();
    let sha256 = sha256_hex(&bytes);
    Ok(FunctionZip { bytes, sha256 })
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_entry_is_an_executable_bootstrap_with_the_binary_inside() {
        let zipped = zip_bootstrap(b"\x7fELF pretend binary").unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zipped.bytes)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name(), "bootstrap");
        assert_eq!(entry.unix_mode().map(|mode| mode & 0o777), Some(0o755));
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, b"\x7fELF pretend binary");
    }

    #[test]
    fn different_binaries_give_different_digests() {
        let a = zip_bootstrap(b"one").unwrap();
        let b = zip_bootstrap(b"two").unwrap();
        assert_ne!(a.sha256, b.sha256);
    }
}
