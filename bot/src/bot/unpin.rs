//! Letting go of pins: of snapshots the registry no longer keeps (confirmed at the finalized
//! block, never one a restore request names), and of nodes no longer served.

use super::{Bot, PassReport, SUBMITTED_GRACE_BLOCKS};
use crate::chain::Chain;
use crate::config::ServedNode;
use crate::state::{node_key, Unserved};
use anyhow::Result;
use cid::Cid;
use std::collections::HashSet;
use tracing::{info, warn};

/// Which of a node's pins [`Bot::unpin_unkept`] lets go.
#[derive(Clone, Copy)]
enum Letting<'a> {
    /// Those the registry no longer keeps; the set holds the backup's snapshots as listed.
    Unkept(&'a HashSet<Cid>),
    /// All of them: the node left the configuration at block `unserved_since`, longer ago than
    /// the release period.
    Released { unserved_since: u32 },
}

impl<C: Chain> Bot<C> {
    /// Unpins the roots this bot pinned for `node` that the registry no longer keeps (pruned
    /// by retention, or the backup deleted; see [`Bot::unpin_unkept`]).
    pub(super) async fn unpin_dropped(
        &mut self,
        node: &ServedNode,
        now: u32,
        requested: &HashSet<Cid>,
        report: &mut PassReport,
    ) -> Result<()> {
        let key = node_key(node);
        if self.pins.get(&key).is_none_or(Vec::is_empty) {
            return Ok(());
        }
        let listed: HashSet<Cid> = self
            .registry
            .snapshots(&node.owner, &node.node_id)
            .await?
            .iter()
            .filter_map(|snapshot| Cid::try_from(snapshot.cid.as_str()).ok())
            .collect();
        self.unpin_unkept(&key, Letting::Unkept(&listed), now, requested, report)
            .await
    }

    /// Unpins the roots pinned under `key` (see [`node_key`]) that `letting` lets go, never
    /// one an open restore request names. [`Letting::Unkept`]: those the registry no longer
    /// keeps. A root missing from `listed` (the backup's snapshots, read in pages that shift
    /// while an owner unpins or another authority adds) is unpinned only once the registry
    /// confirms, by its CID at the finalized block, that it keeps no such snapshot, and never
    /// while this pass recorded it or it was submitted less than [`SUBMITTED_GRACE_BLOCKS`]
    /// before block `now` and may still land.
    async fn unpin_unkept(
        &mut self,
        key: &str,
        letting: Letting<'_>,
        now: u32,
        requested: &HashSet<Cid>,
        report: &mut PassReport,
    ) -> Result<()> {
        let pinned = self.pins.get(key).cloned().unwrap_or_default();
        let recorded_now: HashSet<&str> = report
            .snapshots
            .iter()
            .map(|recorded| recorded.cid.as_str())
            .collect();
        let mut still_pinned = Vec::new();
        let mut unpinned = Vec::new();
        for root in pinned {
            let cid = Cid::try_from(root.as_str())?;
            if let Letting::Unkept(listed) = letting {
                if listed.contains(&cid)
                    || recorded_now.contains(root.as_str())
                    || self.registry.keeps_finalized(&root).await?
                {
                    // Recorded: no longer waiting to land.
                    if self.submitted.remove(&root).is_some() {
                        self.state.save_submitted(&self.submitted)?;
                    }
                    still_pinned.push(root);
                    continue;
                }
            }
            let landing = matches!(letting, Letting::Unkept(_))
                && self
                    .submitted
                    .get(&root)
                    .is_some_and(|since| now.saturating_sub(*since) < SUBMITTED_GRACE_BLOCKS);
            if requested.contains(&cid) || landing {
                still_pinned.push(root);
                continue;
            }
            self.store.unpin(&cid).await?;
            if self.submitted.remove(&root).is_some() {
                self.state.save_submitted(&self.submitted)?;
            }
            match letting {
                Letting::Unkept(_) => {
                    info!(node = %key, cid = %root, "unpinned: the registry no longer keeps it")
                }
                Letting::Released { unserved_since } => warn!(
                    node = %key,
                    cid = %root,
                    unserved_since,
                    "unpinned: its node left the configuration"
                ),
            }
            unpinned.push(root);
        }
        report.unpinned.extend(unpinned);
        self.pins.insert(key.to_string(), still_pinned);
        self.state.save_pins(&self.pins)
    }

    /// The pins of nodes no longer in the configuration: each kept while the registry keeps
    /// its snapshot and unpinned once it does not, like a served node's, for
    /// `release_unserved_after` blocks from the pass that first found the node unserved (a
    /// node taken out of the configuration by mistake loses nothing if put back in time);
    /// then all released. A node served again starts afresh.
    pub(super) async fn unpin_unserved(
        &mut self,
        now: u32,
        requested: &HashSet<Cid>,
        report: &mut PassReport,
    ) -> Result<()> {
        let served: HashSet<String> = self.nodes.iter().map(node_key).collect();
        let unserved: Vec<String> = self
            .pins
            .keys()
            .filter(|key| !served.contains(*key))
            .cloned()
            .collect();
        let mut found = Unserved::new();
        for key in &unserved {
            found.insert(key.clone(), self.unserved.get(key).copied().unwrap_or(now));
        }
        if found != self.unserved {
            self.state.save_unserved(&found)?;
            self.unserved = found;
        }
        let nothing_listed = HashSet::new();
        for key in unserved {
            let since = self.unserved[&key];
            let release_at = since.saturating_add(self.release_unserved_after);
            let letting = if now >= release_at {
                Letting::Released {
                    unserved_since: since,
                }
            } else {
                Letting::Unkept(&nothing_listed)
            };
            self.unpin_unkept(&key, letting, now, requested, report)
                .await?;
            match self.pins.get(&key).map(Vec::len) {
                Some(0) => {
                    self.pins.remove(&key);
                    self.state.save_pins(&self.pins)?;
                    self.unserved.remove(&key);
                    self.state.save_unserved(&self.unserved)?;
                }
                Some(held) if now < release_at => warn!(
                    node = %key,
                    held,
                    release_at,
                    "this node is no longer in the configuration: its pins are released at \
                     block {release_at} unless it is served again"
                ),
                _ => {}
            }
        }
        Ok(())
    }
}
