//! Signing in: passwords (also through keyboard-interactive), public keys,
//! open sign-up (throttled per address), and the password budget (reserved
//! in the database before the password is checked, so it holds under
//! concurrency and across replicas).

use russh::server::{Auth, Response};

use super::{Conn, all_methods};
use crate::config::Signup;
use crate::model::naming::printable;
use crate::model::signup_limit;
use crate::ssh::ratelimit::{Attempt, MAX_USERNAME_BYTES};
use crate::store::users::User;

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

/// Why a sign-in failed, for the audit log only: the client always sees the
/// same rejection.
#[derive(Debug, Clone, Copy)]
enum Failure {
    NameTooLong,
    RateLimited,
    LimiterUnavailable,
    WrongCredentials,
}

/// Logged without the password (it is not even passed in); the name is
/// escaped and cut short because it is whatever the client sent.
fn audit_failure(method: &str, username: &str, peer: Option<std::net::IpAddr>, why: Failure) {
    tracing::info!(
        target: "kiln::audit",
        event = "sign_in_failed",
        method,
        user = %printable(username, MAX_USERNAME_BYTES),
        peer = ?peer,
        reason = ?why,
    );
}

impl Conn {
    /// Signed in: the connection no longer counts against the pre-sign-in
    /// caps, nor has a deadline.
    fn signed_in(&mut self, user: User) {
        self.user = Some(user);
        if let Some(waiting) = self.waiting.take() {
            let _ = waiting.signed_in.send(());
        }
    }

    fn attempt(&self, username: &str) -> Attempt {
        Attempt::new(self.peer, username, self.shared.budget)
    }

    /// A failed attempt: the log line, and a row in the audit trail.
    async fn audit_failure(&self, method: &str, username: &str, key: Option<&str>, why: Failure) {
        audit_failure(method, username, self.peer, why);
        let name = printable(username, MAX_USERNAME_BYTES);
        let detail = format!("{why:?}");
        self.record_sign_in(method, &name, key, "refused", &detail)
            .await;
    }

    /// One sign-in attempt in the audit trail (never its password). Awaited,
    /// so the record exists once the client has its answer.
    async fn record_sign_in(
        &self,
        method: &str,
        username: &str,
        key: Option<&str>,
        result: &str,
        detail: &str,
    ) {
        let record = crate::store::audit::NewAuditRecord {
            username,
            front: "ssh",
            source: self.peer,
            key_fingerprint: key,
            method: Some(method),
            action: "sign_in",
            result,
            detail,
            ..Default::default()
        };
        if let Err(e) = self.shared.store.append_audit(&record).await {
            tracing::error!(error = %e, "could not append a sign-in to the audit trail");
        }
    }

    /// The password check shared by `password` and `keyboard-interactive`.
    /// Unknown, disabled and wrong all take the same path and the same time.
    /// `method` names the SSH method it came through, for the audit log.
    pub(super) async fn check_password(
        &mut self,
        method: &'static str,
        username: &str,
        password: &str,
    ) -> Auth {
        if username.len() > MAX_USERNAME_BYTES {
            self.audit_failure(method, username, None, Failure::NameTooLong)
                .await;
            return reject();
        }
        let attempt = self.attempt(username);
        let window = self.shared.config.failure_window;
        let store = &self.shared.store;
        // Counted as a failure before the (slow) verification, so concurrent
        // guesses cannot all pass the check; given back only on success.
        let reservation = match store
            .reserve_password_attempt(&attempt.charge, window)
            .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(wait)) => {
                self.limited_for = Some(wait);
                self.audit_failure(method, username, None, Failure::RateLimited)
                    .await;
                return reject();
            }
            Err(e) => {
                // Without the shared budget there is no limit: fail closed.
                tracing::warn!("sign-in limits unavailable: {e}");
                self.audit_failure(method, username, None, Failure::LimiterUnavailable)
                    .await;
                return reject();
            }
        };
        self.limited_for = None;
        let signed_in = self.verify(attempt.username.as_deref(), password).await;
        match signed_in {
            Some(user) => {
                if let Err(e) = store.release_signin_attempt(reservation).await {
                    tracing::warn!("could not release a sign-in attempt: {e}");
                }
                self.record_sign_in(method, &user.username, None, "ok", "")
                    .await;
                self.signed_in(user);
                Auth::Accept
            }
            None => {
                self.audit_failure(method, username, None, Failure::WrongCredentials)
                    .await;
                reject()
            }
        }
    }

    /// The user `name` (already normalised) signs in as with `password`, or
    /// creates under open sign-up. At most a few run at once (one argon2 each).
    async fn verify(&self, name: Option<&str>, password: &str) -> Option<User> {
        let Ok(_permit) = self.shared.verifying.acquire().await else {
            return None;
        };
        let store = &self.shared.store;
        let found = match name {
            Some(n) => store.password_hash(n).await.unwrap_or_else(|e| {
                tracing::warn!("password lookup failed: {e}");
                None
            }),
            None => None,
        };
        match found {
            Some((user, hash)) => {
                return self
                    .shared
                    .verifier
                    .verify(password, &hash)
                    .await
                    .then_some(user);
            }
            None => {
                self.shared
                    .verifier
                    .verify(password, &self.shared.decoy_hash)
                    .await;
            }
        }
        let name = name?;
        if self.shared.config.signup == Signup::Open
            && password.chars().count() >= SIGNUP_MIN_PASSWORD
            && crate::store::users::check_new_username(name).is_ok()
            && let Ok(None) = store.find_user(name).await
        {
            return self.sign_up(name, password).await;
        }
        None
    }

    /// Creates the account `name`, if this address has sign-ups left
    /// (counted before the account is created, given back if it is not).
    async fn sign_up(&self, name: &str, password: &str) -> Option<User> {
        let store = &self.shared.store;
        let address = signup_limit::address_key(self.peer);
        let reservation = match store
            .reserve_signup(&address, self.shared.config.signup_limit)
            .await
        {
            Ok(Ok(r)) => r,
            // The sign-in then fails and is audited as such; this says why.
            Ok(Err(wait)) => {
                tracing::info!(
                    target: "kiln::audit",
                    event = "sign_up_refused",
                    user = %printable(name, MAX_USERNAME_BYTES),
                    peer = ?self.peer,
                    reason = "too many sign-ups from this address",
                    retry_after_secs = wait.as_secs(),
                );
                return None;
            }
            Err(e) => {
                // Without the shared limit there is none: fail closed.
                tracing::warn!("sign-up limits unavailable: {e}");
                return None;
            }
        };
        match store.create_user(name, Some(password), false).await {
            Ok(u) => {
                tracing::info!(
                    target: "kiln::audit",
                    event = "signed_up",
                    user = %u.username,
                    peer = ?self.peer,
                );
                Some(u)
            }
            Err(e) => {
                tracing::warn!("sign-up failed: {e}");
                if let Err(e) = store.release_signup(reservation).await {
                    tracing::warn!("could not give back a sign-up: {e}");
                }
                None
            }
        }
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
            let wait = if user.len() > MAX_USERNAME_BYTES {
                None
            } else {
                let attempt = self.attempt(user);
                let window = self.shared.config.failure_window;
                let store = &self.shared.store;
                store
                    .password_attempt_wait(&attempt.charge, window)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!("sign-in limits unavailable: {e}");
                        None
                    })
            };
            let instructions = match wait {
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
        self.check_password("keyboard-interactive", user, &password)
            .await
    }

    pub(super) async fn key_offered(
        &self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Auth {
        // Unknown keys are declined before the client signs; not counted as failures.
        if user.len() > MAX_USERNAME_BYTES {
            return reject();
        }
        let known = self
            .shared
            .store
            .key_may_sign_in(user, offer.public_key)
            .await
            .unwrap_or(false);
        if known { Auth::Accept } else { reject() }
    }

    /// Keys are not subject to the password budget: otherwise anyone could
    /// lock a user out of their key by guessing passwords for them.
    pub(super) async fn check_key(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Auth {
        let fp = crate::store::keys::fingerprint(key.public_key);
        if user.len() > MAX_USERNAME_BYTES {
            self.audit_failure("publickey", user, Some(&fp), Failure::NameTooLong)
                .await;
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
                self.record_sign_in("publickey", &u.username, Some(&fp), "ok", "")
                    .await;
                self.signed_in(u);
                Auth::Accept
            }
            _ => {
                self.audit_failure("publickey", user, Some(&fp), Failure::WrongCredentials)
                    .await;
                reject()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_sign_in_is_audited_with_the_escaped_name_and_the_peer() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            audit_failure(
                "password",
                "mal\x1b[2Jlory",
                Some("192.0.2.7".parse().unwrap()),
                Failure::WrongCredentials,
            );
        });
        let line = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(line.contains("kiln::audit"), "{line}");
        assert!(line.contains("sign_in_failed"), "{line}");
        assert!(line.contains("192.0.2.7"), "{line}");
        assert!(line.contains("WrongCredentials"), "{line}");
        assert!(
            !line.contains('\x1b'),
            "the name's escape reached the log: {line}"
        );
    }
}
