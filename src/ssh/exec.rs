// TEMP STUB (replaced by the exec helper's module)
use crate::store::Store;
use crate::store::users::User;
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: u32,
}
pub fn wants_stdin(_c: &str) -> bool {
    false
}
pub async fn run(_s: &Store, _u: &User, _c: &str, _i: &[u8]) -> ExecOutput {
    todo!()
}
