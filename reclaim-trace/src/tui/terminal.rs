//! The terminal while the dashboard runs: raw mode, the alternate screen, no cursor, and
//! stderr diverted to a file so that log lines cannot tear the screen. Everything is put back
//! by `restore()`: on drop of the guard, and from a panic hook before the panic message is
//! printed (unwinding then drops the session, which stops the workload and removes its
//! cgroup and swap).

use std::{
    fs::File,
    io::{self, Read as _, Seek as _, Stdout, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex, Once,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result};
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor, event, execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};
use tokio::sync::mpsc::UnboundedSender;

use super::Event;

/// The terminal is in dashboard mode (raw, alternate screen).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// stderr while diverted: the original descriptor and the file that collects the output.
static DIVERTED: Mutex<Option<(OwnedFd, File)>> = Mutex::new(None);
static HOOK: Once = Once::new();

/// Send stderr to an unlinked temporary file until `undivert_stderr`, which replays it.
pub fn divert_stderr() -> Result<()> {
    let path =
        std::env::temp_dir().join(format!("reclaim-trace-top-{}.stderr", std::process::id()));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let _ = std::fs::remove_file(&path); // the open descriptor keeps it alive
    let _ = io::stderr().flush();
    // SAFETY: dup of the process's stderr descriptor; on success we own the new descriptor.
    let saved = unsafe { libc::dup(libc::STDERR_FILENO) };
    if saved < 0 {
        return Err(io::Error::last_os_error()).context("dup(stderr) failed");
    }
    // SAFETY: `saved` is a fresh descriptor returned by dup above, owned by nobody else.
    let saved = unsafe { OwnedFd::from_raw_fd(saved) };
    // SAFETY: both descriptors are open; dup2 atomically replaces descriptor 2.
    if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(io::Error::last_os_error()).context("dup2(file, stderr) failed");
    }
    if let Ok(mut d) = DIVERTED.lock() {
        *d = Some((saved, file));
    }
    Ok(())
}

/// Put stderr back and print what was written to it meanwhile. Idempotent.
pub fn undivert_stderr() {
    let taken = match DIVERTED.lock() {
        Ok(mut d) => d.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    let Some((saved, mut file)) = taken else {
        return;
    };
    // SAFETY: `saved` is the original stderr, still open (we own it); dup2 restores fd 2.
    unsafe { libc::dup2(saved.as_raw_fd(), libc::STDERR_FILENO) };
    let mut text = String::new();
    if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() && !text.is_empty() {
        let _ = io::stderr().write_all(text.as_bytes());
    }
}

/// Leave dashboard mode (if in it) and put stderr back. Safe to call from anywhere, twice.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
    undivert_stderr();
}

/// Dashboard mode for as long as it lives.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    pub fn enter() -> Result<TerminalGuard> {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        ACTIVE.store(true, Ordering::SeqCst);
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)
            .context("cannot switch to the alternate screen")?;
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))
            .context("cannot set up the terminal")?;
        Ok(TerminalGuard { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Read terminal events on a thread (crossterm's reader blocks) until `stop` is set or the
/// receiver is gone. Polls with a timeout so that it notices `stop`.
pub fn spawn_input(tx: UnboundedSender<Event>, stop: Arc<AtomicBool>) -> Result<()> {
    thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let ev = match event::poll(Duration::from_millis(250)) {
                    Ok(false) => continue,
                    Ok(true) => event::read(),
                    Err(e) => Err(e),
                };
                let sent = match ev {
                    Ok(event::Event::Key(k)) => tx.send(Event::Key(k)),
                    Ok(event::Event::Resize(..)) => tx.send(Event::Resize),
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let _ = tx.send(Event::InputFailed(e.to_string()));
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        })
        .context("cannot start the terminal input thread")?;
    Ok(())
}
