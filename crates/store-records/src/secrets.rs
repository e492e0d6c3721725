//! Secret metadata: who set a secret and when. The values are in the vault.

#[derive(Debug, Clone)]
pub struct SecretMeta {
    pub name: String,
    pub created_by: String,
    pub last_used_at: Option<String>,
    pub last_checked_at: Option<String>,
    pub last_check_status: Option<String>,
}
