//! The Helm chart (helm/lbaas), validated by real Helm and the Kubernetes schemas: runs
//! `python3 helm/check.py`, which lints the chart with Helm's own engine (PyPI `helm-python-sdk`),
//! renders it with the default values and with every option on, validates each manifest against
//! the Kubernetes JSON schemas in strict mode (PyPI `kubernetes-validate`) and cross-checks the
//! references between them.
//!
//! Without python3 or those packages the test says it did not run and passes, except in CI
//! (`CI=true` or `CI=1`), where it fails: `.ci/run` installs them.
use std::{path::Path, process::Command};

/// check.py's exit code when one of its Python packages is missing.
const EXIT_MISSING_DEPENDENCY: i32 = 3;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Fails in CI, otherwise says the test did not run.
fn not_run(why: &str) {
    assert!(
        !in_ci(),
        "CI is set but the Helm chart check cannot run: {why}"
    );
    println!("helm chart check NOT RUN: {why}");
}

#[test]
fn helm_chart_lints_renders_and_validates_against_kubernetes_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("helm").join("check.py");
    assert!(script.is_file(), "{} is missing", script.display());

    let output = match Command::new("python3")
        .arg(&script)
        .current_dir(root)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return not_run(
                "python3 is not installed (then: pip install helm-python-sdk kubernetes-validate)",
            );
        }
        Err(e) => panic!("could not run python3 {}: {e}", script.display()),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    if !stderr.trim().is_empty() {
        eprintln!("{stderr}");
    }
    if output.status.code() == Some(EXIT_MISSING_DEPENDENCY) {
        return not_run(stdout.trim());
    }
    assert!(
        output.status.success(),
        "python3 helm/check.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("helm chart OK"),
        "check.py exited 0 without its closing line:\n{stdout}"
    );
}
