//! `portcullis upstreams diff` and `pin`: each upstream asked what it offers now, compared
//! with the lock file, and (for `pin`) the lock file rewritten to accept it.

use std::sync::Arc;
use std::time::Duration;

use portcullis_config::Config;
use serde_json::Value;

use super::link::Link;
use super::pins::{self, Kind, LockFile, Pin, UpstreamPins};

/// How an item the upstream offers (or offered) compares with its pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    /// Offered as pinned.
    Pinned,
    /// Offered, but its definition differs from the pin: withheld.
    Changed,
    /// Offered and not pinned: withheld unless `on_new = "allow"`.
    New,
    /// Pinned, and no longer offered.
    Gone,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pinned => "pinned",
            Self::Changed => "changed",
            Self::New => "new",
            Self::Gone => "gone",
        }
    }
}

/// One item of a survey.
#[derive(Debug, Clone)]
pub struct SurveyItem {
    /// `tool`, `prompt`, `resource`, `resource template`.
    pub kind: &'static str,
    kind_key: Kind,
    /// The upstream's own name (or URI).
    pub name: String,
    /// The name it is served under.
    pub served_as: String,
    pub state: ItemState,
    /// The pinned definition, if any.
    pub pinned: Option<Value>,
    /// The definition offered now, if any.
    pub offered: Option<Value>,
}

/// What one upstream offers now against its pins, or why it could not be asked.
#[derive(Debug, Clone)]
pub struct Survey {
    pub upstream: String,
    pub items: Vec<SurveyItem>,
    pub error: Option<String>,
}

impl Survey {
    /// Whether anything differs from the pins (what `diff` exits 1 for).
    pub fn differs(&self) -> bool {
        self.error.is_some() || self.items.iter().any(|i| i.state != ItemState::Pinned)
    }
}

/// Asks every upstream of `config` (or only `only`) what it offers, and compares it with the
/// lock file. Starts each upstream and stops it again.
///
/// # Errors
///
/// The lock file cannot be read, or `only` names no upstream.
pub async fn survey(config: &Config, only: Option<&str>) -> Result<Vec<Survey>, String> {
    let lock = LockFile::read(&super::lock_path(config))?;
    if let Some(only) = only
        && !config.upstreams.iter().any(|u| u.name == only)
    {
        let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
        return Err(format!(
            "no upstream `{only}`; upstreams: {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    let mut surveys = Vec::new();
    for upstream in &config.upstreams {
        if only.is_some_and(|o| o != upstream.name) {
            continue;
        }
        let link = Arc::new(Link::new(
            upstream.clone(),
            &config.base_dir,
            config.gateway.refresh_secs,
        ));
        link.start();
        let mut status = link.subscribe();
        let timeout = Duration::from_secs(upstream.connect_timeout_secs + 1);
        let listed = matches!(
            tokio::time::timeout(timeout, status.wait_for(|s| s.offer.is_some())).await,
            Ok(Ok(_))
        );
        drop(status);
        let pins = lock
            .upstreams
            .get(&upstream.name)
            .cloned()
            .unwrap_or_default();
        let offer = link.status().offer;
        let Some(offer) = offer.filter(|_| listed) else {
            surveys.push(Survey {
                upstream: upstream.name.clone(),
                items: Vec::new(),
                error: Some(
                    link.status()
                        .down
                        .unwrap_or_else(|| "it did not answer in time".to_owned()),
                ),
            });
            continue;
        };
        let mut items = Vec::new();
        let offered = super::items_of(&offer);
        for item in &offered {
            if !upstream.serves(&item.name) {
                continue;
            }
            let pin = pins.of(item.kind).get(&item.name);
            let state = match pin {
                Some(pin) if pin.sha256 == item.digest => ItemState::Pinned,
                Some(_) => ItemState::Changed,
                None => ItemState::New,
            };
            items.push(SurveyItem {
                kind: item.kind.noun(),
                kind_key: item.kind,
                name: item.name.clone(),
                served_as: super::served_as(upstream, item.kind, &item.name),
                state,
                pinned: pin.map(|p| p.definition.clone()),
                offered: Some(item.definition.clone()),
            });
        }
        for kind in pins::KINDS {
            for (name, pin) in pins.of(kind) {
                if offered.iter().any(|i| i.kind == kind && &i.name == name) {
                    continue;
                }
                items.push(SurveyItem {
                    kind: kind.noun(),
                    kind_key: kind,
                    name: name.clone(),
                    served_as: super::served_as(upstream, kind, name),
                    state: ItemState::Gone,
                    pinned: Some(pin.definition.clone()),
                    offered: None,
                });
            }
        }
        surveys.push(Survey {
            upstream: upstream.name.clone(),
            items,
            error: None,
        });
    }
    Ok(surveys)
}

/// Rewrites the lock file so that it pins what `surveys` found offered (upstreams that could
/// not be asked keep their pins). Returns the lock file's path.
///
/// # Errors
///
/// The lock file cannot be read or written.
pub fn pin(config: &Config, surveys: &[Survey]) -> Result<std::path::PathBuf, String> {
    let path = super::lock_path(config);
    let mut lock = LockFile::read(&path)?;
    lock.version = 1;
    for survey in surveys.iter().filter(|s| s.error.is_none()) {
        let mut pins = UpstreamPins::default();
        for item in &survey.items {
            if let Some(offered) = &item.offered {
                pins.of_mut(item.kind_key)
                    .insert(item.name.clone(), Pin::of(offered.clone()));
            }
        }
        lock.upstreams.insert(survey.upstream.clone(), pins);
    }
    lock.write(&path)?;
    Ok(path)
}
