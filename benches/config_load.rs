//! How long `Config::load` takes on the shipped config, the file every VM
//! start reads. Prints figures; asserts nothing about time.
//!
//! ```text
//! cargo bench --bench config_load
//! ```
//!
//! Two figures: the first load in a fresh process (what a VM start pays: the
//! parser's code and data are touched for the first time), as the median over
//! fresh processes of this bench, and a warm load, as the median over batches
//! in one process. `KVMNET_CONFIG_BENCH=path` measures another file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kvmnet::config::Config;

const PROCESSES: usize = 200;
const BATCHES: usize = 50;
const PER_BATCH: usize = 200;

fn config_path() -> PathBuf {
    std::env::var_os("KVMNET_CONFIG_BENCH").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/kvmnet.toml"),
        PathBuf::from,
    )
}

fn load(path: &Path) {
    let c = Config::load(path, false).expect("the config loads");
    assert!(c.source.is_some(), "{} was not read", path.display());
    std::hint::black_box(c);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let path = config_path();
    if std::env::args().nth(1).as_deref() == Some("--once") {
        let t = Instant::now();
        load(&path);
        println!("{}", t.elapsed().as_nanos());
        return;
    }
    // cargo bench passes `--bench`; nothing else is taken
    let me = std::env::current_exe().expect("own path");
    let first: Vec<f64> = (0..PROCESSES)
        .map(|_| {
            let out = Command::new(&me)
                .arg("--once")
                .output()
                .expect("runs itself");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<f64>()
                .expect("nanoseconds")
        })
        .collect();
    let warm: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..PER_BATCH {
                load(&path);
            }
            t.elapsed().as_nanos() as f64 / PER_BATCH as f64
        })
        .collect();
    println!("Config::load({})", path.display());
    println!(
        "  first load in a fresh process: {:.1} µs (median of {PROCESSES} processes)",
        median(first) / 1000.0
    );
    println!(
        "  warm load: {:.1} µs (median of {BATCHES} batches of {PER_BATCH})",
        median(warm) / 1000.0
    );
}
