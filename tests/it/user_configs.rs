//! Per-user settings against real Postgres: round trips, encryption at rest,
//! validation before writing, and tenant isolation.

use kiln::store::user_configs::UserConfig;
use kiln::store::{Store, StoreError};
use uuid::Uuid;

use crate::support::TestDb;

async fn user(store: &Store, name: &str) -> Uuid {
    store
        .create_user(name, Some("a long password"), false)
        .await
        .unwrap()
        .id
}

async fn row_count(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_configs")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn find<'a>(list: &'a [UserConfig], key: &str) -> &'a UserConfig {
    list.iter().find(|c| c.key == key).unwrap()
}

#[tokio::test]
async fn secret_and_plain_values_round_trip() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = user(&store, "alice").await;
    store
        .set_user_config(alice, "ANTHROPIC_API_KEY", "sk-ant-round-trip", true)
        .await
        .unwrap();
    store
        .set_user_config(alice, "ANTHROPIC_BASE_URL", "https://llm.example", false)
        .await
        .unwrap();
    let list = store.list_user_configs(alice).await.unwrap();
    let keys: Vec<&str> = list.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"]);
    let secret = find(&list, "ANTHROPIC_API_KEY");
    assert_eq!(secret.value, "sk-ant-round-trip");
    assert!(secret.is_secret);
    assert_eq!(secret.category, "anthropic");
    let plain = find(&list, "ANTHROPIC_BASE_URL");
    assert_eq!(plain.value, "https://llm.example");
    assert!(!plain.is_secret);
    assert!(
        !format!("{list:?}").contains("sk-ant-round-trip"),
        "Debug hides secrets"
    );
}

#[tokio::test]
async fn a_secret_is_not_stored_in_clear() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = user(&store, "alice").await;
    let secret = "sk-ant-never-in-clear-0123456789";
    store
        .set_user_config(alice, "ANTHROPIC_API_KEY", secret, true)
        .await
        .unwrap();
    let (value, sealed): (Option<String>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT value, value_enc FROM user_configs WHERE user_id = $1 AND key = 'ANTHROPIC_API_KEY'",
    )
    .bind(alice)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(value, None);
    let sealed = sealed.expect("the sealed value is stored");
    assert!(
        !sealed.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "plaintext found in value_enc"
    );
    // Nowhere else in the row either.
    let row_text: String = sqlx::query_scalar("SELECT u::text FROM user_configs u")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!row_text.contains(secret), "{row_text}");
}

#[tokio::test]
async fn invalid_keys_and_values_are_refused_and_nothing_is_written() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = user(&store, "alice").await;
    let long_key = "A".repeat(65);
    let huge = "x".repeat(64 * 1024 + 1);
    let cases: [(&str, &str, &str); 8] = [
        ("", "v", "empty"),
        ("lower_case", "v", "uppercase"),
        ("9LIVES", "v", "digit"),
        ("WITH-DASH", "v", "uppercase"),
        ("BAD\x1b[2J", "v", "uppercase"),
        (&long_key, "v", "at most 64"),
        ("OK_KEY", "nul\0byte", "NUL"),
        ("OK_KEY", &huge, "64 KiB"),
    ];
    for (key, value, expect) in cases {
        for secret in [false, true] {
            let err = store
                .set_user_config(alice, key, value, secret)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{key:?}: {err}");
            assert!(err.to_string().contains(expect), "{key:?}: {err}");
            assert!(!err.to_string().contains('\x1b'), "{err}");
        }
    }
    assert_eq!(row_count(&store).await, 0);
    // The largest allowed value is accepted.
    store
        .set_user_config(alice, "OK_KEY", &"x".repeat(64 * 1024), true)
        .await
        .unwrap();
    assert_eq!(row_count(&store).await, 1);
}

#[tokio::test]
async fn users_cannot_see_or_unset_each_others_settings() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    store
        .set_user_config(alice, "ANTHROPIC_API_KEY", "alice-secret", true)
        .await
        .unwrap();
    store
        .set_user_config(alice, "ANTHROPIC_BASE_URL", "https://alice", false)
        .await
        .unwrap();
    assert!(store.list_user_configs(bob).await.unwrap().is_empty());
    let err = store
        .unset_user_config(bob, "ANTHROPIC_API_KEY")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    // Bob setting the same key makes his own row; Alice's is untouched.
    store
        .set_user_config(bob, "ANTHROPIC_API_KEY", "bob-secret", true)
        .await
        .unwrap();
    let a = store.list_user_configs(alice).await.unwrap();
    assert_eq!(find(&a, "ANTHROPIC_API_KEY").value, "alice-secret");
    assert_eq!(a.len(), 2);
    let b = store.list_user_configs(bob).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].value, "bob-secret");
    store
        .unset_user_config(bob, "ANTHROPIC_API_KEY")
        .await
        .unwrap();
    assert_eq!(store.list_user_configs(alice).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_user_does_not_open() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = user(&store, "alice").await;
    let mallory = user(&store, "mallory").await;
    store
        .set_user_config(alice, "ANTHROPIC_API_KEY", "alice-secret", true)
        .await
        .unwrap();
    store
        .set_user_config(mallory, "ANTHROPIC_API_KEY", "mine", true)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE user_configs SET value_enc = (SELECT value_enc FROM user_configs WHERE user_id = $1)
          WHERE user_id = $2",
    )
    .bind(alice)
    .bind(mallory)
    .execute(store.pool())
    .await
    .unwrap();
    let err = store.list_user_configs(mallory).await.unwrap_err();
    assert!(matches!(err, StoreError::Crypto(_)), "{err}");
}

#[tokio::test]
async fn setting_again_replaces_value_and_secrecy() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = user(&store, "alice").await;
    store
        .set_user_config(alice, "ANTHROPIC_BASE_URL", "https://one", false)
        .await
        .unwrap();
    let first = store.list_user_configs(alice).await.unwrap()[0].clone();
    store
        .set_user_config(alice, "ANTHROPIC_BASE_URL", "https://two", true)
        .await
        .unwrap();
    let list = store.list_user_configs(alice).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].value, "https://two");
    assert!(list[0].is_secret);
    assert!(list[0].updated_at >= first.updated_at);
    store
        .set_user_config(alice, "ANTHROPIC_BASE_URL", "https://three", false)
        .await
        .unwrap();
    let list = store.list_user_configs(alice).await.unwrap();
    assert_eq!(
        (list[0].value.expose_str(), list[0].is_secret),
        ("https://three", false)
    );
    assert_eq!(row_count(&store).await, 1);
}

#[tokio::test]
async fn unsetting_removes_and_a_missing_key_is_not_found() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let alice = user(&store, "alice").await;
    store
        .set_user_config(alice, "KUBECONFIG", "apiVersion: v1\nkind: Config\n", true)
        .await
        .unwrap();
    let list = store.list_user_configs(alice).await.unwrap();
    assert_eq!(list[0].value, "apiVersion: v1\nkind: Config\n");
    assert_eq!(list[0].category, "kubernetes");
    store.unset_user_config(alice, "KUBECONFIG").await.unwrap();
    assert!(store.list_user_configs(alice).await.unwrap().is_empty());
    let err = store
        .unset_user_config(alice, "KUBECONFIG")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(err.to_string().contains("KUBECONFIG"), "{err}");
}
