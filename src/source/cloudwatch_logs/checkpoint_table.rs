//! CloudWatch Logs checkpoints shared by replicas in a DynamoDB table, with
//! a lease per log group (as the Kinesis Client Library shares shards).
//!
//! The table's only key is a string partition key `pk`. Items:
//!
//! * a group: `pk = "<source>#<log group>"`, its checkpoint
//!   (`position_ms`, and `handled_keys`: the events handled inside the
//!   lookback, binary, see [`super::handled::encode`]), and its lease:
//!   `lease_owner`, `lease_expires` (ms since the epoch) and
//!   `lease_counter` (acquisitions so far);
//! * a replica: `pk = "<source>#@replica/<owner>"` with `lease_expires`,
//!   renewed with the leases, so replicas can count each other (including
//!   ones that hold no lease yet) and share the groups fairly.
//!
//! Every write to a group is conditional on its lease: acquiring needs it
//! free, expired or already ours; renewing, saving and releasing need it
//! ours. A write refused by its condition means the lease is lost.
//!
//! A group item stays under DynamoDB's 400 KB item limit however many
//! events alerted inside the lookback: `handled_keys` is at most
//! [`MAX_ENCODED`] bytes (8-byte keys, not ids), and past that the oldest
//! are left out of the item (a restart may repeat their alerts) rather than
//! the write failing and the checkpoint standing still. Items written
//! before, with `handled` as a JSON map of event ids to times, are still
//! read; the next checkpoint write replaces that attribute.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::checkpoint::{self, GroupCheckpoint};
use super::handled::{self, MAX_ENCODED};

/// '@' cannot appear in a log group name, so replica items never clash
/// with group items.
const REPLICA_MARK: &str = "@replica/";
/// The source's last listing of its log groups, by any replica.
const DISCOVERY_MARK: &str = "@discovery";
/// A replica item expired this many lease durations ago is swept away (a
/// replica killed without its clean shutdown leaves one behind).
const SWEEP_AFTER_LEASES: i64 = 10;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A conditional write was refused: another replica holds the lease.
    #[error("the lease of log group `{group}` is held by another replica")]
    Lost { group: String },
    #[error("DynamoDB table `{table}`: {message}")]
    Api { table: String, message: String },
}

/// A group's lease as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: Option<String>,
    pub expires_ms: i64,
}

/// The source's items at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub leases: HashMap<String, Lease>,
    /// Replicas (this one included, once it has beaten) whose item has not
    /// expired.
    pub live_replicas: usize,
    /// Replica items long expired: (pk, lease_expires).
    pub stale: Vec<(String, i64)>,
}

/// A lease just acquired, with the checkpoint it resumes from.
#[derive(Debug)]
pub struct Acquired {
    pub checkpoint: GroupCheckpoint,
    /// The replica whose expired lease this was, if another.
    pub from: Option<String>,
    pub expires_ms: i64,
}

pub struct CheckpointTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
    source: String,
    owner: String,
    lease_ms: i64,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn num(item: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    item.get(k)?.as_n().ok()?.parse().ok()
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    item.get(k)?.as_s().ok().map(String::as_str)
}

/// The checkpoint a group item holds; `Ok(None)` when it has none yet.
/// Reads `handled_keys`, or `handled` (JSON) from an item written before it.
pub fn checkpoint_of(
    item: &HashMap<String, AttributeValue>,
) -> Result<Option<GroupCheckpoint>, String> {
    let Some(position_ms) = num(item, "position_ms") else {
        return Ok(None);
    };
    let handled = match (item.get("handled_keys"), text(item, "handled")) {
        (Some(keys), _) => {
            let bytes = keys
                .as_b()
                .map_err(|_| "`handled_keys` is not binary".to_owned())?;
            handled::decode(bytes.as_ref())
                .map_err(|e| format!("`handled_keys` cannot be read: {e}"))?
        }
        (None, Some(json)) => checkpoint::keyed(
            serde_json::from_str(json)
                .map_err(|e| format!("`handled` is not a map of event ids to times ({e})"))?,
        ),
        (None, None) => Default::default(),
    };
    Ok(Some(GroupCheckpoint {
        position_ms,
        handled,
    }))
}

/// A checkpoint written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// Handled events kept in the item.
    pub kept: usize,
    /// The oldest handled events left out to stay under the item limit:
    /// after a restart their alerts may repeat.
    pub dropped: usize,
}

/// The name this process holds leases under: the host (a pod's name) and a
/// random part, so a restarted pod with the same name is a new owner and
/// never mistakes its predecessor's leases for its own.
pub fn owner_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rootwatch".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

impl CheckpointTable {
    pub fn new(
        aws: &aws_config::SdkConfig,
        table: &str,
        source: &str,
        owner: String,
        lease: Duration,
    ) -> Self {
        CheckpointTable {
            client: aws_sdk_dynamodb::Client::new(aws),
            table: table.to_owned(),
            source: source.to_owned(),
            owner,
            lease_ms: lease.as_millis() as i64,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn pk(&self, group: &str) -> String {
        format!("{}#{group}", self.source)
    }

    fn replica_pk(&self) -> String {
        format!("{}#{REPLICA_MARK}{}", self.source, self.owner)
    }

    fn discovery_pk(&self) -> String {
        format!("{}#{DISCOVERY_MARK}", self.source)
    }

    /// When any replica of the source last listed its log groups (`None`
    /// before the first listing ever): a group created after it is new,
    /// and is read from its creation.
    pub async fn discovered_at(&self) -> Result<Option<i64>, TableError> {
        let call = self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .key("pk", s(self.discovery_pk()))
            .send();
        let out = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| self.timeout())?
            .map_err(|e| self.api(e))?;
        Ok(out.item().and_then(|i| num(i, "discovered_ms")))
    }

    /// Records a listing of the log groups at `at_ms`, unless a later one
    /// is recorded already.
    pub async fn record_discovery(&self, at_ms: i64) -> Result<(), TableError> {
        let call = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.discovery_pk()))
            .update_expression("SET #d = :at, #s = :src, #k = :kind")
            .condition_expression("attribute_not_exists(#d) OR #d < :at")
            .expression_attribute_names("#d", "discovered_ms")
            .expression_attribute_names("#s", "source")
            .expression_attribute_names("#k", "kind")
            .expression_attribute_values(":at", n(at_ms))
            .expression_attribute_values(":src", s(&self.source))
            .expression_attribute_values(":kind", s("discovery"))
            .send();
        match tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| self.timeout())?
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(self.api(e)),
        }
    }

    fn api<E, R>(&self, e: SdkError<E, R>) -> TableError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        TableError::Api {
            table: self.table.clone(),
            message: DisplayErrorContext(&e).to_string(),
        }
    }

    fn timeout(&self) -> TableError {
        TableError::Api {
            table: self.table.clone(),
            message: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
        }
    }

    /// Says this replica is alive until `now` + lease. Also the start-up
    /// check that the table exists and can be written.
    pub async fn heartbeat(&self, now_ms: i64) -> Result<(), TableError> {
        let call = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(self.replica_pk()))
            .item("source", s(&self.source))
            .item("kind", s("replica"))
            .item("lease_owner", s(&self.owner))
            .item("lease_expires", n(now_ms + self.lease_ms))
            .send();
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| self.timeout())?
            .map_err(|e| self.api(e))?;
        Ok(())
    }

    /// Every item of this source (a strongly consistent scan).
    pub async fn snapshot(&self, now_ms: i64) -> Result<Snapshot, TableError> {
        let mut out = Snapshot::default();
        let mut start = None;
        loop {
            let call = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression("#s = :s")
                .expression_attribute_names("#s", "source")
                .expression_attribute_values(":s", s(&self.source))
                .set_exclusive_start_key(start.take())
                .send();
            let page = tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| self.timeout())?
                .map_err(|e| self.api(e))?;
            for item in page.items() {
                let expires = num(item, "lease_expires").unwrap_or(0);
                match (text(item, "kind"), text(item, "log_group")) {
                    (Some("replica"), _) => {
                        if expires > now_ms {
                            out.live_replicas += 1;
                        } else if expires < now_ms - SWEEP_AFTER_LEASES * self.lease_ms
                            && let Some(pk) = text(item, "pk")
                        {
                            out.stale.push((pk.to_owned(), expires));
                        }
                    }
                    (_, Some(group)) => {
                        out.leases.insert(
                            group.to_owned(),
                            Lease {
                                owner: text(item, "lease_owner").map(str::to_owned),
                                expires_ms: expires,
                            },
                        );
                    }
                    _ => {}
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Takes the lease of `group` if it is free, expired or already ours;
    /// `None` when another replica holds it. A group without an item gets
    /// one, at `initial_position_ms`, in the same write.
    pub async fn acquire(
        &self,
        group: &str,
        now_ms: i64,
        initial_position_ms: i64,
    ) -> Result<Option<Acquired>, TableError> {
        let expires = now_ms + self.lease_ms;
        let call = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.pk(group)))
            .update_expression(
                "SET #o = :me, #e = :exp, #c = if_not_exists(#c, :zero) + :one, #p = if_not_exists(#p, :pos), #s = :src, #k = :group, #g = :g",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR attribute_not_exists(#o) OR #e < :now OR #o = :me",
            )
            .expression_attribute_names("#o", "lease_owner")
            .expression_attribute_names("#e", "lease_expires")
            .expression_attribute_names("#c", "lease_counter")
            .expression_attribute_names("#p", "position_ms")
            .expression_attribute_names("#s", "source")
            .expression_attribute_names("#k", "kind")
            .expression_attribute_names("#g", "log_group")
            .expression_attribute_values(":me", s(&self.owner))
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":pos", n(initial_position_ms))
            .expression_attribute_values(":src", s(&self.source))
            .expression_attribute_values(":group", s("group"))
            .expression_attribute_values(":g", s(group))
            .expression_attribute_values(":now", n(now_ms))
            .return_values(ReturnValue::AllOld)
            .send();
        let out = match tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| self.timeout())?
        {
            Ok(out) => out,
            Err(e) if is_condition_failure(&e) => return Ok(None),
            Err(e) => return Err(self.api(e)),
        };
        let old = out.attributes();
        let checkpoint = old
            .map(checkpoint_of)
            .transpose()
            .map_err(|message| TableError::Api {
                table: self.table.clone(),
                message: format!("log group `{group}`: {message}"),
            })?
            .flatten()
            .unwrap_or_else(|| GroupCheckpoint {
                position_ms: initial_position_ms,
                handled: Default::default(),
            });
        let from = old
            .and_then(|o| text(o, "lease_owner"))
            .filter(|o| *o != self.owner)
            .map(str::to_owned);
        Ok(Some(Acquired {
            checkpoint,
            from,
            expires_ms: expires,
        }))
    }

    /// Extends a lease this replica holds; `Lost` when it holds it no more.
    pub async fn renew(&self, group: &str, now_ms: i64) -> Result<i64, TableError> {
        let expires = now_ms + self.lease_ms;
        let owned = self
            .update_owned(
                group,
                "SET #e = :exp",
                &[("#e", "lease_expires")],
                [(":exp", n(expires))],
            )
            .await?;
        self.still_owned(group, owned).map(|()| expires)
    }

    /// Writes a group's checkpoint, only while this replica holds its
    /// lease. The handled events beyond [`MAX_ENCODED`] bytes, the oldest,
    /// are left out (see [`Saved`]), so the write always fits the item.
    pub async fn save(&self, group: &str, c: &GroupCheckpoint) -> Result<Saved, TableError> {
        let encoded = handled::encode(&c.handled, MAX_ENCODED);
        let owned = self
            .update_owned(
                group,
                // `handled` is the JSON of items written before keys.
                "SET #p = :pos, #k = :k REMOVE #h",
                &[
                    ("#p", "position_ms"),
                    ("#k", "handled_keys"),
                    ("#h", "handled"),
                ],
                [
                    (":pos", n(c.position_ms)),
                    (":k", AttributeValue::B(encoded.bytes.into())),
                ],
            )
            .await?;
        self.still_owned(group, owned).map(|()| Saved {
            kept: encoded.kept,
            dropped: encoded.dropped,
        })
    }

    /// Gives a lease up at once (its group's last checkpoint written), so
    /// another replica need not wait for it to expire.
    pub async fn release(&self, group: &str) -> Result<(), TableError> {
        // Not ours any more (`false`): nothing to give up.
        self.update_owned(
            group,
            "REMOVE #o SET #e = :zero",
            &[("#e", "lease_expires")],
            [(":zero", n(0))],
        )
        .await
        .map(|_| ())
    }

    /// An `UpdateItem` of `group`'s item that applies only while this
    /// replica owns its lease (`lease_owner = me`, bound as `#o` and `:me`
    /// for `expression` too); `Ok(false)` when that condition failed.
    async fn update_owned<const V: usize>(
        &self,
        group: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: [(&str, AttributeValue); V],
    ) -> Result<bool, TableError> {
        let mut call = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(self.pk(group)))
            .update_expression(expression)
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", "lease_owner")
            .expression_attribute_values(":me", s(&self.owner));
        for (k, v) in names {
            call = call.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            call = call.expression_attribute_values(k, v);
        }
        match tokio::time::timeout(CALL_TIMEOUT, call.send())
            .await
            .map_err(|_| self.timeout())?
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(self.api(e)),
        }
    }

    /// `Lost` when an owner-conditional write found the lease gone.
    fn still_owned(&self, group: &str, owned: bool) -> Result<(), TableError> {
        if owned {
            Ok(())
        } else {
            Err(TableError::Lost {
                group: group.to_owned(),
            })
        }
    }

    /// Removes this replica's item (clean shutdown), or a stale one.
    pub async fn remove_replica(&self, pk: Option<(&str, i64)>) -> Result<(), TableError> {
        let mut call = self.client.delete_item().table_name(&self.table);
        call = match pk {
            None => call.key("pk", s(self.replica_pk())),
            // Only if no replica came back under it since the scan.
            Some((pk, expires)) => call
                .key("pk", s(pk))
                .condition_expression("#e = :e")
                .expression_attribute_names("#e", "lease_expires")
                .expression_attribute_values(":e", n(expires)),
        };
        match tokio::time::timeout(CALL_TIMEOUT, call.send())
            .await
            .map_err(|_| self.timeout())?
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(self.api(e)),
        }
    }
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// How many of `groups` one of `replicas` live replicas may hold: an even
/// share, rounded up so every group has room somewhere.
pub fn fair_share(groups: usize, replicas: usize) -> usize {
    groups.div_ceil(replicas.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_group() {
        assert_eq!(fair_share(5, 3), 2);
        assert_eq!(fair_share(6, 3), 2);
        assert_eq!(fair_share(1, 3), 1);
        assert_eq!(fair_share(4, 0), 4);
        assert_eq!(fair_share(0, 2), 0);
        for g in 0..20 {
            for r in 1..6 {
                assert!(fair_share(g, r) * r >= g);
            }
        }
    }

    fn group_item(extra: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        let mut item: HashMap<String, AttributeValue> = [
            ("pk".to_owned(), s("src#g")),
            ("position_ms".to_owned(), n(5_000)),
        ]
        .into();
        item.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        item
    }

    #[test]
    fn an_item_is_read_in_either_format() {
        use crate::source::cloudwatch_logs::handled::EventKey;
        let id = "37000000000000000000000000000000000000000000000000000001";
        let want = GroupCheckpoint {
            position_ms: 5_000,
            handled: [(EventKey::of(id), 4_990)].into(),
        };
        // As items were written before keys: a JSON map of ids.
        let old = group_item(&[("handled", s(format!(r#"{{"{id}":4990}}"#)))]);
        assert_eq!(checkpoint_of(&old).unwrap(), Some(want.clone()));
        let bytes = handled::encode(&want.handled, MAX_ENCODED).bytes;
        let new = group_item(&[("handled_keys", AttributeValue::B(bytes.into()))]);
        assert_eq!(checkpoint_of(&new).unwrap(), Some(want));
        let none = group_item(&[]);
        assert!(checkpoint_of(&none).unwrap().unwrap().handled.is_empty());
        let mut fresh = none.clone();
        fresh.remove("position_ms");
        assert_eq!(checkpoint_of(&fresh).unwrap(), None);

        for (item, want) in [
            (
                group_item(&[("handled", s("[1]"))]),
                "`handled` is not a map",
            ),
            (
                group_item(&[("handled_keys", s("x"))]),
                "`handled_keys` is not binary",
            ),
            (
                group_item(&[("handled_keys", AttributeValue::B(vec![9].into()))]),
                "`handled_keys` cannot be read: format 9",
            ),
        ] {
            let e = checkpoint_of(&item).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn owner_ids_differ_per_process_start() {
        let (a, b) = (owner_id(), owner_id());
        assert_ne!(a, b);
        assert!(!a.is_empty());
    }
}
