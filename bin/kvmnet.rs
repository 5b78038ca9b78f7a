//! `kvmnet`: the unprivileged admin command. See README.md.

fn main() -> std::process::ExitCode {
    kvmnet::admin::main()
}
