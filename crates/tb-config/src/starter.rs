//! The commented starter file written by `tokenbuddyd config init`.

/// A commented starter configuration: every line is a valid setting or a
/// comment, so the file loads as written.
pub const STARTER_CONFIG: &str = r#"# tokenbuddy configuration.
# Every setting has a working default; uncomment what you want to change.
# Environment variables override this file: TB_<SECTION>__<KEY>, e.g. TB_PROXY__PORT=7000.

[proxy]
# port = 7878                 # 0 = pick a free port
# bind = "127.0.0.1"          # non-loopback needs allow_remote = true
# require_auth = true         # clients send the access token as Bearer or x-api-key
# max_body_bytes = 10485760   # 10 MiB
# max_response_bytes = 67108864   # non-streaming answers kept to read usage (64 MiB)
# shutdown_grace_ms = 30000   # in-flight requests may finish within this after SIGTERM
# max_connections = 1024      # more client connections get 503 overloaded
# header_read_timeout_ms = 60000   # slow clients (and idle keep-alive) are cut off after this
# worker_threads = 0          # proxy event loops (threads); 0 = one per CPU core
# drain_delay_ms = 0          # after SIGTERM /readyz says 503 this long before the listener closes

[proxy.tls]                   # HTTPS on the proxy port; required when bind is not loopback
# cert_file = "/etc/tokenbuddy/gateway.pem"       # certificate chain, leaf first
# key_file = "/etc/tokenbuddy/gateway-key.pem"    # its private key

[tls]
# extra_ca_file = "/etc/ssl/private-ca.pem"   # trusted besides the system roots

[network]
# proxy = "http://user:pass@proxy.corp:3128"   # HTTP CONNECT proxy; default: HTTPS_PROXY / HTTP_PROXY
# no_proxy = ["internal.corp", "10.0.0.0/8"]   # go direct; default: NO_PROXY (loopback is always direct)

[routing]
# request_deadline_ms = 300000      # response head deadline, non-streaming
# stream_head_deadline_ms = 30000   # response head deadline, streaming
# stream_idle_timeout_ms = 120000   # longest silence inside a stream

[models.aliases]
# "claude-sonnet" = "claude-sonnet-4-5"

[ledger]
# url = "postgres://tokenbuddy@127.0.0.1:5432/tokenbuddy"   # default: SQLite <data dir>/ledger.db
# queue_capacity = 65536

# Copies of the call records sent elsewhere (docs/export.md); both off until set.
[export.http]
# url = "https://collector.example/tokenbuddy/calls"
# headers = { authorization = "Bearer …" }
# batch_size = 100
# queue_capacity = 10000

[export.otlp]
# endpoint = "http://localhost:4318"   # OTLP/HTTP; traces go to <endpoint>/v1/traces
# protocol = "http/protobuf"

[log]
# level = "info"
# format = "pretty"           # or "json"

# Manual providers: requests go to the first one that serves (model, protocol).
# [[providers]]
# id = "openrouter"
# kind = "openai"             # "openai" (Bearer) | "anthropic" (x-api-key)
# base_url = "https://openrouter.ai/api/v1"
# api_key_env = "OPENROUTER_API_KEY"    # or api_key_file = "/abs/path" (the file holds the key), or api_key = "..." (keep the file private)
# models = ["deepseek-chat", "claude-sonnet-4-5"]
# protocols = ["chat_completions", "responses", "messages", "images_generations", "embeddings"]
# discount = 0.1              # fraction off the bundled table price
# [providers.prices."deepseek-chat"]   # USD per 1M tokens; wins over the table
# input = 0.28
# output = 0.42
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_loads_and_is_valid() {
        let cfg = crate::Config::from_toml_str(STARTER_CONFIG).unwrap();
        cfg.validate().unwrap();
        // Uncommenting every setting must still be a valid file.
        let uncommented: String = STARTER_CONFIG
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains(" = ") || r.starts_with('['))
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let cfg = crate::Config::from_toml_str(&uncommented).unwrap();
        assert_eq!(cfg.providers.len(), 1);
        assert_eq!(cfg.models.aliases["claude-sonnet"], "claude-sonnet-4-5");
    }
}
