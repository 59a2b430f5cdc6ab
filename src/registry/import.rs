//! `civid registry import`: streams a CSV file record by record, checks each
//! number, seals names and numbers, and writes batches (one multi-row
//! upsert and the run's progress per transaction), so memory stays flat
//! however long the file and a run stopped for any reason can be resumed
//! after its last committed batch.
//!
//! One thread reads, checks and seals; the async side writes. They overlap:
//! while a batch is being written the next one is being prepared.
//!
//! Line numbers are those of the file (1-based, the header is line 1).
//! Nothing read from the file is logged in clear.
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::NaiveDate;
use ring::digest;
use tokio::sync::mpsc;

use super::{Kind, RESIDENT_ID_INDEX, USCC_INDEX, aad};
use crate::crypto::seal::Sealer;
use crate::identity::{ResidentId, Uscc};
use crate::store::Db;
use crate::store::registry::{self as rstore, EnterpriseRow, PersonRow, Progress};

/// What to do with a bad row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Report it and go on (the default).
    Skip,
    /// Report it and stop; committed batches stay, `--resume` continues.
    Abort,
}

pub struct ImportOptions {
    pub kind: Kind,
    pub path: PathBuf,
    pub on_error: OnError,
    /// Continue the newest unfinished run of this kind (same file).
    pub resume: bool,
    /// Rows per transaction.
    pub batch_size: usize,
    /// Birth dates after this day are refused.
    pub today: NaiveDate,
}

/// What a run did. What it changed that matters to accounts is recorded in
/// `registry_changes` with each batch (see [`super::changes`]); here are
/// only the counts. `totals` counts the whole import, every run of it: the
/// counts are kept with the checkpoint.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    pub import_id: String,
    /// Data lines (after the header) the run has committed, resumed ones included.
    pub lines_done: u64,
    /// Rows this process wrote.
    pub rows_written: u64,
    /// Bad rows of the whole import.
    pub rows_bad: u64,
    /// The whole import (every run): rows written, bad rows, changes.
    pub totals: Progress,
    /// Line where a resumed run started reading (0: from the start).
    pub resumed_after: u64,
    pub seconds: f64,
    /// `FILE:LINE: what` of the row that stopped an `--on-error abort` run.
    pub aborted: Option<String>,
    /// Persons whose status became `deceased` in this process's batches.
    pub deceased: u64,
    /// Known enterprises whose legal representative changed, this process's batches.
    pub rep_changed: u64,
    /// Enterprises that became `revoked` or `cancelled`, this process's batches.
    pub closed: u64,
}

impl ImportOutcome {
    /// Rows written per second of this process's run.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 { self.rows_written as f64 / self.seconds } else { 0.0 }
    }
}

/// What the reading thread hands the writer.
enum Msg {
    Persons {
        rows: Vec<PersonRow>,
        lines_done: u64,
        bad: u64,
    },
    Enterprises {
        rows: Vec<EnterpriseRow>,
        lines_done: u64,
        bad: u64,
    },
    /// A bad row stopped an `--on-error abort` run (already reported).
    Abort(String),
    /// The file could not be read on (already formatted with file and line).
    Fatal(String),
    /// End of file; the SHA-256 of the whole file when it was hashed while read.
    End(Option<String>),
}

/// Runs an import. Bad rows are handed to `report` as `FILE:LINE: what`.
/// An `--on-error abort` run that stopped returns `Ok` with `aborted` set;
/// `Err` is for what stops any run (unreadable file, database, wrong file
/// to resume). Either way the run's row says where to resume.
pub async fn import(
    db: &Db,
    sealer: Arc<Sealer>,
    opts: ImportOptions,
    report: impl Fn(&str) + Send + 'static,
) -> Result<ImportOutcome, String> {
    let started = Instant::now();
    let display = opts.path.display().to_string();
    let dberr = |e: sea_orm::DbErr| format!("database: {e}");
    let (import_id, skip, mut progress, known_sha) = if opts.resume {
        let rec = rstore::import_unfinished(db, opts.kind.as_str())
            .await
            .map_err(dberr)?
            .ok_or_else(|| format!("no unfinished {} import to resume", opts.kind.as_str()))?;
        if rec.file_sha256.is_empty() {
            return Err(format!(
                "import {} was stopped before it could record its file's SHA-256, so {display} cannot be proven \
                 to be the same file; run the import again without --resume (rows are updated in place, nothing \
                 is duplicated)",
                rec.id
            ));
        }
        let sha = sha256_file(&opts.path).await?;
        if sha != rec.file_sha256 {
            return Err(format!(
                "{display} is not the file import {} read ({}): its SHA-256 differs; resume with that file, or \
                 start a new import without --resume",
                rec.id, rec.file_name
            ));
        }
        rstore::import_set_status(db, &rec.id, "running", None).await.map_err(dberr)?;
        (rec.id.clone(), rec.lines_done.max(0) as u64, Progress::of(&rec), Some(sha))
    } else {
        // Fail on an unreadable file before recording a run.
        std::fs::File::open(&opts.path).map_err(|e| format!("{display}: {e}"))?;
        let id = uuid::Uuid::new_v4().to_string();
        rstore::import_create(db, &id, opts.kind.as_str(), &display, "").await.map_err(dberr)?;
        (id, 0, Progress::default(), None)
    };

    let (tx, mut rx) = mpsc::channel::<Msg>(4);
    let reader = Reader {
        kind: opts.kind,
        path: opts.path.clone(),
        display: display.clone(),
        sealer,
        skip,
        hash: known_sha.is_none(),
        on_error: opts.on_error,
        batch_size: opts.batch_size.max(1),
        today: opts.today,
    };
    let thread = std::thread::Builder::new()
        .name("registry-reader".into())
        .spawn(move || reader.run(&tx, &report))
        .map_err(|e| format!("cannot start the reading thread: {e}"))?;

    let mut outcome = ImportOutcome { import_id: import_id.clone(), resumed_after: skip, ..Default::default() };
    let base_bad = progress.rows_bad;
    let mut end: Result<Option<String>, String> = Err("the reading thread stopped unexpectedly".into());
    while let Some(msg) = rx.recv().await {
        let written = match msg {
            Msg::Persons { rows, lines_done, bad } => {
                let n = rows.len() as i64;
                let next = Progress {
                    lines_done: lines_done as i64,
                    rows_written: progress.rows_written + n,
                    rows_bad: base_bad + bad as i64,
                    ..progress
                };
                rstore::write_persons(db, &import_id, rows, next).await.map(|(d, p)| {
                    outcome.deceased += d.len() as u64;
                    progress = p;
                    n
                })
            }
            Msg::Enterprises { rows, lines_done, bad } => {
                let n = rows.len() as i64;
                let next = Progress {
                    lines_done: lines_done as i64,
                    rows_written: progress.rows_written + n,
                    rows_bad: base_bad + bad as i64,
                    ..progress
                };
                rstore::write_enterprises(db, &import_id, rows, next).await.map(|(c, p)| {
                    outcome.rep_changed += c.rep_changed.len() as u64;
                    outcome.closed += c.closed.len() as u64;
                    progress = p;
                    n
                })
            }
            Msg::Abort(what) => {
                outcome.aborted = Some(what);
                continue;
            }
            Msg::Fatal(what) => {
                end = Err(what);
                break;
            }
            Msg::End(sha) => {
                end = Ok(sha);
                break;
            }
        };
        match written {
            Ok(n) => outcome.rows_written += n as u64,
            Err(e) => {
                let line = progress.lines_done + 1;
                end = Err(format!(
                    "{display}: database error writing the batch after line {line}: {e} (the lines up to {line} are \
                     committed; continue with --resume)"
                ));
                break;
            }
        }
    }
    drop(rx);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;

    outcome.lines_done = progress.lines_done.max(0) as u64;
    outcome.rows_bad = progress.rows_bad.max(0) as u64;
    outcome.totals = progress;
    let status = match (&end, &outcome.aborted) {
        (Ok(_), None) => "done",
        _ => "aborted",
    };
    // The digest of the file must be on record before a resume can trust it:
    // hashed while reading when the run got to the end, else read once more.
    let sha = match (&known_sha, &end) {
        (Some(_), _) => None,
        (None, Ok(Some(sha))) => Some(sha.clone()),
        (None, _) => sha256_file(&opts.path).await.ok(),
    };
    let marked = rstore::import_set_status(db, &import_id, status, sha.as_deref()).await.map_err(dberr);
    outcome.seconds = started.elapsed().as_secs_f64();
    end?;
    marked?;
    Ok(outcome)
}

/// SHA-256 of a file, hex, read on a blocking thread.
pub async fn sha256_file(path: &Path) -> Result<String, String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        Ok(hex(ctx.finish().as_ref()))
    })
    .await
    .map_err(|e| format!("hashing: {e}"))?
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    ctx: Option<digest::Context>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The reading side: parse, check, seal, batch.
struct Reader {
    kind: Kind,
    path: PathBuf,
    display: String,
    sealer: Arc<Sealer>,
    /// Data lines a resumed run has already committed.
    skip: u64,
    hash: bool,
    on_error: OnError,
    batch_size: usize,
    today: NaiveDate,
}

/// Column positions, found by header name.
struct Columns {
    idx: Vec<usize>,
}

impl Columns {
    fn get<'r>(&self, rec: &'r csv::StringRecord, i: usize) -> Option<&'r str> {
        self.idx.get(i).and_then(|c| rec.get(*c)).map(str::trim)
    }
}

const PERSON_COLUMNS: &[&str] = &["id_number", "name", "status"];
const ENTERPRISE_COLUMNS: &[&str] = &["uscc", "name", "legal_rep_id_number", "legal_rep_name", "status"];

enum Batch {
    Persons(Vec<PersonRow>),
    Enterprises(Vec<EnterpriseRow>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Persons(r) => r.len(),
            Batch::Enterprises(r) => r.len(),
        }
    }
}

impl Reader {
    fn run(self, tx: &mpsc::Sender<Msg>, report: &dyn Fn(&str)) {
        let msg = match self.read(tx, report) {
            Ok(Some(end)) => end,
            Ok(None) => return, // the writer stopped
            Err(fatal) => Msg::Fatal(fatal),
        };
        let _ = tx.blocking_send(msg);
    }

    /// `Ok(None)` when the writer went away (it reports why).
    fn read(&self, tx: &mpsc::Sender<Msg>, report: &dyn Fn(&str)) -> Result<Option<Msg>, String> {
        let file = std::fs::File::open(&self.path).map_err(|e| format!("{}: {e}", self.display))?;
        let ctx = self.hash.then(|| digest::Context::new(&digest::SHA256));
        let input = HashingReader { inner: std::io::BufReader::with_capacity(1 << 20, file), ctx };
        let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(input);
        let wanted = match self.kind {
            Kind::Person => PERSON_COLUMNS,
            Kind::Enterprise => ENTERPRISE_COLUMNS,
        };
        let headers = csv.headers().map_err(|e| format!("{}:1: cannot read the header: {e}", self.display))?.clone();
        let mut idx = Vec::with_capacity(wanted.len());
        for w in wanted {
            let pos = headers
                .iter()
                .position(|h| h.trim().trim_start_matches('\u{feff}').eq_ignore_ascii_case(w))
                .ok_or_else(|| {
                    format!("{}:1: the header has no column {w:?} (expected {})", self.display, wanted.join(","))
                })?;
            idx.push(pos);
        }
        let cols = Columns { idx };

        let mut rec = csv::StringRecord::new();
        let mut lines: u64 = 0;
        let mut bad: u64 = 0;
        let mut batch = self.new_batch();
        let mut seen: HashMap<String, usize> = HashMap::new();
        loop {
            let line_and_row = match csv.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {
                    lines += 1;
                    if lines <= self.skip {
                        continue;
                    }
                    let line = rec.position().map(|p| p.line()).unwrap_or(lines + 1);
                    (line, Ok(()))
                }
                Err(e) => {
                    let line = e.position().map(|p| p.line());
                    match (e.kind(), line) {
                        (csv::ErrorKind::Utf8 { .. }, Some(line)) => {
                            lines += 1;
                            if lines <= self.skip {
                                continue;
                            }
                            (line, Err("not valid UTF-8".to_string()))
                        }
                        _ => {
                            return Err(format!(
                                "{}:{}: cannot read the file: {e}",
                                self.display,
                                line.map(|l| l.to_string()).unwrap_or_else(|| "?".into())
                            ));
                        }
                    }
                }
            };
            let (line, parsed) = line_and_row;
            let result = parsed.and_then(|()| self.add_row(&cols, &rec, &mut batch, &mut seen));
            if let Err(what) = result {
                bad += 1;
                let msg = format!("{}:{line}: {what}", self.display);
                report(&msg);
                if self.on_error == OnError::Abort {
                    // Commit what came before the bad line; a resume starts at it.
                    if !self.send(tx, batch, lines - 1, bad - 1) {
                        return Ok(None);
                    }
                    if tx.blocking_send(Msg::Abort(msg)).is_err() {
                        return Ok(None);
                    }
                    return Ok(Some(Msg::End(None)));
                }
            }
            if batch.len() >= self.batch_size {
                if !self.send(tx, std::mem::replace(&mut batch, self.new_batch()), lines, bad) {
                    return Ok(None);
                }
                seen.clear();
            }
        }
        if !self.send(tx, batch, lines, bad) {
            return Ok(None);
        }
        let sha = csv.into_inner().ctx.map(|c| hex(c.finish().as_ref()));
        Ok(Some(Msg::End(sha)))
    }

    fn new_batch(&self) -> Batch {
        match self.kind {
            Kind::Person => Batch::Persons(Vec::with_capacity(self.batch_size)),
            Kind::Enterprise => Batch::Enterprises(Vec::with_capacity(self.batch_size)),
        }
    }

    /// Sends a batch (even an empty one: the progress moves). False when
    /// the writer went away.
    fn send(&self, tx: &mpsc::Sender<Msg>, batch: Batch, lines_done: u64, bad: u64) -> bool {
        let msg = match batch {
            Batch::Persons(rows) => Msg::Persons { rows, lines_done, bad },
            Batch::Enterprises(rows) => Msg::Enterprises { rows, lines_done, bad },
        };
        tx.blocking_send(msg).is_ok()
    }

    /// Checks and seals one record into the batch; a number already in the
    /// batch is replaced (the later line wins, as it would in a later batch).
    fn add_row(
        &self,
        cols: &Columns,
        rec: &csv::StringRecord,
        batch: &mut Batch,
        seen: &mut HashMap<String, usize>,
    ) -> Result<(), String> {
        let seal = |v: &str, table: &str, column: &str, key: &str| {
            self.sealer.seal(v, &aad(table, column, key)).map_err(|e| format!("sealing failed: {e}"))
        };
        match batch {
            Batch::Persons(rows) => {
                let id = ResidentId::parse(field(cols, rec, 0, "id_number")?, self.today)
                    .map_err(|e| format!("id_number: {e}"))?;
                let name = name_field(cols, rec, 1, "name")?;
                let status = match field(cols, rec, 2, "status")? {
                    s if s.eq_ignore_ascii_case("alive") => "alive",
                    s if s.eq_ignore_ascii_case("deceased") => "deceased",
                    s => return Err(format!("status {:?} is neither alive nor deceased", short(s))),
                };
                let index = self.sealer.blind_index(RESIDENT_ID_INDEX, id.as_str());
                let row = PersonRow {
                    id_sealed: seal(id.as_str(), "registry_persons", "id_sealed", &index)?,
                    name_sealed: seal(name, "registry_persons", "name_sealed", &index)?,
                    status,
                    id_index: index,
                };
                match seen.get(&row.id_index) {
                    Some(&i) => rows[i] = row,
                    None => {
                        seen.insert(row.id_index.clone(), rows.len());
                        rows.push(row);
                    }
                }
            }
            Batch::Enterprises(rows) => {
                let uscc = Uscc::parse(field(cols, rec, 0, "uscc")?).map_err(|e| format!("uscc: {e}"))?;
                let name = name_field(cols, rec, 1, "name")?;
                let rep = ResidentId::parse(field(cols, rec, 2, "legal_rep_id_number")?, self.today)
                    .map_err(|e| format!("legal_rep_id_number: {e}"))?;
                let rep_name = name_field(cols, rec, 3, "legal_rep_name")?;
                let status = match field(cols, rec, 4, "status")? {
                    s if s.eq_ignore_ascii_case("active") => "active",
                    s if s.eq_ignore_ascii_case("revoked") => "revoked",
                    s if s.eq_ignore_ascii_case("cancelled") => "cancelled",
                    s => return Err(format!("status {:?} is not active, revoked or cancelled", short(s))),
                };
                let index = self.sealer.blind_index(USCC_INDEX, uscc.as_str());
                let row = EnterpriseRow {
                    uscc_sealed: seal(uscc.as_str(), "registry_enterprises", "uscc_sealed", &index)?,
                    name_sealed: seal(name, "registry_enterprises", "name_sealed", &index)?,
                    rep_index: self.sealer.blind_index(RESIDENT_ID_INDEX, rep.as_str()),
                    rep_name_sealed: seal(rep_name, "registry_enterprises", "rep_name_sealed", &index)?,
                    status,
                    uscc_index: index,
                };
                match seen.get(&row.uscc_index) {
                    Some(&i) => rows[i] = row,
                    None => {
                        seen.insert(row.uscc_index.clone(), rows.len());
                        rows.push(row);
                    }
                }
            }
        }
        Ok(())
    }
}

fn field<'r>(cols: &Columns, rec: &'r csv::StringRecord, i: usize, name: &str) -> Result<&'r str, String> {
    match cols.get(rec, i) {
        None => Err(format!("missing field {name}")),
        Some("") => Err(format!("empty field {name}")),
        Some(v) => Ok(v),
    }
}

/// A person's or enterprise's name: present, printable, at most 200 characters.
fn name_field<'r>(cols: &Columns, rec: &'r csv::StringRecord, i: usize, name: &str) -> Result<&'r str, String> {
    let v = field(cols, rec, i, name)?;
    if v.chars().count() > 200 {
        return Err(format!("{name} is longer than 200 characters"));
    }
    if v.chars().any(char::is_control) {
        return Err(format!("{name} contains control characters"));
    }
    Ok(v)
}

/// A status value as typed, cut short (it is not personal data, but may be junk).
fn short(s: &str) -> String {
    s.chars().take(20).collect()
}
