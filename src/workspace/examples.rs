//! Example workers a brand-new workspace starts with, so that a newcomer can list, run
//! and approve something at once. Their sources live in `examples/workers/`.

use std::path::Path;

use anyhow::Context;

const EXAMPLES: &[(&str, &str)] = &[
    (
        "hello-report/worker.yml",
        include_str!("../../examples/workers/hello-report/worker.yml"),
    ),
    (
        "hello-report/run.py",
        include_str!("../../examples/workers/hello-report/run.py"),
    ),
    (
        "send-digest/worker.yml",
        include_str!("../../examples/workers/send-digest/worker.yml"),
    ),
    (
        "send-digest/run.py",
        include_str!("../../examples/workers/send-digest/run.py"),
    ),
    (
        "summarize-notes/worker.yml",
        include_str!("../../examples/workers/summarize-notes/worker.yml"),
    ),
    (
        "summarize-notes/SKILL.md",
        include_str!("../../examples/workers/summarize-notes/SKILL.md"),
    ),
];

/// Whether `root` is a workspace yet to be created (absent or an empty folder).
pub fn is_new(root: &Path) -> bool {
    std::fs::read_dir(root).map_or(true, |mut d| d.next().is_none())
}

/// Write the example workers into `workers_dir` (before the first snapshot commit).
pub fn seed(workers_dir: &Path) -> anyhow::Result<()> {
    for (rel, text) in EXAMPLES {
        let path = workers_dir.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
