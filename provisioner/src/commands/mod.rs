//! One module per subcommand. Each writes its results to the injected `out` (stdout in
//! the binary, a buffer in tests) and returns the exit code to use.

pub mod build;
pub mod deploy;
pub mod destroy;
pub mod env;
pub mod lint;
pub mod local;
pub mod plan;
pub mod release;
pub mod render;
pub mod status;
pub mod up;
