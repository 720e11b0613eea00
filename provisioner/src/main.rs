//! The `provisioner` binary: parses arguments, sets up logging, and hands over to the
//! library so that everything it does can also be driven in-process by tests.

use std::process::ExitCode;

use clap::Parser;

/// The policy rules' evaluation (cfn-guard), which every render runs, is allocation-bound:
/// mimalloc makes `render --all` markedly faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = provisioner::cli::Cli::parse();
    provisioner::logging::init(cli.global.verbose);
    let format = cli.global.output;
    let mut stdout = std::io::stdout().lock();
    match provisioner::run(cli, &mut stdout) {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("{}", provisioner::error::report(&error));
            if format == provisioner::cli::OutputFormat::Json {
                let _ = provisioner::output::write_json(&mut stdout, &error.document());
            }
            error.exit().into()
        }
    }
}
