//! Logging on stderr: `-v` for debug, `-vv` for trace, `RUST_LOG` to choose per module.
//! Results go to stdout; nothing here ever writes there.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `verbosity` counts `-v` flags.
pub fn init(verbosity: u8) {
    let default = match verbosity {
        // aws-config warns about things the provisioner reports itself, in one line
        // (no credentials, a missing profile or config file).
        0 => "warn,aws_config=error,aws_runtime=error",
        1 => "provisioner=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
