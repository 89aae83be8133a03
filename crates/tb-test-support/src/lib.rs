//! Test support for tokenbuddy: a fake LLM upstream to point the daemon at.
//!
//! End-to-end tests run the real daemon binary and need something on the
//! other side that speaks the OpenAI and Anthropic wire formats, can be
//! scripted per request (statuses, headers, delays, streams cut at awkward
//! places, streams that stall or hang) and can report what it saw (requests,
//! and whether a stream completed or the daemon hung up). This crate is that
//! thing, so that no test needs a network, a key or a real provider:
//!
//! - [`MockUpstream`]: an HTTP/1.1 server on an ephemeral loopback port.
//!   Every request is recorded, then answered with the next scripted
//!   [`Reply`], or by default with a [`canned`] body for the protocol its
//!   path names (streamed when the request says `"stream": true`).
//! - [`canned`]: realistic, deterministic JSON and SSE bodies for the four
//!   protocols, accepted by the official OpenAI and Anthropic SDKs
//!   (re-exported from the product crate `tb-sim-market`).
//! - [`chunking`]: cut a body into [`Chunk`]s across lines, `\r\n` pairs and
//!   UTF-8 characters.
//! - [`marketplace`]: a simulated registry and sellers (purchases, tokens,
//!   credit, settlement) on loopback ports: the product crate
//!   `tb-sim-market` (which `tokenbuddyd demo` runs), re-exported here.
//! - [`agent_upstream`]: a scripted upstream that plays the model side of a
//!   two-turn tool task for real coding agents, in any protocol.
//! - [`relay`]: a TCP relay that can be cut, to "restart" a real service
//!   (PostgreSQL) under a running daemon.
//!
//! ```
//! use tb_test_support::{Chunk, MockUpstream, Reply, StreamEnd, canned};
//! use tb_domain::Protocol;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let upstream = MockUpstream::start().await?;
//! // Configure the daemon's upstream with `base_url = upstream.base_url()`
//! // ("http://127.0.0.1:PORT/v1"), then script what it will get:
//! upstream.push_reply(Reply::openai_error(429, "rate_limit_error", "rate_limited", "slow down")
//!     .with_header("retry-after", "1"));
//! let body = canned::sse_body(Protocol::ChatCompletions, "gpt-test");
//! upstream.push_reply(Reply::sse(tb_test_support::chunking::split_every(&body, 7)));
//! assert!(upstream.base_url().starts_with("http://127.0.0.1:"));
//!
//! // ... send requests through the daemon, then inspect:
//! // let seen = upstream.wait_for_requests(2).await;
//! // assert_eq!(seen[1].json()["model"], "gpt-test");
//! // assert_eq!(upstream.next_stream_end().await, StreamEnd::Completed);
//! # let _ = (StreamEnd::Completed, Chunk::Hang);
//! # Ok(())
//! # }
//! ```

pub mod agent_upstream;
pub mod chunking;
pub mod daemon;
mod provider_sim;
pub mod relay;
mod reply;
mod server;
pub mod text_and_call;
pub mod tls;
mod video_sim;

pub use provider_sim::ProviderSim;
pub use reply::{Chunk, Reply, ReplyBody, StreamEnd};
pub use server::{MockUpstream, form_text};
pub use tb_sim_market as marketplace;
pub use tb_sim_market::{RecordedRequest, canned};
pub use video_sim::VideoSim;
