//! The provisioner's integration tests, in one test binary: each module covers one area
//! (the CLI, configuration errors, rendering, packaging, deploying). Linking one binary
//! instead of one per area saves the build most of its link time and disk. The local
//! platform's end-to-end run keeps a binary of its own (`tests/local_e2e.rs`).

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod config_errors;
mod config_properties;
mod data_parity;
mod dead_letters;
mod decommission;
mod deploy_cli;
mod deploy_mocks;
mod deploy_moto;
mod doctor;
mod drift_mocks;
mod iam_calls;
mod package_glibc;
mod package_release;
mod package_zip;
mod policy;
mod promote_mocks;
mod recover_mocks;
mod releases;
mod render_output;
mod render_snapshots;
mod replay_failed;
mod safety;
