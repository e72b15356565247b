//! Every input that ever broke a fuzz target — kept under `tests/fuzz_regressions/<target>/` by `hack/fuzz.sh`, and
//! issue 12's hostile inputs — and the fuzz seeds (`fuzz/seeds/<target>/`), replayed through the entry points the
//! fuzz targets call: none may panic or overflow the stack, each must end in a success or a 4xx `Status`, and what
//! it stored must read back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step fails the test

use std::path::{Path, PathBuf};

use backup_apiserver::fuzzing::{TARGETS, run};

/// The files of `dir`, sorted (none when it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = match kind {
        "regressions" => root.join("tests/fuzz_regressions"),
        _ => root.join("fuzz/seeds"),
    };
    let mut replayed = 0;
    for target in TARGETS {
        for file in inputs(&dir.join(target)) {
            let data = std::fs::read(&file).unwrap();
            if let Err(e) = run(target, &data) {
                panic!("{target} on {}: {e}", file.display());
            }
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn kept_fuzz_inputs_replay_cleanly() {
    assert!(replay("regressions") >= 9, "issue 12's inputs at least");
}

#[test]
fn fuzz_seeds_replay_cleanly() {
    let replayed = replay("seeds");
    assert!(replayed >= TARGETS.len(), "{replayed}");
}

/// Every target has seeds, and `run` knows no other target.
#[test]
fn every_target_has_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for target in TARGETS {
        assert!(!inputs(&root.join(target)).is_empty(), "{target}");
    }
    assert!(run("nope", b"").is_err());
}
