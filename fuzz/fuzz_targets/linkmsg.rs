//! `cargo fuzz run linkmsg`: the readers of kernel answers (links and
//! routes); see kvmnet_fuzz::check_linkmsg for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kvmnet_fuzz::check_linkmsg(data));
