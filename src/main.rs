//! The `cutover` binary: parses flags and hands over to the library (`cutover::cli`).

fn main() -> std::process::ExitCode {
    cutover::cli::main()
}
