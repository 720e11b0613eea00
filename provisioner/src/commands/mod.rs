//! One module per subcommand. Each writes its results to the injected `out` (stdout in
//! the binary, a buffer in tests) and returns the exit code to use.

pub mod env;
pub mod lint;
pub mod render;
