//! Account names, OU paths and tags from AWS Organizations, read in the
//! background and kept in memory: an alert never waits for Organizations.
//! A refresh lists the accounts (`ListAccounts`), walks each one's parents
//! up to the root (`ListParents`, `DescribeOrganizationalUnit`, each OU
//! read once per refresh) and reads its tags (`ListTagsForResource`), then
//! replaces the whole directory at once. A failed refresh keeps the last
//! good directory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_sdk_organizations::error::DisplayErrorContext;
use aws_sdk_organizations::types::ParentType;
use tokio_util::sync::CancellationToken;

use super::AccountInfo;

/// `[enrich.organizations]`, validated.
#[derive(Debug, Clone)]
pub struct OrgSettings {
    pub aws: crate::aws::AwsSettings,
    pub refresh: Duration,
    /// Accounts read at most (a bound on memory and on calls).
    pub max_accounts: usize,
}

/// What the last good refresh found, by account id.
#[derive(Debug, Default)]
pub struct OrgDirectory {
    accounts: RwLock<Arc<HashMap<String, Arc<AccountInfo>>>>,
}

impl OrgDirectory {
    pub fn get(&self, account: &str) -> Option<Arc<AccountInfo>> {
        self.accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn replace(&self, accounts: HashMap<String, Arc<AccountInfo>>) {
        *self.accounts.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(accounts);
    }
}

fn failed(what: &str, e: impl std::error::Error) -> String {
    format!("{what} failed: {}", DisplayErrorContext(e))
}

/// The OU directly above `child` (an account or an OU); `None` at the root.
async fn parent_ou(
    client: &aws_sdk_organizations::Client,
    child: &str,
) -> Result<Option<String>, String> {
    let parents = client
        .list_parents()
        .child_id(child)
        .send()
        .await
        .map_err(|e| failed("ListParents", e))?;
    Ok(parents
        .parents()
        .first()
        .filter(|p| p.r#type() == Some(&ParentType::OrganizationalUnit))
        .and_then(|p| p.id().map(str::to_owned)))
}

/// Reads the organization once into `dir`. Returns how many accounts.
pub async fn refresh(
    client: &aws_sdk_organizations::Client,
    dir: &OrgDirectory,
    max_accounts: usize,
) -> Result<usize, String> {
    let mut accounts = Vec::new();
    let mut pages = client.list_accounts().into_paginator().send();
    'pages: while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed("ListAccounts", e))?;
        for a in page.accounts() {
            if accounts.len() == max_accounts {
                tracing::warn!(
                    max_accounts,
                    "the organization has more accounts than enrich.organizations.max_accounts; the rest get no names"
                );
                break 'pages;
            }
            if let Some(id) = a.id() {
                accounts.push((id.to_owned(), a.name().map(str::to_owned)));
            }
        }
    }
    // Each OU's (name, parent), read once.
    let mut ous: HashMap<String, (String, Option<String>)> = HashMap::new();
    let mut out = HashMap::with_capacity(accounts.len());
    for (id, name) in accounts {
        let mut path = Vec::new();
        let mut parent = parent_ou(client, &id).await?;
        // An organization is at most five OUs deep; the bound keeps a
        // malformed answer from looping.
        for _ in 0..8 {
            let Some(ou) = parent else { break };
            if !ous.contains_key(&ou) {
                let d = client
                    .describe_organizational_unit()
                    .organizational_unit_id(&ou)
                    .send()
                    .await
                    .map_err(|e| failed("DescribeOrganizationalUnit", e))?;
                let name = d
                    .organizational_unit()
                    .and_then(|u| u.name())
                    .unwrap_or(&ou)
                    .to_owned();
                let up = parent_ou(client, &ou).await?;
                ous.insert(ou.clone(), (name, up));
            }
            let (name, up) = &ous[&ou];
            path.push(name.clone());
            parent = up.clone();
        }
        path.push("Root".to_owned());
        path.reverse();
        let mut tags = BTreeMap::new();
        let mut pages = client
            .list_tags_for_resource()
            .resource_id(&id)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("ListTagsForResource", e))?;
            for t in page.tags() {
                tags.insert(t.key().to_owned(), t.value().to_owned());
            }
        }
        out.insert(
            id,
            Arc::new(AccountInfo {
                name,
                ou: Some(path.join("/")),
                tags,
            }),
        );
    }
    let n = out.len();
    dir.replace(out);
    Ok(n)
}

/// Refreshes `dir` now and every `settings.refresh` until `stop`.
pub async fn run(
    settings: OrgSettings,
    base: aws_config::SdkConfig,
    dir: Arc<OrgDirectory>,
    stop: CancellationToken,
) {
    let config = crate::aws::sdk_config(&base, &settings.aws).await;
    let client = aws_sdk_organizations::Client::new(&config);
    loop {
        let started = std::time::Instant::now();
        tokio::select! {
            r = refresh(&client, &dir, settings.max_accounts) => match r {
                Ok(n) => tracing::info!(accounts = n, took_ms = started.elapsed().as_millis() as u64, "AWS Organizations accounts read"),
                Err(error) => tracing::warn!(error = %error, kept = dir.len(), "AWS Organizations could not be read; the last accounts read are kept"),
            },
            _ = stop.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.refresh) => {}
            _ = stop.cancelled() => return,
        }
    }
}
