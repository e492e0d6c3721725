//! `WORKEROS_GIT_REMOTE`: cloned into an empty workspace, pushed to after each commit.

use serde_json::json;

use crate::common::{TestApp, eventually, git_in};

#[tokio::test]
async fn clones_the_remote_and_pushes_commits() {
    let remote = tempfile::tempdir().unwrap();
    let seed = tempfile::tempdir().unwrap();
    git_in(remote.path(), &["init", "-q", "--bare", "-b", "main"]);
    git_in(seed.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(seed.path().join("workspace.md"), "# team workspace\n").unwrap();
    git_in(seed.path(), &["add", "."]);
    git_in(seed.path(), &["commit", "-qm", "seed"]);
    git_in(
        seed.path(),
        &["push", "-q", remote.path().to_str().unwrap(), "main"],
    );

    let url = remote.path().to_str().unwrap().to_string();
    let app = TestApp::with(move |c| c.paths.git_remote = Some(url)).await;
    assert!(app.ws().join("workspace.md").exists(), "cloned");
    let id = app.create(json!({"title": "pushed"})).await;
    eventually("pushed to the remote", || async {
        git_in(remote.path(), &["log", "-1", "--format=%s", "main"]).trim()
            == format!("issues: create {id} pushed")
    })
    .await;
}
