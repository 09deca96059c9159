//! Serving restore requests: claimed, the snapshot checked and restored into the node's
//! restore folder, then, once the tree is on disk, marked fulfilled; or failed with a short
//! reason.

use super::{Bot, PassReport};
use crate::chain::Chain;
use crate::config::ServedNode;
use crate::error::{self, Error};
use crate::pipeline::{self, Expected};
use crate::registry::{chain_account, ink_account};
use anyhow::Result;
use backup_registry::{RequestId, RestoreRequest, RestoreStatus, MAX_REASON_LEN};
use cid::Cid;
use tracing::{info, warn};

/// How a restore attempt ended.
enum RestoreOutcome {
    /// Restored: mark the request fulfilled.
    Restored,
    /// The content is bad: mark the request failed with this reason.
    Refused(String),
}

impl<C: Chain> Bot<C> {
    /// Serves the open restore requests of served nodes: pending ones, its own claims (say,
    /// after a restart), and claims of other authorities that lapsed (`claim_timeout`) or
    /// whose claimant is no longer an authority.
    pub(super) async fn serve_restores(&mut self, report: &mut PassReport) -> Result<()> {
        let me = ink_account(&self.registry.account());
        let now = self.registry.block_number().await?;
        let claim_timeout = self.registry.config().await?.claim_timeout;
        let requests = self.registry.open_restore_requests().await?;
        for (request_id, request) in requests {
            let resume = match &request.status {
                RestoreStatus::Pending => false,
                RestoreStatus::InProgress { authority } if *authority == me => true,
                RestoreStatus::InProgress { authority } => {
                    let lapsed = now.saturating_sub(request.updated_at) >= claim_timeout;
                    if !lapsed
                        && self
                            .registry
                            .is_authority(&chain_account(authority))
                            .await?
                    {
                        continue;
                    }
                    false
                }
                _ => continue,
            };
            let Some(node) = self.served_node_of(&request).await? else {
                continue;
            };
            if !resume && !self.can_open(&node, &request.cid, report).await {
                continue;
            }
            if !resume {
                match self.registry.claim_restore_request(request_id).await {
                    Ok(()) => info!(request_id, node = %node.node_id, "restore request claimed"),
                    // Another authority was faster.
                    Err(Error::Refused(_)) => continue,
                    Err(error) => return Err(error.into()),
                }
            }
            match self.restore(&node, &request.cid).await {
                Ok(RestoreOutcome::Restored) => {
                    let fulfilled = self.registry.fulfil_restore_request(request_id).await;
                    if self.still_held(request_id, fulfilled)? {
                        info!(request_id, node = %node.node_id, "restore fulfilled");
                        report.fulfilled.push(request_id);
                    }
                }
                Ok(RestoreOutcome::Refused(reason)) => {
                    let reason = truncate(&reason, MAX_REASON_LEN);
                    let failed = self
                        .registry
                        .fail_restore_request(request_id, &reason)
                        .await;
                    if self.still_held(request_id, failed)? {
                        warn!(request_id, node = %node.node_id, %reason, "restore failed");
                        report.failed.push((request_id, reason));
                    }
                }
                Err(error) => {
                    warn!(
                        request_id,
                        "restore interrupted, retried next pass: {error:#}"
                    );
                    report
                        .errors
                        .push(format!("request {request_id}: {error:#}"));
                }
            }
        }
        Ok(())
    }

    /// Whether this bot should claim a restore of snapshot `cid` of `node`: not when it holds
    /// no identity of the node or the snapshot is not sealed to it (another authority took
    /// it: the request is left for that one, not failed as "decrypt failed"), nor while the
    /// store cannot be read (an error, for the next pass). Content that is bad for any reader
    /// is claimed, and the restore fails the request with the reason.
    async fn can_open(&self, node: &ServedNode, cid: &str, report: &mut PassReport) -> bool {
        let (Ok(Some(identity)), Ok(root)) = (self.keyring.identity(node), Cid::try_from(cid))
        else {
            // A CID that does not parse is bad for any reader: claimed, then failed.
            return Cid::try_from(cid).is_err();
        };
        match pipeline::open_snapshot(&self.store, &root, &identity).await {
            Ok(_) | Err(Error::InvalidSnapshot(_)) => true,
            Err(Error::NotARecipient) => {
                info!(node = %node.node_id, %cid, "restore left to another authority: \
                      the snapshot is not sealed to this bot's key");
                false
            }
            Err(error) => {
                warn!(node = %node.node_id, %cid, "restore not claimed this pass: {error:#}");
                report.errors.push(format!("snapshot {cid}: {error:#}"));
                false
            }
        }
    }

    /// Whether completing request `request_id` went through: `false` when the registry
    /// refused it because the request is no longer this bot's (its claim lapsed and another
    /// authority took it over, or it was cancelled); other errors are returned.
    fn still_held(&self, request_id: RequestId, completed: error::Result<()>) -> Result<bool> {
        match completed {
            Ok(()) => Ok(true),
            Err(Error::Refused(refused)) => {
                warn!(
                    request_id,
                    ?refused,
                    "no longer this bot's request: left as it is"
                );
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The served node a request is for, if this bot serves it.
    async fn served_node_of(&mut self, request: &RestoreRequest) -> Result<Option<ServedNode>> {
        let Some(backup) = self.registry.backup_by_id(request.backup_id).await? else {
            return Ok(None);
        };
        Ok(self
            .nodes
            .iter()
            .find(|node| node.node_id == backup.node_id && ink_account(&node.owner) == backup.owner)
            .cloned())
    }

    /// Restores snapshot `cid` into `node`'s restore folder. Errors are for a later pass to
    /// retry; refusals (a snapshot bad for any reader, or not sealed to this bot) are final.
    async fn restore(&self, node: &ServedNode, cid: &str) -> Result<RestoreOutcome> {
        let Ok(cid) = Cid::try_from(cid) else {
            return Ok(RestoreOutcome::Refused(format!("invalid cid {cid}")));
        };
        let identity = self.keyring.identity(node)?.ok_or_else(|| {
            anyhow::anyhow!(
                "node {:?} has no identity in {}",
                node.node_id,
                self.keyring.path_of(node).display()
            )
        })?;
        let owner = node.owner.to_string();
        let expected = Expected {
            owner: &owner,
            node_id: &node.node_id,
        };
        let target = &node.restore_to;
        match pipeline::restore(&self.store, &cid, &identity, Some(expected), target).await {
            Ok(_) => Ok(RestoreOutcome::Restored),
            Err(error @ (Error::InvalidSnapshot(_) | Error::NotARecipient)) => {
                Ok(RestoreOutcome::Refused(error.to_string()))
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_on_character_boundaries() {
        assert_eq!(truncate("short", 128), "short");
        let long = "é".repeat(100);
        let cut = truncate(&long, 128);
        assert_eq!(cut.len(), 128);
        assert_eq!(truncate("aé", 2), "a");
    }
}
