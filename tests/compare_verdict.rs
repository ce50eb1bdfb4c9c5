//! The rules of `compare`'s verdict (examples/compare/verdict.rs) on synthetic inputs: a clear
//! winner, a tie, overlapping noisy spreads, an impossible value, a busy machine. The tests
//! live in that module; this file makes `cargo test` run them.

// The example uses every rule; these tests need not.
#[allow(dead_code)]
#[path = "../examples/compare/verdict.rs"]
mod verdict;
