//! `tb_registry::parse_registry` (the marketplace registry document) and a
//! `ModelIndex` built from what it accepts.
//!
//! Input: the document bytes. Invariants: no panic; a document is Ok or
//! `RegistryError`; every accepted seller keeps the rules of
//! `marketplace.md` (unique id of 1–128 allowed characters, http(s) URL
//! without a trailing slash, de-duplicated non-empty models, de-duplicated
//! protocols and seller payment methods, ratios within 0–1), the default
//! seller is an accepted one; writing the accepted document back out and
//! parsing it again gives the same document; every index lookup of an
//! accepted model returns valid upstream indices, each once.

#![no_main]

use std::collections::{BTreeMap, HashSet};

use libfuzzer_sys::fuzz_target;
use tb_domain::{PaymentMethod, Protocol};
use tb_registry::{ALL_PAYMENT_METHODS, IndexedUpstream, ModelIndex, RegistryDoc, parse_registry};

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn ratio(ppm: u32) -> String {
    format!("{}.{:06}", ppm / 1_000_000, ppm % 1_000_000)
}

/// The accepted document written back as registry JSON.
fn write(doc: &RegistryDoc) -> String {
    let sellers: Vec<String> = doc
        .sellers
        .iter()
        .map(|s| {
            let list = |items: Vec<String>| format!("[{}]", items.join(","));
            format!(
                r#"{{"id":{},"name":{},"url":{},"models":{},"protocols":{},"paymentMethods":{},"discountRatio":{},"serviceFeeRatio":{}}}"#,
                json_str(s.id.as_str()),
                json_str(&s.name),
                json_str(&s.url),
                list(s.models.iter().map(|m| json_str(m)).collect()),
                list(s.protocols.iter().map(|p| json_str(p.as_str())).collect()),
                list(s.payment_methods.iter().map(|p| json_str(p.as_str())).collect()),
                ratio(s.discount_ratio.get()),
                ratio(s.service_fee_ratio.get()),
            )
        })
        .collect();
    let default = match &doc.default_seller {
        Some(id) => json_str(id),
        None => "null".into(),
    };
    format!(
        r#"{{"version":{},"defaultSeller":{},"sellers":[{}]}}"#,
        json_str(&doc.version),
        default,
        sellers.join(",")
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = parse_registry(data) else {
        return;
    };
    assert_eq!(
        Ok(&parsed),
        parse_registry(data).as_ref(),
        "not deterministic"
    );
    let doc = &parsed.doc;

    let mut ids = HashSet::new();
    for s in &doc.sellers {
        let id = s.id.as_str();
        assert!(ids.insert(id), "duplicate seller id {id:?}");
        assert!(!id.is_empty() && id.len() <= 128, "id length {id:?}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-~:@".contains(&b)),
            "id characters {id:?}"
        );
        let lower = s.url.to_ascii_lowercase();
        assert!(
            lower.starts_with("http://") || lower.starts_with("https://"),
            "url scheme {:?}",
            s.url
        );
        assert!(!s.url.ends_with('/'), "url ends with a slash {:?}", s.url);
        assert!(!s.models.is_empty(), "a seller without models");
        let models: HashSet<&String> = s.models.iter().collect();
        assert_eq!(models.len(), s.models.len(), "duplicate models");
        assert!(s.models.iter().all(|m| !m.is_empty()), "an empty model");
        let protocols: HashSet<Protocol> = s.protocols.iter().copied().collect();
        assert_eq!(protocols.len(), s.protocols.len(), "duplicate protocols");
        let methods: HashSet<PaymentMethod> = s.payment_methods.iter().copied().collect();
        assert_eq!(
            methods.len(),
            s.payment_methods.len(),
            "duplicate payment methods"
        );
        assert!(
            !methods.contains(&PaymentMethod::ProviderKey),
            "provider_key on a seller"
        );
        assert!(s.discount_ratio.get() <= 1_000_000, "discount over 1");
        assert!(s.service_fee_ratio.get() <= 1_000_000, "fee over 1");
        assert!(!s.name.trim().is_empty(), "an empty name");
    }
    if let Some(d) = &doc.default_seller {
        assert!(
            doc.seller(d).is_some(),
            "default seller {d:?} is not accepted"
        );
    }
    assert_eq!(doc.sellers_default_first().count(), doc.sellers.len());

    // Written back and read again: the same document.
    let text = write(doc);
    match parse_registry(text.as_bytes()) {
        Ok(again) => assert_eq!(&again.doc, doc, "re-parse differs:\n{text}"),
        Err(e) => panic!("the accepted document does not parse again: {e}\n{text}"),
    }

    // The index over the sellers.
    let upstreams: Vec<IndexedUpstream> = doc
        .sellers_default_first()
        .map(IndexedUpstream::from_seller)
        .collect();
    let n = upstreams.len();
    let aliases = BTreeMap::from([("alias".to_string(), "model-a".to_string())]);
    let index = ModelIndex::new(upstreams, aliases);
    let mut names: Vec<String> = index.models().into_iter().map(str::to_owned).collect();
    names.truncate(16);
    for s in doc.sellers.iter().take(4) {
        if let Some(m) = s.models.first() {
            names.push(format!("{}/{m}", s.id.as_str()));
            names.push(format!("tokenbuddy/{m}"));
        }
    }
    names.push("alias".into());
    for name in &names {
        let _ = index.sellers_of(name);
        let _ = index.prewarm_protocol(name);
        for protocol in Protocol::ALL {
            let found = index.lookup(name, protocol, &ALL_PAYMENT_METHODS);
            let unique: HashSet<usize> = found.upstreams.iter().copied().collect();
            assert_eq!(unique.len(), found.upstreams.len(), "an upstream twice");
            assert!(found.upstreams.iter().all(|&i| i < n), "index out of range");
        }
    }
});
