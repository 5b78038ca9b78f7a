//! One syslog line per run (facility daemon, ident = program name; access
//! refusals at facility authpriv); errors also on stderr, where QEMU shows
//! them. Without /dev/log everything goes to stderr. Logging never makes a
//! run fail and never blocks it: QEMU waits for us with no timeout, so a
//! wedged syslog daemon must not hang a VM start.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use libc::{c_int, LOG_AUTHPRIV, LOG_DAEMON, LOG_ERR, LOG_INFO, LOG_WARNING};

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
        if !self.send(LOG_DAEMON, LOG_INFO, msg) {
            self.stderr(msg);
        }
    }

    /// The audit line a run sends before its first change, so that a run
    /// killed half-way still leaves a trace of what it set out to do.
    pub fn starting(&mut self, tap: &str, user: u32, what: &str) {
        self.send(
            LOG_DAEMON,
            LOG_INFO,
            &format!("tap={tap} user={user} result=starting {what}"),
        );
    }

    /// A failure: syslog and always stderr.
    pub fn error(&mut self, msg: &str) {
        self.send(LOG_DAEMON, LOG_ERR, msg);
        self.stderr(msg);
    }

    /// An access refusal: the security log (authpriv) with the details, and
    /// the user's one line on stderr.
    pub fn refusal(&mut self, details: &str, msg: &str) {
        self.send(LOG_AUTHPRIV, LOG_WARNING, details);
        self.stderr(msg);
    }

    fn send(&mut self, facility: c_int, severity: c_int, msg: &str) -> bool {
        let Some(sock) = &self.socket else {
            return false;
        };
        sock.send(frame(facility, severity, self.ident, msg).as_bytes())
            .is_ok()
    }

    fn stderr(&self, msg: &str) {
        // One write: stderr is unbuffered, and writeln! would make four.
        let line = format!("{}: {}\n", self.ident, msg);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// One datagram for /dev/log: `<PRI>ident[pid]: message`, without a
/// timestamp. Every receiver stamps a local-socket message with its arrival
/// time when it has none (journald always does, rsyslog's imuxsock by
/// default, syslog-ng when the field is missing); a stamp of our own would
/// have to be local time in RFC 3164's format, which a receiver that honours
/// the field (syslog-ng) files hours off when it is wrong.
/// `facility`, `severity`: `libc::LOG_*`, as syslog(3) takes them.
fn frame(facility: c_int, severity: c_int, ident: &str, msg: &str) -> String {
    let pri = facility | severity;
    format!("<{pri}>{ident}[{}]: {msg}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_priority_ident_and_pid() {
        let pid = std::process::id();
        assert_eq!(
            frame(LOG_DAEMON, LOG_INFO, "kvmnet-ifup", "tap=vm0"),
            format!("<30>kvmnet-ifup[{pid}]: tap=vm0")
        );
        // authpriv (10 << 3) | warning (4)
        assert_eq!(
            frame(LOG_AUTHPRIV, LOG_WARNING, "kvmnet-ifup", "x"),
            format!("<84>kvmnet-ifup[{pid}]: x")
        );
    }
}
