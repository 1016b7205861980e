//! The terminal's raw mode and alternate screen, entered and always left again.
//!
//! Owns: setup, restore on every way out (normal return, error via the guard's `Drop`, panic via a
//! hook that restores before the default hook prints), and the keyboard-reading thread. Must not
//! touch: app state. Why a thread for keys: crossterm's async `EventStream` needs a feature the
//! crate does not enable; a blocking `poll`/`read` loop on its own thread gives the same channel.

use std::io::{self, IsTerminal, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use crossterm::event::{self, Event};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Restores the terminal when dropped, whatever path leaves the console.
pub struct TermGuard {
    pub terminal: Term,
}

/// Whether stdin and stdout are a terminal the console can take over.
pub fn is_interactive() -> bool {
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// Enters raw mode and the alternate screen, after installing the panic hook.
pub fn enter() -> io::Result<TermGuard> {
    install_panic_hook();
    enable_raw_mode()?;
    let setup = execute!(io::stdout(), EnterAlternateScreen, crossterm::cursor::Hide)
        .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
    match setup {
        Ok(terminal) => Ok(TermGuard { terminal }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen; safe to call more than once.
pub fn restore() {
    // Raw mode first: it has the larger side effects on the user's shell.
    let raw = disable_raw_mode();
    let screen = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
    if let Err(e) = raw.and(screen) {
        tracing::warn!("could not restore the terminal: {e}");
    }
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The thread that reads terminal events into a channel; stopped and joined on drop.
pub struct InputThread {
    // Field order matters: the receiver drops before the join, so a thread blocked on a full
    // channel is released (its send fails) instead of deadlocking the join.
    rx: mpsc::Receiver<io::Result<Event>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// How long a `poll` waits before checking the stop flag again.
const INPUT_POLL: Duration = Duration::from_millis(100);

pub fn spawn_input() -> io::Result<InputThread> {
    let (tx, rx) = mpsc::channel(64);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::Builder::new()
        .name("console-input".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let next = match event::poll(INPUT_POLL) {
                    Ok(false) => continue,
                    Ok(true) => event::read(),
                    Err(e) => Err(e),
                };
                let failed = next.is_err();
                if tx.blocking_send(next).is_err() || failed {
                    return;
                }
            }
        })?;
    Ok(InputThread {
        rx,
        stop,
        handle: Some(handle),
    })
}

impl InputThread {
    /// The next terminal event; `None` once the thread has stopped.
    pub async fn recv(&mut self) -> Option<io::Result<Event>> {
        self.rx.recv().await
    }
}

impl Drop for InputThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
