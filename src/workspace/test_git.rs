//! `git` as a person runs it beside floom, for the workspace's unit tests.

use std::path::Path;
use std::process::Command;

/// `git args…` in `dir` under a test identity; its standard output. Fails the test when
/// git does.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@x"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
