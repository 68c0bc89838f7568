//! `keel chaos`: run a workload against a cluster while faults are injected,
//! record what every client saw, and judge the record.
//!
//! This crate's checkers are a pure library: they take a recorded
//! [`History`] (and, for the invariants, the state read back at the end) as
//! plain data and return [`Finding`]s. They do no I/O, read no clock and draw
//! no randomness, so a failing run is re-judged from its history file alone.
//!
//! - [`history`]: the record of a run, one [`Op`] per request, with its
//!   real-time interval and outcome; JSON lines on disk.
//! - [`linearizable`]: each SKU's available stock and each order's status
//!   checked for linearizability (todc-utils' Wing & Gong checker over
//!   Keel's models).
//! - [`invariants`]: the end-state checks: acknowledged orders exist, unknown
//!   outcomes applied at most once, no oversell, money conserved, replicas
//!   agree.
//! - [`terms`]: no node's Raft term ever goes back, restarts included (a
//!   lost vote).
//! - [`finding`]: the one result type all of them report in.
//!
//! Around the checkers, the imperative shell of a run: [`nemesis`] (faults
//! on real processes, on a seeded schedule), [`workload`] (customers through
//! the public API, recorded as ops), [`final_state`] (the state read back
//! for the invariants, also what `keel demo` is judged on) and [`run`] (the
//! whole run and its report, with availability per fault), [`term_sampler`]
//! (each node's term through the run), [`soak`] (one run after another
//! over successive seeds) and [`across`] (unavailability per nemesis over
//! many runs).
//!
//! What produces a history (the cluster harness, the nemesis that injects
//! faults, the workload and its recorder) belongs beside these as modules of
//! its own; the checkers depend on none of it.
//!
//! # How a run works
//!
//! `keel chaos run` starts a cluster and the gateway with TLS on every
//! link, as a deployment runs: the harness makes a CA under the run's
//! directory (`ca/`) and a certificate per node and for the gateway, the
//! nodes speak mutual TLS to each other (through the link proxies, which
//! relay the encrypted bytes, so every link fault strikes the real
//! transport), and every client of the run (workload, term sampler,
//! nemeses, final reads and digests) is the cluster's own
//! (`LocalCluster::client`), over TLS with the CA as its only root;
//! `--plaintext` is the explicit way back to plaintext, and the report says
//! which it was. It seeds scarce and plentiful SKUs and funded customers,
//! and runs clients that place, pay, cancel and read, each request one
//! attempt whose interval and outcome are recorded (`Ok`, `Fail` only for
//! answers that prove nothing changed (a refused connect or TLS handshake
//! among them: the request never left), else
//! `Unknown`; a lost write is asked about again with its key until the answer
//! settles it). The nemeses strike on a schedule drawn from `--seed` (every
//! chosen nemesis at least once) and each fault is healed and waited out.
//! A client that has used up its seeded customers (`--customers-per-client`)
//! opens more itself (keyed, one attempt per turn, asked again on later turns);
//! a turn that cannot place does another request instead, so no error ends a
//! client and the mix stays the same however long the run. Every workload
//! bound is a named constant; cold stock and customers per client scale with
//! the longest the run can last. A write sent again with its key is folded
//! into its op: after an attempt that proved nothing it is one more attempt
//! (the op takes its answer), after a stored answer (success or refusal) it
//! must give the same one. After the last fault every node must be ready under one leader again
//! (`cluster healed`; a node wedged for good is a finding, not an aborted run,
//! and the state is still read from whatever leader serves it; a node that
//! exited on its own is named with its exit status and panic, there or, if a
//! later fault found it dead, under `every fault took effect`). Throughout
//! the run every node is asked for its term and leader (`/v1/cluster`) every
//! 250 ms, every 20 ms while it does not answer, so a restarted node's first
//! answer, the term it recovered from its disk, is seen before an election
//! can raise it: `terms never go back` fails when a node reports a term
//! below one it reported before (a lost vote, which lets it vote twice in a
//! term). It does not check one leader per term: openraft 0.9 without
//! `single-term-leader` orders leaders by (term, node id), so two leaders of
//! one term are legal. After a final
//! convergence the state is read back and judged; the report
//! gives each checker's verdict and, per fault, the client-visible
//! unavailability (fault to first success), errors, recovery time, ops
//! invoked and writes that succeeded in its window. A run never passes
//! vacuously: it fails when a requested nemesis was skipped (unless
//! `--allow-skip`), a fault did not take effect (a kill leaves the pid
//! reaped, a cut is probed by a TCP connect from inside the peers'
//! namespaces, a lost-write fault writes an unsynced canary into each data directory
//! that must be gone after the drop: a correct node fsyncs at once, so it may
//! have nothing unsynced itself), a fault window
//! saw fewer than `FAULT_WINDOW_WRITES_MIN` successful writes by its recovery
//! plus `FAULT_WINDOW_GRACE`, the replicas did not converge or a digest could
//! not be read, or the history is empty or all failed. `replicas agree` judges
//! digests read in one round that found every replica at the same applied
//! index (an idle leader still proposes clock ticks, so a round may straddle
//! one and is read again). Under `CI=true` a test
//! whose precondition (root, FUSE, libfaketime, iptables) is missing fails
//! instead of skipping.
//! As root, each node runs in its own network namespace with its own address
//! on a bridge (`keel_harness::net`, iproute2), so link nemeses can strike
//! with iptables rules inside the namespaces: the leader isolated, a
//! minority/majority split, a bridge (two sides and one node seeing both), the
//! leader deaf to its peers (one-way), and 20% random loss on every
//! node-to-node link (the `statistic` match). Slow links and dropped connections go through a
//! small fault-injecting TCP proxy per directed link (`keel_harness::links`,
//! the job Toxiproxy does; this kernel has no `tc netem`): a DNAT rule in each
//! namespace sends a node's connections to a peer through the proxy's
//! listener on the bridge; a proxied connection comes from the bridge's
//! address, so a cut also drops by conntrack's original destination (the
//! proxied replies on a node's own connections, and what the other side sends
//! through the proxy). Clients and the gateway stay in
//! the root namespace, so only node-to-node links are cut. Clock skew preloads
//! libfaketime (Debian's `faketime`, installed when missing) into every node
//! with a per-node offset file the nemesis rewrites: the leader's wall clock
//! jumps two days ahead or behind (more than any reservation's lifetime and
//! the idempotency retention) while monotonic time (timers, elections) stays
//! real; the nemesis reads the skewed time back from the node's `/v1/clock`
//! before the fault counts as struck. The node must step down, and the
//! `no reservation expired early` checker (every chaos reservation outlives
//! the run) and the at-most-once checkers see it if the skew reached the
//! state. Without root the
//! run falls back to loopback, skips the link nemeses and says so in its
//! report. Lost writes need FUSE: for `lose-unsynced` the harness mounts a
//! `keel-lazyfs` filesystem (served from the harness's own process) over each
//! node's data directory, kills every node at once and then drops every
//! write no node fsynced, so a node that acknowledged what its disk had not
//! made durable is caught. Three nemeses overlap faults:
//! `kill-during-partition` (the leader cut off, a follower killed while the cut
//! holds), `partition-during-churn` (a follower removed and wiped, the
//! leader cut off while the membership is one short, the follower rejoining at
//! heal) and `power-loss-in-snapshot` (a follower removed and wiped, every
//! node's log compacted through `POST /v1/cluster/compact`, the follower
//! added back as a learner, and the power cut on every node, unsynced writes
//! lost, once the leader's snapshot has begun to arrive and before it is
//! installed: the nemesis reads the learner's `keel_snapshot_chunks_received_total`
//! and `keel_snapshots_installed_total` to strike in that window, and a
//! chaos run's nodes send snapshots in 4 KiB chunks so the window spans many
//! round trips; at heal the learner finds its partial snapshot file, drops
//! it, installs the snapshot again and is promoted). A node creates
//! `log.redb` and `state.redb` under a temporary name and renames them into
//! place once durable, because redb sizes a new file before it writes its
//! header and refuses a sized file without one.
//!
//! Proving the checkers: the `test-bugs` cargo feature compiles deliberate
//! bugs into `keel` (`keel_domain::test_bugs`), each off until a node starts
//! with `--test-bugs LIST`; a build without the feature refuses the flag.
//! `crates/keel/tests/chaos.rs` builds it once (into `target/test-bugs`) and
//! runs one bug per test, asserting the checker named for it fails:
//! `oversell` (places skip the stock check: `no oversell`, the HOT register),
//! `skip-idempotency` (a request sent again takes effect again: `places
//! applied at most once`, `same key, same answer`), `free-payment` (one paid
//! order in 16 credits the merchant without debiting the customer: `money
//! conserved`), `stale-read` (linearizable reads without a read index, the
//! workload sent to a follower: the linearizability checker), and
//! `ack-before-fsync` (the log's fsync skipped underneath redb, in
//! `keel-store`'s `LogBackend`): caught under `lose-unsynced`, while a plain
//! `power-loss` (every node killed, nothing dropped) passes every check, which
//! is what the lazy filesystem adds; and `vote-unsynced` (the vote kept in
//! memory, never written: a merely unsynced redb commit would be made durable
//! by the next log append): under a plain `power-loss` every node comes back
//! at term 0, below the term it had reached, and `terms never go back`
//! fails. openraft 0.9 does not refuse to start on a vote older than the last
//! log entry: the node stands at the vote's term plus one and can win there
//! (its peers forgot their votes too). When that leader id (term, node id) is
//! below the one of its last entry, a debug build panics in openraft (`vote
//! ... must GE last_leader_log_id`) and the node exits, which the run reports
//! with the panic; else the cluster runs on, and only the term check sees it.
//! `corrupt-snapshot-send` is a fault
//! injector of the same kind (`tests/snapshot.rs`).
//!
//! A snapshot damaged on its way to a follower is refused before openraft
//! sees it: the last chunk is checked with the bytes received before it as a
//! whole snapshot (format, rows, closing BLAKE3, id), and a damaged one is
//! answered as a segment mismatch, on which openraft's sender starts over
//! (an error from openraft's own install would stop it for good).
#![deny(missing_docs)]

pub mod across;
mod error;
pub mod files;
pub mod final_state;
pub mod finding;
pub mod history;
pub mod invariants;
pub mod linearizable;
pub mod nemesis;
pub mod render;
pub mod run;
pub mod soak;
mod sync;
pub mod term_sampler;
pub mod terms;
pub mod workload;

pub use error::ChaosError;
pub use final_state::{read_final_state, StateQuery};
pub use finding::{Finding, DETAIL_EXAMPLES_MAX};
pub use history::{
    History, HistoryError, Op, OpKind, OpResult, Outcome, HISTORY_OPS_MAX, HISTORY_VERSION,
};
pub use invariants::{check_invariants, FinalState};
pub use linearizable::{check_all, check_order, check_stock, Limits, Verdict};
