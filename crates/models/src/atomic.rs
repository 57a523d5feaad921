//! Atomic file writes and the FNV-1a checksum: the one helper every checkpoint writer of the
//! workspace uses (model files here, the trainer's checkpoints in `train`).
//!
//! `write_atomic` writes beside the target under a temporary name, fsyncs the file, renames it
//! over the target and fsyncs the folder, so a crash leaves either the old or the new file,
//! never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// FNV-1a 64-bit offset basis and prime.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Incremental FNV-1a 64-bit hash: `h <- (h xor b) * 0x100000001b3` per byte, from
/// `0xcbf29ce484222325`. Detects truncation and accidental edits (not an adversary).
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(FNV_OFFSET)
    }
}

impl Fnv1a {
    /// Feeds `bytes`.
    pub fn eat(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }

    /// The hash as 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// FNV-1a 64-bit hash of `bytes` as 16 hex digits.
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    let mut h = Fnv1a::default();
    h.eat(bytes);
    h.hex()
}

/// Writes `bytes` to `path` atomically: temporary file `.NAME.tmp-PID` in the same folder
/// (created when missing), fsync, rename over `path`, fsync of the folder. On error the
/// temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published FNV-1a 64 test vectors (Fowler, Noll, Vo).
    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a_hex(b"foobar"), "85944171f73967e8");
        let mut h = Fnv1a::default();
        h.eat(b"foo");
        h.eat(b"bar");
        assert_eq!(h.hex(), fnv1a_hex(b"foobar"));
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("models-atomic-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let path = dir.join("sub").join("f.bin");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.bin")]);
        // A folder is never replaced by a file.
        assert!(write_atomic(&dir, b"x").is_err());
        assert!(dir.is_dir());
        std::fs::remove_dir_all(&dir).ok();
    }
}
