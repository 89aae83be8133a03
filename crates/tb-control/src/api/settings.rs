//! `/v1/provider-mode` and `/v1/install*`: the settings a user changes
//! through the control plane, with their request bodies.

use serde::{Deserialize, Serialize};
use tb_domain::PaymentMethod;

use super::Mode;

/// Which sellers auto mode may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SellerRange {
    /// Every seller of the registry.
    Recommended,
    /// Only `seller_ids`.
    Custom,
}

/// `GET /v1/provider-mode` and the answer of `PUT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderMode {
    /// The mode in force.
    pub mode: Mode,
    /// `[provider.auto]` in force.
    pub auto: AutoSettings,
}

/// `[provider.auto]`, every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoSettings {
    /// Marketplace routing on or off.
    pub enabled: bool,
    /// Which sellers.
    pub range: SellerRange,
    /// The sellers of range `custom`.
    pub seller_ids: Vec<String>,
    /// One seller only.
    pub selected_seller: Option<String>,
    /// How purchases are paid.
    pub payment_method: PaymentMethod,
}

/// The body of `PUT /v1/provider-mode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderModeUpdate {
    /// The new mode.
    pub mode: Mode,
    /// The new `[provider.auto]`; absent or `null` keeps the configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoUpdate>,
}

/// `[provider.auto]` as a request sends it: an absent field takes the
/// configuration default (as in the config file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoUpdate {
    /// Marketplace routing on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Which sellers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<SellerRange>,
    /// The sellers of range `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_ids: Option<Vec<String>>,
    /// One seller only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_seller: Option<String>,
    /// How purchases are paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<PaymentMethod>,
}

/// `GET /v1/install`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallStatus {
    /// Every client tokenbuddy can configure.
    pub clients: Vec<InstallClient>,
    /// Snippets for clients configured by hand (naming the token's file,
    /// never the token).
    pub instructions: Vec<Instruction>,
}

/// One client the installer knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallClient {
    /// The id `install` takes.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether the client is installed.
    pub detected: bool,
    /// Whether it points at this daemon.
    pub configured: bool,
    /// Its configuration files.
    pub paths: Vec<String>,
}

/// How to point a client at tokenbuddy by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instruction {
    /// The client's id.
    pub client: String,
    /// Display name.
    pub name: String,
    /// The snippet.
    pub text: String,
}

/// The body of `POST /v1/install/preview` and `/v1/install/apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// Client ids; every detected client when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<String>,
    /// The model clients should use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Claude Code: move a conflicting `ANTHROPIC_API_KEY` into the backup.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// The body of `POST /v1/install/undo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndoRequest {
    /// Client ids; every configured client when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<String>,
}

/// `POST /v1/install/preview`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallPreview {
    /// What would change.
    pub changes: Vec<Change>,
    /// Unified diff, secrets redacted.
    pub diff: String,
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The client's id.
    pub client: String,
    /// The file.
    pub path: String,
    /// What changes.
    pub description: String,
}

/// `POST /v1/install/apply` and `/v1/install/undo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallChanged {
    /// What changed.
    pub changed: Vec<ChangedFile>,
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangedFile {
    /// The client's id.
    pub client: String,
    /// The file.
    pub path: String,
    /// What changed.
    pub description: String,
    /// What was done to the file.
    pub action: FileAction,
}

/// What an apply or undo did to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    /// The file did not exist and was written.
    Created,
    /// The file was rewritten.
    Updated,
    /// The file was deleted (undo of a file tokenbuddy created).
    Deleted,
}
