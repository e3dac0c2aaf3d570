// Shared by the build scripts of the root package and of the agent (`include!`d by both): which
// real components the tests need are missing here. Each missing one sets a cfg the tests read:
// `lbaas_no_haproxy` (no `haproxy -v` on PATH) and `lbaas_no_postgres` (LBAAS_TEST_DATABASE_URL
// unset or empty). The scripts run again when that variable, PATH or /usr/sbin changes (installing
// HAProxy adds /usr/sbin/haproxy).

fn mark_missing_components() {
    println!("cargo::rustc-check-cfg=cfg(lbaas_no_haproxy)");
    println!("cargo::rustc-check-cfg=cfg(lbaas_no_postgres)");
    println!("cargo:rerun-if-env-changed=LBAAS_TEST_DATABASE_URL");
    println!("cargo:rerun-if-env-changed=PATH");
    if std::path::Path::new("/usr/sbin").is_dir() {
        println!("cargo:rerun-if-changed=/usr/sbin");
    }
    let haproxy = std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !haproxy {
        println!("cargo:rustc-cfg=lbaas_no_haproxy");
    }
    if std::env::var("LBAAS_TEST_DATABASE_URL").map_or(true, |u| u.is_empty()) {
        println!("cargo:rustc-cfg=lbaas_no_postgres");
    }
}
