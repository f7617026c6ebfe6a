//! Results on disk, in clemcore 3.7's layout and schemas.
//!
//! The principal pieces:
//! - [`schema`]: one typed record per file (`run.json`, `experiment.json`,
//!   `interactions.json`, `*.requests.json`, `completed.json`, `error.json`,
//!   `scores.json`). Games and the runner build records; this module writes them.
//! - [`RunFolder`] and [`EpisodeFolder`]: the run folder, held under a
//!   [`lock::RunLock`] while a run writes into it, and one episode's files
//!   (what counts as finished, what a replay clears).
//! - [`names`]: the checks and the escaping that keep game, experiment and
//!   model names one path component each.
//! - [`ResultsLayout`]: where each file of a run goes
//!   (`<results>/<run dir>/<game>/<experiment>/instance_00000/...`).
//! - [`write_json`]: every file is written as Python's `json.dump(indent=2,
//!   ensure_ascii=False)` would write it, atomically (a temp file in the same
//!   directory, then a rename), so a killed run never leaves a truncated file.
//! - [`Timestamp`]: the three time formats clemcore writes (`isoformat()`,
//!   `str(datetime)`, `str(timedelta)`).
//! - [`run_dir_name`]: clemcore's `Model.to_identifier` (`mock`, `m1--m2`,
//!   `group-3p-1a2b3c4d`).
//!
//! Python writes a float NaN as the bare token `NaN`; JSON values cannot
//! hold NaN, so scorers put [`NAN_MARKER`] where a NaN belongs and
//! [`to_python_json`] turns it into the bare token.

pub mod lock;
pub mod names;
pub mod schema;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha1::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The clemcore version whose layout these files follow (written as `clem_version`).
pub const CLEM_VERSION: &str = "3.7.2";

/// A string a scorer stores where Python would write a float NaN; written as
/// the bare token `NaN` (see [`to_python_json`]).
pub const NAN_MARKER: &str = "\u{1}clemhost:NaN\u{1}";

/// An I/O failure while writing or reading results, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A results file is a FIFO, a device, a socket or a folder (or a link
    /// to one): reading it could block or never end.
    #[error("{}: not a regular file (a FIFO, device, socket or folder, or a link to one); clemhost does not read it", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// A results file is larger than [`MAX_READ_BYTES`].
    #[error("{}: larger than {} MiB, the most clemhost reads of one results file; it is not read", path.display(), MAX_READ_BYTES >> 20)]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A file is not valid JSON.
    #[error("{path}:{line}:{column}: not valid JSON ({message}); delete the file or run again")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde_json said.
        message: String,
    },
    /// A file is JSON but not in clemcore's schema.
    #[error("{path}: not in clemcore's schema ({message}); delete the file or run again")]
    Schema {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
    /// Another run holds the run folder.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The recorded settings differ from this run's (`--resume`).
    #[error("{0}")]
    Settings(String),
    /// Something in the results tree is in the way (a folder where a file
    /// belongs); the message says what to do.
    #[error("{0}")]
    InTheWay(String),
    /// A folder of the run is a symbolic link.
    #[error("{} is a symbolic link; clemhost run does not write or delete files through a link in the results tree (it could reach a folder outside it): replace the link with a folder, or pass another -r DIR", path.display())]
    Link {
        /// The link.
        path: PathBuf,
    },
}

/// Refuses `path` when it is a symbolic link. `run` writes episodes into
/// `<run>/<game>/<experiment>/instance_N/` and first removes what an earlier
/// attempt left there (`scores.json`, `error.json`, ...), so a link planted
/// at one of those folders in a results tree from elsewhere would make it
/// write and delete in the folder the link points to. A missing path is fine.
pub fn refuse_link(path: &Path) -> Result<(), ResultsError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(ResultsError::Link {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Renders a value as Python's `json.dumps(value, indent=2, ensure_ascii=False)`.
///
/// serde_json's pretty printer already matches Python for everything clemcore
/// writes (2-space indent, `": "`, non-ASCII kept, `0.0` for whole floats,
/// `{}`/`[]` for empty containers); [`NAN_MARKER`] strings become `NaN`.
pub fn to_python_json(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value)
        .expect("serialising a serde_json::Value to a String cannot fail");
    // The marker contains a control character, which serde_json escapes.
    let marker = serde_json::to_string(NAN_MARKER).expect("a string serialises");
    if text.contains(&marker) {
        text.replace(&marker, "NaN")
    } else {
        text
    }
}

/// Parses JSON that may contain Python's bare `NaN` tokens (as written by
/// clemcore scorers); each becomes [`NAN_MARKER`].
pub fn from_python_json(text: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            if !text.contains("NaN") {
                return Err(first);
            }
            let marker = serde_json::to_string(NAN_MARKER).expect("a string serialises");
            let replaced = replace_bare_nan(text, &marker);
            serde_json::from_str(&replaced).map_err(|_| first)
        }
    }
}

/// Replaces `NaN` tokens outside strings.
fn replace_bare_nan(text: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if rest.starts_with("NaN") {
            out.push_str(with);
            rest = &rest[3..];
            continue;
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Writes `value` to `path` atomically: a temp file next to it, then renamed
/// over `path`. Creates missing parent directories.
pub fn write_json(path: &Path, value: &Value) -> Result<(), ResultsError> {
    write_atomic(path, to_python_json(value).as_bytes())
}

/// Writes bytes to `path` atomically (temp file in the same directory + rename).
///
/// A killed process leaves either the old file or the new one, never a
/// truncated one. The file is not fsync'ed: that would cost milliseconds per
/// file on a busy disk, and protects only against power loss.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    let err = |source| ResultsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    // Hidden (readers that glob for *.json never see it), named after this
    // process (a replay removes only its own, see `is_own_temp_file`) and
    // random; created with O_EXCL, so a planted file or symlink at the name
    // is never followed or overwritten.
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".{file_name}.{}.{:016x}.tmp",
            std::process::id(),
            fastrand::u64(..)
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(e) => return Err(err(e)),
        }
    };
    let result = file.write_all(bytes).and_then(|()| {
        drop(file);
        std::fs::rename(&tmp, path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Whether `file_name` is a temp file that this process's [`write_atomic`]
/// creates (`.<name>.<pid>.<random>.tmp`).
pub fn is_own_temp_file(file_name: &str) -> bool {
    let Some(rest) = file_name
        .strip_prefix('.')
        .and_then(|r| r.strip_suffix(".tmp"))
    else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '.');
    let (_random, pid) = (parts.next(), parts.next());
    pid == Some(std::process::id().to_string().as_str())
}

/// Writes a record (see [`schema`]) as clemcore would, atomically.
pub fn write_record<T: Serialize>(path: &Path, record: &T) -> Result<(), ResultsError> {
    let value = serde_json::to_value(record).expect("results records serialise to JSON");
    write_json(path, &value)
}

/// Reads a record, naming the file and what does not fit on errors.
pub fn read_record<T: DeserializeOwned>(path: &Path) -> Result<T, ResultsError> {
    let value = read_json(path)?;
    serde_json::from_value(value).map_err(|e| ResultsError::Schema {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The most bytes [`read_json`] reads of one results file: 256 MiB. The
/// largest real files are an episode's `interactions.json` and requests
/// files (a long episode of a big model: a few MiB); anything beyond is not
/// a result.
pub const MAX_READ_BYTES: u64 = 256 << 20;

/// Reads a results file's text: only a regular file (a link to one is
/// fine), of at most [`MAX_READ_BYTES`]. The file is opened without
/// blocking (a FIFO would wait for a writer forever) and its type checked
/// on the open descriptor, so a FIFO, `/dev/zero` or a folder is refused
/// with [`ResultsError::NotRegular`] and never read.
pub fn read_results_text(path: &Path) -> Result<String, ResultsError> {
    use std::io::Read;
    let err = |source| ResultsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(ResultsError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > MAX_READ_BYTES {
        return Err(ResultsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_READ_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    if bytes.len() as u64 > MAX_READ_BYTES {
        return Err(ResultsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text ({e})"),
        ))
    })
}

/// Reads a JSON file (accepting Python's bare `NaN`), naming the file and
/// the line and column on errors. Only regular files are read, up to
/// [`MAX_READ_BYTES`] (see [`read_results_text`]).
pub fn read_json(path: &Path) -> Result<Value, ResultsError> {
    let text = read_results_text(path)?;
    // A byte order mark (an editor on Windows) is not a reason to call the
    // file broken and write it anew.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    from_python_json(text).map_err(|e| ResultsError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// A moment in local time, formatted as clemcore formats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(chrono::NaiveDateTime);

impl Timestamp {
    /// Now, in local time (Python's `datetime.now()`).
    pub fn now() -> Self {
        Timestamp(clemhost_pyfacts::time::now())
    }

    /// The local date and time itself.
    pub fn local(&self) -> &chrono::NaiveDateTime {
        &self.0
    }

    /// `datetime.isoformat()`: `2026-11-29T08:18:02.111796` (no fraction when it is zero).
    pub fn iso(&self) -> String {
        clemhost_pyfacts::time::isoformat(&self.0)
    }

    /// `str(datetime)`: `2026-11-29 08:18:02.111796`.
    pub fn python_str(&self) -> String {
        clemhost_pyfacts::time::datetime(&self.0)
    }

    /// Time since `earlier` (zero when negative).
    pub fn since(&self, earlier: &Timestamp) -> std::time::Duration {
        (self.0 - earlier.0).to_std().unwrap_or_default()
    }
}

/// Seconds as Python's `timedelta.total_seconds()` (microsecond precision).
pub fn python_seconds(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1e6
}

/// clemcore's `Model.to_identifier`: one or two model names joined by `--`;
/// more become `group-<N>p-<first 8 hex digits of sha1 of the joined names>`.
pub fn run_dir_name(model_names: &[&str]) -> String {
    let joined = model_names.join("--");
    if model_names.len() <= 2 {
        return joined;
    }
    let digest = sha1::Sha1::digest(joined.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("group-{}p-{hex}", model_names.len())
}

/// Where each file of a run goes.
#[derive(Clone, Debug)]
pub struct ResultsLayout {
    /// The run directory: `<results>/<run dir name>`.
    pub run_dir: PathBuf,
}

impl ResultsLayout {
    /// The layout for a run directory under a results directory.
    pub fn new(results_dir: &Path, run_dir_name: &str) -> Self {
        ResultsLayout {
            run_dir: results_dir.join(run_dir_name),
        }
    }

    /// `run.json`.
    pub fn run_file(&self) -> PathBuf {
        self.run_dir.join("run.json")
    }

    /// `<game>/<experiment>/`.
    pub fn experiment_dir(&self, game: &str, experiment: &str) -> PathBuf {
        self.run_dir.join(game).join(experiment)
    }

    /// `<game>/<experiment>/instance_00000/` (the instance's `game_id`, 5 digits).
    pub fn episode_dir(&self, game: &str, experiment: &str, game_id: u64) -> PathBuf {
        self.experiment_dir(game, experiment)
            .join(format!("instance_{game_id:05}"))
    }
}

/// File names inside an episode directory.
pub mod files {
    /// The instance, verbatim.
    pub const INSTANCE: &str = "instance.json";
    /// Meta, players and turns.
    pub const INTERACTIONS: &str = "interactions.json";
    /// The episode finished (signal file).
    pub const COMPLETED: &str = "completed.json";
    /// The episode failed (signal file with the error).
    pub const ERROR: &str = "error.json";
    /// Written by `clemhost score`.
    pub const SCORES: &str = "scores.json";
    /// Written by `clemhost transcribe`.
    pub const TRANSCRIPT: &str = "transcript.html";
    /// The experiment's meta, one level up.
    pub const EXPERIMENT: &str = "experiment.json";

    /// `player_1.requests.json` for `Player 1`.
    pub fn requests(player_name: &str) -> String {
        format!(
            "{}.requests.json",
            player_name.to_lowercase().replace(' ', "_")
        )
    }
}

/// Every episode directory under `dir` (directories that hold an
/// `interactions.json`), sorted by path. See [`dirs_holding`].
pub fn find_episodes(dir: &Path) -> Vec<PathBuf> {
    dirs_holding(dir, files::INTERACTIONS)
}

/// How the names of clembench workers' staging folders begin
/// (`<results>/.clemhost-staging-<host>-<pid>-<k>/`): episodes in the making.
pub const STAGING_PREFIX: &str = ".clemhost-staging-";

/// Every directory under `dir` (itself included) that holds a regular file
/// called `file_name`, sorted by path. Symbolic links are not followed, so
/// a link loop in the tree (`ln -s . self`) neither repeats directories nor
/// hangs the walk; every walk over a results tree goes through here.
/// Staging folders ([`STAGING_PREFIX`]) are not entered: what a running
/// `clemhost run` stages there is not a result yet.
pub fn dirs_holding(dir: &Path, file_name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(STAGING_PREFIX)
                {
                    stack.push(entry.path());
                }
            } else if kind.is_file() && entry.file_name() == file_name {
                out.push(d.clone());
            }
        }
    }
    out.sort();
    out
}

/// Reads a results file that this run is about to write anew (`run.json`)
/// with `parse`. A missing file is `Ok(None)`. A file that cannot be read
/// or parsed (bad JSON, a field of the wrong type, a FIFO) is renamed to
/// `<name>.bad-<local time>` with a warning that names both, and is
/// `Ok(None)`: what it held is kept for the user to merge by hand, never
/// overwritten. A folder at the path is an error before anything is
/// written, since it may hold anything.
pub fn read_or_keep_aside<T>(
    path: &Path,
    parse: impl FnOnce(Value) -> Result<T, String>,
) -> Result<Option<T>, ResultsError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(None);
    };
    if meta.is_dir() {
        return Err(ResultsError::InTheWay(format!(
            "{} is a folder, where clemhost records the run in a file; move the folder elsewhere (or remove it) and run again, or pass another -r DIR",
            path.display()
        )));
    }
    let problem = match read_json(path) {
        Ok(value) => match parse(value) {
            Ok(parsed) => return Ok(Some(parsed)),
            Err(message) => ResultsError::Schema {
                path: path.to_path_buf(),
                message,
            }
            .to_string(),
        },
        Err(e) => e.to_string(),
    };
    let aside = keep_aside(path)?;
    tracing::warn!(
        "{problem}; it is kept as {} and {} is written anew (copy back from the kept file what it recorded of other games)",
        aside.display(),
        path.display()
    );
    Ok(None)
}

/// Renames `path` to `<name>.bad-<local time>` (a free name; `-2`, `-3`, ...
/// added when taken) next to it, and returns the new path. The walks of
/// `score`, `eval` and `transcribe` look only for their exact file names,
/// so a kept file is never read as a result.
pub fn keep_aside(path: &Path) -> Result<PathBuf, ResultsError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let stamp = Timestamp::now().local().format("%Y%m%dT%H%M%S").to_string();
    let mut aside = path.with_file_name(format!("{name}.bad-{stamp}"));
    let mut n = 1;
    while std::fs::symlink_metadata(&aside).is_ok() {
        n += 1;
        aside = path.with_file_name(format!("{name}.bad-{stamp}-{n}"));
    }
    std::fs::rename(path, &aside).map_err(|source| ResultsError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(aside)
}

/// A run folder (`<results>/<models>/`), locked for this process while the
/// value lives (see [`lock`]).
#[derive(Debug)]
pub struct RunFolder {
    layout: ResultsLayout,
    _lock: lock::RunLock,
}

impl RunFolder {
    /// Creates the folder if needed and locks it; fails at once when another
    /// run holds it.
    pub fn open(results_dir: &Path, run_dir_name: &str) -> Result<RunFolder, ResultsError> {
        let layout = ResultsLayout::new(results_dir, run_dir_name);
        refuse_link(&layout.run_dir)?;
        std::fs::create_dir_all(&layout.run_dir).map_err(|source| ResultsError::Write {
            path: layout.run_dir.clone(),
            source,
        })?;
        let lock = lock::RunLock::try_acquire(&layout.run_dir)?;
        Ok(RunFolder {
            layout,
            _lock: lock,
        })
    }

    /// Where the files go.
    pub fn layout(&self) -> &ResultsLayout {
        &self.layout
    }

    /// `run.json` as recorded: `None` when there is none, or when it is
    /// unreadable, after it was kept aside as `run.json.bad-<time>` (see
    /// [`read_or_keep_aside`]). A folder named `run.json` is an error.
    pub fn read_run(&self) -> Result<Option<schema::RunRecord>, ResultsError> {
        read_or_keep_aside(&self.layout.run_file(), |v| {
            serde_json::from_value::<schema::RunRecord>(v).map_err(|e| e.to_string())
        })
    }

    /// Writes `run.json` (under this folder's lock).
    pub fn write_run(&self, record: &schema::RunRecord) -> Result<(), ResultsError> {
        write_record(&self.layout.run_file(), record)
    }

    /// One episode's folder.
    pub fn episode(&self, game: &str, experiment: &str, game_id: u64) -> EpisodeFolder {
        EpisodeFolder {
            dir: self.layout.episode_dir(game, experiment, game_id),
        }
    }
}

/// Whether `dir/instance.json` parses and its `game_id` is the number in
/// the folder's name (`instance_00003` holds game 3). An instance copied
/// into another episode's folder is not that episode, so `--resume` plays
/// it again. With `expected` (the instance as the instances file has it
/// now), the recorded instance must also equal it as a JSON value: an
/// instances file whose prompts or targets changed under the same keys
/// and game_ids makes other episodes.
pub fn instance_matches_folder(
    dir: &Path,
    expected: Option<&serde_json::Map<String, Value>>,
) -> bool {
    let number = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("instance_"))
        .and_then(|n| n.parse::<u64>().ok());
    let Ok(instance) = read_json(&dir.join(files::INSTANCE)) else {
        return false;
    };
    number.is_some()
        && instance.get("game_id").and_then(Value::as_u64) == number
        && expected.is_none_or(|e| instance.as_object() == Some(e))
}

/// One episode's folder (`.../<experiment>/instance_00000/`).
#[derive(Clone, Debug)]
pub struct EpisodeFolder {
    /// The folder.
    pub dir: PathBuf,
}

impl EpisodeFolder {
    /// Whether the episode finished earlier: `completed.json`,
    /// `interactions.json` and `instance.json` exist and parse as their
    /// records. An empty or truncated file means the episode is played again.
    /// The instance must also be the one of this folder (see
    /// [`instance_matches_folder`]) and equal `instance`, the one this run
    /// would play.
    /// A FIFO, device or oversized file in their place is warned about and
    /// counts as unfinished (the replay removes it).
    pub fn is_complete(&self, instance: &serde_json::Map<String, Value>) -> bool {
        let ok = |r: Result<(), ResultsError>| match r {
            Ok(()) => true,
            Err(e @ (ResultsError::NotRegular { .. } | ResultsError::TooLarge { .. })) => {
                tracing::warn!("{e}; the episode is played again");
                false
            }
            Err(_) => false,
        };
        ok(read_record::<schema::CompletedRecord>(&self.dir.join(files::COMPLETED)).map(drop))
            && ok(
                read_record::<schema::InteractionsRecord>(&self.dir.join(files::INTERACTIONS))
                    .map(drop),
            )
            && instance_matches_folder(&self.dir, Some(instance))
    }

    /// Moves a file (or FIFO, ...) that stands where this episode's folder
    /// belongs aside as `instance_N.bad-<time>` (see [`keep_aside`]), with a
    /// warning, so the episode can be written and nothing is lost. Links
    /// were refused before ([`refuse_link`]).
    pub fn make_room(&self) -> Result<(), ResultsError> {
        match std::fs::symlink_metadata(&self.dir) {
            Ok(m) if !m.is_dir() && !m.file_type().is_symlink() => {
                let aside = keep_aside(&self.dir)?;
                tracing::warn!(
                    "{} is not a folder; it is kept as {} and the episode is played into a new folder",
                    self.dir.display(),
                    aside.display()
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Removes what an earlier attempt of this episode wrote (and this
    /// process's own temp files; other processes' are left alone).
    pub fn clear(&self) -> Result<(), ResultsError> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name == files::INTERACTIONS
                || name == files::COMPLETED
                || name == files::ERROR
                || name == files::SCORES
                || name == files::TRANSCRIPT
                || name.ends_with(".requests.json")
                || name == "requests.json"
                || is_own_temp_file(&name);
            // A folder (never a link: the file type is the entry's own) where
            // one of the episode's files belongs would stop the episode from
            // being written: it goes, as a clembench episode's whole folder
            // is replaced.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let p = entry.path();
            let removed = if is_dir && (stale || name == files::INSTANCE) {
                std::fs::remove_dir_all(&p)
            } else if stale {
                std::fs::remove_file(&p)
            } else {
                Ok(())
            };
            removed.map_err(|source| ResultsError::Write { path: p, source })?;
        }
        Ok(())
    }

    /// `instance.json`.
    pub fn write_instance(
        &self,
        instance: &serde_json::Map<String, Value>,
    ) -> Result<(), ResultsError> {
        write_record(&self.dir.join(files::INSTANCE), instance)
    }

    /// A finished episode: interactions, the requests files, then
    /// `completed.json` last (so it is there only when the rest is).
    pub fn write_finished(
        &self,
        interactions: &schema::InteractionsRecord,
        requests: &[(String, schema::RequestsRecord)],
    ) -> Result<(), ResultsError> {
        write_record(&self.dir.join(files::INTERACTIONS), interactions)?;
        for (name, record) in requests {
            write_record(&self.dir.join(name), record)?;
        }
        write_record(
            &self.dir.join(files::COMPLETED),
            &schema::CompletedRecord {
                timestamp: Timestamp::now().iso(),
            },
        )
    }

    /// A failed episode: the requests files recorded so far, then `error.json`.
    pub fn write_failed(
        &self,
        requests: &[(String, schema::RequestsRecord)],
        error: &schema::ErrorRecord,
    ) -> Result<(), ResultsError> {
        for (name, record) in requests {
            write_record(&self.dir.join(name), record)?;
        }
        write_record(&self.dir.join(files::ERROR), error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_looks_like_pythons() {
        let v = json!({"a": 0.0, "b": "Grüße", "c": {}, "d": [], "e": [1, 2.5]});
        assert_eq!(
            to_python_json(&v),
            "{\n  \"a\": 0.0,\n  \"b\": \"Grüße\",\n  \"c\": {},\n  \"d\": [],\n  \"e\": [\n    1,\n    2.5\n  ]\n}"
        );
    }

    #[test]
    fn nan_round_trips_as_a_bare_token() {
        let v = json!({"Main Score": NAN_MARKER, "s": "NaN"});
        let text = to_python_json(&v);
        assert!(text.contains("\"Main Score\": NaN"), "{text}");
        assert!(text.contains("\"s\": \"NaN\""), "{text}");
        assert_eq!(from_python_json(&text).expect("parses"), v);
    }

    #[test]
    fn total_seconds_match_python() {
        use std::time::Duration;
        assert_eq!(python_seconds(Duration::from_micros(16_489)), 0.016489);
    }

    #[test]
    fn run_dir_names_follow_clemcore() {
        assert_eq!(run_dir_name(&["mock"]), "mock");
        assert_eq!(run_dir_name(&["a", "b"]), "a--b");
        let g = run_dir_name(&["a", "b", "c"]);
        assert!(
            g.starts_with("group-3p-") && g.len() == "group-3p-".len() + 8,
            "{g}"
        );
    }

    #[test]
    fn a_byte_order_mark_does_not_make_a_results_file_unreadable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run.json");
        std::fs::write(&p, "\u{feff}{\"games\": {\"othergame\": {}}}").unwrap();
        let v = read_json(&p).unwrap();
        assert!(v["games"]["othergame"].is_object());
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x/y.json");
        write_json(&p, &json!({"k": 1})).expect("write");
        let names: Vec<_> = std::fs::read_dir(p.parent().expect("parent"))
            .expect("read dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["y.json".to_string()]);
        assert_eq!(read_json(&p).expect("read"), json!({"k": 1}));
    }

    #[test]
    fn only_this_process_temp_files_count_as_its_own() {
        let pid = std::process::id();
        assert!(is_own_temp_file(&format!(
            ".interactions.json.{pid}.00ab.tmp"
        )));
        assert!(!is_own_temp_file(&format!(
            ".interactions.json.{}.00ab.tmp",
            pid + 1
        )));
        assert!(!is_own_temp_file("interactions.json"));
        assert!(!is_own_temp_file(&format!(".x.{pid}.tmp.bak")));
    }

    #[test]
    fn a_link_planted_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "keep").expect("victim");
        let target = dir.path().join("completed.json");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&victim, &target).expect("plant");
        write_json(&target, &json!({"k": 1})).expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep");
        assert_eq!(read_json(&target).expect("read"), json!({"k": 1}));
    }

    #[test]
    fn iso_timestamps_have_microseconds() {
        let t = Timestamp::now();
        let s = t.iso();
        assert_eq!(&s[10..11], "T");
        assert!(s.len() == 19 || s.len() == 26, "{s}");
    }
}
