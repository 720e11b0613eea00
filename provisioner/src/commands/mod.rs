//! One module per subcommand. Each writes its results to the injected `out` (stdout in
//! the binary, a buffer in tests) and returns the exit code to use.

pub mod bootstrap;
pub mod build;
pub mod data;
pub mod decommission;
pub mod deploy;
pub mod destroy;
pub mod dlq;
pub mod doctor;
pub mod drift;
pub mod env;
pub mod history;
pub mod lint;
pub mod local;
pub mod plan;
pub mod probe;
pub mod promote;
pub mod recover;
pub mod release;
pub mod render;
pub mod replay;
pub mod rollback;
pub mod status;
pub mod unlock;
pub mod up;
