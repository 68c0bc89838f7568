//! The alert book: alerts open now and a ring of those that ended.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Most alerts open at once. A process with more than this many distinct
/// anomalies at once has one problem an operator must look at, and more
/// entries would not help them find it; new ones are counted and refused.
pub const ACTIVE_MAX: usize = 256;

/// Ended alerts kept for `GET /v1/alerts`: about a day of a busy incident
/// at a few transitions an hour, in well under a megabyte.
pub const HISTORY_MAX: usize = 512;

/// How urgent an alert is.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nobody needs to act now.
    Info,
    /// Someone should look within the working day.
    Warning,
    /// Someone should look now: customers are or will soon be affected.
    Critical,
}

impl Severity {
    /// Every severity, least urgent first.
    pub const ALL: [Severity; 3] = [Self::Info, Self::Warning, Self::Critical];

    /// The lowercase name, as serialised and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One alert: an anomaly from its start to its end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    /// Increasing within a book.
    pub id: u64,
    /// What is wrong, e.g. `p99_latency_up`.
    pub name: String,
    /// How urgent it is.
    pub severity: Severity,
    /// What it is about: a route, a peer id, a node address.
    pub subject: String,
    /// A sentence for a human, with the value and the baseline.
    pub summary: String,
    /// When it opened (ms since the Unix epoch, as fed to the monitor).
    pub started_ms: u64,
    /// When it ended; none while it is open.
    pub ended_ms: Option<u64>,
    /// The value that opened it.
    pub value: f64,
    /// What the value was compared with.
    pub baseline: f64,
}

/// The body of `GET /v1/alerts`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertsResponse {
    /// Alerts open now, oldest first.
    pub active: Vec<Alert>,
    /// Alerts that ended, latest first.
    pub history: Vec<Alert>,
}

/// What an alert opens with: everything but its id and end.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    /// See [`Alert::name`].
    pub name: String,
    /// See [`Alert::severity`].
    pub severity: Severity,
    /// See [`Alert::subject`].
    pub subject: String,
    /// See [`Alert::summary`].
    pub summary: String,
    /// See [`Alert::started_ms`].
    pub started_ms: u64,
    /// See [`Alert::value`].
    pub value: f64,
    /// See [`Alert::baseline`].
    pub baseline: f64,
}

/// Alerts open now and a ring of those that ended, both bounded.
#[derive(Debug, Default)]
pub struct AlertBook {
    next_id: u64,
    active: BTreeMap<u64, Alert>,
    history: VecDeque<Alert>,
    refused: u64,
}

impl AlertBook {
    /// An empty book; the first alert gets id 1.
    pub fn new() -> Self {
        Self {
            next_id: 1,
            ..Self::default()
        }
    }

    /// Opens an alert and returns it, or none when [`ACTIVE_MAX`] are
    /// already open (counted in [`AlertBook::refused`]).
    pub fn open(&mut self, new: NewAlert) -> Option<Alert> {
        if self.active.len() >= ACTIVE_MAX {
            self.refused = self.refused.saturating_add(1);
            return None;
        }
        let id = self.next_id.max(1);
        self.next_id = id.saturating_add(1);
        let alert = Alert {
            id,
            name: new.name,
            severity: new.severity,
            subject: new.subject,
            summary: new.summary,
            started_ms: new.started_ms,
            ended_ms: None,
            value: new.value,
            baseline: new.baseline,
        };
        self.active.insert(id, alert.clone());
        Some(alert)
    }

    /// Ends the open alert `id` at `ended_ms` (never before it started)
    /// and moves it to the history; returns it, or none if it is not open.
    pub fn close(&mut self, id: u64, ended_ms: u64) -> Option<Alert> {
        let mut alert = self.active.remove(&id)?;
        alert.ended_ms = Some(ended_ms.max(alert.started_ms));
        if self.history.len() == HISTORY_MAX {
            self.history.pop_front();
        }
        self.history.push_back(alert.clone());
        Some(alert)
    }

    /// Alerts open now, oldest first.
    pub fn active(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    /// Ended alerts, latest first.
    pub fn history(&self) -> impl Iterator<Item = &Alert> {
        self.history.iter().rev()
    }

    /// Open alerts per severity, least urgent first (for a gauge such as
    /// `keel_alerts_active{severity}`).
    pub fn active_by_severity(&self) -> [(Severity, usize); 3] {
        Severity::ALL.map(|s| (s, self.active().filter(|a| a.severity == s).count()))
    }

    /// Alerts not opened because [`ACTIVE_MAX`] were open.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The body of `GET /v1/alerts`.
    pub fn response(&self) -> AlertsResponse {
        AlertsResponse {
            active: self.active().cloned().collect(),
            history: self.history().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn new(name: &str, started_ms: u64) -> NewAlert {
        NewAlert {
            name: name.to_owned(),
            severity: Severity::Warning,
            subject: "/v1/orders".to_owned(),
            summary: "p99 latency 0.8 s against 0.1 s".to_owned(),
            started_ms,
            value: 0.8,
            baseline: 0.1,
        }
    }

    #[test]
    fn ids_increase_and_closing_moves_to_history() {
        let mut book = AlertBook::new();
        let a = book.open(new("a", 10)).unwrap();
        let b = book.open(new("b", 20)).unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        let closed = book.close(1, 5).unwrap();
        assert_eq!(closed.ended_ms, Some(10), "never ends before it started");
        assert!(book.close(1, 30).is_none(), "closed once");
        let r = book.response();
        assert_eq!(r.active.iter().map(|a| a.id).collect::<Vec<_>>(), [2]);
        assert_eq!(r.history.iter().map(|a| a.id).collect::<Vec<_>>(), [1]);
        assert_eq!(book.active_by_severity()[1], (Severity::Warning, 1));
    }

    #[test]
    fn active_and_history_are_bounded() {
        let mut book = AlertBook::new();
        for i in 0..ACTIVE_MAX as u64 + 3 {
            book.open(new("x", i));
        }
        assert_eq!(book.active().count(), ACTIVE_MAX);
        assert_eq!(book.refused(), 3);
        for id in 1..=ACTIVE_MAX as u64 {
            book.close(id, 1000);
            book.open(new("y", 1000));
        }
        for id in ACTIVE_MAX as u64 + 1..=2 * ACTIVE_MAX as u64 + 10 {
            book.close(id, 2000);
        }
        assert_eq!(book.history().count(), HISTORY_MAX);
        assert_eq!(book.history().next().unwrap().ended_ms, Some(2000));
    }

    #[test]
    fn the_response_is_json_with_lowercase_severities() {
        let mut book = AlertBook::new();
        book.open(new("p99_latency_up", 10));
        let json = serde_json::to_value(book.response()).unwrap();
        assert_eq!(json["active"][0]["severity"], "warning");
        assert_eq!(json["active"][0]["ended_ms"], serde_json::Value::Null);
        assert_eq!(json["history"], serde_json::json!([]));
        let back: AlertsResponse = serde_json::from_value(json).unwrap();
        assert_eq!(back, book.response());
    }
}
