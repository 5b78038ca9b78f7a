//! A client of ovsdb-server's JSON-RPC protocol (RFC 7047) over its Unix
//! socket: just enough to run one `transact` at a time and read its answer.
//!
//! Why not a crate: the maintained-looking ones (`ovsdb`, `ovsdb-client`)
//! are 0.0.x, asynchronous on tokio and, for one of them, jsonrpsee; the
//! VM-start binaries are synchronous with a C `main`, and one request and
//! its answer need a socket and serde_json, which kvmnet already links
//! (docs/ovs-design.md).
//!
//! Every call has a deadline: a server that stops answering is an error
//! within the bound the config sets (`ovs_timeout`), never a hung VM start.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The database Open vSwitch keeps its configuration in.
pub const DB: &str = "Open_vSwitch";
/// Where Debian's and Fedora's ovsdb-server listen.
pub const DEFAULT_SOCKET: &str = "/run/openvswitch/db.sock";
/// libvirt's `ovs-vsctl --timeout=5`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// A server's answer larger than this is not one kvmnet asked for.
const MAX_MESSAGE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OvsdbError {
    #[error("cannot reach ovsdb-server at {path} ({cause}); {hint}")]
    Connect {
        path: PathBuf,
        cause: io::Error,
        hint: &'static str,
    },
    #[error("ovsdb-server at {path} did not answer within {secs} s (ovs_timeout); check that ovsdb-server runs (`ovs-vsctl show`)")]
    Timeout { path: PathBuf, secs: u64 },
    #[error("talking to ovsdb-server at {path}: {msg}")]
    Protocol { path: PathBuf, msg: String },
    /// One operation of a transaction failed: the server applied none of
    /// them.
    #[error("ovsdb-server refused the transaction at operation {index}: {error}{}", details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        index: usize,
        error: String,
        details: Option<String>,
    },
}

impl OvsdbError {
    /// The operation a refusal is about, for callers that map their
    /// preconditions (`wait` operations) to their own errors.
    pub fn refused_at(&self) -> Option<usize> {
        match self {
            OvsdbError::Refused { index, .. } => Some(*index),
            _ => None,
        }
    }
}

pub struct Ovsdb {
    stream: UnixStream,
    path: PathBuf,
    deadline: Instant,
    timeout: Duration,
    next_id: u64,
    buf: Vec<u8>,
}

impl Ovsdb {
    /// Connects; every later call must finish within `timeout` of now.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Ovsdb, OvsdbError> {
        let deadline = Instant::now() + timeout;
        let stream = connect_by(path, deadline).map_err(|cause| {
            if cause.kind() == io::ErrorKind::TimedOut {
                return OvsdbError::Timeout {
                    path: path.to_owned(),
                    secs: timeout.as_secs().max(1),
                };
            }
            let hint = match cause.raw_os_error() {
                Some(libc::EACCES | libc::EPERM) => {
                    "the socket is root's: run kvmnet-ifup as root (QEMU or libvirt as root, or the sudo rule), not setuid or with a file capability"
                }
                _ => "start Open vSwitch (`systemctl start openvswitch-switch`) or set ovs_db in the config to its socket",
            };
            OvsdbError::Connect {
                path: path.to_owned(),
                cause,
                hint,
            }
        })?;
        Ok(Ovsdb {
            stream,
            path: path.to_owned(),
            deadline,
            timeout,
            next_id: 0,
            buf: Vec::new(),
        })
    }

    /// Time left before the deadline, in whole milliseconds (for `wait`
    /// operations, which the server holds until their condition is true).
    pub fn remaining_ms(&self) -> u64 {
        self.deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// Runs `ops` as one transaction on [`DB`]: all of them or none. The
    /// answer holds one result per operation.
    pub fn transact(&mut self, ops: Vec<Value>) -> Result<Vec<Value>, OvsdbError> {
        let n = ops.len();
        let mut params = Vec::with_capacity(n + 1);
        params.push(json!(DB));
        params.extend(ops);
        let result = self.call("transact", Value::Array(params))?;
        let Value::Array(results) = result else {
            return Err(self.protocol(format!("a transact answer that is not a list: {result}")));
        };
        // A failed operation holds "error"; a failed commit adds one more
        // element after the operations' results.
        for (index, r) in results.iter().enumerate() {
            if let Some(error) = r.get("error").and_then(Value::as_str) {
                return Err(OvsdbError::Refused {
                    index,
                    error: error.to_owned(),
                    details: r.get("details").and_then(Value::as_str).map(str::to_owned),
                });
            }
        }
        if results.len() < n {
            return Err(self.protocol(format!("{} results for {n} operations", results.len())));
        }
        Ok(results)
    }

    fn call(&mut self, method: &str, params: Value) -> Result<Value, OvsdbError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"method": method, "params": params, "id": id}))?;
        loop {
            let msg = self.receive()?;
            // The server's inactivity probe: answered, or it hangs up.
            if msg.get("method").and_then(Value::as_str) == Some("echo") {
                let params = msg.get("params").cloned().unwrap_or(json!([]));
                let reply = json!({"result": params, "error": null, "id": msg.get("id")});
                self.send(&reply)?;
                continue;
            }
            if msg.get("id").and_then(Value::as_u64) != Some(id) {
                // A notification or an answer to nothing asked: not ours.
                continue;
            }
            match msg.get("error") {
                None | Some(Value::Null) => {}
                Some(e) => return Err(self.protocol(format!("{method} failed: {e}"))),
            }
            return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    fn send(&mut self, msg: &Value) -> Result<(), OvsdbError> {
        let bytes = serde_json::to_vec(msg).map_err(|e| self.protocol(e.to_string()))?;
        let left = self.left()?;
        self.stream
            .set_write_timeout(Some(left))
            .and_then(|()| self.stream.write_all(&bytes))
            .map_err(|e| self.io(e))
    }

    /// One whole JSON value from the stream (ovsdb-server frames nothing:
    /// messages are concatenated JSON texts).
    fn receive(&mut self) -> Result<Value, OvsdbError> {
        loop {
            if !self.buf.is_empty() {
                let mut values =
                    serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
                match values.next() {
                    Some(Ok(v)) => {
                        let used = values.byte_offset();
                        self.buf.drain(..used);
                        return Ok(v);
                    }
                    Some(Err(e)) if e.is_eof() => {}
                    Some(Err(e)) => return Err(self.protocol(format!("unreadable answer: {e}"))),
                    None => self.buf.clear(),
                }
            }
            if self.buf.len() > MAX_MESSAGE {
                return Err(
                    self.protocol(format!("an answer larger than {} MiB", MAX_MESSAGE >> 20))
                );
            }
            let left = self.left()?;
            let mut chunk = [0u8; 8192];
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| self.io(e))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(self.protocol("the server closed the connection".into())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    fn left(&self) -> Result<Duration, OvsdbError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.timeout())
        } else {
            Ok(left)
        }
    }

    fn timeout(&self) -> OvsdbError {
        OvsdbError::Timeout {
            path: self.path.clone(),
            secs: self.timeout.as_secs().max(1),
        }
    }

    fn io(&self, e: io::Error) -> OvsdbError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timeout(),
            _ => self.protocol(e.to_string()),
        }
    }

    fn protocol(&self, msg: String) -> OvsdbError {
        OvsdbError::Protocol {
            path: self.path.clone(),
            msg,
        }
    }
}

/// `connect(2)` within the deadline: a blocking connect to a server that
/// does not accept (its backlog full, the process stopped) would wait for
/// ever, so the socket connects non-blocking and retries while the listener
/// is full.
fn connect_by(path: &Path, deadline: Instant) -> io::Result<UnixStream> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let addr = UnixAddr::new(path).map_err(io::Error::from)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    loop {
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => break,
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(nix::errno::Errno::EAGAIN) => return Err(io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// An OVSDB map of strings: `["map", [[k, v], …]]`.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let pairs: Vec<Value> = pairs.into_iter().map(|(k, v)| json!([k, v])).collect();
    json!(["map", pairs])
}

/// An OVSDB set: `["set", [...]]` (also the empty value of an optional
/// column).
pub fn set(items: Vec<Value>) -> Value {
    json!(["set", items])
}

/// The UUID in a `["uuid", "…"]` value.
pub fn uuid_of(v: &Value) -> Option<&str> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, id]) if tag == "uuid" => id.as_str(),
        _ => None,
    }
}

/// The members of a set column (a lone atom is a set of one).
pub fn members(v: &Value) -> Vec<&Value> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, items]) if tag == "set" => {
            items.as_array().map_or(Vec::new(), |a| a.iter().collect())
        }
        _ => vec![v],
    }
}

/// The value of `key` in a map column.
pub fn map_get<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    match v.as_array().map(Vec::as_slice) {
        Some([tag, pairs]) if tag == "map" => {
            pairs
                .as_array()?
                .iter()
                .find_map(|p| match p.as_array().map(Vec::as_slice) {
                    Some([k, v]) if k == key => v.as_str(),
                    _ => None,
                })
        }
        _ => None,
    }
}

/// The rows a `select` operation returned.
pub fn rows(result: &Value) -> &[Value] {
    result
        .get("rows")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn values_of_the_wire_format() {
        let u = json!(["uuid", "0b5c3e2a-0000-0000-0000-000000000001"]);
        assert_eq!(uuid_of(&u), Some("0b5c3e2a-0000-0000-0000-000000000001"));
        assert_eq!(uuid_of(&json!("x")), None);
        let s = json!(["set", [["uuid", "a"], ["uuid", "b"]]]);
        assert_eq!(members(&s).len(), 2);
        assert_eq!(members(&u).len(), 1);
        let m = map([("iface-id", "vm1"), ("kvmnet-owner", "1000")]);
        assert_eq!(map_get(&m, "kvmnet-owner"), Some("1000"));
        assert_eq!(map_get(&m, "nope"), None);
    }

    /// A server that answers with `answers`, one per request, and records
    /// what it was sent.
    fn server(answers: Vec<String>) -> (tempdir::Dir, std::thread::JoinHandle<Vec<Value>>) {
        let dir = tempdir::Dir::new();
        let listener = UnixListener::bind(dir.path().join("db.sock")).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut de =
                serde_json::Deserializer::from_reader(s.try_clone().unwrap()).into_iter::<Value>();
            for a in answers {
                let Some(Ok(req)) = de.next() else { break };
                let a = a.replace("ID", &req["id"].to_string());
                seen.push(req);
                // split in two writes: the client must reassemble
                let (x, y) = a.split_at(a.len() / 2);
                s.write_all(x.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(5));
                s.write_all(y.as_bytes()).unwrap();
            }
            seen
        });
        (dir, h)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!(
                    "kvmnet-ovsdb-{}-{}",
                    std::process::id(),
                    crate::random::os_u64()
                ));
                std::fs::create_dir(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_transaction_and_its_answer_across_partial_reads_and_an_echo() {
        let (dir, h) = server(vec![
            // an echo request first, then the answer
            r#"{"method":"echo","params":[],"id":"echo"}{"id":ID,"result":[{"rows":[{"name":"br0"}]}],"error":null}"#.into(),
        ]);
        let mut db = Ovsdb::connect(&dir.path().join("db.sock"), DEFAULT_TIMEOUT).unwrap();
        let r = db
            .transact(vec![
                json!({"op": "select", "table": "Bridge", "where": []}),
            ])
            .unwrap();
        assert_eq!(rows(&r[0])[0]["name"], "br0");
        let seen = h.join().unwrap();
        assert_eq!(seen[0]["method"], "transact");
        assert_eq!(seen[0]["params"][0], DB);
        assert_eq!(seen[0]["params"][1]["table"], "Bridge");
    }

    #[test]
    fn a_failed_operation_is_a_refusal_at_its_index() {
        let (dir, h) = server(vec![
            r#"{"id":ID,"result":[{},{"error":"timed out","details":"\"wait\" timed out"}],"error":null}"#.into(),
        ]);
        let mut db = Ovsdb::connect(&dir.path().join("db.sock"), DEFAULT_TIMEOUT).unwrap();
        let e = db
            .transact(vec![json!({"op": "comment"}), json!({"op": "wait"})])
            .unwrap_err();
        assert_eq!(e.refused_at(), Some(1), "{e}");
        assert!(e.to_string().contains("timed out"), "{e}");
        h.join().unwrap();
    }

    #[test]
    fn a_silent_server_is_a_timeout_within_the_bound() {
        let dir = tempdir::Dir::new();
        let path = dir.path().join("db.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let t = Instant::now();
        let mut db = Ovsdb::connect(&path, Duration::from_millis(300)).unwrap();
        let e = db.transact(vec![json!({"op": "comment"})]).unwrap_err();
        assert!(matches!(e, OvsdbError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_server_that_does_not_accept_is_a_timeout_too() {
        use nix::sys::socket::{
            bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
        };
        let dir = tempdir::Dir::new();
        let path = dir.path().join("db.sock");
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &UnixAddr::new(&path).unwrap(),
        )
        .unwrap();
        listen(&fd, Backlog::new(0).unwrap()).unwrap();
        // fill the listener's queue: nobody accepts
        let mut held = Vec::new();
        while let Ok(s) = connect_by(&path, Instant::now()) {
            held.push(s);
            assert!(held.len() < 64, "the backlog never filled");
        }
        let t = Instant::now();
        let e = Ovsdb::connect(&path, Duration::from_millis(300))
            .err()
            .unwrap();
        assert!(matches!(e, OvsdbError::Timeout { .. }), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn no_server_says_what_to_do() {
        let dir = tempdir::Dir::new();
        let e = Ovsdb::connect(&dir.path().join("db.sock"), DEFAULT_TIMEOUT)
            .err()
            .unwrap();
        assert!(e.to_string().contains("start Open vSwitch"), "{e}");
    }
}
