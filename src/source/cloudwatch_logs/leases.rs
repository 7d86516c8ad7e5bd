//! Replicas sharing a source through its `checkpoint_table`: each follows
//! the log groups whose leases it holds, renews them, hands back groups
//! beyond its fair share and takes free or expired ones up to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{GroupCheckpoint, Progress};
use super::checkpoint_table::{self as table, CheckpointTable, Snapshot, TableError};
use super::following::{FOLLOWER_CRASHES, FOLLOWER_HEALTHY_AFTER};
use super::{CloudwatchLogsSource, GroupInfo, Shared, Update, initial_position, now_ms};
use crate::config::LogGroups;
use crate::source::{backoff, panic_text};
use crate::telemetry;

/// A group this replica follows under its lease.
struct Held {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    expires_ms: i64,
    /// Stopping to hand the group to another replica: the lease is
    /// released once the follower has written its last checkpoint.
    releasing: bool,
    started: Instant,
}

/// What this replica knows of the groups and leases between rounds.
struct Leases {
    shared: Arc<Shared>,
    table: Arc<CheckpointTable>,
    name: String,
    owner: String,
    /// What `start` means for this run, ms since the epoch.
    start_ms: i64,
    /// Whether the source lists `log_group_prefix` for new groups.
    discovers: bool,
    /// Checkpoints and lease releases, in order, for the table writer.
    updates: mpsc::Sender<Update>,
    /// Each group with its creation time and the source's listing before
    /// the one that found it: a group created after that listing is new
    /// and is read from its creation, also when it was created while
    /// every replica was down (the table keeps the last listing time).
    groups: BTreeMap<String, (Option<i64>, Option<i64>)>,
    listed_before: Option<i64>,
    next_discovery: Instant,
    held: HashMap<String, Held>,
    /// Crashes in a row of each group's follower, and groups not taken
    /// again before their backoff after a crash ends.
    crashes: HashMap<String, u32>,
    cooldown: HashMap<String, Instant>,
    /// Followers of lost leases, still ending their deliveries: their
    /// group is not taken again until they are done.
    finishing: HashMap<String, JoinHandle<()>>,
}

impl CloudwatchLogsSource {
    /// Follows the groups whose leases this replica holds, sharing them
    /// with the other replicas through the table, until `stop`. Every
    /// `lease_duration / 3` it renews its leases and its replica item,
    /// counts the live replicas, hands back groups beyond its fair share
    /// and takes free or expired ones up to it. A lease it cannot renew (or
    /// whose checkpoint write is refused) is lost: that group stops here at
    /// once, and its next owner reads on from the last checkpoint.
    pub(super) async fn run_leased(self, lease: Duration, stop: CancellationToken) {
        let shared = self.shared;
        let table = self.table.expect("built with checkpoint_table");
        let name = shared.settings.name.clone();
        let tick = lease / 3;
        let (updates, rx) = mpsc::channel(256);
        let (lost_tx, mut lost_rx) = mpsc::unbounded_channel::<(String, TableError)>();
        let writer = tokio::spawn(table_write_loop(
            Arc::clone(&table),
            name.clone(),
            rx,
            lost_tx,
        ));
        let mut leases = Leases::start(
            Arc::clone(&shared),
            Arc::clone(&table),
            self.start_ms,
            &self.groups,
            self.listed_at,
            updates,
        )
        .await;
        loop {
            while let Ok((g, e)) = lost_rx.try_recv() {
                leases.lose(&g, &e);
            }
            if stop.is_cancelled() {
                break;
            }
            leases.round(&stop).await;
            // Jittered, so replicas started together do not go after the
            // same free lease at the same moment on every round.
            let pause = tick.mul_f64(0.8 + 0.4 * rand::random::<f64>());
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => {}
                Some((g, e)) = lost_rx.recv() => leases.lose(&g, &e),
            }
        }
        // Ends with the writer's channel closed.
        leases.stop(tick).await;
        let _ = writer.await;
        if let Err(e) = table.remove_replica(None).await {
            telemetry::source_error(&name, "checkpoint_table", &e);
        }
        telemetry::leases_held(&name, 0);
        tracing::info!(source = %name, "cloudwatch_logs source stopped; checkpoints written and leases released");
    }
}

impl Leases {
    /// Reads (and records) the last listing time, before the first round.
    async fn start(
        shared: Arc<Shared>,
        table: Arc<CheckpointTable>,
        start_ms: i64,
        found: &[GroupInfo],
        listed_at: Option<i64>,
        updates: mpsc::Sender<Update>,
    ) -> Leases {
        let name = shared.settings.name.clone();
        let discovers = matches!(shared.settings.log_groups, LogGroups::Prefix(_));
        let mut listed_before = None;
        if discovers {
            match table.discovered_at().await {
                Ok(at) => listed_before = at,
                Err(e) => telemetry::source_error(&name, "checkpoint_table", &e),
            }
        }
        let groups = found
            .iter()
            .map(|g| (g.name.clone(), (g.created_ms, listed_before)))
            .collect();
        if let Some(at) = listed_at {
            if let Err(e) = table.record_discovery(at).await {
                telemetry::source_error(&name, "checkpoint_table", &e);
            }
            listed_before = Some(at);
        }
        let next_discovery = Instant::now() + shared.settings.discovery_interval;
        telemetry::leases_held(&name, 0);
        Leases {
            owner: table.owner().to_owned(),
            shared,
            table,
            name,
            start_ms,
            discovers,
            updates,
            groups,
            listed_before,
            next_discovery,
            held: HashMap::new(),
            crashes: HashMap::new(),
            cooldown: HashMap::new(),
            finishing: HashMap::new(),
        }
    }

    /// Stops following `group` at once: its lease is gone.
    fn lose(&mut self, group: &str, why: &dyn std::fmt::Display) {
        if let Some(h) = self.held.remove(group) {
            h.stop.cancel();
            self.finishing.insert(group.to_owned(), h.task);
            telemetry::lease_lost(&self.name, group, &self.owner, why);
        }
    }

    /// One round: heartbeat, crashed followers, renewals, hand-backs,
    /// discovery, and the share of the groups taken up to.
    async fn round(&mut self, stop: &CancellationToken) {
        let shared = &self.shared;
        self.finishing.retain(|g, t| {
            let done = t.is_finished();
            if done {
                // Another replica reports the group's age from now on.
                shared.forget(g);
            }
            !done
        });
        let now = now_ms();
        if let Err(e) = self.table.heartbeat(now).await {
            telemetry::source_error(&self.name, "checkpoint_table", &e);
        }
        self.reap_crashed().await;
        self.cooldown.retain(|_, until| *until > Instant::now());
        self.renew().await;
        self.release_handed_back().await;
        if self.discovers && Instant::now() >= self.next_discovery {
            self.discover(stop).await;
        }
        match self.table.snapshot(now_ms()).await {
            Ok(snap) => self.rebalance(&snap, stop).await,
            Err(e) => telemetry::source_error(&self.name, "checkpoint_table", &e),
        }
        telemetry::leases_held(
            &self.name,
            self.held.values().filter(|h| !h.releasing).count(),
        );
    }

    /// A follower that ended unasked crashed: its lease is not renewed but
    /// released after its last checkpoint, and the group is taken again
    /// (here or by another replica) after a backoff.
    async fn reap_crashed(&mut self) {
        let crashed: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| !h.releasing && h.task.is_finished())
            .map(|(g, _)| g.clone())
            .collect();
        for g in crashed {
            let h = self.held.remove(&g).expect("listed above");
            let ran = h.started.elapsed();
            let detail = match h.task.await {
                Err(e) if e.is_panic() => panic_text(e.into_panic()),
                Err(e) => e.to_string(),
                Ok(()) => "ended".to_owned(),
            };
            let n = self.crashes.entry(g.clone()).or_insert(0);
            if ran >= FOLLOWER_HEALTHY_AFTER {
                *n = 0;
            }
            *n += 1;
            telemetry::task_failed(
                "follower",
                &format!("{}/{g}", self.name),
                &format!("crash {n} in a row: {detail}"),
            );
            if *n >= FOLLOWER_CRASHES {
                panic!("log group {g}: its follower crashed {n} times in a row ({detail})");
            }
            self.shared.forget(&g);
            self.cooldown.insert(
                g.clone(),
                Instant::now() + backoff(*n, Duration::from_secs(1), Duration::from_secs(60)),
            );
            let _ = self.updates.send(Update::Release(g)).await;
        }
    }

    /// Renews every lease held; one the table refuses, or one not renewed
    /// before it expired, is lost.
    async fn renew(&mut self) {
        let mut lost = Vec::new();
        for (g, h) in self.held.iter_mut() {
            match self.table.renew(g, now_ms()).await {
                Ok(expires) => h.expires_ms = expires,
                Err(e @ TableError::Lost { .. }) => lost.push((g.clone(), e.to_string())),
                Err(e) => {
                    telemetry::source_error(&self.name, "checkpoint_table", &e);
                    // Past its expiry another replica may hold it: stop
                    // before two replicas follow the group at once.
                    if now_ms() >= h.expires_ms {
                        lost.push((g.clone(), format!("not renewed before it expired: {e}")));
                    }
                }
            }
        }
        for (g, why) in lost {
            self.lose(&g, &why);
        }
    }

    /// Handed-back groups whose follower is done: release after its
    /// last checkpoint, in order on the writer's channel.
    async fn release_handed_back(&mut self) {
        let done: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.releasing && h.task.is_finished())
            .map(|(g, _)| g.clone())
            .collect();
        for g in done {
            self.held.remove(&g);
            self.shared.forget(&g);
            let _ = self.updates.send(Update::Release(g)).await;
        }
    }

    /// Lists `log_group_prefix` again; new groups join `groups`.
    async fn discover(&mut self, stop: &CancellationToken) {
        self.next_discovery = Instant::now() + self.shared.settings.discovery_interval;
        let at = now_ms();
        match self.shared.resolve(stop).await {
            Ok(found) => {
                for g in found {
                    self.groups
                        .entry(g.name)
                        .or_insert((g.created_ms, self.listed_before));
                }
                if let Err(e) = self.table.record_discovery(at).await {
                    telemetry::source_error(&self.name, "checkpoint_table", &e);
                }
                self.listed_before = Some(at);
            }
            Err((kind, message)) if !stop.is_cancelled() => {
                telemetry::source_error(&self.name, kind, &message)
            }
            Err(_) => {}
        }
    }

    /// Removes the items of replicas gone, hands back the groups beyond
    /// this replica's fair share and takes free ones up to it.
    async fn rebalance(&mut self, snap: &Snapshot, stop: &CancellationToken) {
        for (pk, expires) in &snap.stale {
            let _ = self.table.remove_replica(Some((pk, *expires))).await;
        }
        let share = table::fair_share(self.groups.len(), snap.live_replicas);
        let active: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| !h.releasing)
            .map(|(g, _)| g.clone())
            .collect();
        if active.len() > share {
            for g in active.iter().skip(share) {
                if let Some(h) = self.held.get_mut(g) {
                    tracing::info!(source = %self.name, log_group = %g, share, replicas = snap.live_replicas, "handing a log group lease back: more than this replica's share");
                    h.releasing = true;
                    h.stop.cancel();
                }
            }
        }
        let room = share.saturating_sub(active.len());
        self.take(room, snap, stop).await;
    }

    /// Takes up to `room` groups whose lease is free or expired (or is
    /// still this replica's), and follows them.
    async fn take(&mut self, mut room: usize, snap: &Snapshot, stop: &CancellationToken) {
        let now = now_ms();
        for (g, (created, listed_before)) in &self.groups {
            if room == 0 || stop.is_cancelled() {
                break;
            }
            if self.held.contains_key(g)
                || self.finishing.contains_key(g)
                || self.cooldown.contains_key(g)
            {
                continue;
            }
            let free = snap.leases.get(g).is_none_or(|l| {
                l.owner.is_none() || l.expires_ms < now || l.owner.as_deref() == Some(&self.owner)
            });
            if !free {
                continue;
            }
            let initial = initial_position(self.start_ms, *created, *listed_before);
            match self.table.acquire(g, now_ms(), initial).await {
                Ok(Some(a)) => {
                    telemetry::lease_acquired(&self.name, g, &self.owner, a.from.as_deref());
                    let token = stop.child_token();
                    let task = tokio::spawn(Arc::clone(&self.shared).follow(
                        g.clone(),
                        Progress::resume(&a.checkpoint, self.shared.reach),
                        token.clone(),
                        self.updates.clone(),
                    ));
                    self.held.insert(
                        g.clone(),
                        Held {
                            stop: token,
                            task,
                            expires_ms: a.expires_ms,
                            releasing: false,
                            started: Instant::now(),
                        },
                    );
                    room -= 1;
                }
                Ok(None) => {}
                Err(e) => telemetry::source_error(&self.name, "checkpoint_table", &e),
            }
        }
    }

    /// Stopping: the followers end their deliveries (the app's grace
    /// period bounds them) while the leases are kept renewed, then each
    /// lease is released after its last checkpoint, so another replica
    /// takes the groups over at once instead of after they expire. Ends
    /// with the writer's channel closed.
    async fn stop(mut self, tick: Duration) {
        loop {
            let updates = &self.updates;
            self.held.retain(|g, h| {
                if h.task.is_finished() {
                    let _ = updates.try_send(Update::Release(g.clone()));
                    false
                } else {
                    true
                }
            });
            self.finishing.retain(|_, t| !t.is_finished());
            if self.held.is_empty() && self.finishing.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100).min(tick)).await;
            let now = now_ms();
            for (g, h) in self.held.iter_mut() {
                if h.expires_ms - now < tick.as_millis() as i64
                    && let Ok(expires) = self.table.renew(g, now).await
                {
                    h.expires_ms = expires;
                }
            }
        }
    }
}

/// Writes group checkpoints to the table, each conditional on this
/// replica's lease, and releases leases in order after them. A write the
/// table refuses is a lost lease, reported on `lost`. Writes that failed
/// otherwise are tried again (a newer checkpoint of the group replaces one
/// still waiting).
async fn table_write_loop(
    table: Arc<CheckpointTable>,
    source: String,
    mut rx: mpsc::Receiver<Update>,
    lost: mpsc::UnboundedSender<(String, TableError)>,
) {
    let mut pending: HashMap<String, GroupCheckpoint> = HashMap::new();
    // A failed write (not a refusal) comes back to be tried again.
    let flush = async |g: String, c: GroupCheckpoint| -> Option<(String, GroupCheckpoint)> {
        match table.save(&g, &c).await {
            Ok(saved) => {
                if saved.dropped > 0 {
                    telemetry::checkpoint_ids_dropped(&source, &g, saved.kept, saved.dropped);
                }
                tracing::debug!(source = %source, log_group = %g, "checkpoint written");
                None
            }
            Err(e @ TableError::Lost { .. }) => {
                let _ = lost.send((g, e));
                None
            }
            Err(e) => {
                telemetry::source_error(&source, "checkpoint_table", &e);
                Some((g, c))
            }
        }
    };
    loop {
        let next = if pending.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Ok(u) => u,
                Err(_) => {
                    for (g, c) in std::mem::take(&mut pending) {
                        if let Some((g, c)) = flush(g, c).await {
                            pending.entry(g).or_insert(c);
                        }
                    }
                    continue;
                }
            }
        };
        let Some(first) = next else { break };
        let mut next = Some(first);
        while let Some(u) = next.take() {
            match u {
                Update::Group(g, c) => {
                    pending.insert(g, c);
                }
                Update::Release(g) => {
                    if let Some(c) = pending.remove(&g) {
                        // Released all the same: the next owner reads on
                        // from the older checkpoint (repeats, no gap).
                        let _ = flush(g.clone(), c).await;
                    }
                    if let Err(e) = table.release(&g).await {
                        telemetry::source_error(&source, "checkpoint_table", &e);
                    }
                }
                Update::Discovered(_) => {}
            }
            next = rx.try_recv().ok();
        }
        for (g, c) in std::mem::take(&mut pending) {
            if let Some((g, c)) = flush(g, c).await {
                pending.entry(g).or_insert(c);
            }
        }
    }
    // Stopping: one last try for what failed.
    for (g, c) in std::mem::take(&mut pending) {
        let _ = flush(g, c).await;
    }
}
