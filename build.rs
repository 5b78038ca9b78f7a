//! Links GCC's unwinder (libgcc_eh.a) into the binaries instead of loading
//! libgcc_s.so.1 at every start.
//!
//! Rust's std names libgcc_s for unwinding; kvmnet's release build aborts on
//! panic and only needs the unwinder for a backtrace, but std links it all the
//! same. Loading libgcc_s costs every exec one more library to map and its
//! constructor, which runs CPUID (a VM exit on a virtual machine). With the
//! static archive linked ahead of std's `-lgcc_s`, `--as-needed` drops
//! libgcc_s from the binaries' NEEDED list; glibc itself stays dynamic, so NSS
//! (sudo users' groups, ACL names) keeps working.
//!
//! The price: GCC 12 and later build the archive to find unwind tables with
//! glibc's `_dl_find_object`, which sets the binaries' glibc floor to 2.35
//! where the toolchain has it (docs/design.md, "glibc"; the measurement that
//! pays for it is in docs/performance.md; README.md, "Install", states the
//! floor).
//!
//! Where the archive is not found (another toolchain, cross builds) nothing
//! changes: the binaries link libgcc_s as usual.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let gnu_linux = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let crt_static = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if !gnu_linux || crt_static || var("TARGET") != var("HOST") {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let Ok(out) = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    // Without the archive the compiler echoes the bare file name back.
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let Some(dir) = path
        .parent()
        .filter(|_| path.is_absolute() && path.is_file())
    else {
        return;
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
}
