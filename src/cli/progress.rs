//! What `cuttle train` prints on the terminal besides the epoch lines: stable ranks and
//! their change per tracked layer, the switch's decisions, the final summary.

/// Stable ranks `s` (one per tracked layer), stable layers starred.
pub fn print_ranks(tracker: &cuttle::cuttlefish::tracker::Tracker, s: &[f64]) {
    let cells: Vec<String> = tracker
        .layers
        .iter()
        .zip(s)
        .map(|(l, v)| format!("{}{} {v:.1}", short_name(&l.name), if l.stable { "*" } else { "" }))
        .collect();
    for chunk in cells.chunks(6) {
        eprintln!("  srank  {}", chunk.join("  "));
    }
}

/// Each tracked layer's convergence statistic next to the threshold the next check applies
/// (a stable layer shows the check at which it became stable).
pub fn print_change(cf: &cuttle::cuttlefish::Cuttlefish, text: bool) {
    let d = &cf.detector;
    let cells: Vec<String> = cf
        .tracker
        .layers
        .iter()
        .map(|l| {
            let n = short_name(&l.name);
            match l.stable_at {
                Some(c) => format!("{n} stable@{c}"),
                None => format!("{n} {:.3}", l.statistic(d)),
            }
        })
        .collect();
    let t = &cf.tracker;
    let note = if t.all_stable() {
        format!("every layer stable: the switch comes before the next {}", if text { "step" } else { "epoch" })
    } else {
        format!("threshold {:.3} at check {}", t.last_threshold(d), t.len() - 1)
    };
    for (i, chunk) in cells.chunks(6).enumerate() {
        let tail = if i == 0 { format!("   ({note})") } else { String::new() };
        eprintln!("  change {}{tail}", chunk.join("  "));
    }
}

/// `layer2.0.conv1` as `L2.0.c1`, for the per-epoch tables.
pub fn short_name(name: &str) -> String {
    name.replace(".conv", ".c").replace("layer", "L").replace("transformer.h.", "h")
}

/// Where a run's epoch `e` (1-based) begins, in the run's own unit: "epoch e", or a
/// step-counted run's "step N" (`eval_every`: its steps per evaluation interval).
pub fn epoch_start(e: usize, eval_every: Option<usize>) -> String {
    match eval_every {
        Some(k) => format!("step {}", e.saturating_sub(1) * k + 1),
        None => format!("epoch {e}"),
    }
}

pub fn print_switch(r: &cuttle::cuttlefish::SwitchReport, eval_every: Option<usize>) {
    let at = epoch_start(r.epoch + 1, eval_every);
    eprintln!("cuttlefish: switch to low rank before {at} ({:.2}s)", r.seconds);
    for d in &r.decisions {
        let timing = match (d.full_ms, d.factorized_ms) {
            (Some(f), Some(l)) => format!(" (median of {}: full {f:.2} ms, factorized {l:.2} ms)", d.samples),
            _ => String::new(),
        };
        eprintln!(
            "  {:<22} rank {:>4} / {:<4} {}: {}{timing}",
            d.layer,
            d.rank,
            d.full_rank,
            if d.factorized { "factorized" } else { "kept full-rank" },
            d.reason
        );
    }
    let per = if eval_every.is_some() { "window" } else { "image" };
    if r.params_before == r.params_after {
        eprintln!(
            "  no layer factorized: parameters {}, forward MACs/{per} {:.1}M",
            r.params_after,
            r.macs_after as f64 / 1e6
        );
        return;
    }
    eprintln!(
        "  parameters {} -> {} ({:.2}x smaller), forward MACs/{per} {:.1}M -> {:.1}M",
        r.params_before,
        r.params_after,
        r.params_before as f64 / r.params_after as f64,
        r.macs_before as f64 / 1e6,
        r.macs_after as f64 / 1e6
    );
}

pub fn print_final(r: &cuttle::session::FinalReport, eval_every: Option<usize>) {
    match r.val_loss {
        Some(l) => eprintln!("final: validation loss {l:.4} nats per character"),
        None => eprintln!("final: test accuracy {:.2}%", 100.0 * r.test_acc),
    }
    eprintln!("  parameters {} -> {}", r.params_full, r.params_final);
    if let Some(converged) = r.converged {
        let factorized = converged && !r.ranks.is_empty();
        match r.switch_epoch.map(|e| epoch_start(e, eval_every)) {
            Some(at) if converged && !factorized => eprintln!(
                "  stable ranks settled before {at}, but no layer was worth factorizing (see the switch): the model stayed full-rank"
            ),
            Some(at) if converged => eprintln!("  switched to low rank before {at}; ranks {:?}", r.ranks),
            _ => eprintln!("  stable ranks did not settle: training stayed full-rank"),
        }
        let low = if factorized { format!(", low-rank {:.1}s", r.seconds_low_rank) } else { String::new() };
        eprintln!(
            "  time: full-rank {:.1}s{low}, rank estimation {:.2}s, switch {:.2}s",
            r.seconds_full_rank, r.seconds_rank_estimation, r.seconds_switch
        );
    }
}
