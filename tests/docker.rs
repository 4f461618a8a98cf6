//! docker/ as far as a machine without a Docker engine can check it (CI has none): the compose
//! file is valid for `docker-compose config` (Debian's package) and its images are pinned, MinIO's
//! from quay.io; the Dockerfile parses with BuildKit's parser and is well formed. What cannot run
//! here (pulling images, building, starting the stack) is said in the README.

mod common;

use common::{python, repo};

#[test]
fn compose_file_and_dockerfile_are_valid() {
    let compose = repo().join("docker/compose.yml");
    let out = std::process::Command::new("docker-compose")
        .arg("-f")
        .arg(&compose)
        .args(["config"])
        .output()
        .expect("Debian's docker-compose (make deps installs it)");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The resolved configuration as JSON, for the image checks.
    let config: serde_json::Value = serde_yaml_like(&out.stdout);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("compose.json");
    std::fs::write(&json, serde_json::to_vec(&config).unwrap()).unwrap();
    let out = std::process::Command::new(python())
        .arg(repo().join("tests/tools/docker_check.py"))
        .arg(repo().join("docker/Dockerfile"))
        .arg(&json)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(v["stages"], serde_json::json!(["build", "runtime"]));
    for s in [
        "minio",
        "minio-init",
        "berserkr",
        "berserkr-demo",
        "spark",
        "trino",
    ] {
        assert!(
            v["services"].as_array().unwrap().iter().any(|x| x == s),
            "{s}: {report}"
        );
    }
}

/// The checker fails on what it is for: an unknown stage, an unpinned image, MinIO from Docker Hub.
#[test]
fn the_docker_check_catches_unpinned_images_and_unknown_stages() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        "FROM rust AS build\nRUN true\nFROM debian:bookworm-slim AS runtime\nCOPY --from=nope /a /a\n",
    )
    .unwrap();
    let json = dir.path().join("compose.json");
    std::fs::write(
        &json,
        r#"{"services": {"minio": {"image": "minio/minio:RELEASE.2025-04-22T22-12-26Z"}, "x": {"image": "trinodb/trino:latest"}}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(python())
        .arg(repo().join("tests/tools/docker_check.py"))
        .arg(&dockerfile)
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = v["problems"].to_string();
    for says in [
        "names no earlier stage",
        "rust is not pinned",
        "not on quay.io",
        "trinodb/trino:latest",
    ] {
        assert!(problems.contains(says), "{says}: {problems}");
    }
}

/// `docker-compose config` prints YAML; Python turns it into JSON (PyYAML comes with
/// docker-compose's Debian package, and with moto in the test venv).
fn serde_yaml_like(yaml: &[u8]) -> serde_json::Value {
    use std::io::Write;
    let mut child = std::process::Command::new(python())
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}
