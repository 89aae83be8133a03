//! Model index rebuild and lookup at marketplace scale: 10,000 sellers × 50
//! models each, drawn from a pool of 2,000 model names (so most names are
//! served by many sellers), 2 protocols and 1–2 payment methods per seller.
//! The target for a rebuild is well under 50 ms in release on the 2-core
//! reference machine. Also: parsing the ~2.5 MB 10,000-seller document.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tb_domain::{PaymentMethod, Protocol, UpstreamId};
use tb_prices::Ppm;
use tb_registry::{IndexedUpstream, ModelIndex, SellerEntry, parse_registry};

const SELLERS: usize = 10_000;
const MODELS_PER_SELLER: usize = 50;
const MODEL_POOL: usize = 2_000;

fn sellers() -> Vec<SellerEntry> {
    (0..SELLERS)
        .map(|s| SellerEntry {
            id: UpstreamId::new(format!("seller-{s:05}")),
            name: format!("Seller {s}"),
            url: format!("https://seller-{s}.example"),
            models: (0..MODELS_PER_SELLER)
                .map(|k| format!("vendor/model-{:04}", (s * 7 + k * 37) % MODEL_POOL))
                .collect(),
            protocols: match s % 3 {
                0 => vec![Protocol::ChatCompletions, Protocol::Responses],
                1 => vec![Protocol::ChatCompletions, Protocol::Messages],
                _ => vec![Protocol::Messages, Protocol::ImagesGenerations],
            },
            payment_methods: if s % 2 == 0 {
                vec![PaymentMethod::Mock, PaymentMethod::Clawtip]
            } else {
                vec![PaymentMethod::Mock]
            },
            discount_ratio: Ppm::new(200_000),
            service_fee_ratio: Ppm::new(20_000),
        })
        .collect()
}

fn document(sellers: &[SellerEntry]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = sellers
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id.as_str(), "name": s.name, "url": s.url, "models": s.models,
                "protocols": s.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "paymentMethods": s.payment_methods.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "discountRatio": 0.2, "serviceFeeRatio": 0.02, "status": "active",
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "version": "2026-11-21T10:00:00Z", "defaultSeller": "seller-00000", "sellers": list,
    }))
    .unwrap()
}

fn manual() -> Vec<IndexedUpstream> {
    vec![IndexedUpstream::manual(
        UpstreamId::new("openrouter"),
        vec!["vendor/model-0001".into(), "deepseek-chat".into()],
        vec![Protocol::ChatCompletions, Protocol::Responses],
    )]
}

fn bench(c: &mut Criterion) {
    let sellers = sellers();
    let aliases = BTreeMap::from([("m1".to_string(), "vendor/model-0001".to_string())]);
    let mut group = c.benchmark_group("index");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    // What the daemon does on a new registry generation: sellers →
    // IndexedUpstream (clones every model id) → ModelIndex.
    group.bench_function("rebuild_from_sellers_10k_x50", |b| {
        b.iter_with_large_drop(|| {
            let mut upstreams = manual();
            upstreams.extend(sellers.iter().map(IndexedUpstream::from_seller));
            ModelIndex::new(upstreams, aliases.clone())
        })
    });
    // `ModelIndex::new` alone, given the upstream list.
    let upstreams: Vec<IndexedUpstream> = manual()
        .into_iter()
        .chain(sellers.iter().map(IndexedUpstream::from_seller))
        .collect();
    group.bench_function("new_10k_x50", |b| {
        b.iter_batched(
            || upstreams.clone(),
            |ups| ModelIndex::new(ups, aliases.clone()),
            BatchSize::LargeInput,
        )
    });
    group.finish();

    let index = ModelIndex::new(upstreams, aliases);
    let all = [
        PaymentMethod::ProviderKey,
        PaymentMethod::Mock,
        PaymentMethod::Clawtip,
    ];
    let mut group = c.benchmark_group("lookup");
    // ~250 sellers serve each model; about 170 over chat_completions.
    group.bench_function("hit_one_payment", |b| {
        b.iter(|| {
            index.lookup(
                black_box("vendor/model-0001"),
                Protocol::ChatCompletions,
                &[PaymentMethod::Mock],
            )
        })
    });
    group.bench_function("hit_three_payments_merged", |b| {
        b.iter(|| index.lookup(black_box("tokenbuddy/m1"), Protocol::ChatCompletions, &all))
    });
    group.bench_function("pinned", |b| {
        b.iter(|| {
            index.lookup(
                black_box("seller-09999/vendor/model-0001"),
                Protocol::Messages,
                &all,
            )
        })
    });
    group.bench_function("miss", |b| {
        b.iter(|| index.lookup(black_box("no-such-model"), Protocol::ChatCompletions, &all))
    });
    group.finish();

    let doc = document(&sellers);
    let mut group = c.benchmark_group("registry");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function(format!("parse_10k_sellers_{}_bytes", doc.len()), |b| {
        b.iter(|| parse_registry(black_box(&doc)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
