//! Writing results to stdout as text or as one JSON document.

use std::io::Write;

use serde::Serialize;

use crate::error::Error;

/// Writes `value` as pretty JSON followed by a newline.
pub fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|error| Error::Other {
        message: format!("could not encode the result as JSON: {error}"),
        help: String::new(),
    })?;
    write_text(out, &text)
}

/// Writes `text` and a newline; a closed stdout (`| head`) is not an error worth a trace.
pub fn write_text(out: &mut dyn Write, text: &str) -> Result<(), Error> {
    match writeln!(out, "{text}") {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            action: "write results to".into(),
            path: "stdout".into(),
            source: error,
        }),
        _ => Ok(()),
    }
}
