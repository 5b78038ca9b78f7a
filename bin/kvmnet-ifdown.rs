//! QEMU's `downscript=`: `kvmnet-ifdown TAP`. See README.md.

fn main() -> std::process::ExitCode {
    kvmnet::main("kvmnet-ifdown", kvmnet::run_ifdown)
}
