//! What a run is given beyond its files: the environment of the run contract, and the
//! values redacted from everything it leaves behind (docs/runs.md, "What a run can see").

use super::Engine;
use super::exec::Prepared;
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
        env
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
