//! Ctrl-C during a deploy. The first interrupt stops the run from starting anything new
//! (no new stack, no change set executed) while the stacks already updating finish; the
//! second cancels the updates still in progress (CancelUpdateStack); a third ends the
//! process at once. Every run that was interrupted ends with exit code 130, its lock
//! released and its report saying what was and was not deployed.

use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

/// How far an interrupt has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Not interrupted.
    Running = 0,
    /// Start nothing new; let what runs finish.
    Stopping = 1,
    /// Cancel the updates in progress.
    Cancelling = 2,
}

/// A shared, cloneable view of the interrupt state.
#[derive(Debug, Clone)]
pub struct Interrupt {
    sender: Arc<watch::Sender<u8>>,
    receiver: watch::Receiver<u8>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Self::new()
    }
}

impl Interrupt {
    /// A state nobody has interrupted yet.
    pub fn new() -> Self {
        let (sender, receiver) = watch::channel(0);
        Self {
            sender: Arc::new(sender),
            receiver,
        }
    }

    /// The process's interrupt state, listening to Ctrl-C (SIGINT) from the first call
    /// on, on a thread of its own (so it outlives the runtimes commands build and drop).
    pub fn process() -> Self {
        static PROCESS: OnceLock<Interrupt> = OnceLock::new();
        PROCESS
            .get_or_init(|| {
                let interrupt = Interrupt::new();
                let listener = interrupt.clone();
                let (ready_tx, ready_rx) = std::sync::mpsc::channel();
                let spawned = std::thread::Builder::new()
                    .name("interrupt".into())
                    .spawn(move || listen(listener, ready_tx));
                if spawned.is_ok() {
                    // The handler is installed before any deploy step runs.
                    let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(5));
                }
                interrupt
            })
            .clone()
    }

    /// Records one more interrupt and returns the level reached.
    pub fn raise(&self) -> Level {
        self.sender
            .send_modify(|presses| *presses = presses.saturating_add(1));
        self.level()
    }

    fn presses(&self) -> u8 {
        *self.receiver.borrow()
    }

    /// The level reached so far.
    pub fn level(&self) -> Level {
        match self.presses() {
            0 => Level::Running,
            1 => Level::Stopping,
            _ => Level::Cancelling,
        }
    }

    /// True once interrupted at all: start nothing new.
    pub fn is_stopping(&self) -> bool {
        self.level() >= Level::Stopping
    }

    /// Resolves once the level reaches `level` (at once if it already has).
    pub async fn reached(&self, level: Level) {
        let mut receiver = self.receiver.clone();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = receiver
            .wait_for(|presses| {
                let reached = match presses {
                    0 => Level::Running,
                    1 => Level::Stopping,
                    _ => Level::Cancelling,
                };
                reached >= level
            })
            .await;
    }
}

fn listen(interrupt: Interrupt, ready: std::sync::mpsc::Sender<()>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let Ok(mut signals) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        else {
            return;
        };
        let _ = ready.send(());
        while signals.recv().await.is_some() {
            match interrupt.raise() {
                Level::Stopping => eprintln!(
                    "interrupted: starting nothing new and letting the stack updates in \
                     progress finish; press Ctrl-C again to cancel them"
                ),
                Level::Cancelling if interrupt.presses() == 2 => eprintln!(
                    "interrupted again: cancelling the stack updates in progress; press \
                     Ctrl-C once more to quit at once"
                ),
                _ => std::process::exit(crate::exit::Exit::Interrupted as i32),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_interrupt_goes_one_level_further_and_wakes_the_waiters() {
        let interrupt = Interrupt::new();
        assert_eq!(interrupt.level(), Level::Running);
        assert!(!interrupt.is_stopping());
        let waiter = {
            let interrupt = interrupt.clone();
            tokio::spawn(async move { interrupt.reached(Level::Cancelling).await })
        };
        assert_eq!(interrupt.raise(), Level::Stopping);
        assert!(interrupt.is_stopping());
        assert!(!waiter.is_finished());
        assert_eq!(interrupt.clone().raise(), Level::Cancelling);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes")
            .unwrap();
        // Already reached: resolves at once.
        interrupt.reached(Level::Stopping).await;
    }
}
