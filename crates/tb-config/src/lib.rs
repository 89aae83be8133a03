//! tokenbuddy's configuration: the schema, its defaults, where the values
//! come from, and what is wrong with them.
//!
//! Values are layered with `figment`: built-in defaults < the config file <
//! `TB_<SECTION>__<KEY>` environment variables < command-line flags. Every
//! setting has a default that works, so an empty file (or none) is a valid
//! configuration. Unknown keys are rejected with the key and the file named,
//! because a misspelt key silently doing nothing is the worst kind of config
//! bug. This is the only crate that knows about `figment`; components take
//! the plain structs of [`Config`] as values, so tests build them directly.
//!
//! ```
//! use tb_config::Config;
//!
//! let cfg: Config = Config::from_toml_str(r#"
//!     [proxy]
//!     port = 0
//!     [[providers]]
//!     id = "local"
//!     kind = "openai"
//!     base_url = "http://127.0.0.1:9000/v1"
//!     api_key = "sk-test"
//!     models = ["gpt-4o-mini"]
//! "#).unwrap();
//! assert_eq!(cfg.proxy.port, 0);
//! // chat, responses, image generations and edits, embeddings.
//! assert_eq!(cfg.providers[0].effective_protocols().len(), 5);
//! cfg.validate().unwrap();
//! ```

mod load;
mod schema;
mod show;
mod starter;

pub use load::{CliOverrides, ConfigError, LoadedConfig, PathOverrides, Paths, REMOVED_KEYS, load};
pub use schema::{
    AutoConfig, AutoRange, BreakerConfig, Config, ControlConfig, ExportConfig, HttpExportConfig,
    LedgerConfig, LogConfig, LogFormat, ManualPolicyConfig, ModelPriceConfig, ModelsConfig,
    NetworkConfig, OtlpExportConfig, OtlpProtocol, PrewarmConfig, ProbeConfig, ProviderConfig,
    ProviderMode, ProviderModeConfig, ProxyConfig, ProxyTlsConfig, PurchaseConfig, RegistryConfig,
    RoutingConfig, ScorerConfig, Secret, TlsConfig, ValidationError,
};
pub use show::{ShownValue, describe, mask_url};
pub use starter::STARTER_CONFIG;
