//! Rates and bursts as people write them (`100mbit`, `10MB/s`, `64kb`), read
//! into bytes per second and bytes. Pure: no I/O, no kernel.
//!
//! tc's words mean what tc(8) and tc's parser (`get_rate`, `get_size` in
//! iproute2's tc_util.c) make of them, case-insensitively, so that a rate
//! copied from a tc recipe means the same here: `mbit` is megabits per second,
//! but `mbps` is megaBYTES per second, and in a size `kb` is 1024 bytes. The
//! `/s` forms (`MB/s`, `MiB/s`, `Mbit/s`) are case-sensitive, because there
//! the case is the only difference between a bit and a byte. Everything else
//! (a bare number, `mb`, `Mb/s`, `KB/s`) is refused, with the accepted forms
//! in the message: a rate off by a factor of eight is worse than a refusal.
//! Why these limits and the default burst: docs/rate-design.md.

use std::fmt;

/// The lowest rate: below it a full-size frame takes longer than a second to
/// pass, and DHCP and ARP time out.
pub const MIN_BYTES_PER_SEC: u64 = 1_000;
/// The highest rate: nf_tables' `limit` (the guest->host policer) multiplies
/// rate plus burst by 10^9 in 64 bits; this keeps it from overflowing with
/// any burst up to [`MAX_BURST`].
pub const MAX_BYTES_PER_SEC: u64 = 12_500_000_000;
/// tbf and nf_tables hold the burst in 32 bits.
pub const MAX_BURST: u64 = u32::MAX as u64;
/// The longest burst, in seconds of the rate: tbf reports its bucket as a
/// 32-bit count of 64 ns ticks (274 s), and kvmnet reads it back to know
/// that the qdisc is its own.
pub const MAX_BURST_SECONDS: u64 = 60;
/// The default burst is this many milliseconds of the rate...
pub const DEFAULT_BURST_MS: u64 = 10;
/// ...but at least this many full-size frames.
pub const DEFAULT_BURST_FRAMES: u64 = 2;
/// The Ethernet header: the kernel counts a frame's bytes without FCS.
pub const ETH_HLEN: u64 = 14;

const RATE_FORMS: &str = "write a rate as tc(8) does: bit, kbit, mbit, gbit, tbit (bits/s, SI), \
     kibit, mibit, gibit, tibit (IEC), bps, kbps, mbps, gbps, tbps (BYTES/s: 1mbps = 8mbit), \
     kibps…tibps; or as kbit/s, Mbit/s, Gbit/s, Tbit/s, B/s, kB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s";
const SIZE_FORMS: &str = "write a size as tc(8) does: a number of bytes, b, k or kb (1024 bytes), \
     m or mb (1024 kb), g or gb (1024 mb), kbit, mbit, gbit; or as KiB, MiB, GiB";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("rate {0:?}: not a number followed by a unit; {RATE_FORMS}")]
    RateSyntax(String),
    #[error("rate {0:?}: unknown or ambiguous unit {1:?}; {RATE_FORMS}")]
    RateUnit(String, String),
    #[error("rate {0:?}: a bare number is ambiguous (tc reads bits/s, most people bytes/s); {RATE_FORMS}")]
    RateBare(String),
    #[error("rate {text:?} is {shown}, below the lowest kvmnet sets ({min}): a full-size frame would take over a second", shown = ShowRate(*bytes), min = ShowRate(MIN_BYTES_PER_SEC))]
    RateTooLow { text: String, bytes: u64 },
    #[error("rate {0:?} is above the highest kvmnet sets ({max}); leave the rate out for no limit", max = ShowRate(MAX_BYTES_PER_SEC))]
    RateTooHigh(String),
    #[error("burst {0:?}: not a number followed by a unit; {SIZE_FORMS}")]
    SizeSyntax(String),
    #[error("burst {0:?}: unknown or ambiguous unit {1:?}; {SIZE_FORMS}")]
    SizeUnit(String, String),
    #[error("burst {0:?} is zero: nothing could ever pass")]
    BurstZero(String),
    #[error("burst {0:?} is above {MAX_BURST} bytes, the most tbf and nf_tables hold")]
    BurstTooLarge(String),
    #[error("burst {burst} is more than {MAX_BURST_SECONDS} s of rate {rate}; lower the burst or raise the rate")]
    BurstTooLong { burst: String, rate: String },
}

/// A rate limit: bytes per second, counted as the kernel counts them, and a
/// burst (`None`: the default, which depends on the MTU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    bytes_per_sec: u64,
    burst: Option<u32>,
}

impl Rate {
    /// A rate and an optional burst, as written in the config.
    pub fn parse(rate: &str, burst: Option<&str>) -> Result<Rate, RateError> {
        let bytes_per_sec = parse_rate(rate)?;
        let burst = match burst {
            Some(text) => Some((parse_size(text)?, text)),
            None => None,
        };
        Rate::checked(bytes_per_sec, rate, burst)
    }

    /// A rate from numbers, checked as [`Rate::parse`] checks them.
    pub fn new(bytes_per_sec: u64, burst: Option<u64>) -> Result<Rate, RateError> {
        let shown = burst.map(|b| Bytes(b).to_string());
        Rate::checked(
            check_rate(&ShowRate(bytes_per_sec).to_string(), bytes_per_sec)?,
            &ShowRate(bytes_per_sec).to_string(),
            burst.zip(shown.as_deref()),
        )
    }

    /// `burst`: the bytes and how they were written.
    fn checked(
        bytes_per_sec: u64,
        rate_text: &str,
        burst: Option<(u64, &str)>,
    ) -> Result<Rate, RateError> {
        let burst = match burst {
            None => None,
            Some((b, text)) => {
                let b = check_burst(text, b)?;
                if u64::from(b) > bytes_per_sec.saturating_mul(MAX_BURST_SECONDS) {
                    return Err(RateError::BurstTooLong {
                        burst: text.to_owned(),
                        rate: rate_text.to_owned(),
                    });
                }
                Some(b)
            }
        };
        Ok(Rate {
            bytes_per_sec,
            burst,
        })
    }

    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    /// The burst as configured, `None` for the default.
    pub fn configured_burst(&self) -> Option<u32> {
        self.burst
    }

    /// The burst in bytes on a link of this MTU: the configured one, or
    /// [`DEFAULT_BURST_MS`] of the rate but at least
    /// [`DEFAULT_BURST_FRAMES`] full-size frames.
    pub fn burst(&self, mtu: u32) -> u32 {
        self.burst
            .unwrap_or_else(|| default_burst(self.bytes_per_sec, mtu))
    }
}

/// Shown as the config would say it: `rate 10mbit burst 64kb`.
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", ShowRate(self.bytes_per_sec))?;
        if let Some(b) = self.burst {
            write!(f, " burst {}", Bytes(u64::from(b)))?;
        }
        Ok(())
    }
}

pub fn default_burst(bytes_per_sec: u64, mtu: u32) -> u32 {
    let time = bytes_per_sec.saturating_mul(DEFAULT_BURST_MS) / 1000;
    let frames = DEFAULT_BURST_FRAMES * (u64::from(mtu) + ETH_HLEN);
    u32::try_from(time.max(frames)).unwrap_or(u32::MAX)
}

fn check_rate(text: &str, bytes: u64) -> Result<u64, RateError> {
    if bytes < MIN_BYTES_PER_SEC {
        return Err(RateError::RateTooLow {
            text: text.to_owned(),
            bytes,
        });
    }
    if bytes > MAX_BYTES_PER_SEC {
        return Err(RateError::RateTooHigh(text.to_owned()));
    }
    Ok(bytes)
}

fn check_burst(text: &str, bytes: u64) -> Result<u32, RateError> {
    if bytes == 0 {
        return Err(RateError::BurstZero(text.to_owned()));
    }
    u32::try_from(bytes).map_err(|_| RateError::BurstTooLarge(text.to_owned()))
}

/// A number as written: its digits without the point, and how many of them
/// follow the point. `None` unless it is digits with at most one point and
/// at most 18 digits in all (more is no rate anyone means).
fn number(s: &str) -> Option<(u128, u32)> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    if int.len() + frac.len() > 18 {
        return None;
    }
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    Some((digits, frac.len() as u32))
}

/// Splits "1.5 mbit" into its number and its unit ("" when there is none).
fn split(s: &str) -> (&str, &str) {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim_start())
}

/// bits per unit of the rate units tc knows (tc_util.c's table), compared
/// without regard to case as tc does.
const TC_RATES: [(&str, u128); 18] = [
    ("bit", 1),
    ("kbit", 1_000),
    ("mbit", 1_000_000),
    ("gbit", 1_000_000_000),
    ("tbit", 1_000_000_000_000),
    ("kibit", 1 << 10),
    ("mibit", 1 << 20),
    ("gibit", 1 << 30),
    ("tibit", 1 << 40),
    ("bps", 8),
    ("kbps", 8_000),
    ("mbps", 8_000_000),
    ("gbps", 8_000_000_000),
    ("tbps", 8_000_000_000_000),
    ("kibps", 8 << 10),
    ("mibps", 8 << 20),
    ("gibps", 8 << 30),
    ("tibps", 8 << 40),
];

/// bits per unit of the `/s` forms, compared exactly: the case tells a bit
/// (`bit`) from a byte (`B`) and an SI prefix from an IEC one.
const PER_SECOND: [(&str, u128); 17] = [
    ("kbit/s", 1_000),
    ("Mbit/s", 1_000_000),
    ("Gbit/s", 1_000_000_000),
    ("Tbit/s", 1_000_000_000_000),
    ("bit/s", 1),
    ("B/s", 8),
    ("kB/s", 8_000),
    ("MB/s", 8_000_000),
    ("GB/s", 8_000_000_000),
    ("TB/s", 8_000_000_000_000),
    ("KiB/s", 8 << 10),
    ("MiB/s", 8 << 20),
    ("GiB/s", 8 << 30),
    ("TiB/s", 8 << 40),
    ("Kibit/s", 1 << 10),
    ("Mibit/s", 1 << 20),
    ("Gibit/s", 1 << 30),
];

/// Bytes per second: what [`Rate`] is made of, unchecked against the limits.
fn rate_bytes(text: &str) -> Result<u64, RateError> {
    let (num, unit) = split(text);
    let (digits, frac) = number(num).ok_or_else(|| RateError::RateSyntax(text.to_owned()))?;
    if unit.is_empty() {
        return Err(RateError::RateBare(text.to_owned()));
    }
    let bits = TC_RATES
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(unit))
        .or_else(|| PER_SECOND.iter().find(|(u, _)| *u == unit))
        .map(|&(_, bits)| bits)
        .ok_or_else(|| RateError::RateUnit(text.to_owned(), unit.to_owned()))?;
    // Whole bytes, rounded down as tc rounds them; the product fits in 128
    // bits (at most 18 digits times 2^43).
    let bytes = digits * bits / (8 * 10u128.pow(frac));
    u64::try_from(bytes).map_err(|_| RateError::RateTooHigh(text.to_owned()))
}

/// A rate as written, in bytes per second, within the limits.
pub fn parse_rate(text: &str) -> Result<u64, RateError> {
    let bytes = rate_bytes(text)?;
    check_rate(text, bytes)
}

/// bytes per unit of the size units tc knows (tc_util.c's `get_size`: binary
/// multiples), without regard to case, and the unambiguous IEC names.
const SIZES: [(&str, u128); 14] = [
    ("b", 1),
    ("k", 1 << 10),
    ("kb", 1 << 10),
    ("m", 1 << 20),
    ("mb", 1 << 20),
    ("g", 1 << 30),
    ("gb", 1 << 30),
    ("kbit", 1 << 7),
    ("mbit", 1 << 17),
    ("gbit", 1 << 27),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("", 1),
];

/// A size as written (a burst), in bytes: 1 to [`MAX_BURST`].
pub fn parse_size(text: &str) -> Result<u64, RateError> {
    let (num, unit) = split(text);
    let (digits, frac) = number(num).ok_or_else(|| RateError::SizeSyntax(text.to_owned()))?;
    let scale = SIZES
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(unit))
        .map(|&(_, s)| s)
        .ok_or_else(|| RateError::SizeUnit(text.to_owned(), unit.to_owned()))?;
    let bytes = digits * scale / 10u128.pow(frac);
    let bytes = u64::try_from(bytes).map_err(|_| RateError::BurstTooLarge(text.to_owned()))?;
    check_burst(text, bytes).map(u64::from)
}

/// A rate in bytes per second, shown in tc's words with the largest unit
/// that keeps it exact: `10mbit`, `1500kbit`, `12345bps`. It reads back as
/// the same number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowRate(pub u64);

impl fmt::Display for ShowRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = u128::from(self.0) * 8;
        for (unit, scale) in [
            ("tbit", 1_000_000_000_000u128),
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if bits % scale == 0 {
                return write!(f, "{}{unit}", bits / scale);
            }
        }
        write!(f, "{}bps", self.0)
    }
}

/// A size in bytes, shown in tc's words: `64kb` (65,536 bytes), `1500b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [("gb", 1u64 << 30), ("mb", 1 << 20), ("kb", 1 << 10)] {
            if self.0 != 0 && self.0 % scale == 0 {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}b", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tc_rate_words_mean_what_tc_makes_of_them() {
        for (text, bytes) in [
            ("100mbit", 12_500_000),
            ("1gbit", 125_000_000),
            ("500kbit", 62_500),
            ("1.5mbit", 187_500),
            ("10Mbit", 1_250_000),
            ("10MBIT", 1_250_000),
            // tc(8): mbps is megaBYTES per second
            ("100mbps", 100_000_000),
            ("1MiBps", 1 << 20),
            ("8kibit", 1 << 10),
            ("64000bit", 8_000),
            ("8000bps", 8_000),
            ("100gbit", 12_500_000_000),
            // rounded down to whole bytes, as tc does
            ("8.001kbit", 1_000),
        ] {
            assert_eq!(parse_rate(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn per_second_forms_tell_bits_from_bytes_by_case() {
        for (text, bytes) in [
            ("10MB/s", 10_000_000),
            ("10MiB/s", 10 << 20),
            ("10 MB/s", 10_000_000),
            ("100Mbit/s", 12_500_000),
            ("1Gbit/s", 125_000_000),
            ("500kB/s", 500_000),
            ("64KiB/s", 64 << 10),
            ("2.5GB/s", 2_500_000_000),
        ] {
            assert_eq!(parse_rate(text), Ok(bytes), "{text}");
        }
        for (text, unit) in [
            ("10Mb/s", "Mb/s"),
            ("10mb/s", "mb/s"),
            ("10KB/s", "KB/s"),
            ("10mB/s", "mB/s"),
            ("10MBit/s", "MBit/s"),
            ("10mb", "mb"),
            ("10m", "m"),
            ("10 megabits", "megabits"),
            ("10mbit/", "mbit/"),
            ("10mbits", "mbits"),
        ] {
            assert_eq!(
                parse_rate(text),
                Err(RateError::RateUnit(text.into(), unit.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn refusals_say_why_in_one_line() {
        let msg = |t: &str| parse_rate(t).unwrap_err().to_string();
        assert!(
            msg("100").contains("bare number is ambiguous"),
            "{}",
            msg("100")
        );
        assert!(msg("10mb").contains("1mbps = 8mbit"));
        for bad in [
            "", "mbit", "-10mbit", "+10mbit", "1e6bit", "1.mbit", ".5mbit", "1..5mbit", "0x10mbit",
        ] {
            let m = msg(bad);
            assert!(!m.contains('\n'), "{m}");
            assert!(
                matches!(
                    parse_rate(bad),
                    Err(RateError::RateSyntax(_) | RateError::RateUnit(..))
                ),
                "{bad}: {m}"
            );
        }
        assert!(matches!(
            parse_rate("0mbit"),
            Err(RateError::RateTooLow { bytes: 0, .. })
        ));
        assert!(
            msg("7kbit").contains("below the lowest kvmnet sets (8kbit)"),
            "{}",
            msg("7kbit")
        );
        assert_eq!(parse_rate("8kbit"), Ok(MIN_BYTES_PER_SEC));
        assert_eq!(parse_rate("100gbit"), Ok(MAX_BYTES_PER_SEC));
        assert!(matches!(
            parse_rate("101gbit"),
            Err(RateError::RateTooHigh(_))
        ));
        // 18 digits times the largest unit still fits the arithmetic
        assert!(matches!(
            parse_rate("999999999999999999tibps"),
            Err(RateError::RateTooHigh(_))
        ));
        assert!(matches!(
            parse_rate("9999999999999999999bit"),
            Err(RateError::RateSyntax(_))
        ));
    }

    #[test]
    fn sizes_are_tcs_binary_multiples() {
        for (text, bytes) in [
            ("64kb", 65_536),
            ("64k", 65_536),
            ("64KB", 65_536),
            ("64KiB", 65_536),
            ("1.5k", 1_536),
            ("1m", 1 << 20),
            ("1mb", 1 << 20),
            ("1MiB", 1 << 20),
            ("8kbit", 1_024),
            ("1mbit", 131_072),
            ("3000", 3_000),
            ("3000b", 3_000),
            ("3000 B", 3_000),
            ("3gb", 3 << 30),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        assert!(matches!(parse_size("0"), Err(RateError::BurstZero(_))));
        assert!(matches!(parse_size("0.1b"), Err(RateError::BurstZero(_))));
        assert!(matches!(
            parse_size("4gb"),
            Err(RateError::BurstTooLarge(_))
        ));
        assert_eq!(parse_size("4294967295"), Ok(MAX_BURST));
        assert!(matches!(parse_size("-1k"), Err(RateError::SizeSyntax(_))));
        assert!(matches!(parse_size("64kB/s"), Err(RateError::SizeUnit(..))));
        assert!(matches!(
            parse_size("64 kilobytes"),
            Err(RateError::SizeUnit(..))
        ));
    }

    #[test]
    fn a_rate_with_its_burst() {
        let r = Rate::parse("10mbit", Some("64kb")).unwrap();
        assert_eq!((r.bytes_per_sec(), r.burst(1500)), (1_250_000, 65_536));
        assert_eq!(r.to_string(), "10mbit burst 64kb");
        let r = Rate::parse("100mbit", None).unwrap();
        assert_eq!(r.to_string(), "100mbit");
        assert_eq!(r.configured_burst(), None);
        let e = Rate::parse("8kbit", Some("1mb")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "burst 1mb is more than 60 s of rate 8kbit; lower the burst or raise the rate"
        );
        assert!(Rate::parse("8kbit", Some("60000")).is_ok());
        assert!(Rate::new(0, None).is_err());
        assert!(Rate::new(1_000, Some(0)).is_err());
    }

    /// Ten milliseconds of the rate, never under two full-size frames.
    #[test]
    fn the_default_burst() {
        assert_eq!(default_burst(1_250_000, 1500), 12_500);
        assert_eq!(default_burst(12_500_000, 1500), 125_000);
        assert_eq!(default_burst(125_000, 1500), 3_028);
        assert_eq!(default_burst(1_250_000, 9000), 18_028);
        assert_eq!(default_burst(MAX_BYTES_PER_SEC, 1500), 125_000_000);
        let r = Rate::parse("1mbit", None).unwrap();
        assert_eq!(r.burst(1500), 3_028);
        assert_eq!(
            Rate::parse("1mbit", Some("2000")).unwrap().burst(9000),
            2_000
        );
    }

    #[test]
    fn shown_rates_and_sizes() {
        for (bytes, shown) in [
            (12_500_000, "100mbit"),
            (125_000_000, "1gbit"),
            (187_500, "1500kbit"),
            (1_000, "8kbit"),
            (100_000_000, "800mbit"),
            (12_345, "12345bps"),
            (125_000_000_000, "1tbit"),
        ] {
            assert_eq!(ShowRate(bytes).to_string(), shown);
        }
        for (bytes, shown) in [
            (65_536, "64kb"),
            (1_536, "1536b"),
            (1 << 30, "1gb"),
            (3 << 20, "3mb"),
        ] {
            assert_eq!(Bytes(bytes).to_string(), shown);
        }
    }

    fn rate_unit() -> impl Strategy<Value = &'static str> {
        prop::sample::select(
            TC_RATES
                .iter()
                .map(|(u, _)| *u)
                .chain(PER_SECOND.iter().map(|(u, _)| *u))
                .collect::<Vec<_>>(),
        )
    }

    proptest! {
        /// Every rate kvmnet accepts is shown in a form that reads back as
        /// the same number.
        #[test]
        fn shown_rates_read_back(bytes in MIN_BYTES_PER_SEC..=MAX_BYTES_PER_SEC) {
            prop_assert_eq!(parse_rate(&ShowRate(bytes).to_string()), Ok(bytes));
        }

        #[test]
        fn shown_sizes_read_back(bytes in 1..=MAX_BURST) {
            prop_assert_eq!(parse_size(&Bytes(bytes).to_string()), Ok(bytes));
        }

        /// Whatever is written with a known unit is either refused for its
        /// size or read as a number whose display reads back the same.
        #[test]
        fn written_rates_round_trip(
            int in 0u64..1_000_000,
            frac in proptest::option::of(0u32..1000),
            unit in rate_unit(),
        ) {
            let text = match frac {
                Some(f) => format!("{int}.{f:03}{unit}"),
                None => format!("{int}{unit}"),
            };
            match parse_rate(&text) {
                Ok(bytes) => {
                    let shown = ShowRate(bytes).to_string();
                    prop_assert_eq!(parse_rate(&shown), Ok(bytes));
                    let r = Rate::parse(&text, None).unwrap();
                    prop_assert_eq!(Rate::parse(&r.to_string(), None), Ok(r));
                }
                Err(e) => prop_assert!(
                    matches!(e, RateError::RateTooLow { .. } | RateError::RateTooHigh(_)),
                    "{}: {}", text, e
                ),
            }
        }

        /// A rate and a burst shown together read back as the same pair.
        #[test]
        fn rates_with_bursts_round_trip(
            bytes in MIN_BYTES_PER_SEC..=MAX_BYTES_PER_SEC,
            burst in 1..=MAX_BURST,
        ) {
            match Rate::new(bytes, Some(burst)) {
                Ok(r) => {
                    let shown = r.to_string();
                    let (rate, burst) = shown.split_once(" burst ").unwrap();
                    prop_assert_eq!(Rate::parse(rate, Some(burst)), Ok(r));
                }
                Err(e) => {
                    prop_assert!(burst > bytes * MAX_BURST_SECONDS, "{}", e);
                }
            }
        }

        /// Never a panic, whatever the text.
        #[test]
        fn any_text_is_read_or_refused(text in "\\PC{0,24}") {
            let _ = parse_rate(&text);
            let _ = parse_size(&text);
        }
    }
}
