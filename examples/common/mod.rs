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
//! The arguments are split by lexopt. Options of one example are read from what is left with
//! [`Common::flag`] and [`Common::value`], and [`Common::finish`] refuses anything nobody read.

// Each example compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::error::Error;
use std::io::IsTerminal;
use std::str::FromStr;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use polyexec::Backend;

#[cfg(feature = "tokio")]
pub(crate) mod http;

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
    /// Options this module does not know, in order, for the example to read.
    rest: Vec<Opt>,
}

impl Common {
    /// Parses the process arguments. On `--help` prints `usage` (the example's first line and its
    /// own options) followed by the common options, and exits.
    pub(crate) fn parse(usage: &str) -> Res<Common> {
        Self::parse_from(std::env::args_os().skip(1), usage)
    }

    fn parse_from(
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
        usage: &str,
    ) -> Res<Common> {
        use lexopt::prelude::*;

        let mut backends = Vec::new();
        let mut workers = None;
        let mut quick = false;
        let mut rest: Vec<Opt> = Vec::new();
        let mut parser = lexopt::Parser::from_args(args);
        while let Some(arg) = parser.next()? {
            match arg {
                Long("backend") => {
                    let names = parser.value()?.string()?;
                    for name in names.split(',').filter(|n| !n.is_empty()) {
                        let backend = Backend::from_name(name)?;
                        if !backends.contains(&backend) {
                            backends.push(backend);
                        }
                    }
                }
                Long("workers") => workers = Some(parser.value()?.parse()?),
                Long("quick") => quick = true,
                Long("list-backends") => {
                    // For scripts: `for b in $(cargo run --example seed -- --list-backends)`.
                    for backend in Backend::all() {
                        println!("{backend}");
                    }
                    std::process::exit(0);
                }
                Long("help") | Short('h') => {
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
                // The example's own option: whether it takes a value is only known when the
                // example asks for it, so a value that follows is kept beside it.
                Long(name) => {
                    let name = format!("--{name}");
                    let inline = parser.optional_value().map(|v| v.string()).transpose()?;
                    rest.push(Opt {
                        name,
                        inline: inline.is_some(),
                        value: inline,
                    });
                }
                Value(value) => match rest.last_mut() {
                    Some(opt) if opt.value.is_none() => opt.value = Some(value.string()?),
                    _ => return Err(unexpected(&value.string()?)),
                },
                other => return Err(other.unexpected().into()),
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
    pub(crate) fn flag(&mut self, name: &str) -> Res<bool> {
        let mut found = false;
        for opt in self.take(name) {
            match opt.value {
                Some(value) if opt.inline => {
                    return Err(format!("{name} takes no value (got `{value}`)").into());
                }
                Some(value) => return Err(unexpected(&value)),
                None => found = true,
            }
        }
        Ok(found)
    }

    /// Takes the option `name VALUE` or `name=VALUE` from the remaining arguments; the last one
    /// wins if it is given more than once.
    pub(crate) fn value<T>(&mut self, name: &str) -> Res<Option<T>>
    where
        T: FromStr,
        T::Err: Error + 'static,
    {
        let mut found = None;
        for opt in self.take(name) {
            let text = opt.value.ok_or_else(|| format!("{name} needs a value"))?;
            let parsed = text
                .parse()
                .map_err(|e: T::Err| format!("{name} {text}: {e}"))?;
            found = Some(parsed);
        }
        Ok(found)
    }

    /// Removes every occurrence of `name` from the remaining arguments, in order.
    fn take(&mut self, name: &str) -> Vec<Opt> {
        let (taken, kept) = std::mem::take(&mut self.rest)
            .into_iter()
            .partition(|opt| opt.name == name);
        self.rest = kept;
        taken
    }

    /// Fails on any argument no one has taken.
    pub(crate) fn finish(&self) -> Res {
        match self.rest.first() {
            Some(extra) => Err(unexpected(&extra.name)),
            None => Ok(()),
        }
    }
}

/// An option the common parser does not know, with the value written beside it, if any.
#[derive(Debug)]
struct Opt {
    name: String,
    /// `--name=value` or `--name value`: which of the two is known only once the example
    /// says whether `--name` takes a value.
    value: Option<String>,
    /// The value was written `--name=value`.
    inline: bool,
}

fn unexpected(arg: &str) -> Box<dyn Error> {
    format!("unexpected argument `{arg}` (try --help)").into()
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
