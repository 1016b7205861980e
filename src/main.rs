//! The `cutover` binary: parses flags and hands over to the library (`cutover::cli`).

// The data path allocates and frees small buffers on every request, often on different worker
// threads; mimalloc does that with far less CPU than glibc's malloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cutover::cli::main()
}
