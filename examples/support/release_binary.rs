//! The release binary for the examples (demo, bench): built with cargo if needed, found beside
//! the example's own executable (target/release/examples/X → target/release/douyin-order-sync).

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn build_release_binary() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--bin",
            "douyin-order-sync",
        ])
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the example's path: {e}"))?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("douyin-order-sync"))
        .ok_or("unexpected path of the example's executable")?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("the build left no {}", bin.display()))
    }
}
