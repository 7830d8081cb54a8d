//! The `--manifests DIR` source: Kubernetes objects from YAML/JSON files in a directory,
//! re-read whenever the directory changes.
//!
//! Rules (kept close to what `kubectl apply -R -f DIR` would do):
//! - every `*.yaml`, `*.yml`, `*.json` file under DIR, recursively, in sorted path order
//!   (component-wise [`Path`] order); hidden files and directories (`.git`, `.foo.swp`,
//!   Kubernetes' `..data` ConfigMap mount dirs) are skipped; symlinked files are followed,
//!   symlinked directories are not (no loops);
//! - YAML files may hold several documents; empty ones are skipped; `kind: List` (and typed
//!   `<Kind>List`) contributes its `items`; a JSON file holds one object (or a List);
//! - only the kinds the model reads are kept; other kinds are skipped with a debug log;
//! - namespaced objects without a namespace get `default`; a Secret's `stringData` is merged
//!   into `data` as the API server would;
//! - a file applies all-or-nothing: if any document in it is bad, the file's previous good
//!   objects stay in use (none if it never parsed) and the problems are reported with the
//!   path and the **1-based** document index; other files still apply;
//! - the same `Kind namespace/name` twice: the first in sorted path order wins, the rest are
//!   reported.

mod parse;
#[cfg(test)]
mod tests;

/// One file's text parsed as a load parses it (the file's name picks YAML or JSON): the
/// `Kind namespace/name` of each object, or every problem. For [`crate::fuzzing`].
pub(crate) fn parse_text(path: &Path, text: &str) -> Result<Vec<String>, Vec<ManifestError>> {
    parse::parse_file(path, text).map(|parsed| parsed.iter().map(|p| p.object.key()).collect())
}
mod watch;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch as tokio_watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::model::Input;
use parse::{Object, Parsed};

/// `(Kind, namespace, name)` of an object (see `parse::Object::identity`).
type Identity<'a> = (&'static str, Option<&'a str>, &'a str);

/// A problem found while reading the manifests directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// DIR does not exist, is not a directory, or (a subdirectory of it) cannot be listed.
    #[error("manifests directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A manifest file could not be read (permissions, not UTF-8, …).
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A document does not parse, lacks `apiVersion`/`kind`, or is a known kind whose body
    /// does not deserialize.
    #[error("{path}: document {document}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based index of the YAML document in the file (always 1 for JSON).
        document: usize,
        /// 1-based line, when the parser reports it (syntax errors).
        line: Option<usize>,
        /// 1-based column, when the parser reports it (syntax errors).
        column: Option<usize>,
        /// The parser's message (includes the position when there is one).
        message: String,
    },
    /// An object defined again after its first definition (in sorted path order); ignored.
    #[error(
        "{path}: document {document}: {object} is already defined in {first}; ignoring this one"
    )]
    Duplicate {
        /// The file holding the ignored copy.
        path: PathBuf,
        /// 1-based document index of the ignored copy.
        document: usize,
        /// `Kind namespace/name` (or `Kind name` for cluster-scoped kinds).
        object: String,
        /// The file whose copy is used.
        first: PathBuf,
    },
}

impl ManifestError {
    /// Logs the error as a warning with structured fields.
    fn warn(&self) {
        match self {
            ManifestError::Parse {
                path,
                document,
                line,
                column,
                message,
            } => tracing::warn!(
                path = %path.display(), document, line, column, error = %message,
                "manifest does not parse; the file's last good objects (if any) stay in use"
            ),
            ManifestError::Duplicate {
                path,
                document,
                object,
                first,
            } => tracing::warn!(
                path = %path.display(), document, object, first = %first.display(),
                "duplicate object; keeping the first"
            ),
            ManifestError::Dir { path, source } | ManifestError::Read { path, source } => {
                tracing::warn!(path = %path.display(), error = %source, "cannot read manifests")
            }
        }
    }
}

/// The result of one [`ManifestSource::load`].
#[derive(Debug)]
pub struct Loaded {
    /// Every object now in effect (files that failed contribute their last good objects).
    pub input: Input,
    /// The problems found by this load (each also logged as a warning).
    pub errors: Vec<ManifestError>,
}

/// Reads Kubernetes objects from a directory of manifests; see the module docs for the rules.
#[derive(Debug)]
pub struct ManifestSource {
    dir: PathBuf,
    /// The last good objects of each file, keyed by full path (sorted).
    cache: BTreeMap<PathBuf, CachedFile>,
}

/// A file's last good objects, and the stamp of the file they were parsed from (`None` when
/// the file failed since: it is read again on every load until it parses). An unchanged file
/// is not read or parsed again, so an edit among 10,000 files costs one parse.
#[derive(Debug)]
struct CachedFile {
    stamp: Option<watch::Stamp>,
    objects: Vec<Parsed>,
}

/// What a path reported by the watcher is, for [`ManifestSource::load_paths`].
enum Changed {
    /// A manifest file: read it again.
    File,
    /// Nothing there any more: drop what was read from it (or from under it).
    Gone,
    /// Not a manifest (another extension, an editor's hidden temporary file).
    Ignored,
    /// Something else (a directory, a path outside DIR): read everything.
    Unknown,
}

impl ManifestSource {
    /// Creates the source. Fails only if `dir` does not exist or is not a directory.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, ManifestError> {
        let dir = dir.into();
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(ManifestSource {
                dir,
                cache: BTreeMap::new(),
            }),
            Ok(_) => Err(ManifestError::Dir {
                path: dir,
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            }),
            Err(source) => Err(ManifestError::Dir { path: dir, source }),
        }
    }

    /// Reads the directory once and returns the objects in effect plus the problems found
    /// this time. A file that fails keeps its last good objects; a deleted file drops its
    /// objects; if DIR itself cannot be listed, everything from the last load stays.
    pub fn load(&mut self) -> Loaded {
        let started = Instant::now();
        let mut errors = Vec::new();
        let listing = list_files(&self.dir);
        errors.extend(listing.errors);
        let mut previous = std::mem::take(&mut self.cache);
        for path in listing.files {
            let cached = previous.remove(&path);
            self.refresh(path, cached, &mut errors);
        }
        // What is left was not listed: deleted, unless under a directory we could not list.
        previous.retain(|path, _| listing.unlisted.iter().any(|d| path.starts_with(d)));
        self.cache.append(&mut previous);
        self.finish(errors, started, "all")
    }

    /// Like [`ManifestSource::load`], but looks only at `paths`, what the filesystem watcher
    /// reported: an edit among 10,000 files costs one `stat` and one parse. Falls back to
    /// [`ManifestSource::load`] when a path is not simply a manifest file that was written or
    /// removed (a new or moved directory, a ConfigMap mount swapping its `..data` link).
    pub fn load_paths(&mut self, paths: &BTreeSet<PathBuf>) -> Loaded {
        if !std::fs::metadata(&self.dir).is_ok_and(|m| m.is_dir()) {
            // DIR itself is gone (or unreadable): its files' removals are not edits, and a
            // full load keeps everything, as it does whenever DIR cannot be listed.
            return self.load();
        }
        let started = Instant::now();
        let mut errors = Vec::new();
        for path in paths {
            // The watcher names absolute paths; the cache keys are DIR as given joined with
            // the rest.
            let Some(path) = self.in_dir(path) else {
                return self.load();
            };
            let path = &path;
            match self.classify(path) {
                Changed::File => {
                    let cached = self.cache.remove(path);
                    self.refresh(path.clone(), cached, &mut errors);
                }
                Changed::Gone => {
                    let under: Vec<PathBuf> = self
                        .cache
                        .range(path.clone()..)
                        .map(|(p, _)| p)
                        .take_while(|p| p.starts_with(path))
                        .cloned()
                        .collect();
                    for p in under {
                        self.cache.remove(&p);
                    }
                }
                Changed::Ignored => {}
                Changed::Unknown => return self.load(),
            }
        }
        self.finish(errors, started, "changed")
    }

    /// `path` (absolute, or as DIR was given) as the cache names it; `None` outside DIR.
    fn in_dir(&self, path: &Path) -> Option<PathBuf> {
        if path.starts_with(&self.dir) {
            return Some(path.to_owned());
        }
        let absolute = std::path::absolute(&self.dir).ok()?;
        Some(self.dir.join(path.strip_prefix(absolute).ok()?))
    }

    /// What a path the watcher reported means for the cache.
    fn classify(&self, path: &Path) -> Changed {
        let Ok(relative) = path.strip_prefix(&self.dir) else {
            return Changed::Unknown;
        };
        if relative.as_os_str().is_empty() {
            return Changed::Unknown; // DIR itself
        }
        let mut names = relative.components().map(|c| c.as_os_str().to_str());
        if names.any(|name| name.is_none_or(|n| n.starts_with('.'))) {
            // Hidden: editors' temporary files, which change nothing, unless it is a directory
            // (a ConfigMap mount's `..data`, through which the visible files point).
            return match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => Changed::Unknown,
                _ => Changed::Ignored,
            };
        }
        // Files under a symlinked directory are not ours (the walk does not follow them).
        let mut parent = path.parent();
        while let Some(dir) = parent.filter(|d| *d != self.dir) {
            match std::fs::symlink_metadata(dir) {
                Ok(meta) if meta.is_dir() => parent = dir.parent(),
                Ok(_) => return Changed::Ignored,
                Err(_) => return Changed::Unknown,
            }
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Changed::Unknown,
            Ok(meta) if meta.is_file() => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if is_manifest(name) {
                    Changed::File
                } else {
                    Changed::Ignored
                }
            }
            Ok(_) => Changed::Ignored,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Changed::Gone,
            Err(_) => Changed::Unknown,
        }
    }

    /// Puts `path`'s objects in the cache: `cached` again when the file is unchanged since it
    /// was parsed, else the file read and parsed anew (on failure, `cached`'s objects stay).
    fn refresh(
        &mut self,
        path: PathBuf,
        cached: Option<CachedFile>,
        errors: &mut Vec<ManifestError>,
    ) {
        // Stamped before reading: a write during the read makes the next load read again.
        let stamp = std::fs::metadata(&path).ok().map(|m| watch::Stamp::of(&m));
        let previous = match cached {
            Some(unchanged) if unchanged.stamp.is_some() && unchanged.stamp == stamp => {
                self.cache.insert(path, unchanged);
                return;
            }
            previous => previous,
        };
        let result = match std::fs::read_to_string(&path) {
            Ok(text) => parse::parse_file(&path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return, // deleted meanwhile
            Err(source) => Err(vec![ManifestError::Read {
                path: path.clone(),
                source,
            }]),
        };
        match result {
            Ok(objects) => {
                self.cache.insert(path, CachedFile { stamp, objects });
            }
            Err(errs) => {
                errors.extend(errs);
                if let Some(previous) = previous {
                    let objects = previous.objects;
                    let stale = CachedFile {
                        stamp: None,
                        objects,
                    };
                    self.cache.insert(path, stale);
                }
            }
        }
    }

    /// The objects now in effect, with this load's problems (logged).
    fn finish(&self, mut errors: Vec<ManifestError>, started: Instant, read: &str) -> Loaded {
        let input = self.merge(&mut errors);
        for e in &errors {
            e.warn();
        }
        tracing::debug!(elapsed = ?started.elapsed(), read, "manifests read");
        Loaded { input, errors }
    }

    /// Flattens the cache in path order; the first definition of an object wins.
    ///
    /// It copies pointers only and compares the identity hashes made at parse time, reading
    /// an object's names only when its hash was seen before (a duplicate, or a collision), so
    /// a load after an edit costs the parse of the files that changed and little more.
    fn merge(&self, errors: &mut Vec<ManifestError>) -> Input {
        let mut input = Input::default();
        let objects = self.cache.values().map(|file| file.objects.len()).sum();
        // The first object (and its file) by identity hash.
        let mut seen: HashMap<u64, (&Parsed, &Path), foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(objects, Default::default());
        // By identity, for objects whose hash another identity has too (filled when that is
        // first found).
        let mut collided: HashMap<Identity<'_>, &Path, foldhash::fast::RandomState> =
            HashMap::default();
        for (path, file) in &self.cache {
            for parsed in &file.objects {
                let first = match seen.entry(parsed.identity) {
                    Entry::Vacant(slot) => {
                        slot.insert((parsed, path));
                        None
                    }
                    Entry::Occupied(hit) => {
                        let (other, other_path) = *hit.get();
                        if other.object.identity() == parsed.object.identity() {
                            Some(other_path)
                        } else {
                            collided
                                .entry(other.object.identity())
                                .or_insert(other_path);
                            match collided.entry(parsed.object.identity()) {
                                Entry::Occupied(first) => Some(*first.get()),
                                Entry::Vacant(slot) => {
                                    slot.insert(path);
                                    None
                                }
                            }
                        }
                    }
                };
                if let Some(first) = first {
                    errors.push(ManifestError::Duplicate {
                        path: path.clone(),
                        document: parsed.document,
                        object: parsed.object.key(),
                        first: first.to_path_buf(),
                    });
                    continue;
                }
                // Clones an `Arc`, not the object.
                match parsed.object.clone() {
                    Object::Ingress(o) => input.ingresses.push(o),
                    Object::IngressClass(o) => input.ingress_classes.push(o),
                    Object::Service(o) => input.services.push(o),
                    Object::EndpointSlice(o) => input.endpoint_slices.push(o),
                    Object::Endpoints(o) => input.endpoints.push(o),
                    Object::Secret(o) => input.secrets.push(o),
                    Object::ConfigMap(o) => input.config_maps.push(o),
                }
            }
        }
        input
    }

    /// Loads once and publishes, then watches DIR recursively and reloads on every change
    /// (debounced: 2 ms of quiet, at most 200 ms after the first change; only the files the
    /// watcher names are read again), publishing a new
    /// `Arc<Input>` only when the objects changed. Falls back to polling every 500 ms if the
    /// filesystem watcher cannot be set up. Returns when `cancel` fires.
    ///
    /// Never fails today; the `Result` leaves room for fatal errors and matches the other
    /// sources' task signature.
    pub async fn run(
        self,
        tx: tokio_watch::Sender<Option<Arc<Input>>>,
        cancel: CancellationToken,
    ) -> Result<(), ManifestError> {
        let span = tracing::info_span!("manifests", dir = %self.dir.display());
        self.run_with(tx, cancel, false).instrument(span).await
    }

    async fn run_with(
        self,
        tx: tokio_watch::Sender<Option<Arc<Input>>>,
        cancel: CancellationToken,
        force_poll: bool,
    ) -> Result<(), ManifestError> {
        // Watch before the first load so no change between the two is missed.
        let mut trigger = watch::Trigger::new(&self.dir, force_poll);
        let (mut this, loaded) = load_blocking(self, watch::Changes::Everything).await;
        log_reload(&loaded);
        let mut last = Arc::new(loaded.input);
        tx.send_replace(Some(last.clone()));
        loop {
            let Some(changes) = trigger.debounced(&cancel).await else {
                return Ok(());
            };
            let loaded;
            (this, loaded) = load_blocking(this, changes).await;
            if same(&last, &loaded.input) {
                tracing::debug!(
                    errors = loaded.errors.len(),
                    "manifests reloaded, unchanged"
                );
                continue;
            }
            log_reload(&loaded);
            last = Arc::new(loaded.input);
            tx.send_replace(Some(last.clone()));
        }
    }
}

/// Runs [`ManifestSource::load`] (or [`ManifestSource::load_paths`]) off the async threads (it
/// does blocking file I/O).
async fn load_blocking(
    mut source: ManifestSource,
    changes: watch::Changes,
) -> (ManifestSource, Loaded) {
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || {
        let loaded = span.in_scope(|| match &changes {
            watch::Changes::Everything => source.load(),
            watch::Changes::Paths(paths) => source.load_paths(paths),
        });
        (source, loaded)
    });
    match task.await {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn log_reload(loaded: &Loaded) {
    let i = &loaded.input;
    tracing::info!(
        ingresses = i.ingresses.len(),
        ingress_classes = i.ingress_classes.len(),
        services = i.services.len(),
        endpoint_slices = i.endpoint_slices.len(),
        endpoints = i.endpoints.len(),
        secrets = i.secrets.len(),
        config_maps = i.config_maps.len(),
        errors = loaded.errors.len(),
        "manifests loaded"
    );
}

/// Whether two inputs hold the same objects in the same order (`Input` has no `PartialEq`).
///
/// Objects of files that were not read again are the very same `Arc`s in both, so contents are
/// compared only where the pointers differ: objects of re-parsed files, or objects at shifted
/// positions (and an added or removed object usually changes a length first).
fn same(a: &Input, b: &Input) -> bool {
    fn same_objects<T: PartialEq>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
    }
    same_objects(&a.ingresses, &b.ingresses)
        && same_objects(&a.ingress_classes, &b.ingress_classes)
        && same_objects(&a.services, &b.services)
        && same_objects(&a.endpoint_slices, &b.endpoint_slices)
        && same_objects(&a.endpoints, &b.endpoints)
        && same_objects(&a.secrets, &b.secrets)
        && same_objects(&a.config_maps, &b.config_maps)
}

/// The manifest files under a directory, plus what could not be listed.
struct Listing {
    /// Sorted.
    files: Vec<PathBuf>,
    /// Directories that could not be listed.
    unlisted: Vec<PathBuf>,
    errors: Vec<ManifestError>,
}

/// Whether a file name has a manifest extension (hidden names are already skipped by
/// [`walk`]).
fn is_manifest(name: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| {
        ["yaml", "yml", "json"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

fn list_files(dir: &Path) -> Listing {
    let mut listing = Listing {
        files: Vec::new(),
        unlisted: Vec::new(),
        errors: Vec::new(),
    };
    walk(dir, &mut listing);
    listing.files.sort();
    listing
}

fn walk(dir: &Path, out: &mut Listing) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            out.unlisted.push(dir.to_owned());
            out.errors.push(ManifestError::Dir {
                path: dir.to_owned(),
                source,
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // Hidden files and directories: `.git`, editors' `.foo.swp`, ConfigMap `..data`.
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            walk(&path, out);
        } else if is_manifest(name)
            && (file_type.is_file() || std::fs::metadata(&path).is_ok_and(|m| m.is_file()))
        {
            out.files.push(path);
        }
    }
}
