//! Random bits from the kernel (getrandom(2)), one call each, for names and
//! addresses that must not clash: a new bridge's MAC.
//! No generator is seeded: a VM start needs a few bytes once.

/// Bits for a value whose clash is detected or harmless. Without entropy
/// from the kernel (getrandom(2) fails only on a kernel older than 3.17
/// with no /dev/urandom), the time and the pid still make a clash unlikely.
pub fn os_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        now ^ (u64::from(std::process::id()) << 32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_draws_differ() {
        // 64 random bits: equal draws mean the source is stuck
        assert_ne!(os_u64(), os_u64());
    }
}
