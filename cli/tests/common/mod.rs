//! What the end-to-end tests of the binary share.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// (success, stdout, stderr) of `physlab --workspace ws args…`, run in `cwd` (the package folder when None).
pub fn physlab_in(cwd: Option<&Path>, ws: &Path, args: &[&str]) -> (bool, String, String) {
    let ws = ws.display().to_string();
    let mut all = vec!["--workspace", ws.as_str()];
    all.extend_from_slice(args);
    physlab_args(cwd, &all)
}

/// (success, stdout, stderr) of `physlab args…`, run in `cwd` (the package folder when None).
pub fn physlab_args(cwd: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_physlab"));
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    let out = c.args(args).output().expect("runs the binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A JSON file, parsed (panics naming the file when it cannot be read).
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// A JSON-lines file (metrics.jsonl, curve.jsonl), one value per line.
pub fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
