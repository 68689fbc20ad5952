//! Sign-up and the signed-in user: `POST /users/`, `GET /users/me/`, `GET /users/me/items/`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc_responses::{BearerErrors, BodyErrors, RateLimited, Unavailable};
use super::docs::{ErrorBody, also_at};
use super::rate_limit::{PerIp, Signup};
use super::session::ClientInfo;
use super::{ApiJson, AppState, AuthUser};
use crate::audit::{self, EventKind};
use crate::auth::recovery::send_verification;
use crate::auth::sessions::{Authenticated, ClientMeta};
use crate::domain::{Email, FullName, Password, PasswordContext, PasswordPolicy, Username};
use crate::error::{Error, FieldError, Result};
use crate::store::{NewUser, StoreError, User};

pub fn router() -> OpenApiRouter<AppState> {
    let [sign_up, sign_up_alias] = also_at(routes!(sign_up), "/users");
    let [me, me_alias] = also_at(routes!(read_me), "/users/me");
    let [items, items_alias] = also_at(routes!(read_own_items), "/users/me/items");
    OpenApiRouter::new()
        .routes(sign_up)
        .routes(sign_up_alias)
        .routes(me)
        .routes(me_alias)
        .routes(items)
        .routes(items_alias)
}

/// The tutorial's `UserIn`. Unknown fields (such as `disabled`) are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignUpRequest {
    /// 3 to 64 letters, digits, `.`, `_` or `-`; unique regardless of case.
    #[schema(min_length = 3, max_length = 64)]
    pub username: String,
    /// 8 (or the configured minimum) to 128 characters of any kind; not one of the 100,000
    /// most common passwords, and containing neither the username nor the email address.
    #[schema(min_length = 8, max_length = 128, format = Password)]
    pub password: String,
    #[serde(default)]
    #[schema(format = Email)]
    pub email: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
}

/// A user as every endpoint shows it: never a hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    /// Whether `email` has been confirmed through a link sent to it.
    pub email_verified: bool,
    pub full_name: Option<String>,
    pub disabled: bool,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            email_verified: user.email_verified,
            full_name: user.full_name,
            disabled: user.disabled,
        }
    }
}

/// A validated sign-up, ready to hash and store.
pub struct SignUp {
    pub username: Username,
    pub password: Password,
    pub email: Option<Email>,
    pub full_name: Option<FullName>,
}

impl SignUpRequest {
    /// Checks every field (the password against `policy`) and reports all problems at once.
    pub fn validate(self, policy: &PasswordPolicy) -> Result<SignUp> {
        let mut errors = Vec::new();
        let mut check = |field: &str, outcome: std::result::Result<(), String>| {
            if let Err(msg) = outcome {
                errors.push(FieldError::body(field, msg, "value_error"));
            }
        };
        let username = Username::parse(&self.username);
        check(
            "username",
            username.as_ref().map(drop).map_err(Clone::clone),
        );
        let context = PasswordContext {
            username: &self.username,
            email: self.email.as_deref(),
        };
        let password = policy.check(self.password, context);
        check(
            "password",
            password.as_ref().map(drop).map_err(Clone::clone),
        );
        let email = self
            .email
            .filter(|e| !e.trim().is_empty())
            .map(|e| Email::parse(&e))
            .transpose();
        check("email", email.as_ref().map(drop).map_err(Clone::clone));
        let full_name = self
            .full_name
            .as_deref()
            .map(FullName::parse)
            .transpose()
            .map(Option::flatten);
        check(
            "full_name",
            full_name.as_ref().map(drop).map_err(Clone::clone),
        );
        match (username, password, email, full_name) {
            (Ok(username), Ok(password), Ok(email), Ok(full_name)) if errors.is_empty() => {
                Ok(SignUp {
                    username,
                    password,
                    email,
                    full_name,
                })
            }
            _ => Err(Error::Validation(errors)),
        }
    }
}

/// Hashes the password and stores the user; a taken username is a 409. A given email
/// address gets a confirmation link, if it can be sent now.
pub async fn register(state: &AppState, sign_up: SignUp) -> Result<Authenticated> {
    if state.config.mail.require_verification && sign_up.email.is_none() {
        return Err(Error::validation("email", "An email address is required"));
    }
    let now = state.clock.now();
    let hashed_password = state.hasher.hash(&sign_up.password).await?;
    let new_user = NewUser {
        username: sign_up.username,
        email: sign_up.email,
        full_name: sign_up.full_name.map(FullName::into_inner),
        hashed_password: hashed_password.clone(),
    };
    let user = state
        .store
        .create_user(new_user, now)
        .await
        .map_err(|err| match err {
            StoreError::Conflict(_) => Error::Conflict("Username already registered".into()),
            other => other.into(),
        })?;
    if let Some(email) = &user.email
        && let Err(err) =
            send_verification(state.store.as_ref(), &state.outbound(), &user, email, now).await
    {
        // The account stands: failing the sign-up now would make its retry a 409. The link
        // can be sent again (the login page, `POST /verify-email/resend`).
        tracing::warn!(error = %err, user_id = user.id, "signed up, but the confirmation link could not be sent");
    }
    Ok(Authenticated {
        user,
        password_hash: hashed_password,
    })
}

/// Signs up: the tutorial's `POST /users/`.
#[utoipa::path(
    post,
    path = "/users/",
    tag = "auth",
    request_body = SignUpRequest,
    responses(
        (status = 200, description = "The new user", body = UserResponse),
        (status = 409, description = "Username already registered", body = ErrorBody),
        BodyErrors,
        RateLimited,
        Unavailable,
    )
)]
async fn sign_up(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    _: PerIp<Signup>,
    ApiJson(request): ApiJson<SignUpRequest>,
) -> Result<Json<UserResponse>> {
    state
        .on_password_lane(|state| create_account(state, client, request))
        .await?
}

/// The work of `sign_up`, on the password lane (`super::password_lane`).
async fn create_account(
    state: AppState,
    client: ClientMeta,
    request: SignUpRequest,
) -> Result<Json<UserResponse>> {
    let policy = &state.config.abuse.password_policy;
    let user = register(&state, request.validate(policy)?).await?.user;
    tracing::info!(user_id = user.id, "user signed up");
    audit::record_detail(&state, EventKind::Signup, Some(user.id), &client, "api").await;
    Ok(Json(user.into()))
}

/// The signed-in user.
#[utoipa::path(
    get,
    path = "/users/me/",
    tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = UserResponse),
        BearerErrors,
    )
)]
async fn read_me(AuthUser(user): AuthUser) -> Json<UserResponse> {
    Json(user.into())
}

/// The tutorial's items are the caller's notes.
#[derive(Debug, Serialize, ToSchema)]
struct Item {
    item_id: i64,
    owner: String,
    text: String,
    completed: bool,
}

/// The signed-in user's notes, as the tutorial's items.
#[utoipa::path(
    get,
    path = "/users/me/items/",
    tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "The signed-in user's notes", body = Vec<Item>),
        BearerErrors,
    )
)]
async fn read_own_items(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<Item>>> {
    let notes = state.store.list_notes(user.id).await?;
    Ok(Json(
        notes
            .into_iter()
            .map(|note| Item {
                item_id: note.id,
                owner: user.username.clone(),
                text: note.text,
                completed: note.completed,
            })
            .collect(),
    ))
}
