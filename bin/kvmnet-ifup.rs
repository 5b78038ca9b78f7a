//! QEMU's `script=`: `kvmnet-ifup TAP`. See README.md.

fn main() -> std::process::ExitCode {
    kvmnet::main("kvmnet-ifup", kvmnet::run_ifup)
}
