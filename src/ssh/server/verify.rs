//! Password checks on a few threads of their own, one per core, each
//! reusing one argon2 work area for every check. argon2 needs about 19 MB
//! per check; allocated afresh each time (on tokio's blocking pool), the
//! allocator kept most of it afterwards, so a burst of concurrent attempts
//! left the server hundreds of megabytes larger for good. Here the memory
//! is fixed: threads × one work area, whatever the load.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// One check: `password` against the PHC string `phc`.
struct Job {
    password: String,
    phc: String,
    reply: oneshot::Sender<bool>,
}

/// The queue of checks; its threads end when it is dropped.
pub(super) struct Verifier {
    jobs: mpsc::Sender<Job>,
}

impl Verifier {
    pub(super) fn start(threads: usize) -> std::io::Result<Verifier> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("kiln-argon2-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // Only the wait for a job holds the lock, not the check.
                        let next = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = next else { return };
                        let _ = job
                            .reply
                            .send(matches(&job.password, &job.phc, &mut memory));
                    }
                })?;
        }
        Ok(Verifier { jobs })
    }

    /// Whether `password` matches the PHC string `phc`; a malformed hash is
    /// a mismatch. Waits its turn behind the checks already queued.
    pub(super) async fn verify(&self, password: &str, phc: &str) -> bool {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            password: password.to_owned(),
            phc: phc.to_owned(),
            reply,
        };
        if self.jobs.send(job).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// Refused rather than allocated: a corrupt hash asking for more than 256 MiB.
const MAX_BLOCKS: usize = 256 * 1024;

/// The check `store::users::verify_password` makes, in `memory` (grown to
/// the hash's memory cost once, then reused); a malformed hash is a mismatch.
fn matches(password: &str, phc: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::phc::{Output, PasswordHash};
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::new());
    }
    let mut out = vec![0u8; expected.len()];
    argon2::Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), &mut out, &mut memory[..])
        .is_ok()
        // `Output` compares in constant time.
        && Output::new(&out).is_ok_and(|computed| &computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_a_password_against_its_hash_and_refuses_a_malformed_one() {
        let hash = crate::store::users::hash_password("correct horse")
            .await
            .unwrap();
        let v = Verifier::start(2).unwrap();
        assert!(v.verify("correct horse", &hash).await);
        assert!(!v.verify("wrong horse", &hash).await);
        assert!(!v.verify("correct horse", "not a hash").await);
        // The work area of the first check serves the next ones.
        assert!(v.verify("correct horse", &hash).await);
    }

    #[test]
    fn agrees_with_the_stores_check_on_another_hash_than_the_default() {
        use argon2::password_hash::PasswordHasher;
        let params = argon2::Params::new(4096, 3, 1, None).unwrap();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let hash = argon.hash_password(b"pw").unwrap().to_string();
        let mut memory = Vec::new();
        assert!(matches("pw", &hash, &mut memory));
        assert!(!matches("pw2", &hash, &mut memory));
        assert_eq!(memory.len(), 4096);
    }
}
