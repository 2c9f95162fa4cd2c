//! Noticing drift as it happens: watches on the tenant namespace's sandbox
//! StatefulSets and pods and its database clusters, each reduced to the
//! name of the Kiln resource it belongs to. Whoever receives the names makes
//! those rows due, so a pod crash or a hand-scaled StatefulSet shows on the
//! dashboard within seconds instead of at the next periodic observation.

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

use super::cluster::K8sCluster;
use super::database_objects::cluster_api_resource;
use super::objects::{RESOURCE_LABEL, selector};

/// The Kiln resource an object belongs to, from its label.
fn resource_of<K: Resource>(obj: &K) -> Option<String> {
    obj.meta().labels.as_ref()?.get(RESOURCE_LABEL).cloned()
}

/// Resource names touched in one watch, forever (the watcher re-lists and
/// backs off on its own after errors).
fn touched<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = String> + Send
where
    K: Resource + Clone + Debug + Send + 'static,
{
    stream
        .default_backoff()
        .touched_objects()
        .filter_map(|obj| async move { obj.ok().and_then(|o| resource_of(&o)) })
}

/// Watches the cluster's namespace until `names` is closed or the returned
/// handle is aborted.
pub fn spawn_drift_watch(
    cluster: &K8sCluster,
    names: mpsc::Sender<String>,
) -> tokio::task::JoinHandle<()> {
    let sandboxes = watcher::Config::default().labels(&selector("sandbox"));
    let databases = watcher::Config::default().labels(&selector("database"));
    let sets = touched(watcher(cluster.api::<StatefulSet>(), sandboxes.clone()));
    let pods = touched(watcher(cluster.api::<Pod>(), sandboxes));
    let clusters: Api<DynamicObject> = Api::namespaced_with(
        cluster.client().clone(),
        cluster.namespace(),
        &cluster_api_resource(),
    );
    let dbs = touched(watcher(clusters, databases));
    let mut all = futures::stream::select(futures::stream::select(sets, pods), dbs).boxed();
    tokio::spawn(async move {
        while let Some(name) = all.next().await {
            if names.send(name).await.is_err() {
                break;
            }
        }
    })
}
