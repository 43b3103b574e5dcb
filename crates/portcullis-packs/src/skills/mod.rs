//! The skills pack: folders of agent skills served as the Skills extension (SEP-2640,
//! `io.modelcontextprotocol/skills`).
//!
//! A skill is a directory holding a `SKILL.md` (YAML front matter with `name` and
//! `description`, then the instructions) and the files it refers to. Each is served as
//! `skill://PATH/SKILL.md`, its files as `skill://PATH/FILE` resources, and its manifest
//! (every file's URI, SHA-256 digest and size) in `skills/list` and `skills/get`; its
//! directories answer `resources/directory/read`.
//!
//! rmcp's `SkillCatalog` (feature `skills-fs`) loads such a tree too; it is not used because
//! it keeps every file's bytes in memory, has fixed bounds and no deny list, and reports a
//! skipped skill only in a log line. Here every file access goes through the
//! [`jail`](crate::jail) (no symlinks followed, the deny list, a size cap per file), each
//! folder keeps an index (skill → front matter and manifest; file → size, modification time,
//! inode and digest), and a file is read and hashed again only when its size, modification
//! time or inode changed: digests are computed once per change, never per read. rmcp's model
//! (`Skill::validate`, `sha256_digest`) checks what is served. The watcher (or poller) of
//! each folder rescans it after a change; what differs becomes `resources/updated` for each
//! changed file and `resources/list_changed` when a skill or a manifest changed, through the
//! change seam (both eras, and other replicas through the cluster's relay).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use base64::Engine as _;
use portcullis_config::{Config, SkillsFolder};
use portcullis_core::{CatalogBuilder, ChangeNotifier, ResourceError, ResourceSource};
use rmcp::model::{
    DIRECTORY_MIME_TYPE, ReadResourceResult, Resource, ResourceContents, SKILL_MD, Skill,
    SkillFrontmatter, SkillResource, SkillResources,
};

use crate::jail::{Jail, Located, Probe, Stamp};
use crate::watch::Settings;

/// The pack's name, for `[packs.skills]`.
pub const PACK: &str = "skills";

/// The URI scheme of skills.
const PREFIX: &str = "skill://";

/// Most entries one walk of a folder visits (files and directories).
const MAX_WALKED: usize = 200_000;

/// One file of a served skill.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileEntry {
    stamp: Stamp,
    digest: String,
    size: u64,
}

/// One served skill.
#[derive(Debug, Clone)]
struct SkillEntry {
    /// The skill's directory, relative to the folder.
    dir: String,
    /// What `skills/list` and `skills/get` serve: URI, front matter and manifest.
    skill: Skill,
    /// The `SKILL.md` version the front matter was parsed from.
    skill_md: Stamp,
}

/// What a folder serves now.
#[derive(Debug, Default)]
struct Index {
    /// Served skills by directory.
    skills: BTreeMap<String, SkillEntry>,
    /// Every file of a served skill, by path relative to the folder.
    files: BTreeMap<String, FileEntry>,
}

/// One configured folder.
struct Folder {
    jail: Jail,
    scopes: Option<Vec<String>>,
    max_file_bytes: u64,
    max_skill_bytes: u64,
    max_files_per_skill: usize,
    max_skills: usize,
    watch: Settings,
    index: RwLock<Arc<Index>>,
    /// One rescan at a time, so two never diff against the same old index.
    rescan: tokio::sync::Mutex<()>,
    /// A rescan asked for by a read is queued: more reads ask for no more.
    queued: std::sync::atomic::AtomicBool,
    notifier: ChangeNotifier,
}

/// The URI of the folder-relative path `rel`.
fn uri(rel: &str) -> String {
    format!("{PREFIX}{}", crate::jail::uri_path(rel))
}

/// The folder-relative path a `skill://` URI names, percent-decoded.
fn rel_of(uri: &str) -> Result<String, ResourceError> {
    let rest = uri
        .strip_prefix(PREFIX)
        .ok_or_else(|| ResourceError::Rejected(format!("`{uri}` is not a `{PREFIX}` URI")))?;
    if rest.contains(['?', '#']) {
        return Err(ResourceError::Rejected(
            "skill URIs take no query or fragment".to_owned(),
        ));
    }
    let rel = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| {
            ResourceError::Rejected("the path is not valid UTF-8 after percent-decoding".to_owned())
        })?;
    if rel.is_empty()
        || rel
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(ResourceError::Rejected(format!(
            "`{uri}` is not a clean skill path; use `{PREFIX}SKILL/FILE` as listed"
        )));
    }
    Ok(rel.into_owned())
}

/// The YAML front matter of a `SKILL.md`.
fn front_matter(text: &str) -> Result<SkillFrontmatter, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
        .ok_or("SKILL.md does not start with a `---` front matter block")?;
    let end = rest
        .match_indices("\n---")
        .map(|(at, _)| at)
        .find(|&at| {
            let after = &rest[at + 4..];
            after.is_empty() || after.starts_with('\n') || after.starts_with("\r\n")
        })
        .ok_or("the front matter of SKILL.md has no closing `---` line")?;
    let yaml = &rest[..=end];
    let matter: SkillFrontmatter = serde_norway::from_str(yaml)
        .map_err(|e| format!("the front matter of SKILL.md is not valid: {e}"))?;
    if matter.description.trim().is_empty() {
        return Err("the front matter of SKILL.md has an empty `description`".to_owned());
    }
    Ok(matter)
}

impl Folder {
    /// Walks the folder and builds its index, reusing the digests of files and the front
    /// matter of `SKILL.md`s that did not change since `old`. Blocking.
    fn scan_blocking(&self, old: &Index) -> Index {
        let root = Located {
            rel: String::new(),
            meta: None,
        };
        let mut seen: BTreeMap<String, Stamp> = BTreeMap::new();
        let mut linked = Vec::new();
        let cut = self.jail.walk_blocking(&root, MAX_WALKED, |rel, file| {
            // A file with another name (a hard link) may be one from outside the folder:
            // never part of a skill.
            if file.links().is_some_and(|n| n > 1) {
                linked.push(rel.to_owned());
                return true;
            }
            if let Some(stamp) = file.fingerprint() {
                seen.insert(rel.to_owned(), stamp);
            }
            true
        });
        if !linked.is_empty() {
            tracing::warn!(
                folder = self.jail.name(),
                files = linked.len(),
                first = %linked[0],
                "files with several names (hard links) are not served as skill files"
            );
        }
        if cut {
            tracing::warn!(
                folder = self.jail.name(),
                max_entries = MAX_WALKED,
                "the skills folder has more entries than a walk visits; skills past them are not served"
            );
        }
        let dirs: BTreeSet<&str> = seen
            .keys()
            .filter_map(|rel| rel.strip_suffix(SKILL_MD)?.strip_suffix('/'))
            .filter(|dir| !dir.is_empty())
            .collect();
        // Each file belongs to the deepest skill directory above it (a nested skill's files
        // are its own, not its parent's).
        let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for rel in seen.keys() {
            let mut at = rel.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                if dirs.contains(parent) {
                    members.entry(parent).or_default().push(rel);
                    break;
                }
                at = parent;
            }
        }
        let mut index = Index::default();
        for (dir, files) in members {
            if index.skills.len() >= self.max_skills {
                tracing::warn!(
                    folder = self.jail.name(),
                    max_skills = self.max_skills,
                    "the skills folder holds more skills than `max_skills`; the rest are not served"
                );
                break;
            }
            match self.skill_blocking(dir, &files, &seen, old) {
                Ok((entry, entries)) => {
                    index.files.extend(entries);
                    index.skills.insert(dir.to_owned(), entry);
                }
                Err(why) => tracing::warn!(
                    folder = self.jail.name(),
                    skill = dir,
                    "a skill is not served: {why}"
                ),
            }
        }
        index
    }

    /// One skill: its files' digests (read again only when changed), its front matter, its
    /// manifest, checked against the folder's bounds and the extension's rules. Blocking.
    fn skill_blocking(
        &self,
        dir: &str,
        files: &[&str],
        seen: &BTreeMap<String, Stamp>,
        old: &Index,
    ) -> Result<(SkillEntry, Vec<(String, FileEntry)>), String> {
        if files.len() > self.max_files_per_skill {
            return Err(format!(
                "it has {} files, more than `max_files_per_skill` ({})",
                files.len(),
                self.max_files_per_skill
            ));
        }
        let mut entries = Vec::with_capacity(files.len());
        let mut total = 0u64;
        let mut skill_md_text = None;
        let skill_md = format!("{dir}/{SKILL_MD}");
        for &rel in files {
            let stamp = seen[rel];
            if stamp.0 > self.max_file_bytes {
                return Err(format!(
                    "`{rel}` is {} bytes, more than `max_file_bytes` ({})",
                    stamp.0, self.max_file_bytes
                ));
            }
            total += stamp.0;
            if total > self.max_skill_bytes {
                return Err(format!(
                    "its files add up to more than `max_skill_bytes` ({})",
                    self.max_skill_bytes
                ));
            }
            let reused = old.files.get(rel).filter(|f| f.stamp == stamp).cloned();
            let needs_text = rel == skill_md
                && old
                    .skills
                    .get(dir)
                    .is_none_or(|entry| entry.skill_md != stamp);
            let entry = match reused {
                Some(entry) if !needs_text => entry,
                _ => {
                    let bytes = self
                        .jail
                        .probe_blocking(rel, |probe| match probe {
                            Probe::File(file) => file.bytes(self.max_file_bytes),
                            Probe::Dir | Probe::Nothing => None,
                        })
                        .ok_or_else(|| format!("`{rel}` could not be read"))?;
                    if rel == skill_md {
                        skill_md_text = Some(
                            String::from_utf8(bytes.clone())
                                .map_err(|_| "SKILL.md is not UTF-8 text".to_owned())?,
                        );
                    }
                    FileEntry {
                        stamp,
                        digest: rmcp::model::sha256_digest(&bytes),
                        size: bytes.len() as u64,
                    }
                }
            };
            entries.push((rel.to_owned(), entry));
        }
        let skill_md_stamp = seen[&skill_md];
        let frontmatter = match skill_md_text {
            Some(text) => front_matter(&text)?,
            None => old
                .skills
                .get(dir)
                .map(|entry| entry.skill.frontmatter.clone())
                .ok_or("SKILL.md could not be read")?,
        };
        let manifest = entries
            .iter()
            .map(|(rel, f)| SkillResource::new(uri(rel), f.digest.clone(), f.size))
            .collect();
        // The extension's name rule, on the name as written: `a-z`, `0-9` and `-` only (rmcp
        // checks it after Unicode normalisation, which lets look-alikes such as a fullwidth
        // `ａ` through).
        if !frontmatter
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "the name `{}` may use only a-z, 0-9 and `-`",
                frontmatter.name
            ));
        }
        let skill = Skill::new(uri(&skill_md), frontmatter, SkillResources::Files(manifest));
        skill.validate().map_err(|e| e.to_string())?;
        Ok((
            SkillEntry {
                dir: dir.to_owned(),
                skill,
                skill_md: skill_md_stamp,
            },
            entries,
        ))
    }

    /// Whether a watcher's batch may change what the folder serves: a path in or above a
    /// served skill, a `SKILL.md` anywhere, a directory (one moved in may hold skills), or
    /// a batch that lost track. Edits to other files of a large tree do not rescan it.
    async fn concerns(self: &Arc<Self>, batch: crate::watch::Batch) -> bool {
        if batch.overflowed {
            return true;
        }
        let index = self.index();
        let near = batch.paths.iter().any(|path| {
            path.rsplit('/').next() == Some(SKILL_MD)
                || index.skills.keys().any(|dir| {
                    path == dir
                        || path.starts_with(&format!("{dir}/"))
                        || dir.starts_with(&format!("{path}/"))
                })
        });
        if near {
            return true;
        }
        let jail = self.jail.clone();
        tokio::task::spawn_blocking(move || {
            batch
                .paths
                .iter()
                .any(|path| jail.probe_blocking(path, |probe| matches!(probe, Probe::Dir)))
        })
        .await
        .unwrap_or(true)
    }

    fn index(&self) -> Arc<Index> {
        Arc::clone(&self.index.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Brings the index up to date with the folder and tells subscribers what changed:
    /// every file whose digest changed, appeared or went is `updated` (with its digest as
    /// the version, so of many replicas watching the same files one announces it), and a
    /// changed set of skills or manifests is a list change.
    async fn rescan(self: &Arc<Self>) {
        let _one = self.rescan.lock().await;
        let folder = Arc::clone(self);
        let scanned = tokio::task::spawn_blocking(move || {
            let old = folder.index();
            let new = folder.scan_blocking(&old);
            (old, new)
        })
        .await;
        let Ok((old, new)) = scanned else {
            tracing::error!(
                folder = self.jail.name(),
                "rescanning the skills folder failed"
            );
            return;
        };
        metrics::counter!("portcullis_skills_rescans_total").increment(1);
        let mut updated = Vec::new();
        for (rel, file) in &old.files {
            match new.files.get(rel) {
                Some(now) if now.digest == file.digest => {}
                Some(now) => updated.push((rel.clone(), now.digest.clone())),
                None => updated.push((rel.clone(), format!("gone after {}", file.digest))),
            }
        }
        updated.extend(
            new.files
                .iter()
                .filter(|(rel, _)| !old.files.contains_key(*rel))
                .map(|(rel, f)| (rel.clone(), f.digest.clone())),
        );
        let list_changed = old.skills.len() != new.skills.len()
            || old.skills.iter().any(|(dir, entry)| {
                new.skills
                    .get(dir)
                    .is_none_or(|now| now.skill != entry.skill)
            });
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
        if !updated.is_empty() || list_changed {
            tracing::debug!(
                folder = self.jail.name(),
                updated = updated.len(),
                list_changed,
                "skills changed"
            );
        }
        for (rel, version) in updated {
            self.notifier.updated_to(uri(&rel), version);
        }
        if list_changed {
            self.notifier.list_changed();
        }
    }
}

/// Every `[[skills]]` folder, as one resource source: the first folder that serves a skill
/// directory owns it (a later folder's skill of the same path is not served).
struct SkillsSource {
    folders: Vec<Arc<Folder>>,
}

impl SkillsSource {
    /// The skill `rel` (a folder-relative path) is in, with the folder serving it and that
    /// folder's index: the deepest skill directory above `rel` in any folder, and of two
    /// folders with the same directory the first (the one rule [`Self::served`] follows, so
    /// a skill is listed, scoped and read by the same folder).
    fn owner(&self, rel: &str) -> Option<(&Arc<Folder>, Arc<Index>, String)> {
        let indexes: Vec<(&Arc<Folder>, Arc<Index>)> =
            self.folders.iter().map(|f| (f, f.index())).collect();
        let mut at = rel;
        loop {
            if let Some((folder, index)) = indexes
                .iter()
                .find(|(_, index)| index.skills.contains_key(at))
            {
                return Some((folder, Arc::clone(index), at.to_owned()));
            }
            at = at.rsplit_once('/')?.0;
        }
    }

    /// Each served skill once, with the folder that serves it.
    fn served(&self) -> Vec<(&Arc<Folder>, SkillEntry)> {
        let mut dirs = BTreeSet::new();
        let mut served = Vec::new();
        for folder in &self.folders {
            let index = folder.index();
            for (dir, entry) in &index.skills {
                if dirs.insert(dir.clone()) {
                    served.push((folder, entry.clone()));
                }
            }
        }
        served
    }

    fn not_found(uri: &str) -> ResourceError {
        ResourceError::NotFound(format!(
            "no skill file `{uri}`; `skills/list` shows the skills and their files"
        ))
    }
}

#[async_trait]
impl ResourceSource for SkillsSource {
    fn pack(&self) -> &str {
        PACK
    }

    fn required_scopes(&self, uri: &str) -> Option<Vec<String>> {
        let rel = rel_of(uri).ok()?;
        let (folder, _, _) = self.owner(&rel)?;
        folder.scopes.clone()
    }

    /// Each skill's `SKILL.md`, named and described by its front matter.
    fn resources(&self) -> Vec<Resource> {
        self.served()
            .into_iter()
            .map(|(folder, entry)| {
                let skill = &entry.skill;
                let size = folder
                    .index()
                    .files
                    .get(&format!("{}/{SKILL_MD}", entry.dir))
                    .map_or(0, |f| f.size);
                Resource::new(skill.uri.clone(), skill.frontmatter.name.clone())
                    .with_description(skill.frontmatter.description.clone())
                    .with_mime_type("text/markdown")
                    .with_size(size)
            })
            .collect()
    }

    fn claims(&self, uri: &str) -> bool {
        uri.starts_with(PREFIX)
    }

    fn live(&self) -> bool {
        self.folders.iter().any(|f| f.watch.enabled())
    }

    fn list_changes(&self) -> bool {
        self.live()
    }

    /// A file URI of a served skill, in the form updates are published in.
    fn subscribable(&self, uri: &str) -> bool {
        self.live()
            && rel_of(uri).is_ok_and(|rel| {
                self::uri(&rel) == uri
                    && self
                        .owner(&rel)
                        .is_some_and(|(_, index, _)| index.files.contains_key(&rel))
            })
    }

    fn serves_skills(&self) -> bool {
        true
    }

    fn skills(&self) -> Vec<Skill> {
        self.served()
            .into_iter()
            .map(|(_, entry)| entry.skill)
            .collect()
    }

    fn skill(&self, uri: &str) -> Option<Skill> {
        let rel = rel_of(uri).ok()?;
        let dir = rel.strip_suffix(SKILL_MD)?.strip_suffix('/')?;
        let (_, index, owner) = self.owner(&rel)?;
        (owner == dir).then(|| index.skills[dir].skill.clone())
    }

    async fn read(&self, uri: &str) -> Result<ReadResourceResult, ResourceError> {
        let rel = rel_of(uri)?;
        let Some((folder, index, _)) = self.owner(&rel) else {
            return Err(Self::not_found(uri));
        };
        let Some(indexed) = index.files.get(&rel).cloned() else {
            return Err(Self::not_found(uri));
        };
        // The exact file of the manifest: not a symlink (probed without following one), and
        // the version that was hashed (size, modification time, inode), so the bytes served
        // are the bytes whose digest was listed.
        let jail = folder.jail.clone();
        let max = folder.max_file_bytes;
        let path = rel.clone();
        let read = tokio::task::spawn_blocking(move || {
            jail.probe_blocking(&path, |probe| match probe {
                // Before and after: a file rewritten while it was read is not served half.
                Probe::File(file) if file.fingerprint() == Some(indexed.stamp) => file
                    .bytes(max)
                    .filter(|_| file.fingerprint() == Some(indexed.stamp)),
                _ => None,
            })
        })
        .await
        .map_err(|e| ResourceError::Internal {
            context: "reading a skill file".to_owned(),
            source: e.into(),
        })?;
        let Some(bytes) = read else {
            // Changed since it was indexed: the index catches up (one rescan queued, however
            // many reads ask), the client lists again.
            if !folder
                .queued
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                let folder = Arc::clone(folder);
                tokio::spawn(async move {
                    let _one = folder.rescan.lock().await;
                    folder
                        .queued
                        .store(false, std::sync::atomic::Ordering::Release);
                    drop(_one);
                    folder.rescan().await;
                });
            }
            return Err(ResourceError::NotFound(format!(
                "`{uri}` changed since the skills were listed; list them again (`skills/list`)"
            )));
        };
        let mime = mime_of(&rel);
        let textual = !content_inspector::inspect(&bytes).is_binary() && !bytes.contains(&0);
        let contents = match String::from_utf8(bytes) {
            Ok(text) if textual => ResourceContents::text(text, uri).with_mime_type(mime),
            Ok(text) => blob(text.as_bytes(), uri, mime),
            Err(e) => blob(e.as_bytes(), uri, mime),
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }

    async fn read_directory(&self, uri: &str) -> Result<Vec<Resource>, ResourceError> {
        let not_a_directory = || {
            ResourceError::Rejected(format!(
                "`{uri}` is not a directory of a skill; read a skill's folder (`{PREFIX}NAME`) or one below it"
            ))
        };
        let rel = rel_of(uri)?;
        let (_, index, _) = self.owner(&rel).ok_or_else(not_a_directory)?;
        let below = format!("{rel}/");
        let mut dirs = BTreeSet::new();
        let mut entries = Vec::new();
        for (path, file) in index.files.range(below.clone()..) {
            let Some(rest) = path.strip_prefix(&below) else {
                break;
            };
            // Only this skill's files (a nested skill below is a directory entry too).
            match rest.split_once('/') {
                Some((sub, _)) => {
                    dirs.insert(sub.to_owned());
                }
                None => {
                    let name = rest.to_owned();
                    let mime = mime_of(&name);
                    entries.push(
                        Resource::new(self::uri(path), name)
                            .with_mime_type(mime)
                            .with_size(file.size),
                    );
                }
            }
        }
        if entries.is_empty() && dirs.is_empty() {
            return Err(not_a_directory());
        }
        entries.extend(dirs.into_iter().map(|sub| {
            Resource::new(self::uri(&format!("{rel}/{sub}")), sub)
                .with_mime_type(DIRECTORY_MIME_TYPE)
        }));
        Ok(entries)
    }
}

/// The MIME type a skill file is served with: markdown for `.md`, else by extension.
fn mime_of(rel: &str) -> String {
    if rel.ends_with(".md") {
        "text/markdown".to_owned()
    } else {
        mime_guess::from_path(rel)
            .first_or_octet_stream()
            .essence_str()
            .to_owned()
    }
}

fn blob(bytes: &[u8], uri: &str, mime: String) -> ResourceContents {
    ResourceContents::blob(base64::engine::general_purpose::STANDARD.encode(bytes), uri)
        .with_mime_type(mime)
}

/// Adds every `[[skills]]` folder: one resource source serving them all, a watcher per
/// folder, and a readiness check.
pub(crate) fn register(
    config: &Config,
    catalog: &mut CatalogBuilder,
    _shared: &mut crate::Shared,
) -> Result<(), String> {
    add(&config.skills, &config.base_dir, catalog)
}

fn add(
    folders: &[SkillsFolder],
    base_dir: &Path,
    catalog: &mut CatalogBuilder,
) -> Result<(), String> {
    let notifier = catalog.notifier().for_pack(PACK);
    let mut opened = Vec::with_capacity(folders.len());
    for config in folders {
        let jail = Jail::open_folder(
            "skills",
            &config.name,
            &base_dir.join(&config.path),
            &config.deny,
            config.deny_ignore_case,
        )?;
        let folder = Arc::new(Folder {
            jail,
            scopes: config.required_scopes.clone(),
            max_file_bytes: config.max_file_bytes,
            max_skill_bytes: config.max_skill_bytes,
            max_files_per_skill: config.max_files_per_skill,
            max_skills: config.max_skills,
            watch: Settings::new(config.watch, config.poll_interval_ms, config.debounce_ms),
            index: RwLock::default(),
            rescan: tokio::sync::Mutex::new(()),
            queued: std::sync::atomic::AtomicBool::new(false),
            notifier: notifier.clone(),
        });
        let index = folder.scan_blocking(&Index::default());
        tracing::debug!(
            folder = config.name,
            skills = index.skills.len(),
            "skills indexed"
        );
        *folder.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(index);
        if folder.watch.enabled() {
            let watched = Arc::clone(&folder);
            catalog.background(crate::watch::run(
                folder.jail.clone(),
                folder.watch,
                move |batch: crate::watch::Batch| {
                    let folder = Arc::clone(&watched);
                    async move {
                        if folder.concerns(batch).await {
                            folder.rescan().await;
                        }
                    }
                },
            ));
        }
        opened.push(folder);
    }
    catalog.resources(SkillsSource {
        folders: opened.clone(),
    });
    catalog.readiness(
        "skills",
        crate::jail::RootsReady {
            what: "skills folder",
            jails: opened.iter().map(|f| f.jail.clone()).collect(),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_needs_a_closed_block_with_a_description() {
        let ok = front_matter(
            "---\nname: review\ndescription: How we review\nlicense: MIT\n---\n# Body\n",
        )
        .unwrap();
        assert_eq!(ok.name, "review");
        assert_eq!(ok.extra["license"], "MIT");
        assert!(front_matter("# no front matter").is_err());
        assert!(front_matter("---\nname: x\ndescription: y\n").is_err());
        assert!(front_matter("---\nname: x\ndescription: ''\n---\n").is_err());
        // A `---` inside a value does not close the block.
        let dashed = front_matter("---\nname: x\ndescription: a---b\n---\n").unwrap();
        assert_eq!(dashed.description, "a---b");
    }

    #[test]
    fn skill_uris_are_clean_paths() {
        assert_eq!(
            rel_of("skill://review/SKILL.md").unwrap(),
            "review/SKILL.md"
        );
        assert_eq!(rel_of("skill://a%20b/x").unwrap(), "a b/x");
        for bad in [
            "skill://review/../secret",
            "skill://review/%2e%2e/secret",
            "skill:///etc/passwd",
            "skill://review//x",
            "skill://review/x?y",
            "file:///x",
        ] {
            assert!(rel_of(bad).is_err(), "{bad}");
        }
    }
}
