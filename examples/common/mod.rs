//! Command-line handling and small helpers shared by the examples.
//!
//! Every example accepts:
//!
//! - `--backend NAME` (else `POLYEXEC_BACKEND`, else the default backend); `compare` takes several,
//!   repeated or as a comma list;
//! - `--workers N`: threads, loop threads or processes (the backend's default if absent);
//! - `--quick`: small sizes, so the example finishes in a few seconds (for CI);
//! - `--list-backends`: print the backends compiled into this build, one per line, and exit;
//! - `--help`.
//!
//! Options of one example are read from what is left with [`Common::flag`] and
//! [`Common::value`], and [`Common::finish`] refuses anything nobody read.

// Each example compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::error::Error;
use std::io::IsTerminal;
use std::str::FromStr;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use polyexec::Backend;

/// The result type of the examples' `main`.
pub(crate) type Res<T = ()> = Result<T, Box<dyn Error>>;

/// The options every example accepts, and the arguments left for the example itself.
#[derive(Debug)]
pub(crate) struct Common {
    /// Backends named with `--backend`, in order, without repeats; empty if none was named.
    pub(crate) backends: Vec<Backend>,
    /// `--workers N`: threads, loop threads or processes; the backend's default if absent.
    pub(crate) workers: Option<usize>,
    /// `--quick`: small sizes, finishing in a few seconds.
    pub(crate) quick: bool,
    /// Arguments this module does not know, in order, for the example to read.
    rest: Vec<String>,
}

impl Common {
    /// Parses the process arguments. On `--help` prints `usage` (the example's first line and its
    /// own options) followed by the common options, and exits.
    pub(crate) fn parse(usage: &str) -> Res<Common> {
        Self::parse_from(std::env::args().skip(1), usage)
    }

    fn parse_from(args: impl IntoIterator<Item = String>, usage: &str) -> Res<Common> {
        let mut backends = Vec::new();
        let mut workers = None;
        let mut quick = false;
        let mut rest = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = split_inline(&arg);
            let mut value = |name: &str| -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match flag {
                "--backend" => {
                    for name in value("--backend")?.split(',').filter(|n| !n.is_empty()) {
                        let backend = Backend::from_name(name)?;
                        if !backends.contains(&backend) {
                            backends.push(backend);
                        }
                    }
                }
                "--workers" => workers = Some(value("--workers")?.parse()?),
                "--quick" => quick = true,
                "--list-backends" => {
                    // For scripts: `for b in $(cargo run --example seed -- --list-backends)`.
                    for backend in Backend::all() {
                        println!("{backend}");
                    }
                    std::process::exit(0);
                }
                "--help" | "-h" => {
                    println!("{}", usage.trim_end());
                    println!();
                    println!("common options:");
                    println!(
                        "  --backend {}   (or POLYEXEC_BACKEND)",
                        backend_names().join("|")
                    );
                    println!("  --workers N       threads, loop threads or worker processes");
                    println!("  --quick           small sizes: finishes in a few seconds");
                    println!("  --list-backends   print the backends compiled in, and exit");
                    std::process::exit(0);
                }
                _ => rest.push(arg),
            }
        }
        Ok(Common {
            backends,
            workers,
            quick,
            rest,
        })
    }

    /// The one backend to run on: the one named, else `POLYEXEC_BACKEND`, else the default.
    pub(crate) fn backend(&self) -> Res<Backend> {
        match self.backends.as_slice() {
            [] => Ok(Backend::from_env()?.unwrap_or_default()),
            [one] => Ok(*one),
            _ => Err("this example runs on one backend at a time: name one with --backend".into()),
        }
    }

    /// Builds an executor of [`backend`](Self::backend) with `--workers`.
    pub(crate) fn build(&self) -> Res<polyexec::AnyExecutor> {
        Ok(self.backend()?.build_with_workers(self.workers)?)
    }

    /// `full` normally, `quick` with `--quick`.
    pub(crate) fn size<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }

    /// Takes the flag `name` (e.g. `"--json"`) from the remaining arguments.
    pub(crate) fn flag(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|arg| arg != name);
        self.rest.len() != before
    }

    /// Takes the option `name VALUE` or `name=VALUE` from the remaining arguments; the last one
    /// wins if it is given more than once.
    pub(crate) fn value<T>(&mut self, name: &str) -> Res<Option<T>>
    where
        T: FromStr,
        T::Err: Error + 'static,
    {
        let mut found = None;
        let mut i = 0;
        while i < self.rest.len() {
            let (flag, inline) = split_inline(&self.rest[i]);
            if flag != name {
                i += 1;
                continue;
            }
            let text = match inline {
                Some(text) => {
                    self.rest.remove(i);
                    text
                }
                None if i + 1 < self.rest.len() => {
                    self.rest.remove(i);
                    self.rest.remove(i)
                }
                None => return Err(format!("{name} needs a value").into()),
            };
            let parsed = text
                .parse()
                .map_err(|e: T::Err| format!("{name} {text}: {e}"))?;
            found = Some(parsed);
        }
        Ok(found)
    }

    /// Fails on any argument no one has taken.
    pub(crate) fn finish(&self) -> Res {
        match self.rest.first() {
            Some(extra) => Err(format!("unexpected argument `{extra}` (try --help)").into()),
            None => Ok(()),
        }
    }
}

/// `--flag=value` → (`--flag`, `Some("value")`); anything else → (`arg`, `None`).
fn split_inline(arg: &str) -> (&str, Option<String>) {
    match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
        _ => (arg, None),
    }
}

/// The names of the backends compiled in.
pub(crate) fn backend_names() -> Vec<&'static str> {
    Backend::all().iter().map(|b| b.name()).collect()
}

/// A progress bar on stderr, hidden when stdout is not a terminal (CI logs, pipes, `--json`).
pub(crate) fn progress_bar(len: u64, template: &str) -> ProgressBar {
    let target = if std::io::stdout().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// `1234567` → `"1,234,567"`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The CPU kernel of `cpu_bound` and `compare`: how many primes in `lo..hi`, by trial division,
/// deliberately CPU-bound. A plain `fn` item is a portable task like a non-capturing closure.
pub(crate) fn count_primes((lo, hi): (u64, u64)) -> u64 {
    fn is_prime(n: u64) -> bool {
        if n < 4 {
            return n >= 2;
        }
        if n % 2 == 0 {
            return false;
        }
        let mut divisor = 3;
        while divisor * divisor <= n {
            if n % divisor == 0 {
                return false;
            }
            divisor += 2;
        }
        true
    }
    (lo..hi).filter(|&n| is_prime(n)).count() as u64
}

/// `0..limit` in `chunks` ranges of equal width (the last one may be shorter).
pub(crate) fn ranges(limit: u64, chunks: u64) -> Vec<(u64, u64)> {
    let width = limit.div_ceil(chunks.max(1)).max(1);
    (0..limit)
        .step_by(width as usize)
        .map(|lo| (lo, (lo + width).min(limit)))
        .collect()
}
