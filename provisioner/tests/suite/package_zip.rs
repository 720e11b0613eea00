//! Deterministic zips: the same binary always gives the same bytes and the same sha256,
//! whatever its file's timestamp, permissions or path, so an unchanged function never
//! redeploys.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, SystemTime};

use provisioner::package::build::{package_binary, Arch};

#[test]
fn packaging_the_same_binary_twice_gives_byte_identical_zips() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("main.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\nint main(void) { puts(\"ok\"); return 0; }\n",
    )
    .expect("write");
    let first_binary = dir.path().join("first/bootstrap");
    std::fs::create_dir_all(first_binary.parent().expect("parent")).expect("mkdir");
    let status = Command::new("gcc")
        .arg("-o")
        .arg(&first_binary)
        .arg(&source)
        .status()
        .expect("gcc");
    assert!(status.success());
    // The second build's file: same bytes, another path, another mtime, other permissions.
    let second_binary = dir.path().join("second/bootstrap");
    std::fs::create_dir_all(second_binary.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&first_binary, &second_binary).expect("copy");
    let file = std::fs::File::options()
        .write(true)
        .open(&second_binary)
        .expect("open");
    file.set_modified(SystemTime::now() - Duration::from_secs(86_400 * 400))
        .expect("set mtime");
    drop(file);
    let mut permissions = std::fs::metadata(&second_binary)
        .expect("metadata")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o700);
    std::fs::set_permissions(&second_binary, permissions).expect("chmod");

    let first = package_binary(
        &first_binary,
        "ingest",
        Arch::X86_64,
        &dir.path().join("out1"),
    )
    .expect("first zip");
    std::thread::sleep(Duration::from_millis(1100));
    let second = package_binary(
        &second_binary,
        "ingest",
        Arch::X86_64,
        &dir.path().join("out2"),
    )
    .expect("second zip");

    let first_bytes = std::fs::read(dir.path().join("out1").join(&first.file)).expect("read");
    let second_bytes = std::fs::read(dir.path().join("out2").join(&second.file)).expect("read");
    assert_eq!(first.sha256, second.sha256);
    assert!(first_bytes == second_bytes, "the zips differ byte for byte");

    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(first_bytes)).expect("a zip");
    let mut entry = archive.by_name("bootstrap").expect("bootstrap entry");
    assert_eq!(
        entry.unix_mode().map(|m| m & 0o777),
        Some(0o755),
        "executable whatever the file's mode"
    );
    let stamp = entry.last_modified().expect("timestamp");
    assert_eq!((stamp.year(), stamp.month(), stamp.day()), (1980, 1, 1));
    let mut content = Vec::new();
    entry.read_to_end(&mut content).expect("inflate");
    assert_eq!(content, std::fs::read(&first_binary).expect("binary"));
}
