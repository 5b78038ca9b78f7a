//! One syslog line per run (facility daemon, ident = program name; access
//! refusals at facility authpriv); errors also on stderr, where QEMU shows
//! them. Without /dev/log everything goes to stderr. Logging never makes a
//! run fail and never blocks it: QEMU waits for us with no timeout, so a
//! wedged syslog daemon must not hang a VM start.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use syslog::{Facility, Formatter3164, LogFormat, Severity};

const DEV_LOG: &str = "/dev/log";
const SEND_TIMEOUT: Duration = Duration::from_millis(200);

pub struct Log {
    ident: &'static str,
    socket: Option<UnixDatagram>,
}

impl Log {
    /// Connects to /dev/log (every Linux syslog daemon and journald listen
    /// there with a datagram socket). Call after privileges were dropped.
    pub fn open(ident: &'static str) -> Log {
        let socket = UnixDatagram::unbound()
            .and_then(|s| {
                s.connect(DEV_LOG)?;
                s.set_write_timeout(Some(SEND_TIMEOUT))?;
                Ok(s)
            })
            .ok();
        Log { ident, socket }
    }

    /// A success line: syslog, or stderr when there is no syslog.
    pub fn info(&mut self, msg: &str) {
        if !self.send(Facility::LOG_DAEMON, Severity::LOG_INFO, msg) {
            self.stderr(msg);
        }
    }

    /// A failure: syslog and always stderr.
    pub fn error(&mut self, msg: &str) {
        self.send(Facility::LOG_DAEMON, Severity::LOG_ERR, msg);
        self.stderr(msg);
    }

    /// An access refusal: the security log (authpriv) with the details, and
    /// the user's one line on stderr.
    pub fn refusal(&mut self, details: &str, msg: &str) {
        self.send(Facility::LOG_AUTHPRIV, Severity::LOG_WARNING, details);
        self.stderr(msg);
    }

    fn send(&mut self, facility: Facility, severity: Severity, msg: &str) -> bool {
        let Some(sock) = &self.socket else {
            return false;
        };
        let formatter = Formatter3164 {
            facility,
            hostname: None,
            process: self.ident.to_owned(),
            pid: std::process::id(),
        };
        let mut buf = Vec::with_capacity(128 + msg.len());
        formatter.format(&mut buf, severity, msg).is_ok() && sock.send(&buf).is_ok()
    }

    fn stderr(&self, msg: &str) {
        // One write: stderr is unbuffered, and writeln! would make four.
        let line = format!("{}: {}\n", self.ident, msg);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}
