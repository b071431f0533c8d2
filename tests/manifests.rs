//! The Kubernetes manifests in `k8s/` validate offline (PyPI's `kubernetes-validate`, strict:
//! unknown fields are errors) against Kubernetes 1.29 and the newest schemas it ships, as CI
//! linters check them. The validator comes from the venv `.ci/run` makes (`REFERENCE_PYTHON`,
//! set by `.ci/test`); without it the test fails, it never skips.

// A test fails by panicking: unwrap/expect is how it says which step went wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The oldest Kubernetes the manifests must pass; `None` is the validator's newest schema.
const VERSIONS: &[Option<&str>] = &[Some("1.29"), None];

fn validator() -> PathBuf {
    let python = std::env::var("REFERENCE_PYTHON").unwrap_or_else(|_| {
        panic!(
            "REFERENCE_PYTHON is not set: it must name the python of a venv with kubernetes-validate \
             (`bash .ci/run` makes .ci/venv and `bash .ci/test` sets it)"
        )
    });
    let bin = Path::new(&python).with_file_name("kubernetes-validate");
    assert!(bin.is_file(), "no {} beside {python}", bin.display());
    bin
}

fn validate(files: &[PathBuf], version: Option<&str>) -> Output {
    let mut cmd = Command::new(validator());
    cmd.arg("--strict");
    if let Some(v) = version {
        cmd.args(["-k", v]);
    }
    cmd.args(files).output().unwrap()
}

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "k8s/ has only {files:?}");
    files
}

#[test]
fn every_kubernetes_manifest_validates_against_1_29_and_the_newest_schemas() {
    let files = manifests();
    for version in VERSIONS {
        let out = validate(&files, *version);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "k8s/ does not validate against {}:\n{text}",
            version.unwrap_or("the newest schema")
        );
        // Each file was looked at (the validator prints one line per resource).
        for f in &files {
            let name = f.file_name().unwrap().to_string_lossy();
            assert!(
                text.contains(name.as_ref()),
                "{name} not validated:\n{text}"
            );
        }
    }
}

#[test]
fn the_validator_refuses_a_pod_failure_policy_condition_without_status() {
    // The defect this test guards: 1.29's schema requires `status` in onPodConditions.
    let cronjob =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/cronjob.yaml"))
            .unwrap();
    let broken = cronjob.replace("status: \"True\"", "");
    assert_ne!(
        broken, cronjob,
        "cronjob.yaml has no onPodConditions status to remove"
    );
    let file = std::env::temp_dir().join(format!(
        "douyin-order-sync-broken-cronjob-{}.yaml",
        std::process::id()
    ));
    std::fs::write(&file, broken).unwrap();
    let out = validate(std::slice::from_ref(&file), Some("1.29"));
    let _ = std::fs::remove_file(&file);
    assert!(
        !out.status.success(),
        "the validator accepted onPodConditions without status:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
