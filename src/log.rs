//! One syslog line per run (facility daemon, ident = program name); errors also
//! on stderr, where QEMU shows them. Without /dev/log everything goes to stderr;
//! logging never makes a run fail.

use std::io::Write;

use syslog::{Facility, Formatter3164, LoggerBackend};

pub struct Log {
    ident: &'static str,
    syslog: Option<syslog::Logger<LoggerBackend, Formatter3164>>,
}

impl Log {
    pub fn open(ident: &'static str) -> Log {
        let formatter = Formatter3164 {
            facility: Facility::LOG_DAEMON,
            hostname: None,
            process: ident.to_owned(),
            pid: std::process::id(),
        };
        Log {
            ident,
            syslog: syslog::unix(formatter).ok(),
        }
    }

    /// A success line: syslog, or stderr when there is no syslog.
    pub fn info(&mut self, msg: &str) {
        let sent = self.syslog.as_mut().is_some_and(|l| l.info(msg).is_ok());
        if !sent {
            self.stderr(msg);
        }
    }

    /// A failure: syslog and always stderr.
    pub fn error(&mut self, msg: &str) {
        if let Some(l) = self.syslog.as_mut() {
            let _ = l.err(msg);
        }
        self.stderr(msg);
    }

    fn stderr(&self, msg: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{}: {}", self.ident, msg);
    }
}
