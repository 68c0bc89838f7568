//! Log signals: a tracing layer that counts WARN and ERROR events and
//! reports messages of a kind never logged before.
//!
//! A message's signature is its target, its text with the parts that vary
//! from one event to the next (numbers, hex, quoted values, addresses)
//! replaced by placeholders, and the names of its fields: "peer 3 lost
//! after 1500 ms" and "peer 4 lost after 20 ms" are one signature. The
//! layer runs for every event, so anything below WARN returns after one
//! comparison, and a WARN or ERROR costs one formatting of its message and
//! one hash-set lookup.

use std::collections::{HashSet, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Most distinct signatures remembered. A healthy process logs a few dozen
/// kinds of warning; thousands mean the normaliser misses a varying part,
/// and remembering more would only grow memory. Past it, no signature is
/// new any more, and that is reported once.
pub const SIGNATURES_MAX: usize = 4096;

/// Most new signatures waiting to be drained: a burst of new kinds is one
/// incident, and its first entries say what it is.
pub const PENDING_MAX: usize = 64;

/// Longest message text normalised (bytes); the rest is cut, so one huge
/// message costs no more than a normal one.
pub const MESSAGE_BYTES_MAX: usize = 512;

/// Something a [`LogWatch`] noticed, drained with [`LogWatch::drain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogNews {
    /// A WARN or ERROR message of a kind not logged before.
    New {
        /// `WARN` or `ERROR`.
        level: Level,
        /// The normalised signature.
        signature: String,
        /// The first message of this kind as logged (cut to
        /// [`MESSAGE_BYTES_MAX`]).
        example: String,
    },
    /// [`SIGNATURES_MAX`] signatures are known: no later one is reported
    /// as new. Said once.
    SignaturesFull {
        /// The limit reached.
        limit: usize,
    },
}

#[derive(Debug, Default)]
struct Signatures {
    known: HashSet<String>,
    pending: VecDeque<LogNews>,
    learning: bool,
    full_said: bool,
    pending_dropped: u64,
}

#[derive(Debug, Default)]
struct Shared {
    warns: AtomicU64,
    errors: AtomicU64,
    signatures: Mutex<Signatures>,
}

/// A tracing layer counting WARN and ERROR events and spotting new log
/// signatures. Clones share their counts: install one clone in the
/// subscriber and read another.
#[derive(Clone, Debug)]
pub struct LogWatch {
    shared: Arc<Shared>,
}

impl Default for LogWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl LogWatch {
    /// A watch in its warm-up: signatures seen until
    /// [`LogWatch::end_warmup`] are learnt, not reported (a starting
    /// process logs its own kinds of warning, which are not news).
    pub fn new() -> Self {
        let shared = Shared::default();
        shared.signatures_lock().learning = true;
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The process's one watch: the binary installs a clone of it as a
    /// layer of its subscriber, and the node or gateway reads it. A
    /// process has one log, so one watch of it.
    pub fn process() -> &'static LogWatch {
        static PROCESS: std::sync::OnceLock<LogWatch> = std::sync::OnceLock::new();
        PROCESS.get_or_init(LogWatch::new)
    }

    /// Ends the warm-up: from now on a message of a kind not seen before
    /// is news.
    pub fn end_warmup(&self) {
        self.shared.signatures_lock().learning = false;
    }

    /// WARN events so far (a counter: feed its rate to a rise detector).
    pub fn warns(&self) -> u64 {
        self.shared.warns.load(Ordering::Relaxed)
    }

    /// ERROR events so far.
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// Signatures known.
    pub fn known(&self) -> usize {
        self.shared.signatures_lock().known.len()
    }

    /// New signatures not kept because [`PENDING_MAX`] awaited draining.
    pub fn pending_dropped(&self) -> u64 {
        self.shared.signatures_lock().pending_dropped
    }

    /// Takes what was noticed since the last drain, oldest first.
    pub fn drain(&self) -> Vec<LogNews> {
        self.shared.signatures_lock().pending.drain(..).collect()
    }

    fn note(&self, level: Level, target: &str, message: &str) {
        let signature = signature(target, message);
        let mut s = self.shared.signatures_lock();
        if s.known.contains(&signature) {
            return;
        }
        if s.known.len() >= SIGNATURES_MAX {
            if !s.full_said {
                s.full_said = true;
                // Past PENDING_MAX too: it is said once, so it cannot
                // grow the queue by more than one, and a burst of new
                // kinds must not hide it.
                s.pending.push_back(LogNews::SignaturesFull {
                    limit: SIGNATURES_MAX,
                });
            }
            return;
        }
        s.known.insert(signature.clone());
        if !s.learning {
            let example = message.to_owned();
            s.push(LogNews::New {
                level,
                signature,
                example,
            });
        }
    }
}

impl Shared {
    fn signatures_lock(&self) -> MutexGuard<'_, Signatures> {
        // A panic while holding the lock leaves a set of strings and a
        // queue, each whole: safe to go on with.
        self.signatures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Signatures {
    fn push(&mut self, news: LogNews) {
        if self.pending.len() >= PENDING_MAX {
            self.pending_dropped = self.pending_dropped.saturating_add(1);
            return;
        }
        self.pending.push_back(news);
    }
}

impl<S: Subscriber> Layer<S> for LogWatch {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = *meta.level();
        // Less verbose is smaller: only WARN and ERROR pass.
        if level > Level::WARN {
            return;
        }
        let counter = if level == Level::ERROR {
            &self.shared.errors
        } else {
            &self.shared.warns
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut text = Text::default();
        event.record(&mut text);
        self.note(level, meta.target(), &text.0);
    }
}

/// An event's message followed by the names of its other fields.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.0.len() >= MESSAGE_BYTES_MAX {
            return;
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
        if self.0.len() > MESSAGE_BYTES_MAX {
            let mut cut = MESSAGE_BYTES_MAX;
            while !self.0.is_char_boundary(cut) {
                cut -= 1;
            }
            self.0.truncate(cut);
        }
    }
}

/// The signature of a message: `target: text` with its varying parts
/// replaced by `<q>` (quoted), `<addr>` (host:port, IP), `<hex>` (hex
/// strings, ids) and `<n>` (numbers).
pub fn signature(target: &str, message: &str) -> String {
    let mut out = String::with_capacity(target.len() + message.len() + 2);
    out.push_str(target);
    out.push_str(": ");
    let mut rest = message;
    while let Some(c) = rest.chars().next() {
        if c == '"' || c == '\'' {
            let end = rest[1..].find(c).map_or(rest.len(), |i| i + 2);
            out.push_str("<q>");
            rest = &rest[end..];
        } else if is_word(c) {
            let end = rest.find(|c| !is_word(c)).unwrap_or(rest.len());
            word(&rest[..end], &mut out);
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | ':' | '_' | '-' | '[' | ']')
}

/// Writes a word, or the placeholder it stands for.
fn word(w: &str, out: &mut String) {
    // Field values (`peer=3`) never reach here joined to the name: `=`
    // is not a word character.
    let has_digit = w.bytes().any(|b| b.is_ascii_digit());
    if !has_digit {
        out.push_str(w);
    } else if is_addr(w) {
        out.push_str("<addr>");
    } else if is_hex(w) {
        out.push_str("<hex>");
    } else {
        numbers_out(w, out);
    }
}

/// host:port (the port all digits), an IPv4 address, or a bracketed IPv6.
fn is_addr(w: &str) -> bool {
    let w = w.trim_end_matches(['.', ':']);
    if let Some((host, port)) = w.rsplit_once(':') {
        if !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return true;
        }
    }
    let dotted = w.split('.').count() == 4
        && w.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    dotted || (w.starts_with('[') && w.contains(']'))
}

/// `0x...`, or eight or more hex digits (and dashes, for UUIDs).
fn is_hex(w: &str) -> bool {
    if let Some(h) = w.strip_prefix("0x") {
        return !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit());
    }
    w.len() >= 8 && w.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Writes `w` with each run of digits (with its decimal point) as `<n>`.
fn numbers_out(w: &str, out: &mut String) {
    let mut in_number = false;
    for c in w.chars() {
        let part_of_number = c.is_ascii_digit() || (in_number && c == '.');
        if part_of_number && !in_number {
            out.push_str("<n>");
        } else if !part_of_number {
            out.push(c);
        }
        in_number = part_of_number;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn varying_parts_become_placeholders() {
        let cases = [
            ("peer 3 lost after 1500 ms", "t: peer <n> lost after <n> ms"),
            ("took 1.25s", "t: took <n>s"),
            ("connect 10.0.0.5:7101 refused", "t: connect <addr> refused"),
            ("dial db-1.shop.example:7101", "t: dial <addr>"),
            ("from 10.0.0.5 and [::1]:80", "t: from <addr> and <addr>"),
            ("sku \"ABC-1\" missing", "t: sku <q> missing"),
            ("hash deadbeef01 and 0x7f", "t: hash <hex> and <hex>"),
            (
                "order 0b7f8e1c-1d2e-4f00-9a6b-0c1d2e3f4a5b",
                "t: order <hex>",
            ),
            ("route /v1/orders/42 slow", "t: route /v<n>/orders/<n> slow"),
            ("plain words.", "t: plain words."),
        ];
        for (message, want) in cases {
            assert_eq!(signature("t", message), want, "{message}");
        }
    }

    #[test]
    fn an_unclosed_quote_or_odd_text_does_not_panic() {
        for m in ["\"open", "'", "é 3 ü", "::", "0x", "[", "1.2.3.4.5"] {
            signature("t", m);
        }
    }

    fn with<F: FnOnce()>(watch: &LogWatch, f: F) {
        let subscriber = tracing_subscriber::registry().with(watch.clone());
        tracing::subscriber::with_default(subscriber, f);
    }

    #[test]
    fn counts_warnings_and_errors_only() {
        let watch = LogWatch::new();
        with(&watch, || {
            tracing::info!("hello");
            tracing::debug!("detail");
            tracing::warn!("careful");
            tracing::warn!("careful");
            tracing::error!("broken");
        });
        assert_eq!((watch.warns(), watch.errors()), (2, 1));
    }

    #[test]
    fn reports_only_signatures_new_after_the_warmup() {
        let watch = LogWatch::new();
        with(&watch, || {
            tracing::warn!(peer = 3, "peer {} slow", 3);
            watch.end_warmup();
            tracing::warn!(peer = 4, "peer {} slow", 4);
            tracing::error!("disk {:?} failed", "sda");
            tracing::error!("disk {:?} failed", "sdb");
        });
        let news = watch.drain();
        assert_eq!(news.len(), 1, "{news:?}");
        let LogNews::New {
            level,
            signature,
            example,
        } = &news[0]
        else {
            panic!()
        };
        assert_eq!(*level, Level::ERROR);
        assert!(signature.ends_with(": disk <q> failed"), "{signature}");
        assert_eq!(example, "disk \"sda\" failed");
        assert!(watch.drain().is_empty(), "drained");
    }

    #[test]
    fn a_full_set_says_so_once_and_stops_growing() {
        let watch = LogWatch::new();
        watch.end_warmup();
        with(&watch, || {
            for i in 0..SIGNATURES_MAX + 10 {
                let word: String = format!("{i}")
                    .bytes()
                    .map(|b| (b - b'0' + b'a') as char)
                    .collect();
                tracing::warn!("kind {}", word);
            }
        });
        assert_eq!(watch.known(), SIGNATURES_MAX);
        let news = watch.drain();
        assert_eq!(news.len(), PENDING_MAX + 1);
        assert_eq!(
            news[PENDING_MAX],
            LogNews::SignaturesFull {
                limit: SIGNATURES_MAX
            }
        );
        assert!(watch.pending_dropped() > 0);
        with(&watch, || tracing::warn!("kind zzzzzz"));
        assert!(watch.drain().is_empty(), "said once");
    }
}
