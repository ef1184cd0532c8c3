//! When to switch to low rank: the per-layer convergence test of the Cuttlefish reference
//! (`layer_rank_stable_detector`), and the rank rule.
//!
//! Each tracked layer keeps its stable-rank history h = [s(0), s(1), ...] (s(0) at
//! initialisation, s(e) after e epochs; stable ranks are floored to integers as the
//! reference does). A layer is stable once `epoch >= P` and the mean of the last `M`
//! values of |gradient(EMA(h))| is at most the threshold; EMA weight 2/(P+1), central
//! differences (one-sided at the ends, numpy's `gradient`). Stable is sticky. The
//! threshold loosens when only two or one layers are still moving (counted at the start of
//! the epoch's check). When every layer is stable the switch happens at the next epoch
//! boundary. No upper bound: if ranks never settle, training stays full-rank.
//!
//! Short schedules: the reference's P=15, M=11, thr 0.1/0.25/0.5 are for 300 epochs. For
//! a schedule of E epochs, `Detector::for_epochs` keeps the same window *as a fraction of
//! the schedule* (P = round(15·E/300), at least 3; M = round(11·P/15), at least 2) and
//! expresses the threshold per the same fraction of the schedule, i.e. multiplies it by
//! 300/E (stable ranks change about 300/E times faster per epoch when the whole schedule
//! is compressed into E epochs). E = 300 gives the reference values exactly.

/// The convergence test's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detector {
    /// Minimum epochs before a layer may be stable; also the EMA span.
    pub p: usize,
    /// Window of derivatives averaged.
    pub m: usize,
    pub thr: f64,
    /// Looser thresholds while few layers remain unstable: `(lo, hi, thr)` applies when
    /// lo ≤ remaining ≤ hi (the first match wins).
    pub looser: [(usize, usize, f64); 2],
}

impl Detector {
    /// The reference CIFAR values (300 epochs): 0.25 with two layers left, 0.5 with one.
    pub const REFERENCE: Detector = Detector { p: 15, m: 11, thr: 0.1, looser: [(2, 2, 0.25), (1, 1, 0.5)] };

    /// The reference DeiT/ResMLP values (300 epochs, `cuttlefish_deit/main.py`): 1.0275
    /// with 5-9 layers left, 2.055 with 4 or fewer.
    pub const REFERENCE_TRANSFORMER: Detector =
        Detector { p: 5, m: 5, thr: 0.411, looser: [(5, 9, 1.0275), (0, 4, 2.055)] };

    /// The reference CIFAR values scaled to a schedule of `epochs` epochs (see the module doc).
    pub fn for_epochs(epochs: usize) -> Detector {
        Self::scaled(Detector::REFERENCE, epochs)
    }

    /// `reference` (a 300-epoch setting) scaled to `epochs` epochs: P and M kept as a
    /// fraction of the schedule (P at least 3, M at least 2), thresholds ×300/E.
    pub fn scaled(reference: Detector, epochs: usize) -> Detector {
        if epochs >= 300 {
            return reference;
        }
        let e = epochs.max(1) as f64;
        let r = reference;
        let p = ((r.p as f64 * e / 300.0).round() as usize).clamp(3.min(r.p), r.p);
        let m = ((r.m as f64 * p as f64 / r.p as f64).round() as usize).clamp(2.min(r.m), r.m);
        let scale = 300.0 / e;
        let looser = r.looser.map(|(lo, hi, t)| (lo, hi, t * scale));
        Detector { p, m, thr: r.thr * scale, looser }
    }

    /// The threshold while `remaining` layers are still unstable.
    pub fn threshold(&self, remaining: usize) -> f64 {
        self.looser.iter().find(|(lo, hi, _)| (*lo..=*hi).contains(&remaining)).map_or(self.thr, |l| l.2)
    }
}

/// Exponential moving average with weight `w`, seeded with the first value.
pub fn ema(h: &[f64], w: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(h.len());
    for (i, &x) in h.iter().enumerate() {
        out.push(if i == 0 { x } else { w * x + (1.0 - w) * out[i - 1] });
    }
    out
}

/// |numpy.gradient(xs)|: central differences inside, one-sided at the ends.
pub fn abs_gradient(xs: &[f64]) -> Vec<f64> {
    let n = xs.len();
    (0..n)
        .map(|i| match (i, n) {
            (_, 0 | 1) => 0.0,
            (0, _) => xs[1] - xs[0],
            (i, n) if i == n - 1 => xs[n - 1] - xs[n - 2],
            (i, _) => (xs[i + 1] - xs[i - 1]) / 2.0,
        })
        .map(f64::abs)
        .collect()
}

/// `min(full, ceil(s_now · full / s_init))`, at least `lower_frac · full` and at least 1.
pub fn chosen_rank(s_now: f64, s_init: f64, full: usize, lower_frac: f64) -> usize {
    let scaled = (s_now * full as f64 / s_init.max(1e-12)).ceil();
    let r = if scaled.is_finite() { scaled as usize } else { full };
    let lower = (lower_frac * full as f64).floor() as usize;
    r.min(full).max(lower).max(1)
}

/// One tracked layer: its stable-rank history and whether (and when) it became stable.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerTrack {
    pub name: String,
    /// Stable rank per epoch: history[e] after e epochs (e = 0 is initialisation),
    /// unfloored; the detector floors.
    pub history: Vec<f64>,
    pub stable: bool,
    /// The epoch (epochs trained) at which the layer became stable.
    pub stable_at: Option<usize>,
}

/// Every tracked layer, in the order the stable ranks are given to [`Tracker::observe`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Tracker {
    pub layers: Vec<LayerTrack>,
}

impl Tracker {
    pub fn new(names: Vec<String>) -> Tracker {
        let layers = names
            .into_iter()
            .map(|name| LayerTrack { name, history: vec![], stable: false, stable_at: None })
            .collect();
        Tracker { layers }
    }

    /// The tracked layers' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.name.clone()).collect()
    }

    /// Records the stable ranks after `epoch` epochs and runs the test; true when every
    /// layer is stable.
    pub fn observe(&mut self, det: &Detector, epoch: usize, sranks: &[f64]) -> bool {
        assert_eq!(sranks.len(), self.layers.len(), "one stable rank per tracked layer");
        for (l, &s) in self.layers.iter_mut().zip(sranks) {
            l.history.push(s);
        }
        let remain = self.layers.iter().filter(|l| !l.stable).count();
        let thr = det.threshold(remain);
        let w = 2.0 / (det.p as f64 + 1.0);
        for l in &mut self.layers {
            if l.stable || epoch < det.p {
                continue;
            }
            let floored: Vec<f64> = l.history.iter().map(|s| s.floor()).collect();
            let g = abs_gradient(&ema(&floored, w));
            let tail = &g[g.len().saturating_sub(det.m)..];
            let mean = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
            if mean <= thr {
                l.stable = true;
                l.stable_at = Some(epoch);
            }
        }
        self.all_stable()
    }

    pub fn all_stable(&self) -> bool {
        self.layers.iter().all(|l| l.stable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_numpy() {
        // numpy.gradient([1, 2, 4, 7, 11]) = [1, 1.5, 2.5, 3.5, 4]
        assert_eq!(abs_gradient(&[1., 2., 4., 7., 11.]), vec![1., 1.5, 2.5, 3.5, 4.]);
        assert_eq!(abs_gradient(&[3.]), vec![0.]);
    }

    #[test]
    fn ema_is_seeded_with_the_first_value() {
        assert_eq!(ema(&[4., 0., 0.], 0.5), vec![4., 2., 1.]);
    }

    #[test]
    fn reference_detector_at_300_epochs_and_scaled_below() {
        assert_eq!(Detector::for_epochs(300), Detector::REFERENCE);
        let d = Detector::for_epochs(20);
        assert_eq!((d.p, d.m), (3, 2));
        assert!((d.thr - 1.5).abs() < 1e-12);
        let t = Detector::scaled(Detector::REFERENCE_TRANSFORMER, 8);
        assert_eq!((t.p, t.m), (3, 3));
        assert!((t.threshold(20) - 0.411 * 37.5).abs() < 1e-9 && (t.threshold(4) - 2.055 * 37.5).abs() < 1e-9);
        assert_eq!(Detector::REFERENCE_TRANSFORMER.threshold(7), 1.0275);
        assert_eq!(Detector::REFERENCE.threshold(2), 0.25);
        assert_eq!(Detector::REFERENCE.threshold(3), 0.1);
    }

    #[test]
    fn rank_rule_clamps() {
        assert_eq!(chosen_rank(10.0, 20.0, 64, 0.0), 32);
        assert_eq!(chosen_rank(30.0, 20.0, 64, 0.0), 64);
        assert_eq!(chosen_rank(1.0, 20.0, 64, 0.2), 12);
        assert_eq!(chosen_rank(10.2, 20.0, 64, 0.0), 33);
    }

    #[test]
    fn constant_ranks_switch_after_p_epochs_and_stay_sticky() {
        let det = Detector { p: 3, m: 2, ..Detector::REFERENCE };
        let mut t = Tracker::new(vec!["a".into(), "b".into()]);
        assert!(!t.observe(&det, 0, &[10.0, 20.0]));
        assert!(!t.observe(&det, 1, &[10.0, 20.0]));
        assert!(!t.observe(&det, 2, &[10.0, 20.0]));
        assert!(t.observe(&det, 3, &[10.0, 20.0]));
        assert_eq!(t.layers.iter().map(|l| l.stable_at).collect::<Vec<_>>(), vec![Some(3), Some(3)]);
        // Sticky: a later jump does not unset it.
        assert!(t.observe(&det, 4, &[50.0, 90.0]));
    }

    #[test]
    fn serialises_as_a_list_of_layers_and_back() {
        let det = Detector { p: 1, m: 2, ..Detector::REFERENCE };
        let mut t = Tracker::new(vec!["a".into(), "b".into()]);
        t.observe(&det, 0, &[10.5, 20.0]);
        t.observe(&det, 1, &[10.25, 27.0]);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.starts_with(r#"[{"name":"a","history":[10.5,10.25],"stable":true,"stable_at":1}"#), "{json}");
        assert_eq!(serde_json::from_str::<Tracker>(&json).unwrap(), t);
    }

    #[test]
    fn moving_ranks_never_switch() {
        let det = Detector { p: 3, m: 2, ..Detector::REFERENCE };
        let mut t = Tracker::new(vec!["a".into()]);
        for e in 0..50 {
            assert!(!t.observe(&det, e, &[100.0 - 2.0 * e as f64]));
        }
    }

    #[test]
    fn threshold_loosens_for_the_last_layer() {
        let det = Detector { p: 2, m: 2, ..Detector::REFERENCE };
        let mut t = Tracker::new(vec!["a".into()]);
        // Derivative about 0.4 per epoch: above 0.1, below the single-layer 0.5.
        let mut stable = false;
        for e in 0..20 {
            stable = t.observe(&det, e, &[100.0 + (0.4 * e as f64).floor()]);
        }
        assert!(stable);
    }
}
