//! Atomic, verified training checkpoints and resume.
//!
//! A checkpoint is a folder `DIR/checkpoints/step-NNNNNNNN/` holding the files the trainer
//! writes (model weights, optimizer moments) and `state.json` (the trainer's state plus a
//! checksum of every file). It is assembled under a temporary name and renamed into place;
//! `DIR/checkpoints/LATEST` (replaced by rename) names the newest complete one. A crash at any
//! moment therefore leaves the previous checkpoint intact, and a damaged file is reported
//! instead of being loaded: every payload file is checksummed in `state.json`, and
//! `state.json` itself carries a digest of its own content (step, checksums and state), so an
//! edited loader position or iteration count is refused too. `LATEST` must name a
//! `step-NNNNNNNN` folder inside `DIR/checkpoints` (never a path elsewhere).

use crate::error::{io_error, Error, Result};
use models::atomic::{fnv1a_hex, write_atomic};
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

/// Key of `state.json` holding the digest of the rest of the file.
const DIGEST: &str = "digest";

/// Digest of an envelope given as a JSON object without its `digest` key (compact,
/// canonical serialisation of the parsed value, so formatting does not matter).
fn digest_of(v: &serde_json::Value) -> Result<String> {
    Ok(fnv1a_hex(serde_json::to_string(v)?.as_bytes()))
}

/// Whether `name` is a checkpoint folder name written by [`save`] (`step-` and 8+ digits).
fn is_step_name(name: &str) -> bool {
    name.strip_prefix("step-")
        .is_some_and(|d| d.len() >= 8 && d.bytes().all(|b| b.is_ascii_digit()))
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

/// FNV-1a 64-bit hash of a file's bytes, as hex (detects truncated or altered files).
fn checksum(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(io_error("cannot read", path))?;
    Ok(fnv1a_hex(&bytes))
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
        std::fs::remove_dir_all(&tmp).map_err(io_error("cannot remove stale", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_error("cannot create", &tmp))?;
    write_files(&tmp)?;
    let mut checksums = BTreeMap::new();
    for entry in std::fs::read_dir(&tmp).map_err(io_error("cannot list", &tmp))? {
        let p = entry.map_err(io_error("cannot list", &tmp))?.path();
        checksums.insert(
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            checksum(&p)?,
        );
    }
    let mut env = serde_json::to_value(Envelope {
        step,
        checksums,
        state,
    })?;
    let digest = digest_of(&env)?;
    env.as_object_mut()
        .ok_or_else(|| Error::Checkpoint("checkpoint state is not a JSON object".into()))?
        .insert(DIGEST.into(), digest.into());
    let state_path = tmp.join(STATE);
    write_atomic(&state_path, serde_json::to_string_pretty(&env)?.as_bytes())
        .map_err(io_error("cannot write", &state_path))?;
    if fin.exists() {
        std::fs::remove_dir_all(&fin).map_err(io_error("cannot replace", &fin))?;
    }
    std::fs::rename(&tmp, &fin).map_err(io_error("cannot publish checkpoint", &fin))?;
    let latest = root.join(LATEST);
    write_atomic(&latest, name.as_bytes()).map_err(io_error("cannot write", &latest))?;
    prune(&root, &name)?;
    Ok(fin)
}

/// Delete all but the newest `KEEP` complete checkpoints (never `latest`).
fn prune(root: &Path, latest: &str) -> Result<()> {
    let mut steps: Vec<String> = std::fs::read_dir(root)
        .map_err(io_error("cannot list", root))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    steps.sort();
    let excess = steps.len().saturating_sub(KEEP);
    for n in steps.into_iter().take(excess).filter(|n| n != latest) {
        let old = root.join(&n);
        std::fs::remove_dir_all(&old).map_err(io_error("cannot delete old checkpoint", &old))?;
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
    let name = std::fs::read_to_string(&latest).map_err(io_error("cannot read", &latest))?;
    let name = name.trim();
    if !is_step_name(name) {
        return Err(Error::Checkpoint(format!(
            "{} is corrupted: it names {name:?}, not a checkpoint folder step-NNNNNNNN of {}",
            latest.display(),
            root.display()
        )));
    }
    let loaded = load_dir::<S>(&root.join(name))?;
    if format!("step-{:08}", loaded.step) != name {
        return Err(Error::Checkpoint(format!(
            "{} is corrupted: it names {name} but that checkpoint is of step {}",
            latest.display(),
            loaded.step
        )));
    }
    Ok(Some(loaded))
}

/// Load and verify the checkpoint folder `dir`.
pub fn load_dir<S: DeserializeOwned>(dir: &Path) -> Result<Loaded<S>> {
    let state_path = dir.join(STATE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| {
        Error::Checkpoint(format!(
            "checkpoint {} is incomplete: cannot read {STATE}: {e}",
            dir.display()
        ))
    })?;
    let corrupted = || {
        format!(
            "checkpoint {} is corrupted: {STATE} does not parse",
            dir.display()
        )
    };
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", corrupted())))?;
    let digest = value.as_object_mut().and_then(|o| o.remove(DIGEST));
    match digest {
        Some(serde_json::Value::String(d)) if d == digest_of(&value)? => {}
        Some(_) => return Err(Error::Checkpoint(format!(
            "checkpoint {} is corrupted: {STATE} does not match its digest (edited or damaged)",
            dir.display()
        ))),
        None => return Err(Error::Checkpoint(format!("checkpoint {} is corrupted: {STATE} has no digest (edited, or written by an older version)", dir.display()))),
    }
    let env: Envelope<S> = serde_json::from_value(value)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", corrupted())))?;
    for (file, want) in &env.checksums {
        if file.is_empty() || file == STATE || file.contains(['/', '\\']) || file.starts_with('.') {
            return Err(Error::Checkpoint(format!(
                "checkpoint {} is corrupted: {STATE} lists the file {file:?}",
                dir.display()
            )));
        }
        let got = checksum(&dir.join(file)).map_err(|_| {
            Error::Checkpoint(format!(
                "checkpoint {} is corrupted: {file} is missing",
                dir.display()
            ))
        })?;
        if &got != want {
            return Err(Error::Checkpoint(format!("checkpoint {} is corrupted: {file} does not match its checksum (truncated or modified)", dir.display())));
        }
    }
    for entry in std::fs::read_dir(dir).map_err(io_error("cannot list", dir))? {
        let name = entry
            .map_err(io_error("cannot list", dir))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name != STATE && !env.checksums.contains_key(&name) {
            return Err(Error::Checkpoint(format!(
                "checkpoint {} is corrupted: {name} is not listed in {STATE}",
                dir.display()
            )));
        }
    }
    Ok(Loaded {
        dir: dir.to_path_buf(),
        step: env.step,
        state: env.state,
    })
}

/// Lock file of a run folder while a run writes into it.
pub const LOCK: &str = ".run.lock";

/// Exclusive use of a run folder: `DIR/.run.lock` holding the owner's process id, created
/// with `create_new` and removed on drop. A lock left by a process that no longer exists (a
/// run killed with `kill -9`) is taken over; one of a live process is an "in use" error.
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Take the lock of the run folder `out` (created when missing).
    pub fn acquire(out: &Path) -> Result<Self> {
        use std::io::Write;
        std::fs::create_dir_all(out).map_err(io_error("cannot create output folder", out))?;
        let path = out.join(LOCK);
        for _ in 0..3 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id())
                        .map_err(io_error("cannot write", &path))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    match owner.trim().parse::<u32>() {
                        Ok(pid) if !process_alive(pid) => {
                            // A stale lock of a dead process (`kill -9`): take it over.
                            std::fs::remove_file(&path).ok();
                        }
                        _ => {
                            return Err(Error::InUse {
                                out: out.to_path_buf(),
                                owner: owner.trim().to_string(),
                                lock: path,
                            })
                        }
                    }
                }
                Err(e) => return Err(io_error("cannot create lock file", &path)(e)),
            }
        }
        Err(Error::Checkpoint(format!(
            "{}: cannot take the lock {}",
            out.display(),
            path.display()
        )))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}

/// Whether process `pid` runs (Linux: `/proc/PID` exists; elsewhere assumed alive).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Files a training run writes into its folder (besides `train.log`, which is appended to).
const RUN_FILES: [&str; 5] = [
    "final.safetensors",
    "history.csv",
    "val_loss_vs_wu.png",
    "val_loss_vs_time.png",
    "config.toml",
];
/// Sub-folders a training run writes.
const RUN_DIRS: [&str; 2] = ["checkpoints", "test"];

/// What in `out` shows a run was (or is being) trained there: a checkpoint, the final weights
/// or the history. `None` for a new or empty folder.
pub fn existing_run(out: &Path) -> Option<PathBuf> {
    [
        checkpoints_dir(out).join(LATEST),
        out.join("final.safetensors"),
        out.join("history.csv"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// Delete the outputs of a previous run in `out` (for `--overwrite`; `train.log` is kept).
pub fn clear_run(out: &Path) -> Result<()> {
    for f in RUN_FILES {
        let p = out.join(f);
        if p.is_file() {
            std::fs::remove_file(&p).map_err(io_error("cannot delete", &p))?;
        }
    }
    for d in RUN_DIRS {
        let p = out.join(d);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).map_err(io_error("cannot delete", &p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-ckpt-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        d
    }

    fn payload(text: &'static str) -> impl FnOnce(&Path) -> Result<()> {
        move |d: &Path| {
            let p = d.join("model.bin");
            std::fs::write(&p, text).map_err(io_error("cannot write", &p))
        }
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
        assert_eq!(
            std::fs::read_to_string(l.dir.join("model.bin")).unwrap(),
            "weights"
        );
        let kept = std::fs::read_dir(checkpoints_dir(&out))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("step-")
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

    /// resume: an edited `state.json` (e.g. the loader position) is refused, not loaded.
    #[test]
    fn an_edited_state_is_refused() {
        let out = tmp("edited");
        let dir = save(&out, 7, &vec![12u64, 34], payload("weights")).unwrap();
        let text = std::fs::read_to_string(dir.join(STATE)).unwrap();
        assert!(text.contains("34"), "{text}");
        std::fs::write(dir.join(STATE), text.replace("34", "35")).unwrap();
        let e = format!("{:#}", load_latest::<Vec<u64>>(&out).err().unwrap());
        assert!(e.contains("corrupted") && e.contains("digest"), "{e}");
        // Reformatting alone (same content) is not an edit.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        std::fs::write(dir.join(STATE), serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(
            load_latest::<Vec<u64>>(&out).unwrap().unwrap().state,
            vec![12, 34]
        );
        // A file added to the checkpoint folder is not silently ignored.
        std::fs::write(dir.join("extra.bin"), "x").unwrap();
        let e = format!("{:#}", load_latest::<Vec<u64>>(&out).err().unwrap());
        assert!(e.contains("extra.bin"), "{e}");
        std::fs::remove_dir_all(&out).ok();
    }

    /// resume: `LATEST` can only name a checkpoint folder inside `checkpoints/`.
    #[test]
    fn latest_must_name_a_checkpoint_of_this_run() {
        let (out, other) = (tmp("latest"), tmp("latest-other"));
        save(&out, 3, &1u32, payload("mine")).unwrap();
        save(&other, 5, &2u32, payload("theirs")).unwrap();
        let latest = checkpoints_dir(&out).join(LATEST);
        let elsewhere = checkpoints_dir(&other).join("step-00000005");
        for bad in [
            elsewhere.to_string_lossy().into_owned(),
            "../../x/step-00000005".into(),
            "step-00000005".into(),
        ] {
            std::fs::write(&latest, &bad).unwrap();
            let e = format!("{:#}", load_latest::<u32>(&out).err().unwrap());
            assert!(
                e.contains("LATEST") || e.contains("incomplete"),
                "{bad}: {e}"
            );
        }
        std::fs::write(&latest, "step-00000003").unwrap();
        assert_eq!(load_latest::<u32>(&out).unwrap().unwrap().state, 1);
        std::fs::remove_dir_all(&out).ok();
        std::fs::remove_dir_all(&other).ok();
    }

    /// runs: a second run on a folder in use stops with "in use"; a stale lock is taken over.
    #[test]
    fn a_folder_in_use_is_refused_and_a_stale_lock_taken_over() {
        let out = tmp("lock");
        let lock = RunLock::acquire(&out).unwrap();
        let e = format!("{:#}", RunLock::acquire(&out).err().unwrap());
        assert!(
            e.contains("in use") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(lock);
        assert!(!out.join(LOCK).exists());
        // The lock of a process that has exited (kill -9) does not block the folder.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(out.join(LOCK), format!("{dead}\n")).unwrap();
        let lock = RunLock::acquire(&out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join(LOCK)).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(lock);
        std::fs::remove_dir_all(&out).ok();
    }

    /// Cases per property: `PROPTEST_CASES` when set, else 16 (CI).
    pub fn fuzz_config() -> proptest::prelude::ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(16);
        proptest::prelude::ProptestConfig {
            cases,
            failure_persistence: None,
            ..Default::default()
        }
    }

    proptest::proptest! {
        #![proptest_config(fuzz_config())]

        /// Proptest over bytes: a damaged `state.json`, payload or `LATEST` is an error (or,
        /// for an unchanged file, the saved state), never a panic and never another state.
        #[test]
        fn a_damaged_checkpoint_never_panics(
            target in 0usize..3,
            flips in proptest::collection::vec((proptest::sample::select(vec![0usize, 1, 7, 30, 60, 99, 200]), proptest::prelude::any::<u8>()), 0..4),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            truncate in proptest::prelude::any::<bool>(),
        ) {
            let out = tmp(&format!("fuzz-{target}"));
            let dir = save(&out, 12, &vec![1u64, 22, 333], payload("some weights")).unwrap();
            let file = [dir.join(STATE), dir.join("model.bin"), checkpoints_dir(&out).join(LATEST)][target].clone();
            let mut b = std::fs::read(&file).unwrap();
            let original = b.clone();
            for (pos, val) in flips {
                let i = pos % b.len();
                b[i] = val;
            }
            if truncate {
                b.truncate(cut.index(b.len() + 1));
            }
            std::fs::write(&file, &b).unwrap();
            match load_latest::<Vec<u64>>(&out) {
                Ok(Some(l)) => {
                    let same_payload = std::fs::read(dir.join("model.bin")).unwrap() == b"some weights";
                    proptest::prop_assert!(same_payload && l.state == vec![1, 22, 333], "{b:?} vs {original:?}");
                }
                Ok(None) => proptest::prop_assert!(false, "a checkpoint vanished"),
                Err(_) => {}
            }
            std::fs::remove_dir_all(&out).ok();
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, failure_persistence: None, ..Default::default() })]

        /// Any finite f64 in the state survives save and load bit for bit, and its digest
        /// verifies (a parser that rounds a last digit would fail both; exact resume needs it).
        #[test]
        fn every_finite_f64_round_trips_bit_exact(bits in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..20)) {
            let values: Vec<f64> = bits.iter().map(|&b| f64::from_bits(b)).filter(|v| v.is_finite()).collect();
            let out = tmp("f64");
            save(&out, 1, &values, payload("w")).unwrap();
            let back = load_latest::<Vec<f64>>(&out).unwrap().unwrap().state;
            let same = back.iter().map(|v| v.to_bits()).eq(values.iter().map(|v| v.to_bits()));
            std::fs::remove_dir_all(&out).ok();
            proptest::prop_assert!(same, "{values:?} came back as {back:?}");
        }
    }

    #[test]
    fn a_failed_save_keeps_the_previous_checkpoint() {
        let out = tmp("failed");
        save(&out, 1, &1u32, payload("good")).unwrap();
        let r = save(&out, 2, &2u32, |_d: &Path| {
            Err(Error::Checkpoint("disk full".into()))
        });
        assert!(r.is_err());
        let l = load_latest::<u32>(&out).unwrap().unwrap();
        assert_eq!((l.step, l.state), (1, 1));
        std::fs::remove_dir_all(&out).ok();
    }
}
