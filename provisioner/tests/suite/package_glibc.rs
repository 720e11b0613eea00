//! The glibc floor check on real binaries compiled here (Debian 12, glibc 2.36): one
//! that calls `arc4random` (GLIBC_2.36) is refused with the symbol named; one that
//! only prints is accepted.

use std::path::{Path, PathBuf};
use std::process::Command;

use provisioner::package::build::{package_binary, Arch};
use provisioner::package::PackageError;

fn compile(dir: &Path, name: &str, source: &str) -> PathBuf {
    let source_path = dir.join(format!("{name}.c"));
    std::fs::write(&source_path, source).expect("write C source");
    let binary = dir.join(name);
    let status = Command::new("gcc")
        .arg("-O1")
        .arg("-o")
        .arg(&binary)
        .arg(&source_path)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc compiles {name}");
    binary
}

#[test]
fn a_binary_needing_a_newer_glibc_than_lambda_has_is_refused_with_the_symbol() {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = compile(
        dir.path(),
        "bootstrap",
        "#include <stdio.h>\n#include <stdlib.h>\nint main(void) { printf(\"%u\\n\", arc4random()); return 0; }\n",
    );
    let error =
        package_binary(&binary, "worker", Arch::X86_64, &dir.path().join("out")).unwrap_err();
    match &error {
        PackageError::GlibcTooNew {
            symbol, version, ..
        } => {
            assert_eq!(symbol, "arc4random");
            assert_eq!(version, "GLIBC_2.36");
        }
        other => panic!("expected a glibc refusal, got {other}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("needs GLIBC_2.36 (symbol `arc4random`"),
        "{message}"
    );
    assert!(message.contains("provided.al2023"), "{message}");
    assert!(
        !dir.path().join("out/x86_64/worker.zip").exists(),
        "nothing is packaged"
    );
}

#[test]
fn a_binary_within_the_floor_is_packaged_with_its_newest_glibc_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = compile(
        dir.path(),
        "bootstrap",
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    );
    let artifact =
        package_binary(&binary, "ingest", Arch::X86_64, &dir.path().join("out")).expect("packaged");
    let newest = artifact
        .glibc
        .expect("a dynamically linked binary needs some glibc");
    assert!(newest.starts_with("GLIBC_2."), "{newest}");
    assert!(dir.path().join("out/x86_64/ingest.zip").is_file());
}

#[test]
fn a_file_that_is_not_a_binary_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("bootstrap");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("write script");
    let error = package_binary(&script, "ingest", Arch::X86_64, dir.path()).unwrap_err();
    assert!(error.to_string().contains("not a 64-bit ELF"), "{error}");
    let missing = package_binary(
        &dir.path().join("absent"),
        "ingest",
        Arch::X86_64,
        dir.path(),
    )
    .unwrap_err();
    assert!(missing.to_string().contains("did not produce"), "{missing}");
}
