//! How an operating-system error reads in kvmnet's one-line messages. A
//! leaf module: every layer's errors use it, and it uses none of them.

/// "Operation not permitted (os error 1)" -> "Operation not permitted": the errno
/// number helps nobody reading a one-line message.
pub fn describe(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}
