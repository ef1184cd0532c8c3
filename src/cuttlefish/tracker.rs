//! When to switch to low rank: the per-layer convergence test of the Cuttlefish reference
//! (`layer_rank_stable_detector`), and the rank rule.
//!
//! Each tracked layer keeps its stable-rank history h = [s(0), s(1), ...]: s(0) at
//! initialisation, s(i) at the i-th *check* (stable ranks are floored to integers as the
//! reference does). A layer is stable once `check >= P` and the mean of the last `M`
//! values of |gradient(EMA(h))| is at most the threshold; EMA weight 2/(P+1), central
//! differences (one-sided at the ends, numpy's `gradient`). Stable is sticky. The
//! threshold loosens when only few layers are still moving (counted at the start of the
//! check). When every layer is stable the switch happens at the next epoch boundary. No
//! upper bound: if ranks never settle, training stays full-rank.
//!
//! Short schedules. The reference checks once per epoch of a 300-epoch run: P = 15 checks
//! are 5% of the schedule, the window M = 11 checks, and the threshold 0.1 is a change of
//! stable rank per 1/300 of the schedule. A run of E epochs checks `per_epoch` =
//! min(steps per epoch, ⌈300/E⌉) times per epoch ([`Checks`]), so the test sees as many
//! points per schedule as the reference's run and its P, M and threshold keep their
//! meaning unchanged. Only when the schedule has fewer than 300 steps in all do the
//! N = E·per_epoch checks fall short; then [`Detector::scaled`] keeps the window as the
//! same fraction of the schedule (P = round(15·N/300), at least 3; M = round(11·P/15), at
//! least 2) and the threshold per the same fraction of the schedule (×300/N). A 300-epoch
//! run checks once per epoch with the reference values exactly.
//!
//! Checking once per epoch on a short run (the previous rule) made the test vacuous: for
//! 6 epochs P was 3 (half the run) and the threshold 5.0 per epoch, above any rate the
//! stable ranks showed after the first epoch, so every layer was "stable" the first
//! moment it could be.
//!
//! Warm-up. The reference's minimum (epoch 15) comes after its learning-rate warm-up
//! (epochs 0-4). Our schedules warm up for longer: one-cycle rises from base/25 over the
//! first quarter of the run. While the rate is that low the weights hardly move, so a flat
//! stable-rank curve there means "not started", not "settled" (measured on the main job:
//! every layer's stable rank moved less than 0.05 over the first 15 checks, then fell by
//! 4 within the next 15). So no layer is stable before the warm-up has ended either:
//! `earliest` = max(P, the check at the warm-up's end) ([`Detector::not_before`]). The
//! reference's schedule (multistep, warm-up inside the first 15 epochs) keeps P.

/// The convergence test's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detector {
    /// Minimum checks before a layer may be stable; also the EMA span.
    pub p: usize,
    /// The first check at which a layer may be stable: P, or the end of the learning
    /// rate's warm-up when that is later (see the module doc).
    pub earliest: usize,
    /// Window of derivatives averaged, in checks.
    pub m: usize,
    /// Largest mean |d srank / d check| of a stable layer.
    pub thr: f64,
    /// Looser thresholds while few layers remain unstable: `(lo, hi, thr)` applies when
    /// lo ≤ remaining ≤ hi (the first match wins).
    pub looser: [(usize, usize, f64); 2],
}

impl Detector {
    /// The reference CIFAR values (300 epochs): 0.25 with two layers left, 0.5 with one.
    pub const REFERENCE: Detector =
        Detector { p: 15, earliest: 15, m: 11, thr: 0.1, looser: [(2, 2, 0.25), (1, 1, 0.5)] };

    /// The reference DeiT/ResMLP values (300 epochs, `cuttlefish_deit/main.py`): 1.0275
    /// with 5-9 layers left, 2.055 with 4 or fewer.
    pub const REFERENCE_TRANSFORMER: Detector =
        Detector { p: 5, earliest: 5, m: 5, thr: 0.411, looser: [(5, 9, 1.0275), (0, 4, 2.055)] };

    /// How many checks the reference's schedule has: one per epoch of 300.
    pub const REFERENCE_CHECKS: usize = 300;

    /// `reference` (a setting for [`Self::REFERENCE_CHECKS`] checks) for a schedule of
    /// `checks` checks: unchanged from 300 up; below, P and M kept as a fraction of the
    /// schedule (P at least 3, M at least 2) and thresholds ×300/checks.
    pub fn scaled(reference: Detector, checks: usize) -> Detector {
        if checks >= Self::REFERENCE_CHECKS {
            return reference;
        }
        let n = checks.max(1) as f64;
        let r = reference;
        let full = Self::REFERENCE_CHECKS as f64;
        let p = ((r.p as f64 * n / full).round() as usize).clamp(3.min(r.p), r.p);
        let m = ((r.m as f64 * p as f64 / r.p as f64).round() as usize).clamp(2.min(r.m), r.m);
        let scale = full / n;
        let looser = r.looser.map(|(lo, hi, t)| (lo, hi, t * scale));
        Detector { p, earliest: p, m, thr: r.thr * scale, looser }
    }

    /// This detector with no layer stable before check `check` either (the end of the
    /// learning-rate warm-up).
    pub fn not_before(self, check: usize) -> Detector {
        Detector { earliest: self.p.max(check), ..self }
    }

    /// The threshold while `remaining` of `tracked` layers are still unstable. The looser
    /// thresholds are for the last layers still moving, so they apply only once at least
    /// one layer has settled: the reference's models track more layers than any bracket
    /// holds (ResNet-18 10, DeiT-B 36), where this changes nothing, but gpt-mini tracks 8,
    /// which DeiT's "5-9 left" bracket would loosen from the first check.
    pub fn threshold_of(&self, remaining: usize, tracked: usize) -> f64 {
        if remaining >= tracked {
            return self.thr;
        }
        self.threshold(remaining)
    }

    /// The threshold while `remaining` layers are still unstable (the reference's brackets).
    pub fn threshold(&self, remaining: usize) -> f64 {
        self.looser.iter().find(|(lo, hi, _)| (*lo..=*hi).contains(&remaining)).map_or(self.thr, |l| l.2)
    }
}

/// When a run estimates stable ranks: `per_epoch` times per epoch of `steps` steps, after
/// steps ⌊j·steps/per_epoch⌋ for j = 1..=per_epoch (the last at the epoch's end). Check
/// number i (1-based over the whole run) is j of epoch (i-1)/per_epoch; check 0 is the
/// initialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checks {
    pub per_epoch: usize,
    pub steps: usize,
}

impl Checks {
    /// As many checks per schedule as the reference's 300 epochs, at most one per step.
    pub fn for_schedule(epochs: usize, steps_per_epoch: usize) -> Checks {
        let per_epoch = Detector::REFERENCE_CHECKS.div_ceil(epochs.max(1)).min(steps_per_epoch).max(1);
        Checks { per_epoch, steps: steps_per_epoch.max(1) }
    }

    /// Checks in a schedule of `epochs` epochs.
    pub fn total(&self, epochs: usize) -> usize {
        self.per_epoch * epochs
    }

    /// The step (count of steps done in the epoch) after which check j (1-based) falls.
    pub fn step_of(&self, j: usize) -> usize {
        j * self.steps / self.per_epoch
    }

    /// The first check step after `done` steps of an epoch (the epoch's end at most).
    pub fn next_after(&self, done: usize) -> usize {
        (1..=self.per_epoch).map(|j| self.step_of(j)).find(|&s| s > done).unwrap_or(self.steps)
    }

    /// The run-wide number of the check that falls after `done` steps of epoch `epoch`, if
    /// one does.
    pub fn at(&self, epoch: usize, done: usize) -> Option<usize> {
        (1..=self.per_epoch).find(|&j| self.step_of(j) == done).map(|j| epoch * self.per_epoch + j)
    }

    /// Checks made once `done` steps of epoch `epoch` are trained (initialisation not
    /// counted).
    pub fn made(&self, epoch: usize, done: usize) -> usize {
        epoch * self.per_epoch + (1..=self.per_epoch).filter(|&j| self.step_of(j) <= done).count()
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
    /// Stable rank per check: history[i] at check i (0 is initialisation), unfloored; the
    /// detector floors.
    pub history: Vec<f64>,
    pub stable: bool,
    /// The check at which the layer became stable.
    pub stable_at: Option<usize>,
}

impl LayerTrack {
    /// The convergence statistic now: the mean of the last M values of
    /// |gradient(EMA(floor(history)))|, in stable rank per check.
    pub fn statistic(&self, det: &Detector) -> f64 {
        let w = 2.0 / (det.p as f64 + 1.0);
        let floored: Vec<f64> = self.history.iter().map(|s| s.floor()).collect();
        let g = abs_gradient(&ema(&floored, w));
        let tail = &g[g.len().saturating_sub(det.m)..];
        tail.iter().sum::<f64>() / tail.len().max(1) as f64
    }
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

    /// Checks recorded, initialisation included.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.history.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The threshold the next check applies (it depends on how many layers still move).
    pub fn threshold(&self, det: &Detector) -> f64 {
        det.threshold_of(self.layers.iter().filter(|l| !l.stable).count(), self.layers.len())
    }

    /// The threshold the last check applied: the layers still moving when it began are
    /// those not stable, or stable since that check.
    pub fn last_threshold(&self, det: &Detector) -> f64 {
        let last = self.len().saturating_sub(1);
        let moving = self.layers.iter().filter(|l| !l.stable || l.stable_at == Some(last)).count();
        det.threshold_of(moving, self.layers.len())
    }

    /// Records the stable ranks of check `check` and runs the test; true when every layer
    /// is stable.
    pub fn observe(&mut self, det: &Detector, check: usize, sranks: &[f64]) -> bool {
        assert_eq!(sranks.len(), self.layers.len(), "one stable rank per tracked layer");
        let thr = self.threshold(det);
        for (l, &s) in self.layers.iter_mut().zip(sranks) {
            l.history.push(s);
            if l.stable || check < det.earliest.max(det.p) {
                continue;
            }
            if l.statistic(det) <= thr {
                l.stable = true;
                l.stable_at = Some(check);
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
    fn reference_detector_at_300_checks_and_scaled_below() {
        assert_eq!(Detector::scaled(Detector::REFERENCE, 300), Detector::REFERENCE);
        assert_eq!(Detector::scaled(Detector::REFERENCE, 301), Detector::REFERENCE);
        let d = Detector::scaled(Detector::REFERENCE, 20);
        assert_eq!((d.p, d.m), (3, 2));
        assert!((d.thr - 1.5).abs() < 1e-12);
        let d = Detector::scaled(Detector::REFERENCE, 160);
        assert_eq!((d.p, d.m), (8, 6));
        assert!((d.thr - 0.1875).abs() < 1e-12);
        let t = Detector::scaled(Detector::REFERENCE_TRANSFORMER, 8);
        assert_eq!((t.p, t.m), (3, 3));
        assert!((t.threshold(20) - 0.411 * 37.5).abs() < 1e-9 && (t.threshold(4) - 2.055 * 37.5).abs() < 1e-9);
        assert_eq!(Detector::REFERENCE_TRANSFORMER.threshold(7), 1.0275);
        assert_eq!(Detector::REFERENCE.threshold(2), 0.25);
        assert_eq!(Detector::REFERENCE.threshold(3), 0.1);
        // Loosened only once a layer has settled: 8 tracked, all moving, is the base 0.411.
        let t = Detector::REFERENCE_TRANSFORMER;
        assert_eq!((t.threshold_of(8, 8), t.threshold_of(7, 8), t.threshold_of(3, 8)), (0.411, 1.0275, 2.055));
        assert_eq!((Detector::REFERENCE.threshold_of(2, 10), Detector::REFERENCE.threshold_of(1, 1)), (0.25, 0.1));
    }

    #[test]
    fn checks_spread_over_the_schedule() {
        // The reference: 300 epochs of 49 steps, one check per epoch, at its end.
        let c = Checks::for_schedule(300, 49);
        assert_eq!((c.per_epoch, c.total(300)), (1, 300));
        assert_eq!((c.step_of(1), c.next_after(0), c.at(7, 49), c.at(7, 48)), (49, 49, Some(8), None));
        // The main job: 6 epochs of 156 steps, 50 checks per epoch: 300 in all, as the
        // reference's run, so the detector is the reference's.
        let c = Checks::for_schedule(6, 156);
        assert_eq!((c.per_epoch, c.total(6)), (50, 300));
        let steps: Vec<usize> = (1..=50).map(|j| c.step_of(j)).collect();
        assert_eq!((steps[0], steps[1], steps[49]), (3, 6, 156));
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
        assert_eq!((c.next_after(0), c.next_after(3), c.next_after(4), c.next_after(155)), (3, 6, 6, 156));
        assert_eq!((c.at(0, 3), c.at(2, 156), c.at(0, 4)), (Some(1), Some(150), None));
        assert_eq!((c.made(0, 0), c.made(0, 5), c.made(1, 156), c.made(2, 7)), (0, 1, 100, 102));
        // Fewer steps than checks wanted: one per step.
        let c = Checks::for_schedule(4, 40);
        assert_eq!((c.per_epoch, c.next_after(0), c.next_after(39)), (40, 1, 40));
        assert_eq!(Checks::for_schedule(0, 0), Checks { per_epoch: 1, steps: 1 });
    }

    /// Runs `curves` (check -> stable rank per layer) through the reference detector for
    /// `checks` checks; the check of the switch (all stable) and each layer's stable check.
    fn run(curves: &[&dyn Fn(usize) -> f64], checks: usize) -> (Option<usize>, Vec<Option<usize>>) {
        let det = Detector::REFERENCE;
        let mut t = Tracker::new((0..curves.len()).map(|i| format!("l{i}")).collect());
        let mut switch = None;
        for c in 0..=checks {
            let s: Vec<f64> = curves.iter().map(|f| f(c)).collect();
            if t.observe(&det, c, &s) && switch.is_none() {
                switch = Some(c);
            }
        }
        (switch, t.layers.iter().map(|l| l.stable_at).collect())
    }

    #[test]
    fn a_curve_that_settles_switches_after_it_settles_not_before() {
        // Falls one rank per check from 140 to 60 (check 80), flat after.
        let settles = |c: usize| 140.0 - c.min(80) as f64 + 0.5;
        let (switch, at) = run(&[&settles], 300);
        let s = switch.expect("a curve flat for 220 checks settles");
        // Not while it moves (far above the reference's 0.1 per check), and within the
        // EMA's lag (about 1/w = 8 checks) plus the window (11) after it stops.
        assert!((81..=110).contains(&s), "switched at check {s}; the curve settles at 80");
        assert_eq!(at, vec![Some(s)]);
    }

    #[test]
    fn a_curve_that_never_settles_never_switches() {
        // Two layers falling 0.4 and 0.6 rank per check for the whole schedule: floored,
        // they still move that fast on average, above the 0.25 that applies while two
        // layers are left.
        let slow = |c: usize| 200.0 - 0.4 * c as f64;
        let fast = |c: usize| 300.0 - 0.6 * c as f64;
        assert_eq!(run(&[&slow, &fast], 300), (None, vec![None, None]));
    }

    #[test]
    fn one_layer_settling_late_holds_the_switch() {
        let early = |c: usize| 50.0 - c.min(20) as f64;
        let late = |c: usize| 250.0 - c.min(200) as f64;
        let steady = |_: usize| 30.2;
        let (switch, at) = run(&[&early, &late, &steady], 300);
        let s = switch.expect("settles");
        let (a_early, a_late, a_steady) = (at[0].unwrap(), at[1].unwrap(), at[2].unwrap());
        assert_eq!(a_steady, Detector::REFERENCE.p, "a flat curve is stable at the minimum, P");
        assert!((21..=50).contains(&a_early), "the early layer at {a_early}");
        assert!((201..=230).contains(&a_late) && s == a_late, "the late layer at {a_late}, switch at {s}");
    }

    #[test]
    fn the_main_jobs_ranks_no_longer_switch_at_the_minimum() {
        // The main job's four layers (README, per epoch after 0-3 epochs), as 50 checks
        // per epoch moving exponentially towards each next value, then settling. The old
        // per-epoch rule (P = 3, threshold 5.0 per epoch) called them stable after 3
        // epochs, the first moment it could; at 50 checks per epoch the reference's test
        // waits until each moves less than 0.1 per check (0.25 and 0.5 for the last two).
        let per_epoch: [[f64; 7]; 4] = [
            [9.3, 7.6, 6.5, 6.2, 6.1, 6.1, 6.1],
            [9.9, 7.9, 7.1, 7.0, 7.0, 7.0, 7.0],
            [16.5, 14.3, 10.2, 9.6, 9.4, 9.3, 9.3],
            [18.8, 12.1, 8.6, 8.0, 7.8, 7.7, 7.7],
        ];
        let curve = |l: usize| {
            move |c: usize| {
                let (e, j) = (c / 50, (c % 50) as f64 / 50.0);
                let (a, b) = (per_epoch[l][e.min(6)], per_epoch[l][(e + 1).min(6)]);
                b + (a - b) * (-4.0 * j).exp() * (1.0 - j)
            }
        };
        let (c0, c1, c2, c3) = (curve(0), curve(1), curve(2), curve(3));
        let (switch, at) = run(&[&c0, &c1, &c2, &c3], 300);
        eprintln!("switch at check {switch:?}, layers stable at {at:?}");
        let s = switch.expect("they settle within the schedule");
        assert!(s > Detector::REFERENCE.p, "switched at the minimum, check {s}");
        let old = Detector { p: 3, earliest: 3, m: 2, thr: 5.0, looser: [(2, 2, 12.5), (1, 1, 25.0)] };
        let mut t = Tracker::new((0..4).map(|i| i.to_string()).collect());
        let old_switch = (0..=6).find(|&e| t.observe(&old, e, &per_epoch.map(|p| p[e])));
        assert_eq!(old_switch, Some(3), "the old rule: stable at its minimum");
    }

    #[test]
    fn rank_rule_clamps() {
        assert_eq!(chosen_rank(10.0, 20.0, 64, 0.0), 32);
        assert_eq!(chosen_rank(30.0, 20.0, 64, 0.0), 64);
        assert_eq!(chosen_rank(1.0, 20.0, 64, 0.2), 12);
        assert_eq!(chosen_rank(10.2, 20.0, 64, 0.0), 33);
    }

    #[test]
    fn constant_ranks_switch_after_p_checks_and_stay_sticky() {
        let det = Detector { p: 3, earliest: 3, m: 2, ..Detector::REFERENCE };
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
        let det = Detector { p: 1, earliest: 1, m: 2, ..Detector::REFERENCE };
        let mut t = Tracker::new(vec!["a".into(), "b".into()]);
        t.observe(&det, 0, &[10.5, 20.0]);
        t.observe(&det, 1, &[10.25, 27.0]);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.starts_with(r#"[{"name":"a","history":[10.5,10.25],"stable":true,"stable_at":1}"#), "{json}");
        assert_eq!(serde_json::from_str::<Tracker>(&json).unwrap(), t);
    }

    #[test]
    fn moving_ranks_never_switch() {
        let det = Detector { p: 3, earliest: 3, m: 2, ..Detector::REFERENCE };
        let mut t = Tracker::new(vec!["a".into()]);
        for e in 0..50 {
            assert!(!t.observe(&det, e, &[100.0 - 2.0 * e as f64]));
        }
    }

    #[test]
    fn threshold_loosens_for_the_last_layer() {
        let det = Detector { p: 2, earliest: 2, m: 5, ..Detector::REFERENCE };
        let mut t = Tracker::new(vec!["flat".into(), "moving".into()]);
        // Derivative about 0.4 per check: above 0.1 and 0.25 (two layers left), below the
        // single-layer 0.5, which applies once the flat layer has settled.
        let mut stable = false;
        for e in 0..40 {
            stable = t.observe(&det, e, &[10.0, (100.5 + 0.4 * e as f64).floor()]);
        }
        assert!(stable);
        let (a, b) = (t.layers[0].stable_at.unwrap(), t.layers[1].stable_at.unwrap());
        assert!(a < b, "the flat layer settles first ({a}), the moving one after ({b})");
        // Alone, the moving layer is held to the base 0.1: nothing has settled before it.
        let mut alone = Tracker::new(vec!["moving".into()]);
        assert!(!(0..40).any(|e| alone.observe(&det, e, &[(100.5 + 0.4 * e as f64).floor()])));
    }
}
