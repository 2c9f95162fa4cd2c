//! Signing in: passwords (also through keyboard-interactive), public keys,
//! open sign-up, and the rate limits on failed attempts.

use std::time::Instant;

use russh::server::{Auth, Response};

use super::{Conn, all_methods};
use crate::config::Signup;
use crate::store::users::{normalize_username, verify_password};

/// Passwords shorter than this cannot create an account under open sign-up.
pub const SIGNUP_MIN_PASSWORD: usize = 12;

/// Rejects but keeps every method on offer, so a wrong password can be
/// retried on the same connection.
fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(all_methods()),
        partial_success: false,
    }
}

impl Conn {
    fn rate_limited(&self, username: &str) -> Option<std::time::Duration> {
        let now = Instant::now();
        let mut limits = self.shared.limits.lock().expect("limits lock");
        let by_addr = self
            .peer
            .and_then(|ip| limits.by_address.check(&ip, now).err());
        let by_user = limits.by_user.check(&username.to_string(), now).err();
        by_addr.max(by_user)
    }

    fn record(&self, username: &str, ok: bool) {
        let now = Instant::now();
        let mut limits = self.shared.limits.lock().expect("limits lock");
        match (ok, self.peer) {
            (true, ip) => {
                if let Some(ip) = ip {
                    limits.by_address.record_success(&ip);
                }
                limits.by_user.record_success(&username.to_string());
            }
            (false, ip) => {
                if let Some(ip) = ip {
                    limits.by_address.record_failure(ip, now);
                }
                limits.by_user.record_failure(username.to_string(), now);
            }
        }
    }

    /// The password check shared by `password` and `keyboard-interactive`.
    /// Unknown, disabled and wrong all take the same path and the same time.
    pub(super) async fn check_password(&mut self, username: &str, password: &str) -> Auth {
        let key = username.to_ascii_lowercase();
        if let Some(wait) = self.rate_limited(&key) {
            self.limited_for = Some(wait);
            return reject();
        }
        self.limited_for = None;
        let store = &self.shared.store;
        let found = store.password_hash(username).await.unwrap_or_else(|e| {
            tracing::warn!("password lookup failed: {e}");
            None
        });
        let (user, ok) = match found {
            Some((user, hash)) => {
                let ok = verify_password(password, &hash).await;
                (Some(user), ok)
            }
            None => {
                verify_password(password, &self.shared.decoy_hash).await;
                (None, false)
            }
        };
        if ok {
            self.record(&key, true);
            self.user = user;
            return Auth::Accept;
        }
        if user.is_none()
            && self.shared.config.signup == Signup::Open
            && password.chars().count() >= SIGNUP_MIN_PASSWORD
            && normalize_username(username).is_ok()
            && let Ok(None) = store.find_user(username).await
        {
            match store.create_user(username, Some(password), false).await {
                Ok(u) => {
                    tracing::info!(user = %u.username, "account created by sign-up");
                    self.record(&key, true);
                    self.user = Some(u);
                    return Auth::Accept;
                }
                Err(e) => tracing::warn!("sign-up failed: {e}"),
            }
        }
        self.record(&key, false);
        reject()
    }

    pub(super) fn banner(&self) -> Option<String> {
        match self.shared.config.signup {
            Signup::Open => Some(format!(
                "Welcome to Kiln. New here? Log in with an unused username and a password of at least \
                 {SIGNUP_MIN_PASSWORD} characters to create your account.\r\n"
            )),
            Signup::Closed => None,
        }
    }

    /// Without a response: the password prompt (saying when the user is rate
    /// limited); with one: the password check.
    pub(super) async fn keyboard_interactive<'a>(
        &mut self,
        user: &str,
        response: Option<Response<'a>>,
    ) -> Auth {
        let Some(mut response) = response else {
            let instructions = match self.rate_limited(&user.to_ascii_lowercase()) {
                Some(wait) => format!(
                    "Too many failed logins; try again in {} s.",
                    wait.as_secs().max(1)
                ),
                None => String::new(),
            };
            return Auth::Partial {
                name: "Kiln".into(),
                instructions: instructions.into(),
                prompts: vec![("Password: ".into(), false)].into(),
            };
        };
        let answer = response.next().unwrap_or_default();
        let password = String::from_utf8_lossy(&answer).into_owned();
        self.check_password(user, &password).await
    }

    pub(super) async fn key_offered(
        &self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Auth {
        // Unknown keys are declined before the client signs; not counted as failures.
        let known = self
            .shared
            .store
            .key_may_sign_in(user, offer.public_key)
            .await
            .unwrap_or(false);
        if known { Auth::Accept } else { reject() }
    }

    pub(super) async fn check_key(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Auth {
        let key_name = user.to_ascii_lowercase();
        if let Some(wait) = self.rate_limited(&key_name) {
            self.limited_for = Some(wait);
            return reject();
        }
        // Binds a pending key: the signature russh verified proves possession.
        match self
            .shared
            .store
            .sign_in_with_key(user, key.public_key)
            .await
        {
            Ok(Some(u)) => {
                self.record(&key_name, true);
                self.user = Some(u);
                Auth::Accept
            }
            _ => {
                self.record(&key_name, false);
                reject()
            }
        }
    }
}
