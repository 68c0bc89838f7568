//! No input makes a detector or the monitor panic: NaN, infinities, huge
//! values, time going backwards or standing still.
#![allow(clippy::unwrap_used)]

use keel_alert::{Detector, Monitor, State, Watch};
use proptest::prelude::*;

fn presets() -> Vec<Watch> {
    vec![
        Watch::p99_latency("a", "x"),
        Watch::order_rate_down("a", "x"),
        Watch::replication_lag("a", "x"),
        Watch::disk_time_to_full("a", "x"),
        Watch::clock_offset("a", "x", 500),
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(-f64::MAX),
        Just(1e18),
        Just(-1e18),
        Just(0.0),
        -1e6..1e6f64,
    ]
}

fn samples() -> impl Strategy<Value = Vec<(u64, f64)>> {
    prop::collection::vec(
        (
            prop_oneof![any::<u64>(), 0..100_000u64, Just(u64::MAX), Just(0)],
            value(),
        ),
        0..400,
    )
}

proptest! {
    #[test]
    fn detectors_never_panic_and_report_finite_readings(samples in samples()) {
        for w in presets() {
            let mut d = Detector::new(w.detector).unwrap();
            for &(t, v) in &samples {
                if let State::Firing(r) = d.observe(t, v) {
                    prop_assert!(r.score.is_finite() && r.value.is_finite() && r.baseline.is_finite());
                }
            }
        }
    }

    #[test]
    fn the_monitor_never_panics_and_its_alerts_serialise(samples in samples()) {
        let mut m = Monitor::new(presets()).unwrap();
        for &(t, v) in &samples {
            for tr in m.observe(t, &[("a", v)]) {
                serde_json::to_string(&tr).unwrap();
            }
        }
        serde_json::to_string(&m.book().response()).unwrap();
    }
}
