//! Atomic training checkpoints and resume.
//!
//! A checkpoint is a folder `DIR/checkpoints/step-NNNNNNNN/` holding the files the trainer
//! writes (model weights, optimizer moments) and `state.json` (the trainer's state plus a
//! checksum of every file). It is assembled under a temporary name and renamed into place;
//! `DIR/checkpoints/LATEST` (replaced by rename) names the newest complete one. A crash at any
//! moment therefore leaves the previous checkpoint intact, and a damaged file is reported
//! instead of being loaded.

use anyhow::{bail, Context as _, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LATEST: &str = "LATEST";
const STATE: &str = "state.json";
/// Complete checkpoints kept on disk (older ones are deleted).
const KEEP: usize = 2;

/// `state.json`: the caller's state and the checksum of each file of the checkpoint.
#[derive(Serialize, Deserialize)]
struct Envelope<S> {
    step: u64,
    checksums: BTreeMap<String, String>,
    state: S,
}

/// A checkpoint found on disk and verified.
pub struct Loaded<S> {
    /// Folder holding the checkpoint's files.
    pub dir: PathBuf,
    pub step: u64,
    pub state: S,
}

/// Folder of all checkpoints of the run in `out`.
pub fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

/// Write `bytes` to `path` atomically (temporary file in the same folder, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// FNV-1a 64-bit hash of a file's bytes, as hex (detects truncated or altered files).
fn checksum(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3));
    Ok(format!("{h:016x}"))
}

/// Save a checkpoint for `step` under `out/checkpoints/`: `write_files(tmp_dir)` writes the
/// payload files into a fresh folder, then `state` is added and the folder is published.
pub fn save<S: Serialize>(
    out: &Path,
    step: u64,
    state: &S,
    write_files: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let root = checkpoints_dir(out);
    let name = format!("step-{step:08}");
    let tmp = root.join(format!(".{name}.tmp"));
    let fin = root.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove stale {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    write_files(&tmp)?;
    let mut checksums = BTreeMap::new();
    for entry in std::fs::read_dir(&tmp)? {
        let p = entry?.path();
        checksums.insert(p.file_name().unwrap_or_default().to_string_lossy().into_owned(), checksum(&p)?);
    }
    let env = Envelope { step, checksums, state };
    write_atomic(&tmp.join(STATE), serde_json::to_string_pretty(&env)?.as_bytes())?;
    if fin.exists() {
        std::fs::remove_dir_all(&fin).with_context(|| format!("cannot replace {}", fin.display()))?;
    }
    std::fs::rename(&tmp, &fin).with_context(|| format!("cannot publish checkpoint {}", fin.display()))?;
    write_atomic(&root.join(LATEST), name.as_bytes())?;
    prune(&root, &name)?;
    Ok(fin)
}

/// Delete all but the newest `KEEP` complete checkpoints (never `latest`).
fn prune(root: &Path, latest: &str) -> Result<()> {
    let mut steps: Vec<String> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    steps.sort();
    let excess = steps.len().saturating_sub(KEEP);
    for n in steps.into_iter().take(excess).filter(|n| n != latest) {
        std::fs::remove_dir_all(root.join(&n)).with_context(|| format!("cannot delete old checkpoint {n}"))?;
    }
    Ok(())
}

/// The newest checkpoint of the run in `out`, verified against its checksums; `None` when
/// the run has none yet.
pub fn load_latest<S: DeserializeOwned>(out: &Path) -> Result<Option<Loaded<S>>> {
    let root = checkpoints_dir(out);
    let latest = root.join(LATEST);
    if !latest.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&latest).with_context(|| format!("cannot read {}", latest.display()))?;
    let dir = root.join(name.trim());
    load_dir(&dir).map(Some)
}

/// Load and verify the checkpoint folder `dir`.
pub fn load_dir<S: DeserializeOwned>(dir: &Path) -> Result<Loaded<S>> {
    let state_path = dir.join(STATE);
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("checkpoint {} is incomplete: cannot read {STATE}", dir.display()))?;
    let env: Envelope<S> = serde_json::from_str(&text)
        .with_context(|| format!("checkpoint {} is corrupted: {STATE} does not parse", dir.display()))?;
    for (file, want) in &env.checksums {
        let got = checksum(&dir.join(file))
            .with_context(|| format!("checkpoint {} is corrupted: {file} is missing", dir.display()))?;
        if &got != want {
            bail!("checkpoint {} is corrupted: {file} does not match its checksum (truncated or modified)", dir.display());
        }
    }
    Ok(Loaded { dir: dir.to_path_buf(), step: env.step, state: env.state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-ckpt-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        d
    }

    fn payload(text: &'static str) -> impl FnOnce(&Path) -> Result<()> {
        move |d: &Path| Ok(std::fs::write(d.join("model.bin"), text)?)
    }

    #[test]
    fn saves_loads_and_keeps_the_newest() {
        let out = tmp("roundtrip");
        assert!(load_latest::<u32>(&out).unwrap().is_none());
        for step in 1..=4u64 {
            save(&out, step * 10, &(step as u32), payload("weights")).unwrap();
        }
        let l = load_latest::<u32>(&out).unwrap().unwrap();
        assert_eq!((l.step, l.state), (40, 4));
        assert_eq!(std::fs::read_to_string(l.dir.join("model.bin")).unwrap(), "weights");
        let kept = std::fs::read_dir(checkpoints_dir(&out)).unwrap().filter(|e| {
            e.as_ref().unwrap().file_name().to_string_lossy().starts_with("step-")
        });
        assert_eq!(kept.count(), KEEP);
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn a_corrupted_file_is_a_clear_error() {
        let out = tmp("corrupt");
        let dir = save(&out, 7, &1u32, payload("weights")).unwrap();
        std::fs::write(dir.join("model.bin"), "weigh").unwrap();
        let e = format!("{:#}", load_latest::<u32>(&out).err().unwrap());
        assert!(e.contains("corrupted") && e.contains("model.bin"), "{e}");
        std::fs::write(dir.join(STATE), "{ not json").unwrap();
        let e = format!("{:#}", load_latest::<u32>(&out).err().unwrap());
        assert!(e.contains("corrupted") && e.contains(STATE), "{e}");
        std::fs::remove_dir_all(&out).ok();
    }

    #[test]
    fn a_failed_save_keeps_the_previous_checkpoint() {
        let out = tmp("failed");
        save(&out, 1, &1u32, payload("good")).unwrap();
        let r = save(&out, 2, &2u32, |_d: &Path| bail!("disk full"));
        assert!(r.is_err());
        let l = load_latest::<u32>(&out).unwrap().unwrap();
        assert_eq!((l.step, l.state), (1, 1));
        std::fs::remove_dir_all(&out).ok();
    }
}
