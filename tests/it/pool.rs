//! The warm pool of databases (issue 23) over real SSH clients and real
//! databases on the test server: concurrent creates claim each pooled
//! database once, a claimed database is empty and owned by a fresh role
//! while the pooled role can no longer log in, and a pooled database broken
//! by hand is replaced and never handed to a tenant. The pool of sandboxes
//! is tested in `sandboxes`.

mod sandboxes;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kiln::driver::{DatabaseDriver, DatabaseSpec, ResourceRef};
use kiln::model::ProjectStatus;
use kiln::model::pool::PoolKind;
use kiln::reconcile::pool::PoolKeeper;
use kiln::store::resources::ResourceKind;
use sqlx::{Connection, PgConnection};

use crate::console_fronts::cli;
use crate::ssh_auth::random_key;
use crate::support::eventually;
use crate::support::sandboxes::{signed_in, status_becomes};
use crate::support::ssh::{Client, Server, connect};

/// `n` SSH clients signed in as `user` with one key (no argon2 per client).
async fn clients(server: &Server, user: &str, n: usize) -> (uuid::Uuid, Vec<Client>) {
    let u = server.user(user, "correct horse battery").await;
    let key = random_key();
    server
        .store
        .add_ssh_key(u.id, &key.public_key().to_openssh().unwrap())
        .await
        .unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = connect(server.addr).await;
        assert!(c.key(user, &key).await);
        out.push(c);
    }
    (u.id, out)
}

/// `tenants` users with `per_tenant` SSH clients each, every client
/// creating a project at the same moment (`p0`, `p1`, … per tenant); every
/// create succeeds and every project ends RUNNING. The owners.
async fn create_all_at_once(server: &Server, tenants: usize, per_tenant: usize) -> Vec<uuid::Uuid> {
    let mut all = Vec::new();
    for t in 0..tenants {
        all.push(clients(server, &format!("tenant{t}"), per_tenant).await);
    }
    let results = futures::future::join_all(all.iter().flat_map(|(_, clients)| {
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| async move { c.exec(&format!("create p{i}"), b"").await })
    }))
    .await;
    assert_eq!(results.len(), tenants * per_tenant);
    for r in &results {
        assert_eq!(r.code, Some(0), "{r:?}");
    }
    for (owner, _) in &all {
        all_running(server, *owner, per_tenant).await;
    }
    all.into_iter().map(|(owner, _)| owner).collect()
}

async fn ready_pooled(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = server
        .store
        .ready_pooled(PoolKind::Database)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    names.sort();
    names
}

/// Every project database: its name and the pooled one it was claimed from.
async fn project_databases(server: &Server) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT resource_name, pooled_from FROM databases ORDER BY resource_name")
        .fetch_all(server.store.pool())
        .await
        .unwrap()
}

/// How a client reaches `name` as the role `name` with `password`.
async fn url_for(server: &Server, name: &str, password: String) -> String {
    let spec = DatabaseSpec {
        resource: ResourceRef {
            resource_name: name.into(),
            namespace: String::new(),
            project_slug: String::new(),
            owner: uuid::Uuid::nil(),
        },
        password: password.into(),
        sandbox: None,
    };
    let databases = &server.pool.as_ref().unwrap().databases;
    databases.credentials(&spec).await.unwrap().unwrap().url()
}

/// A project database's URL with the password Kiln stored for it.
async fn tenant_url(server: &Server, name: &str) -> String {
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT password_enc FROM databases WHERE resource_name = $1")
            .bind(name)
            .fetch_one(server.store.pool())
            .await
            .unwrap();
    let password = server
        .store
        .key()
        .decrypt_string(&sealed, &ResourceKind::Database.password_context(name))
        .unwrap();
    url_for(server, name, password).await
}

/// A pooled database's URL with its pooled role's password.
async fn pooled_url(server: &Server, name: &str) -> String {
    let password = server
        .store
        .pooled_database_password(name)
        .await
        .unwrap()
        .expect("a pooled database's password");
    url_for(server, name, password.expose_str().to_string()).await
}

async fn admin(server: &Server) -> PgConnection {
    PgConnection::connect(&server.db.admin_url).await.unwrap()
}

/// How many of `names` exist as databases owned by the role of the same
/// name, which can log in.
async fn owned_by_own_role(server: &Server, names: &[String]) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
          WHERE d.datname = ANY($1) AND r.rolname = d.datname AND r.rolcanlogin",
    )
    .bind(names)
    .fetch_one(&mut admin(server).await)
    .await
    .unwrap()
}

/// How many of `names` exist as a database or a role.
async fn databases_or_roles_named(server: &Server, names: &[String]) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_database WHERE datname = ANY($1))
              + (SELECT count(*) FROM pg_roles WHERE rolname = ANY($1))",
    )
    .bind(names)
    .fetch_one(&mut admin(server).await)
    .await
    .unwrap()
}

async fn all_running(server: &Server, owner: uuid::Uuid, n: usize) {
    eventually(
        &format!("{n} projects RUNNING"),
        Duration::from_secs(240),
        || async {
            let ps = server.store.list_projects(owner).await.ok()?;
            (ps.len() == n
                && ps
                    .iter()
                    .all(|p| p.project.status == ProjectStatus::Running))
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_creates_against_a_pool_of_ten_claim_exactly_ten() {
    // Ten tenants with ten SSH clients each: a create locks its owner, so
    // only creates of different owners race for the pool.
    const TENANTS: usize = 10;
    const PER_TENANT: usize = 10;
    const CREATES: usize = TENANTS * PER_TENANT;
    let server = Server::start_pooled(10).await;
    server.fill_pool().await;
    let pooled = ready_pooled(&server).await;
    assert_eq!(pooled.len(), 10, "{pooled:?}");
    create_all_at_once(&server, TENANTS, PER_TENANT).await;

    let dbs = project_databases(&server).await;
    assert_eq!(dbs.len(), CREATES);
    let claimed: Vec<&String> = dbs.iter().filter_map(|(_, p)| p.as_ref()).collect();
    let distinct: HashSet<&String> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 10, "exactly the pool's ten are claimed");
    assert_eq!(distinct.len(), 10, "no pooled database is claimed twice");
    assert_eq!(distinct, pooled.iter().collect::<HashSet<_>>());

    // Every project has a database of its own, owned by a role of its own.
    let names: Vec<String> = dbs.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), CREATES);
    assert_eq!(owned_by_own_role(&server, &names).await, CREATES as i64);
    // The pooled names are gone: renamed databases, dropped roles.
    assert_eq!(databases_or_roles_named(&server, &pooled).await, 0);
    // The claimed ones answer with their project's credentials.
    for (name, _) in dbs.iter().filter(|(_, p)| p.is_some()) {
        let mut c = PgConnection::connect(&tenant_url(&server, name).await)
            .await
            .unwrap();
        let (user, db): (String, String) =
            sqlx::query_as("SELECT current_user::text, current_database()::text")
                .fetch_one(&mut c)
                .await
                .unwrap();
        assert_eq!((&user, &db), (name, name));
    }

    // The keeper, running as `kiln serve` runs it, refills the pool.
    server.keep_pool();
    let refilled = eventually(
        "the pool refilled to 10",
        Duration::from_secs(120),
        || async {
            let ready = ready_pooled(&server).await;
            (ready.len() == 10).then_some(ready)
        },
    )
    .await;
    assert!(refilled.iter().all(|n| !pooled.contains(n)), "{refilled:?}");
    assert_eq!(owned_by_own_role(&server, &refilled).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_database_is_empty_and_owned_by_a_fresh_role_and_the_pooled_role_cannot_log_in() {
    let server = Server::start_pooled(1).await;
    server.fill_pool().await;
    let [pooled] = <[String; 1]>::try_from(ready_pooled(&server).await).unwrap();
    let pooled_url = pooled_url(&server, &pooled).await;
    // Before the claim its role logs in: the refusal below means something.
    let mut before = PgConnection::connect(&pooled_url).await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut before)
        .await
        .unwrap();
    assert_eq!(user, pooled);
    before.close().await.unwrap();

    let (alice, c) = signed_in(&server, "alice").await;
    let r = c.exec("create shop", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "shop", ProjectStatus::Running).await;
    let dbs = project_databases(&server).await;
    let [(name, from)] = <[(String, Option<String>); 1]>::try_from(dbs).unwrap();
    assert_eq!(from.as_deref(), Some(pooled.as_str()));

    let mut tenant = PgConnection::connect(&tenant_url(&server, &name).await)
        .await
        .unwrap();
    let (user, owner): (String, String) = sqlx::query_as(
        "SELECT current_user::text, pg_get_userbyid(datdba)::text
           FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut tenant)
    .await
    .unwrap();
    assert_eq!(
        (user.as_str(), owner.as_str()),
        (name.as_str(), name.as_str())
    );
    let relations: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'",
    )
    .fetch_one(&mut tenant)
    .await
    .unwrap();
    assert_eq!(relations, 0, "a claimed database holds nothing");
    // Its owner may use it.
    sqlx::raw_sql("CREATE TABLE public.notes (body text)")
        .execute(&mut tenant)
        .await
        .unwrap();

    let refused = PgConnection::connect(&pooled_url).await.unwrap_err();
    assert!(
        refused.to_string().contains("authentication failed")
            || refused.to_string().contains("does not exist"),
        "{refused}"
    );
    assert_eq!(databases_or_roles_named(&server, &[pooled]).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_database_dropped_by_hand_is_replaced_and_never_handed_out() {
    let server = Server::start_pooled(2).await;
    server.fill_pool().await;
    let first = ready_pooled(&server).await;
    assert_eq!(first.len(), 2);
    let dropped = first[0].clone();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{dropped}\" WITH (FORCE)"
    )))
    .execute(&mut admin(&server).await)
    .await
    .unwrap();

    server.keep_pool();
    let replaced = eventually(
        "the dropped pooled database replaced",
        Duration::from_secs(60),
        || async {
            let ready = ready_pooled(&server).await;
            let row_left = server
                .store
                .pooled_database_password(&dropped)
                .await
                .unwrap()
                .is_some();
            (ready.len() == 2 && !ready.contains(&dropped) && !row_left).then_some(ready)
        },
    )
    .await;
    assert!(
        replaced.contains(&first[1]),
        "the whole one stays: {replaced:?}"
    );
    // `kiln status` shows the pool.
    let (code, out, err) = tokio::task::block_in_place(|| cli(&server, &["status"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("database pool: 2 ready, 0 being made"),
        "{out}"
    );
    // What was left of it (its role) is gone too.
    assert_eq!(
        databases_or_roles_named(&server, std::slice::from_ref(&dropped)).await,
        0
    );

    let (alice, c) = signed_in(&server, "alice").await;
    for name in ["one", "two"] {
        let r = c.exec(&format!("create {name}"), b"").await;
        assert_eq!(r.code, Some(0), "{r:?}");
    }
    all_running(&server, alice, 2).await;
    let claimed: HashSet<String> = project_databases(&server)
        .await
        .into_iter()
        .filter_map(|(_, p)| p)
        .collect();
    assert!(!claimed.contains(&dropped), "{claimed:?}");
    assert_eq!(claimed, replaced.into_iter().collect());
}

/// A claim wakes the keeper for a refill only: checking every ready pooled
/// resource then would compete with the claimed one's start. The health
/// check is the resync's (a full pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refill_fills_empty_slots_and_leaves_the_health_check_to_the_full_pass() {
    let server = Server::start_pooled(2).await;
    server.fill_pool().await;
    let first = ready_pooled(&server).await;
    assert_eq!(first.len(), 2);
    let dropped = first[0].clone();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{dropped}\" WITH (FORCE)"
    )))
    .execute(&mut admin(&server).await)
    .await
    .unwrap();
    let keeper = &server.pool.as_ref().unwrap().keeper;

    let refill = keeper.refill().await.unwrap();
    assert_eq!(refill.databases.broken, 0, "{refill:?}");
    assert_eq!(ready_pooled(&server).await, first, "nothing checked");

    let full = keeper.pass().await.unwrap();
    assert_eq!(full.databases.broken, 1, "{full:?}");
    assert!(!ready_pooled(&server).await.contains(&dropped));
    // The next refill makes the slot whole again.
    keeper.fill().await.unwrap();
    let ready = ready_pooled(&server).await;
    assert_eq!(ready.len(), 2);
    assert!(!ready.contains(&dropped), "{ready:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_a_pooled_database_dropped_before_its_check_gets_a_fresh_database() {
    let server = Server::start_pooled(1).await;
    server.fill_pool().await;
    let [pooled] = <[String; 1]>::try_from(ready_pooled(&server).await).unwrap();
    // Dropped by hand, and claimed before any health check could see it.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{pooled}\" WITH (FORCE)"
    )))
    .execute(&mut admin(&server).await)
    .await
    .unwrap();
    let (alice, c) = signed_in(&server, "alice").await;
    let r = c.exec("create shop", b"").await;
    assert_eq!(r.code, Some(0), "{r:?}");
    status_becomes(&server, alice, "shop", ProjectStatus::Running).await;
    let [(name, from)] =
        <[(String, Option<String>); 1]>::try_from(project_databases(&server).await).unwrap();
    assert_eq!(from.as_deref(), Some(pooled.as_str()));
    // The driver refused the broken one and made the project's own.
    assert_eq!(
        owned_by_own_role(&server, std::slice::from_ref(&name)).await,
        1
    );
    let mut tenant = PgConnection::connect(&tenant_url(&server, &name).await)
        .await
        .unwrap();
    let db: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut tenant)
        .await
        .unwrap();
    assert_eq!(db, name);
    // The pooled role is gone, and the keeper refills the pool.
    assert_eq!(
        databases_or_roles_named(&server, std::slice::from_ref(&pooled)).await,
        0
    );
    server.keep_pool();
    eventually("the pool refilled", Duration::from_secs(60), || async {
        let ready = ready_pooled(&server).await;
        (ready.len() == 1 && ready[0] != pooled).then_some(())
    })
    .await;
}

/// A second keeper on the same pool, as another replica runs it.
fn second_keeper(server: &Server, target: u32) -> PoolKeeper {
    let databases = server.pool.as_ref().unwrap().databases.clone();
    PoolKeeper::new(
        server.store.clone(),
        Arc::new(databases),
        target,
        "replica-b",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keepers_filling_one_pool_at_once_make_its_target_and_not_one_more() {
    let server = Server::start_pooled(4).await;
    let a = server.pool.as_ref().unwrap().keeper.clone();
    let b = second_keeper(&server, 4);
    let (ra, rb) = tokio::join!(a.fill(), b.fill());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.databases.made + rb.databases.made, 4, "{ra:?} {rb:?}");
    let ready = ready_pooled(&server).await;
    assert_eq!(ready.len(), 4);
    let slots: Vec<i32> = sqlx::query_scalar("SELECT slot FROM pool_databases ORDER BY slot")
        .fetch_all(server.store.pool())
        .await
        .unwrap();
    assert_eq!(slots, vec![0, 1, 2, 3]);
    // The server holds exactly those: nothing made twice, nothing left over.
    let on_server: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname = ANY($1) ORDER BY 1",
    )
    .bind(&ready)
    .fetch_all(&mut admin(&server).await)
    .await
    .unwrap();
    assert_eq!(on_server, ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_target_drops_the_pooled_databases_beyond_it() {
    let server = Server::start_pooled(3).await;
    server.fill_pool().await;
    let before = ready_pooled(&server).await;
    assert_eq!(before.len(), 3);
    let smaller = second_keeper(&server, 1);
    let s = smaller.fill().await.unwrap();
    assert_eq!((s.databases.retired, s.databases.dropped), (2, 2), "{s:?}");
    let after = ready_pooled(&server).await;
    assert_eq!(after.len(), 1);
    let gone: Vec<String> = before.into_iter().filter(|n| !after.contains(n)).collect();
    assert_eq!(databases_or_roles_named(&server, &gone).await, 0);
    assert_eq!(owned_by_own_role(&server, &after).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_resources_live_on_their_own_cluster_claims_nothing_from_the_local_pool() {
    let server = Server::start_pooled(1).await;
    server.fill_pool().await;
    let pooled = ready_pooled(&server).await;
    let bob = server.user("bob", "correct horse battery").await;
    server
        .store
        .set_user_config(bob.id, "KUBECONFIG", "apiVersion: v1\nkind: Config\n", true)
        .await
        .unwrap();
    server
        .store
        .create_project(bob.id, "remote", "", "test")
        .await
        .unwrap();
    let alice = server.user("alice", "correct horse battery").await;
    server
        .store
        .create_project(alice.id, "local", "", "test")
        .await
        .unwrap();
    let from: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT u.username::text, d.pooled_from FROM databases d JOIN users u ON u.id = d.user_id
          ORDER BY u.username",
    )
    .fetch_all(server.store.pool())
    .await
    .unwrap();
    assert_eq!(
        from,
        vec![
            ("alice".to_string(), Some(pooled[0].clone())),
            ("bob".to_string(), None)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiln_serve_keeps_the_configured_pool_and_a_create_claims_from_it() {
    use crate::support::serve::Serve;
    use crate::support::ssh::{TEST_SECRET_KEY, drop_tenant_databases};
    let db = crate::support::TestDb::new().await;
    let store = db
        .store_with_key(kiln::store::SecretKey::from_hex(TEST_SECRET_KEY).unwrap())
        .await;
    let alice = store.create_user("alice", None, false).await.unwrap();
    let mut server = Serve::start(
        &db.url,
        "pool-a",
        "[reconcile]\nresync_ms = 100\npoll_interval_ms = 100\n\
         [local]\nsandbox_command = \"sh\"\n[pool]\ndatabases = 2\nsandboxes = 2\n",
        &[],
    )
    .await;
    let ready = || async { store.ready_pooled(PoolKind::Database).await.unwrap() };
    let first = eventually("two pooled databases", Duration::from_secs(60), || async {
        let r = ready().await;
        (r.len() == 2).then_some(r)
    })
    .await;
    let ready_sandboxes = || async { store.ready_pooled(PoolKind::Sandbox).await.unwrap() };
    let first_sandboxes = eventually("two pooled sandboxes", Duration::from_secs(60), || async {
        let r = ready_sandboxes().await;
        (r.len() == 2).then_some(r)
    })
    .await;
    eventually(
        "kiln_pool_ready 2 of each",
        Duration::from_secs(30),
        || async {
            let (_, body) = server.get("/metrics").await;
            (body.contains("kiln_pool_ready{kind=\"database\"} 2")
                && body.contains("kiln_pool_ready{kind=\"sandbox\"} 2"))
            .then_some(())
        },
    )
    .await;

    // A create through a store with claims on, as `kiln serve`'s console
    // (and the operator CLI) open it with a pool configured.
    store
        .clone()
        .with_pool_claims(true)
        .with_sandbox_pool_claims(true)
        .create_project(alice.id, "shop", "", "test")
        .await
        .unwrap();
    eventually("shop RUNNING", Duration::from_secs(60), || async {
        let p = store.find_project(alice.id, "shop").await.ok()?;
        (p.project.status == ProjectStatus::Running).then_some(())
    })
    .await;
    let pooled_from: Option<String> = sqlx::query_scalar("SELECT pooled_from FROM databases")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let pooled_from = pooled_from.expect("the create claimed a pooled database");
    assert!(first.iter().any(|(_, n)| *n == pooled_from), "{first:?}");
    eventually("the pool refilled", Duration::from_secs(60), || async {
        let r = ready().await;
        (r.len() == 2 && r.iter().all(|(_, n)| *n != pooled_from)).then_some(())
    })
    .await;
    let (sandbox, pooled): (String, bool) =
        sqlx::query_as("SELECT resource_name, pooled FROM sandboxes")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(pooled, "the create claimed a pooled sandbox");
    assert!(
        first_sandboxes.iter().any(|(_, n)| *n == sandbox),
        "{sandbox} {first_sandboxes:?}"
    );
    eventually(
        "the sandbox pool refilled",
        Duration::from_secs(60),
        || async {
            let r = ready_sandboxes().await;
            (r.len() == 2 && r.iter().all(|(_, n)| *n != sandbox)).then_some(())
        },
    )
    .await;

    store
        .record_intent(alice.id, "shop", kiln::model::Intent::Delete, "test")
        .await
        .unwrap();
    eventually("shop deleted", Duration::from_secs(60), || async {
        store
            .find_project(alice.id, "shop")
            .await
            .is_err()
            .then_some(())
    })
    .await;
    server.sigterm();
    server.exited(Duration::from_secs(30)).await;
    tokio::task::block_in_place(|| drop_tenant_databases(&db.url, &db.admin_url));
    // Pooled sandboxes outlive Kiln, as every sandbox does: end them.
    kiln::local::LocalSandboxes::new(&server.data_dir, Some("sh".into()))
        .unwrap()
        .kill_all_servers();
}
