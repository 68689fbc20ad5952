//! The actions an administrator takes on an account, shared by the console, the JSON API and
//! the command line, so that each has the same rules and leaves the same audit trail.

use chrono::{DateTime, Utc};

use crate::audit::{self, EventKind};
use crate::auth::sessions::ClientMeta;
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::store::{Store, User};

/// Something an administrator does to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Refuses sign-in and ends every session.
    Disable,
    Enable,
    /// Grants superuser rights.
    Promote,
    Demote,
    /// Ends every session (browser and API) without disabling.
    EndSessions,
    /// Deletes the account with its notes, sessions and tokens.
    Delete,
}

impl AdminAction {
    /// The action a path segment (`disable`, `end-sessions`, ...) names.
    pub fn from_segment(segment: &str) -> Option<Self> {
        Some(match segment {
            "disable" => Self::Disable,
            "enable" => Self::Enable,
            "promote" => Self::Promote,
            "demote" => Self::Demote,
            "end-sessions" => Self::EndSessions,
            "delete" => Self::Delete,
            _ => return None,
        })
    }

    /// What the audit trail says was done.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Disable => "disabled",
            Self::Enable => "enabled",
            Self::Promote => "made a superuser",
            Self::Demote => "superuser rights withdrawn",
            Self::EndSessions => "all sessions ended",
            Self::Delete => "deleted",
        }
    }

    /// Whether a superuser may do this to their own account from the console or the API:
    /// not what would lock them out (the command line can, for recovery).
    fn allowed_on_self(self) -> bool {
        matches!(self, Self::Enable | Self::Promote | Self::EndSessions)
    }
}

/// Applies `action` to `target` and returns how many sessions it ended. `actor` is the
/// superuser acting, `None` at the command line. Recording the event is the caller's part
/// (`perform` does both for requests).
pub async fn apply(
    store: &dyn Store,
    actor: Option<&User>,
    target: &User,
    action: AdminAction,
    now: DateTime<Utc>,
) -> Result<u64> {
    if actor.is_some_and(|a| a.id == target.id) && !action.allowed_on_self() {
        return Err(Error::BadRequest(
            "You cannot disable, demote or delete your own account here".into(),
        ));
    }
    let ended = match action {
        AdminAction::Disable => store.set_user_disabled(target.id, true, now).await?,
        AdminAction::Enable => store.set_user_disabled(target.id, false, now).await?,
        AdminAction::Promote | AdminAction::Demote => {
            let promote = action == AdminAction::Promote;
            if !store.set_superuser(target.id, promote, now).await? {
                return Err(Error::NotFound);
            }
            0
        }
        AdminAction::EndSessions => store.delete_other_sessions(target.id, None).await?,
        AdminAction::Delete => {
            if !store.delete_user(target.id).await? {
                return Err(Error::NotFound);
            }
            0
        }
    };
    tracing::info!(
        user_id = target.id,
        actor_id = actor.map(|a| a.id),
        action = action.detail(),
        "administrator action"
    );
    Ok(ended)
}

/// Applies an action a superuser requested over HTTP and records it in the audit trail with
/// the superuser as its actor.
pub async fn perform(
    state: &AppState,
    admin: &User,
    client: &ClientMeta,
    target: &User,
    action: AdminAction,
) -> Result<u64> {
    let ended = apply(
        state.store.as_ref(),
        Some(admin),
        target,
        action,
        state.clock.now(),
    )
    .await?;
    // A deleted user's events lose their user; the detail keeps who it was.
    let (user_id, detail) = match action {
        AdminAction::Delete => (
            None,
            format!("deleted user {} (id {})", target.username, target.id),
        ),
        _ => (Some(target.id), action.detail().to_string()),
    };
    audit::record_by(
        state,
        EventKind::AdminAction,
        user_id,
        admin.id,
        client,
        detail,
    )
    .await;
    Ok(ended)
}
