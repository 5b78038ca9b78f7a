//! QEMU's `downscript=`: `kvmnet-ifdown TAP`. See README.md.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let mut log = kvmnet::log::Log::open("kvmnet-ifdown");
    match kvmnet::run_ifdown(&args, &kvmnet::caller::Env::from_process()) {
        Ok(report) => {
            log.info(&report.to_string());
            ExitCode::SUCCESS
        }
        Err(e) => {
            log.error(&anyhow::Error::from(e).to_string());
            ExitCode::FAILURE
        }
    }
}
