//! `tokenbuddyd pay`: the wallet (clawtip) payments the running daemon
//! waits for, each with its QR code drawn in the terminal; and the QR
//! rendering the control plane's `GET /v1/purchases/pending` uses for its
//! SVG image.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Args;
use qrcode::QrCode;
use qrcode::render::{svg, unicode};
use tb_control::api::{PendingPurchase, PendingPurchases, RechargePrompt};

use crate::Failure;

#[derive(Debug, Args)]
pub(crate) struct PayArgs {
    /// Also write each QR code as an SVG image into this directory
    /// (`<purchase_id>.svg`).
    #[arg(long, value_name = "DIR")]
    svg_dir: Option<PathBuf>,
}

/// `pay`: asks the running daemon for its pending payments and prints them.
pub(crate) fn run(data_dir: &Path, args: &PayArgs) -> Result<(), Failure> {
    let url = crate::doctor::running_control_url(data_dir).ok_or_else(|| {
        Failure::Runtime(anyhow!(
            "no daemon is running (no {})",
            data_dir.join("daemon.json").display()
        ))
    })?;
    let pending: PendingPurchases = crate::cli::runtime()?
        .block_on(crate::doctor::get(&format!("{url}/v1/purchases/pending")))
        .map_err(|e| Failure::Runtime(e.context(format!("asking the daemon at {url}"))))?;
    if pending.payments.is_empty() && pending.recharges.is_empty() {
        println!("no payment is waiting: nothing to pay");
        return Ok(());
    }
    for r in &pending.recharges {
        println!("{}", recharge_text(r));
    }
    for p in &pending.payments {
        print!("{}", payment_text(p));
        if let Some(dir) = &args.svg_dir {
            let file = write_svg(dir, p).map_err(Failure::Runtime)?;
            println!("QR image: {}", file.display());
        }
        println!();
    }
    Ok(())
}

/// One pending payment as `pay` prints it: who, how much, until when,
/// where, and the QR code (or why it cannot be drawn).
pub(crate) fn payment_text(p: &PendingPurchase) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "seller {} asks ${}.{:06} for {} micros of credit ({}, {})",
        p.seller_id,
        p.price_usd_micros / 1_000_000,
        p.price_usd_micros % 1_000_000,
        p.credit_micros,
        p.model,
        p.payment_method
    );
    let _ = writeln!(out, "purchase {} (quote {})", p.purchase_id, p.quote_id);
    let _ = writeln!(out, "expires at {}", utc(p.expires_at_ms));
    let _ = writeln!(out, "pay at: {}", p.pay_url);
    match terminal_qr(&p.qr_payload) {
        Ok(qr) => out.push_str(&qr),
        Err(e) => {
            let _ = writeln!(out, "(no QR code: {e})");
        }
    }
    if let Some(recharge) = &p.recharge_qr_url {
        let _ = writeln!(out, "recharge the wallet at: {recharge}");
    }
    out
}

/// Unix ms as an RFC 3339 UTC time (seconds), or the number when out of
/// range.
fn utc(ms: i64) -> String {
    u64::try_from(ms)
        .ok()
        .and_then(|ms| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms)))
        .map_or_else(
            || format!("{ms} ms since 1970"),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        )
}

/// A low wallet token as `pay` prints it: the balance, where to recharge,
/// and the QR code of the recharge link.
fn recharge_text(r: &RechargePrompt) -> String {
    let mut out = format!(
        "seller {}: the {} balance runs low ({} of {} micros left)\nrecharge at: {}\n",
        r.seller_id, r.payment_method, r.balance_micros, r.credit_micros, r.recharge_url
    );
    match terminal_qr(&r.recharge_url) {
        Ok(qr) => out.push_str(&qr),
        Err(e) => {
            let _ = writeln!(out, "(no QR code: {e})");
        }
    }
    out
}

/// `text` as a QR code in Unicode half blocks (two modules per character
/// row), light on dark so it scans from a dark terminal.
pub(crate) fn terminal_qr(text: &str) -> anyhow::Result<String> {
    let code = QrCode::new(text.as_bytes()).context("encoding the QR code")?;
    let mut drawn = code
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    drawn.push('\n');
    Ok(drawn)
}

/// `text` as a QR code in an SVG image (black on white, at least 200 px).
pub(crate) fn svg_qr(text: &str) -> anyhow::Result<String> {
    let code = QrCode::new(text.as_bytes()).context("encoding the QR code")?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// `text`'s QR code as rows of modules, `1` dark, `0` light (no quiet
/// zone).
pub(crate) fn qr_modules(text: &str) -> anyhow::Result<Vec<String>> {
    let code = QrCode::new(text.as_bytes()).context("encoding the QR code")?;
    let width = code.width();
    Ok(code
        .to_colors()
        .chunks(width)
        .map(|row| {
            row.iter()
                .map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' })
                .collect()
        })
        .collect())
}

fn write_svg(dir: &Path, p: &PendingPurchase) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The id is the daemon's own (`p-<ms>-<hex>`); anything else is
    // refused rather than used as a file name.
    if p.purchase_id.is_empty()
        || !p
            .purchase_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(anyhow!(
            "purchase id {:?} is not a file name",
            p.purchase_id
        ));
    }
    let file = dir.join(format!("{}.svg", p.purchase_id));
    std::fs::write(&file, &p.qr_svg).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// `text`'s QR code as SVG and as module rows; empty (and logged) when it
/// cannot be encoded, which the seller-side cap of 2048 bytes makes
/// unlikely.
fn both_codes(text: &str) -> (String, Vec<String>) {
    match (svg_qr(text), qr_modules(text)) {
        (Ok(svg), Ok(modules)) => (svg, modules),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(target: "purchase.pending", "no QR code: {e:#}");
            (String::new(), Vec::new())
        }
    }
}

/// The control plane's document for a wallet token running low.
pub(crate) fn recharge_to_wire(r: tb_seller::RechargePrompt) -> RechargePrompt {
    let (qr_svg, qr_modules) = both_codes(&r.recharge_url);
    RechargePrompt {
        seller_id: r.seller_id,
        payment_method: r.payment_method.as_str().to_owned(),
        balance_micros: r.balance_micros,
        credit_micros: r.credit_micros,
        recharge_url: r.recharge_url,
        qr_svg,
        qr_modules,
    }
}

/// The control plane's document for one pending payment, its QR code
/// rendered as SVG (empty when the payload cannot be encoded, which the
/// seller-side cap of 2048 bytes makes unlikely).
pub(crate) fn to_wire(p: tb_seller::PendingPayment) -> PendingPurchase {
    let (qr_svg, qr_modules) = both_codes(&p.request.qr_payload);
    PendingPurchase {
        purchase_id: p.purchase_id,
        seller_id: p.seller_id,
        model: p.model,
        payment_method: p.payment_method.as_str().to_owned(),
        quote_id: p.quote_id,
        credit_micros: p.credit_micros,
        price_usd_micros: p.price_usd_micros,
        created_at_ms: p.created_at_ms,
        expires_at_ms: p.expires_at_ms,
        pay_url: p.request.pay_url,
        qr_payload: p.request.qr_payload,
        qr_svg,
        qr_modules,
        recharge_qr_url: p.request.recharge_qr_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> PendingPurchase {
        PendingPurchase {
            purchase_id: "p-1-ab".into(),
            seller_id: "s-claw".into(),
            model: "deepseek-chat".into(),
            payment_method: "clawtip".into(),
            quote_id: "q-1".into(),
            credit_micros: 1_000_000,
            price_usd_micros: 1_500_000,
            created_at_ms: 0,
            expires_at_ms: 600_000,
            pay_url: "http://127.0.0.1:9/pay/q-1".into(),
            qr_payload: "http://127.0.0.1:9/pay/q-1".into(),
            qr_svg: svg_qr("http://127.0.0.1:9/pay/q-1").unwrap(),
            qr_modules: qr_modules("http://127.0.0.1:9/pay/q-1").unwrap(),
            recharge_qr_url: Some("http://127.0.0.1:9/recharge".into()),
        }
    }

    #[test]
    fn terminal_qr_is_a_square_block_of_half_blocks() {
        let qr = terminal_qr("http://127.0.0.1:9/pay/q-1").unwrap();
        let rows: Vec<&str> = qr.lines().collect();
        // Version 2 (25 modules) plus a 4-module quiet zone each side:
        // 33 columns, 17 character rows of two modules each.
        let width = rows[0].chars().count();
        assert!(width >= 25, "{width}");
        assert!(rows.iter().all(|r| r.chars().count() == width));
        assert_eq!(rows.len(), width.div_ceil(2));
        assert!(qr.contains('▀') || qr.contains('▄') || qr.contains('█'));
        // Different text, different code.
        assert_ne!(qr, terminal_qr("http://127.0.0.1:9/pay/q-2").unwrap());
    }

    #[test]
    fn modules_are_a_square_with_finder_patterns() {
        let rows = qr_modules("http://127.0.0.1:9/pay/q-1").unwrap();
        let n = rows.len();
        assert!(n >= 21 && (n - 21).is_multiple_of(4), "{n}");
        assert!(
            rows.iter()
                .all(|r| r.len() == n && r.chars().all(|c| c == '0' || c == '1'))
        );
        // The top-left finder pattern: a dark 7-module ring row, then
        // dark-light-…-light-dark.
        assert_eq!(&rows[0][..7], "1111111");
        assert_eq!(&rows[1][..7], "1000001");
        assert_eq!(&rows[n - 1][..7], "1111111");
    }

    #[test]
    fn low_balances_print_the_recharge_link_and_its_code() {
        let r = recharge_to_wire(tb_seller::RechargePrompt {
            seller_id: "s-claw".into(),
            payment_method: tb_domain::PaymentMethod::Clawtip,
            balance_micros: 150_000,
            credit_micros: 1_000_000,
            recharge_url: "http://127.0.0.1:9/recharge".into(),
        });
        assert!(r.qr_svg.contains("<svg") && !r.qr_modules.is_empty());
        let text = recharge_text(&r);
        for part in [
            "s-claw",
            "150000 of 1000000",
            "recharge at: http://127.0.0.1:9/recharge",
            "▀",
        ] {
            assert!(text.contains(part), "{part} in\n{text}");
        }
    }

    #[test]
    fn expiry_times_are_utc() {
        assert_eq!(utc(1_800_000_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(utc(-1), "-1 ms since 1970");
    }

    #[test]
    fn svg_qr_is_an_svg_image() {
        let svg = svg_qr("clawtip://pay?q=1").unwrap();
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<svg") && svg.contains("#000000") && svg.ends_with("</svg>"));
    }

    #[test]
    fn pay_prints_who_what_where_and_the_code() {
        let text = payment_text(&pending());
        for part in [
            "s-claw",
            "$1.500000",
            "1000000 micros",
            "pay at: http://127.0.0.1:9/pay/q-1",
            "expires at 1970-01-01T00:10:00Z",
            "recharge the wallet at: http://127.0.0.1:9/recharge",
            "▀",
        ] {
            assert!(text.contains(part), "{part} in\n{text}");
        }
    }

    #[test]
    fn svg_files_are_named_by_purchase_and_refuse_odd_ids() {
        let dir = tempfile::tempdir().unwrap();
        let file = write_svg(dir.path(), &pending()).unwrap();
        assert_eq!(file, dir.path().join("p-1-ab.svg"));
        assert!(std::fs::read_to_string(&file).unwrap().contains("<svg"));
        let mut odd = pending();
        odd.purchase_id = "../x".into();
        assert!(write_svg(dir.path(), &odd).is_err());
    }
}
