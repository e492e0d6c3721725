//! What a run is given beyond its files: the environment of the run contract, and the
//! values redacted from everything it leaves behind (docs/runs.md, "What a run can see").

use super::exec::Prepared;
use super::{Engine, MAX_CALL_DEPTH, MAX_CHILD_RUNS, Parent, RunError};
use crate::store::runs::RunRecord;

/// Server-held values shorter than this are not redacted: replacing every `abc` in
/// every run's log would garble the logs and protect nothing. A worker's declared
/// secrets are redacted whatever their length, as before.
const MIN_SERVER_SECRET: usize = 6;

impl Engine {
    /// The run contract's variables: ids, the API's address and the run's own token.
    /// Declared secrets are added by the caller; PATH, HOME and locale by the sandbox.
    pub(super) fn contract_env(&self, run: &RunRecord, p: &Prepared) -> Vec<(String, String)> {
        let mut env = vec![
            ("FLOOM_RUN_ID".to_string(), run.id.clone()),
            ("FLOOM_TRACE_ID".to_string(), run.trace_id.clone()),
            ("WORKEROS_RUN_TOKEN".to_string(), p.run_token.clone()),
        ];
        if let Some(url) = &self.settings.api_url {
            env.push(("WORKEROS_API_URL".into(), url.clone()));
        }
        if !p.config.calls.is_empty() {
            env.push(("WORKEROS_CALL_DEPTH".into(), run.call_depth.to_string()));
        }
        env
    }

    /// May the running run `parent_id` start a run of `target`? Only a worker its own
    /// worker lists in `calls:`, at most [`MAX_CALL_DEPTH`] deep and [`MAX_CHILD_RUNS`]
    /// times: the child's link to its parent, and the person behind the chain.
    pub async fn child_of(
        &self,
        parent_id: &str,
        target: &str,
    ) -> Result<(Parent, Option<String>), RunError> {
        let parent = self
            .store
            .run(parent_id)
            .await?
            .ok_or(RunError::NotFound("Run not found"))?;
        let calls = match self.index.worker(&parent.worker_id).await? {
            Some((_, extra)) => extra.config.map(|c| c.calls).unwrap_or_default(),
            None => Vec::new(),
        };
        let canonical = |id: &str| id.replace('_', "-");
        if !calls.iter().any(|c| canonical(c) == canonical(target)) {
            return Err(RunError::CallRefused(format!(
                "worker {} may not call {target}: it is not in its calls",
                parent.worker_id
            )));
        }
        let depth = parent.call_depth + 1;
        if depth > MAX_CALL_DEPTH {
            return Err(RunError::CallRefused(format!(
                "call depth exceeded: at most {MAX_CALL_DEPTH} runs deep"
            )));
        }
        if self.store.child_run_count(parent_id).await? >= MAX_CHILD_RUNS {
            return Err(RunError::CallRefused(format!(
                "run {parent_id} has started {MAX_CHILD_RUNS} runs, the most one run may"
            )));
        }
        Ok((
            Parent {
                run_id: parent.id,
                depth,
            },
            parent.triggered_by,
        ))
    }

    /// `(NAME, value)` of everything a run's log, result, errors and artifact names must
    /// never show: the run's declared secrets and its token, and every secret the server
    /// holds (its configuration's, the vault's values and key), as a second wall behind
    /// the sandbox.
    pub(super) async fn redactions(
        &self,
        declared: &std::collections::BTreeMap<String, String>,
        run_token: &str,
    ) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = declared
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.push(("WORKEROS_RUN_TOKEN".into(), run_token.to_string()));
        let held = self.vault.redactable().await;
        out.extend(
            self.server_secrets
                .iter()
                .cloned()
                .chain(held)
                .filter(|(_, v)| v.chars().count() >= MIN_SERVER_SECRET),
        );
        out
    }
}
