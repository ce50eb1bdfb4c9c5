//! Command-line handling shared by the examples: `--backend NAME` and `--workers N`.

use polyexec::Backend;

/// The options every example accepts.
#[derive(Debug)]
pub(crate) struct Common {
    /// `--backend NAME`, else `POLYEXEC_BACKEND`, else the default backend.
    pub(crate) backend: Backend,
    /// `--workers N`: threads, loop threads or processes; the backend's default if absent.
    pub(crate) workers: Option<usize>,
    /// Arguments this module does not know, in order, for the example to read.
    pub(crate) rest: Vec<String>,
}

impl Common {
    /// Parses the process arguments; prints `usage` and exits on `--help`.
    pub(crate) fn parse(usage: &str) -> Result<Common, Box<dyn std::error::Error>> {
        let mut backend = None;
        let mut workers = None;
        let mut rest = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match flag.as_str() {
                "--backend" => backend = Some(Backend::from_name(&value("--backend")?)?),
                "--workers" => workers = Some(value("--workers")?.parse()?),
                "--help" | "-h" => {
                    let names: Vec<&str> = Backend::all().iter().map(|b| b.name()).collect();
                    println!("{usage}");
                    println!("common options:");
                    println!("  --backend {}   (or POLYEXEC_BACKEND)", names.join("|"));
                    println!("  --workers N");
                    std::process::exit(0);
                }
                _ => rest.push(arg),
            }
        }
        let backend = match backend {
            Some(b) => b,
            None => Backend::from_env()?.unwrap_or_default(),
        };
        Ok(Common {
            backend,
            workers,
            rest,
        })
    }

    /// Builds the chosen executor.
    pub(crate) fn build(&self) -> Result<polyexec::AnyExecutor, polyexec::BuildError> {
        self.backend.build_with_workers(self.workers)
    }
}
