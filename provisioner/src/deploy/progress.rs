//! Progress on stderr while stacks deploy: on a terminal, one spinner per stack with
//! events printed above them; otherwise plain, timestamped lines that read well in a CI
//! log. Every line carries the time elapsed since the command started.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::events::StackEvent;

/// Shared progress display; cheap to call from parallel stack tasks.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    quiet: bool,
}

impl Progress {
    /// Spinners when `terminal`, plain lines otherwise.
    pub fn new(terminal: bool) -> Self {
        Self {
            started: Instant::now(),
            multi: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: Mutex::new(HashMap::new()),
            quiet: false,
        }
    }

    /// Shows nothing (for tests that only look at results).
    pub fn hidden() -> Self {
        Self {
            quiet: true,
            ..Self::new(false)
        }
    }

    fn elapsed(&self) -> String {
        format_elapsed(self.started.elapsed())
    }

    /// A line that stays (above the spinners on a terminal).
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let line = format!("[{}] {text}", self.elapsed());
        match &self.multi {
            Some(multi) => {
                if multi.println(&line).is_err() {
                    eprintln!("{line}");
                }
            }
            None => eprintln!("{line}"),
        }
    }

    /// A stack's current step (the spinner's message on a terminal).
    pub fn step(&self, stack: &str, message: &str) {
        match &self.multi {
            Some(multi) if !self.quiet => {
                let Ok(mut bars) = self.bars.lock() else {
                    return;
                };
                let bar = bars.entry(stack.to_string()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner} {prefix:.bold} {wide_msg} {elapsed:.dim}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(stack.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(message.to_string());
            }
            _ => self.line(&format!("{stack}: {message}")),
        }
    }

    /// A note about a stack that should stay visible.
    pub fn note(&self, stack: &str, message: &str) {
        self.line(&format!("{stack}: {message}"));
    }

    /// One stack event: resource, type, status, reason.
    pub fn event(&self, stack: &str, event: &StackEvent) {
        let reason = event
            .reason
            .as_deref()
            .map(|r| format!("  {r}"))
            .unwrap_or_default();
        self.line(&format!(
            "{stack}: {} {} {}{reason}",
            event.logical_id, event.resource_type, event.status
        ));
    }

    /// The stack's status while waiting (spinner only; plain output shows events).
    pub fn status(&self, stack: &str, status: &str) {
        if self.multi.is_some() {
            self.step(stack, status);
        }
    }

    /// The stack is done: its spinner is replaced by a final line.
    pub fn finish(&self, stack: &str, message: &str) {
        if let Ok(mut bars) = self.bars.lock() {
            if let Some(bar) = bars.remove(stack) {
                bar.finish_and_clear();
            }
        }
        self.line(&format!("{stack}: {message}"));
    }
}

/// `4.2s`, or `2m05s` past a minute.
pub fn format_elapsed(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:>5.1}s")
    } else {
        let whole = elapsed.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_time_reads_as_seconds_then_minutes() {
        assert_eq!(format_elapsed(Duration::from_millis(4200)), "  4.2s");
        assert_eq!(format_elapsed(Duration::from_secs(125)), "2m05s");
    }
}
