//! What the tracing tests share: a global `fmt` subscriber writing into a buffer they read.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where the subscriber writes: one buffer shared with the test.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Installs a subscriber at `level` as the test binary's only one, writing here.
    pub(crate) fn install(level: tracing::Level) -> Captured {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(level)
                .with_writer(move || writer.clone())
                .finish(),
        )
        .expect("the only subscriber of this test binary");
        captured
    }

    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
