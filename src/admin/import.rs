//! `gatehouse import --from postgresql://...`: the users (with their bcrypt hashes, upgraded
//! to Argon2id at their next login) and notes of the tutorial's database.
//!
//! Each source row is claimed in `imported_rows` in the same transaction that creates it, so
//! running the import again brings nothing twice. A row that cannot be imported is skipped
//! and counted with the reason; the summary lists them.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::Context;
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::domain::{NoteText, Username};
use crate::store::tutorial::{TutorialDb, TutorialNote, TutorialUser};
use crate::store::{self, ConnectOptions, ImportOutcome, NewEvent, NewUser, Store};

/// Rows read from the source at a time.
const BATCH: i64 = 500;
/// Examples shown per skip reason.
const EXAMPLES: usize = 5;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The tutorial's PostgreSQL database, e.g. postgresql://user@host/db. Its password is
    /// best kept off the command line (process lists, shell history): in GATEHOUSE_IMPORT_FROM
    /// instead of --from, or in PGPASSWORD or ~/.pgpass.
    #[arg(
        long,
        value_name = "URL",
        env = "GATEHOUSE_IMPORT_FROM",
        hide_env_values = true
    )]
    pub from: String,
    /// Who owns the imported notes (the tutorial's notes have none); may be a user this
    /// import brings in. Without it, notes are skipped.
    #[arg(long, value_name = "USERNAME")]
    pub notes_owner: Option<String>,
}

/// What happened to the rows of one table.
#[derive(Debug, Default)]
pub struct Tally {
    pub imported: u64,
    /// Reason -> how many, with a few examples.
    pub skipped: BTreeMap<&'static str, (u64, Vec<String>)>,
}

impl Tally {
    fn skip(&mut self, reason: &'static str, example: impl FnOnce() -> String) {
        let (count, examples) = self.skipped.entry(reason).or_default();
        *count += 1;
        if examples.len() < EXAMPLES {
            examples.push(example());
        }
    }

    pub fn skipped_count(&self) -> u64 {
        self.skipped.values().map(|(n, _)| n).sum()
    }

    fn print(&self, table: &str) {
        println!(
            "{table}: {} imported, {} skipped",
            self.imported,
            self.skipped_count()
        );
        for (reason, (count, examples)) in &self.skipped {
            println!("  {count} {reason}: {}", examples.join(", "));
        }
    }
}

pub async fn run(config: Config, args: ImportArgs) -> anyhow::Result<()> {
    let source = TutorialDb::connect(&args.from).await?;
    let target = store::connect(&ConnectOptions::for_command(&config)).await?;
    let store = target.as_ref();
    let users = import_users(&source, store).await?;
    let notes = import_notes(&source, store, args.notes_owner.as_deref()).await?;
    source.close().await;
    store
        .record_event(NewEvent {
            kind: "tutorial_import",
            user_id: None,
            actor_id: None,
            ip: None,
            user_agent: Some("gatehouse command line".into()),
            detail: Some(format!(
                "users imported {}, skipped {}; notes imported {}, skipped {}",
                users.imported,
                users.skipped_count(),
                notes.imported,
                notes.skipped_count()
            )),
            created_at: Utc::now(),
        })
        .await?;
    users.print("Users");
    notes.print("Notes");
    Ok(())
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (logs, tests, pipes).
fn progress(total: u64, what: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:6} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

async fn import_users(source: &TutorialDb, store: &dyn Store) -> anyhow::Result<Tally> {
    let bar = progress(source.count_users().await?, "users");
    let mut tally = Tally::default();
    let mut after = i64::MIN;
    loop {
        let batch = source.users_after(after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        for row in batch {
            import_user(store, row, &mut tally).await?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(tally)
}

async fn import_user(
    store: &dyn Store,
    row: TutorialUser,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let id = row.id;
    let name = row.username.unwrap_or_default();
    let username = match Username::parse(&name) {
        Ok(username) => username,
        Err(_) => {
            tally.skip("invalid username", || format!("id {id} {name:?}"));
            return Ok(());
        }
    };
    let Some(hash) = row.password_hash.filter(|h| is_bcrypt(h)) else {
        tally.skip("without a bcrypt password hash", || {
            format!("id {id} {name:?}")
        });
        return Ok(());
    };
    let new_user = NewUser {
        username,
        email: None,
        full_name: None,
        hashed_password: hash,
    };
    match store.import_user(id, new_user, Utc::now()).await? {
        ImportOutcome::Imported(_) => tally.imported += 1,
        ImportOutcome::AlreadyImported => tally.skip("already imported", || format!("{name:?}")),
        ImportOutcome::Conflict => {
            tally.skip("name already taken (ignoring case)", || format!("{name:?}"))
        }
    }
    Ok(())
}

/// A bcrypt hash as passlib (`$2b$`) and others (`$2a$`, `$2y$`) write it.
fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60
}

async fn import_notes(
    source: &TutorialDb,
    store: &dyn Store,
    owner: Option<&str>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let total = source.count_notes().await?;
    if total == 0 {
        return Ok(tally);
    }
    let owner_id = match owner {
        Some(name) => Some(
            store
                .user_by_key(&Username::fold(name))
                .await?
                .with_context(|| format!("--notes-owner: no user named {name:?}"))?
                .id,
        ),
        None => None,
    };
    let Some(owner_id) = owner_id else {
        let (count, examples) = tally.skipped.entry("without --notes-owner").or_default();
        *count = total;
        examples.push("the tutorial's notes have no owner: name one".into());
        return Ok(tally);
    };
    let bar = progress(total, "notes");
    let mut after = i64::MIN;
    loop {
        let batch = source.notes_after(after, BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        for row in batch {
            import_note(store, owner_id, row, &mut tally).await?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(tally)
}

async fn import_note(
    store: &dyn Store,
    owner_id: i64,
    row: TutorialNote,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let id = row.id;
    let Ok(text) = NoteText::parse(row.text.unwrap_or_default()) else {
        tally.skip("empty or too long", || format!("id {id}"));
        return Ok(());
    };
    let completed = row.completed.unwrap_or(false);
    match store
        .import_note(id, owner_id, &text, completed, Utc::now())
        .await?
    {
        ImportOutcome::Imported(_) => tally.imported += 1,
        ImportOutcome::AlreadyImported | ImportOutcome::Conflict => {
            tally.skip("already imported", || format!("id {id}"))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_hashes_are_recognised() {
        let passlib = "$2b$12$m1Pq/uMjA90NW2y6a5OfQOX3HxhdNFngefw7VP7KS0GshP3lpGFEe";
        assert!(is_bcrypt(passlib));
        assert!(is_bcrypt(&passlib.replace("$2b$", "$2y$")));
        assert!(!is_bcrypt("password"));
        assert!(!is_bcrypt("$argon2id$v=19$m=19456,t=2,p=1$abc$def"));
        assert!(!is_bcrypt("$2b$12$short"));
    }

    #[test]
    fn skips_keep_a_few_examples_and_count_all() {
        let mut tally = Tally::default();
        for i in 0..8 {
            tally.skip("invalid username", || format!("id {i}"));
        }
        assert_eq!(tally.skipped_count(), 8);
        assert_eq!(tally.skipped["invalid username"].1.len(), EXAMPLES);
    }
}
