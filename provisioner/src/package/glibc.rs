//! Checks that a function binary runs on Lambda's `provided.al2023` runtime, whose glibc
//! is 2.34: every symbol the binary imports with a `GLIBC_x.y` version must have
//! `x.y <= 2.34`. The versions come from the ELF's GNU symbol-version tables, so the
//! check names the exact symbol that raised the requirement.

use std::fmt;
use std::path::Path;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, Sym};
use object::Endianness;

use super::PackageError;

/// The newest glibc that `provided.al2023` ships.
pub const GLIBC_FLOOR: GlibcVersion = GlibcVersion {
    major: 2,
    minor: 34,
};

/// A glibc symbol version such as `GLIBC_2.34`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion {
    pub major: u32,
    pub minor: u32,
}

impl GlibcVersion {
    /// Parses `GLIBC_2.34` (or `GLIBC_2.2.5`, whose patch level is ignored); other
    /// version names (`GLIBC_PRIVATE`, `GCC_3.0`) are not glibc releases and give `None`.
    pub fn parse(name: &str) -> Option<Self> {
        let numbers = name.strip_prefix("GLIBC_")?;
        let mut parts = numbers.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { major, minor })
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GLIBC_{}.{}", self.major, self.minor)
    }
}

/// One imported symbol and the glibc version it requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedImport {
    pub symbol: String,
    pub version: GlibcVersion,
}

/// What a binary needs from glibc.
#[derive(Debug, Clone, Default)]
pub struct GlibcRequirements {
    /// Every versioned glibc import, sorted newest version first.
    pub imports: Vec<VersionedImport>,
}

impl GlibcRequirements {
    /// The newest glibc version the binary needs; `None` for a static binary.
    pub fn newest(&self) -> Option<GlibcVersion> {
        self.imports.first().map(|import| import.version)
    }

    /// Imports that need a glibc newer than `floor`, newest first.
    pub fn newer_than(&self, floor: GlibcVersion) -> Vec<&VersionedImport> {
        self.imports
            .iter()
            .filter(|import| import.version > floor)
            .collect()
    }
}

/// Reads the glibc symbol versions a 64-bit ELF binary imports.
pub fn requirements(bytes: &[u8]) -> Result<GlibcRequirements, String> {
    let file = ElfFile64::<Endianness>::parse(bytes)
        .map_err(|error| format!("not a 64-bit ELF executable ({error})"))?;
    let endian = file.endian();
    let sections = file
        .elf_header()
        .sections(endian, bytes)
        .map_err(|error| error.to_string())?;
    let Some(versions) = sections
        .versions(endian, bytes)
        .map_err(|error| format!("unreadable symbol versions: {error}"))?
    else {
        return Ok(GlibcRequirements::default());
    };
    let symbols = sections
        .symbols(endian, bytes, elf::SHT_DYNSYM)
        .map_err(|error| format!("unreadable dynamic symbols: {error}"))?;
    let mut imports = Vec::new();
    for (index, symbol) in symbols.enumerate() {
        if symbol.st_shndx(endian) != elf::SHN_UNDEF {
            continue;
        }
        let version = versions
            .version(versions.version_index(endian, index))
            .map_err(|error| format!("unreadable symbol version: {error}"))?;
        let Some(version) = version else { continue };
        let Some(glibc) = GlibcVersion::parse(&String::from_utf8_lossy(version.name())) else {
            continue;
        };
        let name = symbols
            .symbol_name(endian, symbol)
            .map_err(|error| format!("unreadable symbol name: {error}"))?;
        imports.push(VersionedImport {
            symbol: String::from_utf8_lossy(name).into_owned(),
            version: glibc,
        });
    }
    imports.sort_by(|a, b| {
        b.version
            .cmp(&a.version)
            .then_with(|| a.symbol.cmp(&b.symbol))
    });
    Ok(GlibcRequirements { imports })
}

/// Fails when the binary at `path` needs a glibc newer than [`GLIBC_FLOOR`], naming the
/// symbols responsible. Returns the newest version it needs otherwise.
pub fn check(path: &Path, bytes: &[u8]) -> Result<Option<GlibcVersion>, PackageError> {
    let found = requirements(bytes).map_err(|reason| PackageError::UnreadableBinary {
        path: path.to_path_buf(),
        reason,
    })?;
    let offending = found.newer_than(GLIBC_FLOOR);
    if let Some(first) = offending.first() {
        return Err(PackageError::GlibcTooNew {
            path: path.to_path_buf(),
            symbol: first.symbol.clone(),
            version: first.version.to_string(),
            others: offending[1..]
                .iter()
                .map(|import| format!("{} ({})", import.symbol, import.version))
                .collect(),
        });
    }
    Ok(found.newest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_glibc_version_names_and_ignores_others() {
        assert_eq!(
            GlibcVersion::parse("GLIBC_2.2.5"),
            Some(GlibcVersion { major: 2, minor: 2 })
        );
        assert!(GlibcVersion::parse("GLIBC_2.36").unwrap_or(GLIBC_FLOOR) > GLIBC_FLOOR);
        assert_eq!(GlibcVersion::parse("GLIBC_PRIVATE"), None);
        assert_eq!(GlibcVersion::parse("GCC_3.0"), None);
    }

    #[test]
    fn refuses_a_file_that_is_not_an_elf_binary() {
        let error = requirements(b"#!/bin/sh\necho hello\n").unwrap_err();
        assert!(error.contains("not a 64-bit ELF"), "{error}");
    }
}
