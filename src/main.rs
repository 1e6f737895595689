//! The `hookgate` binary: the gateway and its operator commands ([`hookgate::cli`]).

fn main() -> std::process::ExitCode {
    hookgate::cli::run()
}
