//! Replays every seed (`seeds/<target>/`) and every saved crash (`regressions/<target>/`) through
//! its target's code, on stable and without libFuzzer: `cargo test --manifest-path fuzz/Cargo.toml`.
use std::{panic, path::Path};

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failed = Vec::new();
    let mut ran = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .map(|e| e.expect("a directory entry").path())
            .collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file() && !is_note(f)) {
            let data = std::fs::read(file).expect("a readable input");
            ran += 1;
            if panic::catch_unwind(|| run(&data)).is_err() {
                failed.push(file.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} inputs panic: {failed:#?}",
        failed.len()
    );
    assert!(ran > 0, "{target}: no seeds to replay");
}

/// Notes kept beside the inputs (README.md and the like) are not inputs.
fn is_note(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == "md" || e == "txt")
}

#[test]
fn validate_requests() {
    replay("validate_requests", lbaas_fuzz::validate_requests);
}

#[test]
fn render_haproxy() {
    replay("render_haproxy", lbaas_fuzz::render_haproxy);
}

#[test]
fn render_native() {
    replay("render_native", lbaas_fuzz::render_native);
}
