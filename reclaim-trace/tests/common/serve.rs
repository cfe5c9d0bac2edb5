//! `reclaim-trace serve` as a child process, and plain HTTP/1.1 requests to it.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::Duration,
};

use super::BIN;

/// A running `serve`, stopped (SIGTERM, then SIGKILL after 30 s) when dropped.
pub struct Serve {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Start `serve --listen 127.0.0.1:0 ARGS` and wait for the address it announces.
    pub fn start(args: &[&str]) -> (Serve, SocketAddr) {
        Self::start_under(&[], args)
    }

    /// As `start`, run by `wrapper` (e.g. `setpriv ...` to drop privileges).
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> (Serve, SocketAddr) {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("serve: {line}");
                kept.lock().unwrap().push(line.clone());
                if let Some(a) = line
                    .split("http://")
                    .nth(1)
                    .and_then(|r| r.split('/').next())
                {
                    let _ = tx.send(a.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let serve = Serve {
            child,
            stderr: lines,
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve announced its address");
        (serve, addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The lines `serve` has written on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGTERM);
        for _ in 0..300 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            thread::sleep(Duration::from_millis(100));
        }
        self.signal(libc::SIGKILL);
        self.child.wait().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// `GET path` with an optional Accept header: (status line and headers, body).
pub fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{accept}\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}
