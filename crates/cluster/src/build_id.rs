//! The build fingerprint: a hash of the executable file's contents.
//!
//! Two machines running copies of the same file get the same fingerprint, whatever their paths,
//! inodes or modification times; a rebuilt program (any byte changed) gets another. Tasks are
//! routed by it (only workers of the submitter's build pull them) and every task frame carries
//! it, so a task address is only ever resolved in the executable it was computed in.

use std::fmt;
use std::io::Read;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The first 16 bytes of SHA-256 over the executable's contents.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) struct BuildId(pub(crate) [u8; 16]);

impl BuildId {
    /// This process's fingerprint, computed once (reading the executable takes some
    /// milliseconds per ten megabytes).
    pub(crate) fn current() -> Result<BuildId, String> {
        static CURRENT: OnceLock<Result<BuildId, String>> = OnceLock::new();
        CURRENT.get_or_init(compute).clone()
    }

    /// Lower-case hex, 32 characters: usable in subjects and consumer names.
    pub(crate) fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

fn compute() -> Result<BuildId, String> {
    // `/proc/self/exe` names the file this process was started from even if it was renamed
    // since; elsewhere, `current_exe` is the best available.
    let path = if cfg!(target_os = "linux") {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()
            .map_err(|e| format!("cannot find this program's executable: {e}"))?
    };
    let mut file = std::fs::File::open(&path)
        .map_err(|e| format!("cannot read this program's executable for its fingerprint: {e}"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| {
            format!("cannot read this program's executable for its fingerprint: {e}")
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    Ok(BuildId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_files_contents_hash() {
        let id = BuildId::current().unwrap();
        let bytes = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(&Sha256::digest(&bytes)[..16], &id.0);
        assert_eq!(id.hex().len(), 32);
    }
}
