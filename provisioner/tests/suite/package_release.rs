//! `provisioner release` on a copy of the repository: the manifest names the git
//! revision and dirty flag, every zip's digest and size, every stack template's digest
//! per environment and each environment's config digest; a zip edited after the build
//! is refused.

use crate::common;

use clap::Parser;
use common::Fixture;
use provisioner::exit::Exit;
use provisioner::package::archive::zip_bootstrap;
use provisioner::package::index::{Artifact, ArtifactIndex};

fn run(fixture: &Fixture, args: &[&str]) -> Result<(Exit, String), String> {
    let root = fixture.root().display().to_string();
    let mut argv = vec!["provisioner", "--root", root.as_str()];
    argv.extend_from_slice(args);
    let cli = provisioner::cli::Cli::try_parse_from(argv).expect("arguments parse");
    let mut out = Vec::new();
    provisioner::run(cli, &mut out)
        .map(|exit| (exit, String::from_utf8_lossy(&out).into_owned()))
        .map_err(|error| provisioner::error::report(&error))
}

#[test]
fn the_release_manifest_describes_zips_templates_and_configs() {
    let fixture = Fixture::new();
    let dir = fixture.root().join("build/functions");
    std::fs::create_dir_all(dir.join("x86_64")).expect("dir");
    let mut index = ArtifactIndex::default();
    for function in ["ingest", "worker", "reconciler"] {
        let zipped = zip_bootstrap(function.as_bytes()).expect("zip");
        std::fs::write(dir.join(format!("x86_64/{function}.zip")), &zipped.bytes).expect("write");
        index.upsert(Artifact {
            function: function.into(),
            architecture: "x86_64".into(),
            file: format!("x86_64/{function}.zip"),
            sha256: zipped.sha256,
            size: zipped.bytes.len() as u64,
            glibc: Some("GLIBC_2.28".into()),
        });
    }
    index.save(&dir).expect("index");
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(fixture.root())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .status()
            .expect("git");
        assert!(status.success());
    };
    git(&["init", "-q"]);
    std::fs::write(fixture.root().join(".gitignore"), "/build\n").expect("gitignore");
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "release fixture"]);

    let (exit, stdout) = run(&fixture, &["--output", "json", "release"]).expect("release runs");
    assert_eq!(exit, Exit::Success);
    let manifest: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let written: serde_json::Value =
        serde_json::from_str(&fixture.read("build/release.json")).expect("manifest file is JSON");
    assert_eq!(manifest, written, "stdout and build/release.json agree");
    assert_eq!(manifest["git"]["dirty"], false, "a committed tree is clean");
    let revision = manifest["git"]["revision"].as_str().expect("revision");
    assert_eq!(manifest["version"].as_str(), Some(&revision[..12]));
    assert_eq!(manifest["provisioner_version"], env!("CARGO_PKG_VERSION"));
    let functions = manifest["functions"].as_array().expect("functions");
    assert_eq!(functions.len(), 3);
    let ingest = zip_bootstrap(b"ingest").expect("zip");
    assert!(functions.iter().any(|f| f["name"] == "ingest"
        && f["sha256"] == ingest.sha256.as_str()
        && f["size"] == ingest.bytes.len()
        && f["key"] == format!("functions/ingest/{}.zip", ingest.sha256).as_str()));
    for env in ["local", "dev", "staging", "prod"] {
        let release = &manifest["environments"][env];
        assert_eq!(
            release["config_sha256"].as_str().map(str::len),
            Some(64),
            "{env}"
        );
        let stacks = release["stacks"].as_array().expect("stacks");
        assert_eq!(stacks.len(), 6, "{env}");
        assert!(stacks
            .iter()
            .all(|s| s["template_sha256"].as_str().map(str::len) == Some(64)));
    }
    assert_ne!(
        manifest["environments"]["dev"]["config_sha256"],
        manifest["environments"]["prod"]["config_sha256"]
    );

    // An uncommitted edit marks the release dirty.
    fixture.write(
        "environments/dev.yaml",
        &(fixture.read("environments/dev.yaml") + "\n# edited\n"),
    );
    let (_, stdout) = run(&fixture, &["--output", "json", "release"]).expect("release runs");
    let dirty: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(dirty["git"]["dirty"], true);
    assert!(dirty["version"]
        .as_str()
        .is_some_and(|v| v.ends_with("-dirty")));

    // A zip changed after the build is not released.
    std::fs::write(dir.join("x86_64/worker.zip"), b"tampered").expect("write");
    let error = run(&fixture, &["release"]).expect_err("a changed zip is refused");
    assert!(
        error.contains("worker.zip changed since it was built"),
        "{error}"
    );
    assert!(error.contains("provisioner build"), "{error}");
}
