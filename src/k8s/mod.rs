//! The Kubernetes back end (DESIGN §6): sandboxes as StatefulSets, databases
//! as KubeBlocks clusters, attach by pod exec.
//!
//! Pure parts (what objects a resource wants, what a cluster object's state
//! means) live apart from the parts that talk to an API server, so the first
//! are tested as tables and snapshots and the second against an emulator.

pub mod attach;
pub mod cluster;
pub mod database;
pub mod database_objects;
mod isolation;
pub mod kubeconfig;
pub mod logs;
pub mod network_policy;
pub mod objects;
pub mod pool;
pub mod pool_objects;
pub mod sandbox;
pub mod settings;
pub mod status;
pub mod watch;
