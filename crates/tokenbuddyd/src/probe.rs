//! `tokenbuddyd probe`: vet manual providers before trusting their
//! discount (docs/probe.md). For each provider × model, a small bounded
//! set of real chat completions calls — plain answer, stream with usage,
//! a tool-call round trip, `max_tokens` honoured — judged into a trust
//! matrix (prompt tokens reported vs counted locally and the answered
//! model id are read off the plain answer). The plan and its estimated
//! cost come first; the calls are made only with `--yes`. Results go to
//! the ledger (`probe_results`) and the running daemon is told to reload
//! them: routing pushes back what failed (tb-routing's `trust`).

mod checks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use http_body_util::BodyExt;
use serde::Serialize;
use tb_config::LoadedConfig;
use tb_domain::{ProbeCheck, Protocol, Verdict};
use tb_router::Upstream;
use tb_store::{ProbeCheckRow, ProbeRun};

use self::checks::{Answer, Judged, ProbeCall};
use crate::Failure;

/// How long one probe call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `tokenbuddyd probe [UPSTREAM…] [--model M…] [--yes] [--json]`.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// Manual providers to probe, by id (default: every one that speaks
    /// chat_completions).
    upstreams: Vec<String>,
    /// Models to probe (default: each provider's models, only the
    /// routing.focus_models among them when that is set). Repeatable.
    #[arg(long = "model", value_name = "MODEL")]
    models: Vec<String>,
    /// Make the calls. Without it: print the plan and its estimated cost
    /// and exit.
    #[arg(long)]
    yes: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// One upstream × model to probe.
struct Target {
    upstream: Arc<Upstream>,
    model: String,
    /// Estimated cost of its calls, USD micros; `None` when unpriced.
    cost_usd_micros: Option<u64>,
}

/// `--json` without `--yes`: what would be called and what it would cost.
#[derive(Debug, Serialize)]
struct PlanDoc {
    targets: Vec<PlanTarget>,
    calls: usize,
    /// Known costs summed, USD micros.
    estimated_cost_usd_micros: u64,
    /// Some target has no price: the estimate is a lower bound.
    cost_incomplete: bool,
    max_cost_usd_micros: u64,
    ran: bool,
}

#[derive(Debug, Serialize)]
struct PlanTarget {
    upstream_id: String,
    model: String,
    calls: usize,
    estimated_cost_usd_micros: Option<u64>,
}

/// `--json` with `--yes`: the trust matrix.
#[derive(Debug, Serialize)]
struct ResultsDoc {
    probed_at_ms: i64,
    estimated_cost_usd_micros: u64,
    results: Vec<TargetResult>,
    /// Whether the running daemon took the new results (`None`: none runs).
    daemon_reloaded: Option<bool>,
}

#[derive(Debug, Serialize)]
struct TargetResult {
    upstream_id: String,
    model: String,
    checks: Vec<Judged>,
}

pub(crate) fn run(loaded: LoadedConfig, args: &ProbeArgs) -> Result<(), Failure> {
    let env = |var: &str| std::env::var(var).ok();
    let routing = tb_router::Routing::new(&loaded.config, &env, None)
        .map_err(|e| Failure::Config(e.into()))?;
    let targets = targets(&loaded.config, &routing, args).map_err(Failure::Config)?;
    let plan = plan_doc(&targets, loaded.config.probe.max_cost_usd_micros, args.yes);
    if !args.yes {
        print_plan(&plan, args.json);
        return Ok(());
    }
    if plan.estimated_cost_usd_micros > plan.max_cost_usd_micros {
        return Err(Failure::Runtime(anyhow!(
            "the probe would cost about {} USD micros, more than probe.max_cost_usd_micros = {}; probe fewer upstreams or models (UPSTREAM…, --model), or raise the limit",
            plan.estimated_cost_usd_micros,
            plan.max_cost_usd_micros
        )));
    }
    if !args.json {
        print_plan(&plan, false);
    }
    crate::cli::runtime()?
        .block_on(probe_all(&loaded, &targets, &plan, args.json))
        .map_err(Failure::Runtime)
}

/// The upstream × model pairs to probe, with their estimated cost.
fn targets(
    config: &tb_config::Config,
    routing: &tb_router::Routing,
    args: &ProbeArgs,
) -> anyhow::Result<Vec<Target>> {
    let table = routing.table();
    let known: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
    if let Some(unknown) = args.upstreams.iter().find(|u| !known.contains(&u.as_str())) {
        bail!(
            "{unknown:?} is not a [[providers]] id; the providers are: {}",
            known.join(", ")
        );
    }
    let mut out = Vec::new();
    for p in &config.providers {
        if !args.upstreams.is_empty() && !args.upstreams.contains(&p.id) {
            continue;
        }
        let speaks_chat = p
            .protocols
            .clone()
            .unwrap_or_else(|| p.kind.default_protocols())
            .contains(&Protocol::ChatCompletions);
        let upstream = table.upstreams().iter().find(|u| u.id.as_str() == p.id);
        let (true, Some(upstream)) = (speaks_chat, upstream) else {
            if args.upstreams.contains(&p.id) {
                bail!(
                    "provider {:?} does not speak chat_completions, which the probe uses; add it to its `protocols` or probe another provider",
                    p.id
                );
            }
            continue;
        };
        for model in models_of(p, config, args) {
            let cost = estimate(upstream, &model);
            out.push(Target {
                upstream: Arc::clone(upstream),
                model,
                cost_usd_micros: cost,
            });
        }
    }
    if out.is_empty() {
        bail!(
            "nothing to probe: no [[providers]] entry speaking chat_completions serves the models asked for; check the provider ids, --model and routing.focus_models"
        );
    }
    Ok(out)
}

/// The models of provider `p` to probe: `--model` (those it serves), else
/// its models (only the focus models among them when those are set).
fn models_of(
    p: &tb_config::ProviderConfig,
    config: &tb_config::Config,
    args: &ProbeArgs,
) -> Vec<String> {
    let focus = &config.routing.focus_models;
    p.models
        .iter()
        .filter(|m| {
            if args.models.is_empty() {
                focus.is_empty() || focus.contains(m) || !p.models.iter().any(|x| focus.contains(x))
            } else {
                args.models.contains(m)
            }
        })
        .cloned()
        .collect()
}

/// The estimated cost of every call of a probe of `model` on `upstream`:
/// the local input count and each call's `max_tokens` of output, at the
/// upstream's price. `None` when the model is unpriced there.
fn estimate(upstream: &Upstream, model: &str) -> Option<u64> {
    let price = upstream.price_of(model);
    checks::all_calls(model).iter().try_fold(0u64, |sum, c| {
        let usage = tb_billing::usage::Usage {
            input_tokens: Some(c.input_tokens),
            output_tokens: Some(c.max_output_tokens),
            ..Default::default()
        };
        Some(sum.saturating_add(price.cost(&usage)?))
    })
}

fn plan_doc(targets: &[Target], max_cost: u64, ran: bool) -> PlanDoc {
    let calls_each = checks::all_calls("m").len();
    PlanDoc {
        targets: targets
            .iter()
            .map(|t| PlanTarget {
                upstream_id: t.upstream.id.as_str().to_string(),
                model: t.model.clone(),
                calls: calls_each,
                estimated_cost_usd_micros: t.cost_usd_micros,
            })
            .collect(),
        calls: calls_each * targets.len(),
        estimated_cost_usd_micros: targets.iter().filter_map(|t| t.cost_usd_micros).sum(),
        cost_incomplete: targets.iter().any(|t| t.cost_usd_micros.is_none()),
        max_cost_usd_micros: max_cost,
        ran,
    }
}

fn print_plan(plan: &PlanDoc, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(plan).unwrap_or_default());
        return;
    }
    println!("probe plan: {} calls", plan.calls);
    for t in &plan.targets {
        let cost = t
            .estimated_cost_usd_micros
            .map_or("unknown (no price)".to_string(), |c| {
                format!("{c} USD micros")
            });
        println!(
            "  {} × {}: {} calls, estimated cost {cost}",
            t.upstream_id, t.model, t.calls
        );
    }
    let bound = if plan.cost_incomplete {
        " at least"
    } else {
        ""
    };
    println!(
        "estimated total:{bound} {} USD micros (probe.max_cost_usd_micros = {})",
        plan.estimated_cost_usd_micros, plan.max_cost_usd_micros
    );
    if !plan.ran {
        println!("no call made; run again with --yes to make these calls");
    }
}

/// Runs every target, stores the results, tells the daemon, prints.
async fn probe_all(
    loaded: &LoadedConfig,
    targets: &[Target],
    plan: &PlanDoc,
    json: bool,
) -> anyhow::Result<()> {
    let config = &loaded.config;
    let env = |var: &str| std::env::var(var).ok();
    let client = tb_proxy::outbound_client(config, &env).context("building the HTTP client")?;
    let probed_at_ms = crate::serve::unix_ms();
    let mut results = Vec::with_capacity(targets.len());
    for t in targets {
        let judged = probe_one(&client, t, config.probe.overcount_threshold).await;
        results.push((t, judged));
    }
    let (ledger, _) =
        crate::ledger::open(config.ledger.url.as_deref(), &loaded.paths.data_dir).await?;
    for (t, judged) in &results {
        ledger
            .save_probe(&run_row(t, probed_at_ms, judged))
            .await
            .context("storing the probe results in the ledger")?;
    }
    ledger.close().await;
    let reloaded = notify_daemon(&loaded.paths.data_dir).await;
    let doc = ResultsDoc {
        probed_at_ms,
        estimated_cost_usd_micros: plan.estimated_cost_usd_micros,
        results: results
            .into_iter()
            .map(|(t, checks)| TargetResult {
                upstream_id: t.upstream.id.as_str().to_string(),
                model: t.model.clone(),
                checks,
            })
            .collect(),
        daemon_reloaded: reloaded.as_ref().map(Result::is_ok),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", matrix(&doc));
    }
    match reloaded {
        Some(Err(e)) => eprintln!(
            "tokenbuddyd: warning: the running daemon was not told about the new results ({e:#}); it reads them when it next starts"
        ),
        Some(Ok(())) if !json => println!("the running daemon reloaded the results"),
        _ => {}
    }
    Ok(())
}

/// The calls of one target, judged.
async fn probe_one(
    client: &tb_proxy::UpstreamClient,
    t: &Target,
    threshold_pct: u32,
) -> Vec<Judged> {
    let m = &t.model;
    let plain = checks::plain_call(m);
    let started = Instant::now();
    let plain_answer = send(client, &t.upstream, &plain).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let stream = send(client, &t.upstream, &checks::stream_call(m)).await;
    let first = checks::tool_call_made(&send(client, &t.upstream, &checks::tool_call(m)).await);
    let second = match &first {
        Ok((id, args)) => {
            Some(send(client, &t.upstream, &checks::tool_result_call(m, id, args)).await)
        }
        Err(_) => None,
    };
    let long = send(client, &t.upstream, &checks::max_tokens_call(m)).await;
    vec![
        checks::judge_plain(&plain_answer, latency_ms),
        checks::judge_stream(&stream),
        checks::judge_tool(first, second.as_ref()),
        checks::judge_max_tokens(&long),
        checks::judge_prompt_tokens(&plain_answer, plain.input_tokens, threshold_pct),
        checks::judge_model_id(&plain_answer, m),
    ]
}

/// One call through the pooled outbound client, with the provider's key
/// and headers. An error names the status or the transport failure, never
/// the body (an upstream may quote the key back).
async fn send(client: &tb_proxy::UpstreamClient, upstream: &Upstream, call: &ProbeCall) -> Answer {
    let uri = upstream
        .url(Protocol::ChatCompletions, None)
        .map_err(|e| format!("the provider's base_url makes no URL: {e}"))?;
    let body = serde_json::to_vec(&call.body).map_err(|e| e.to_string())?;
    let mut req = http::Request::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some((name, value)) = upstream.auth_header() {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in upstream.extra_headers() {
        headers.insert(name.clone(), value.clone());
    }
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| tb_proxy::error_chain(&e))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())))
}

fn run_row(t: &Target, probed_at_ms: i64, judged: &[Judged]) -> ProbeRun {
    ProbeRun {
        upstream_id: t.upstream.id.as_str().to_string(),
        model: t.model.clone(),
        probed_at_ms,
        checks: judged
            .iter()
            .map(|j| ProbeCheckRow {
                check: j.check,
                verdict: j.verdict,
                measured: j.measured,
                detail: j.detail.clone(),
            })
            .collect(),
    }
}

/// The trust matrix: one row per upstream × model, one column per check,
/// then the details of what did not pass.
fn matrix(doc: &ResultsDoc) -> String {
    use std::fmt::Write as _;
    let mut rows: Vec<Vec<String>> = vec![
        ["upstream", "model"]
            .into_iter()
            .map(String::from)
            .chain(ProbeCheck::ALL.iter().map(|c| c.as_str().to_string()))
            .collect(),
    ];
    for r in &doc.results {
        let mut row = vec![r.upstream_id.clone(), r.model.clone()];
        for c in ProbeCheck::ALL {
            row.push(
                r.checks
                    .iter()
                    .find(|x| x.check == c)
                    .map_or("-".into(), |x| {
                        Judged {
                            check: x.check,
                            verdict: x.verdict,
                            measured: x.measured,
                            detail: String::new(),
                        }
                        .cell()
                    }),
            );
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    for r in &doc.results {
        for c in r.checks.iter().filter(|c| c.verdict != Verdict::Pass) {
            let _ = writeln!(
                out,
                "{} {} × {}: {}: {}",
                c.verdict.mark(),
                r.upstream_id,
                r.model,
                c.check,
                c.detail
            );
        }
    }
    out
}

/// Tells the running daemon (if any) to reload the probe results:
/// `POST /v1/probe/reload` with the access token. `None` when no daemon
/// runs.
async fn notify_daemon(data_dir: &std::path::Path) -> Option<anyhow::Result<()>> {
    let url = crate::doctor::running_control_url(data_dir)?;
    Some(crate::doctor::post_authorized(data_dir, &format!("{url}/v1/probe/reload")).await)
}
