//! Projects: creation (with their resources), listing, and user intents.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use uuid::Uuid;

use super::events::{EventKind, NewEvent, append_event};
use super::kind::ResourceKind;
use super::project_lock::{lock_project_by_name, no_such_project};
use super::{Store, StoreError, StoreResult, conflict_or, parse};
use crate::model::intent::{self, Intent, ResourceIntent};
use crate::model::naming::{self, random_password, resource_name, slugify};
use crate::model::quota::Ask;
use crate::model::{Desired, ProjectStatus, ResourceStatus, aggregate};

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub status: ProjectStatus,
    pub env_version: i64,
    /// The repository its sandbox started from, and the branch asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Its agents' notifications (and the bell) are muted.
    #[serde(skip)]
    pub agent_muted: bool,
}

/// What a new project starts from besides its name (checked by the console).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectSource {
    /// A repository URL already validated (`model::git::parse_repo_url`).
    pub git_repo: Option<String>,
    /// A branch name already validated (`model::git::check_branch`).
    pub git_branch: Option<String>,
    /// The template it was made from, by name.
    pub template: Option<String>,
    /// What its default session runs (`None`: the server's default).
    pub session_command: Option<String>,
    /// Run once in the sandbox after its clone.
    pub setup_script: Option<String>,
    /// Variables it starts with (checked names, plain values).
    pub env: Vec<(String, String)>,
    /// Its sandbox's image and sizes on Kubernetes (checked by the template).
    pub sizing: crate::model::template::K8sSizing,
}

/// One sandbox or database as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceSummary {
    pub kind: ResourceKind,
    pub id: Uuid,
    pub project_id: Uuid,
    pub resource_name: String,
    pub desired: Desired,
    pub status: ResourceStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// `None` while in ERROR: nothing is scheduled until the user retries.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The env version the sandbox runs with (sandboxes only).
    pub applied_env_version: Option<i64>,
    /// When the idle policy stops the sandbox, once it has warned about it.
    pub idle_stop_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectView {
    #[serde(flatten)]
    pub project: Project,
    pub resources: Vec<ResourceSummary>,
    /// The viewer's role when this is a team's project (set by the console).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_role: Option<crate::model::team::TeamRole>,
}

const PROJECT_COLUMNS: &str = "id, user_id, name, slug, description, status, env_version, \
                               git_repo, git_branch, created_at, updated_at, agent_muted";

fn project_from_row(r: &sqlx::postgres::PgRow) -> Result<Project, sqlx::Error> {
    Ok(Project {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        slug: r.try_get("slug")?,
        description: r.try_get("description")?,
        status: parse(r.try_get("status")?)?,
        env_version: r.try_get("env_version")?,
        git_repo: r.try_get("git_repo")?,
        git_branch: r.try_get("git_branch")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        agent_muted: r.try_get("agent_muted")?,
    })
}

fn resource_from_row(r: &sqlx::postgres::PgRow) -> Result<ResourceSummary, sqlx::Error> {
    Ok(ResourceSummary {
        kind: parse(r.try_get("kind")?)?,
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        resource_name: r.try_get("resource_name")?,
        desired: parse(r.try_get("desired")?)?,
        status: parse(r.try_get("status")?)?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_until: r.try_get("lease_until")?,
        updated_at: r.try_get("updated_at")?,
        applied_env_version: r.try_get("applied_env_version")?,
        idle_stop_at: r.try_get("idle_stop_at")?,
    })
}

const RESOURCE_SELECT: &str = "
    SELECT 'sandbox' AS kind, id, project_id, resource_name, desired, status, attempts, last_error,
           nullif(next_attempt_at, 'infinity') AS next_attempt_at, lease_owner, lease_until, updated_at, applied_env_version, idle_stop_at FROM sandboxes WHERE project_id = ANY($1)
    UNION ALL
    SELECT 'database' AS kind, id, project_id, resource_name, desired, status, attempts, last_error,
           nullif(next_attempt_at, 'infinity') AS next_attempt_at, lease_owner, lease_until, updated_at, NULL::bigint AS applied_env_version, NULL::timestamptz AS idle_stop_at FROM databases WHERE project_id = ANY($1)
    ORDER BY kind DESC, resource_name";

impl Store {
    /// Creates a project with one sandbox and one database, both heading for RUNNING.
    pub async fn create_project(
        &self,
        user_id: Uuid,
        name: &str,
        description: &str,
        actor: &str,
    ) -> StoreResult<Project> {
        self.create_project_from(user_id, name, description, &ProjectSource::default(), actor)
            .await
    }

    /// [`Store::create_project`] whose sandbox starts from `source`.
    pub async fn create_project_from(
        &self,
        user_id: Uuid,
        name: &str,
        description: &str,
        source: &ProjectSource,
        actor: &str,
    ) -> StoreResult<Project> {
        let slug = slugify(name)?;
        naming::check_description(description)?;
        if description.chars().any(|c| c.is_control() && c != '\n') {
            return Err(StoreError::Invalid(
                "the description contains control characters".into(),
            ));
        }
        let name = name.trim();
        let sandbox_name = resource_name(&slug);
        // No slug in it: other tenants can read a local database's name.
        let database_name = naming::database_resource_name();

        let mut tx = self.pool.begin().await?;
        super::quotas::lock_owner(&mut tx, user_id).await?;
        let sizing = (
            source.sizing.cpu.as_deref(),
            source.sizing.memory.as_deref(),
        );
        super::quotas::check(
            &mut tx,
            user_id,
            Ask::Create,
            None,
            self.sandbox_size,
            sizing,
        )
        .await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO projects (user_id, name, slug, description, git_repo, git_branch,
                                   template, session_command, setup_script,
                                   k8s_image, k8s_cpu, k8s_memory)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             RETURNING {PROJECT_COLUMNS}"
        )))
        .bind(user_id)
        .bind(name)
        .bind(&slug)
        .bind(description)
        .bind(&source.git_repo)
        .bind(&source.git_branch)
        .bind(&source.template)
        .bind(&source.session_command)
        .bind(&source.setup_script)
        .bind(&source.sizing.image)
        .bind(&source.sizing.cpu)
        .bind(&source.sizing.memory)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            conflict_or(e, || {
                format!("you already have a project named {name:?} or with the slug {slug:?}; choose another name")
            })
        })?;
        let project = project_from_row(&row)?;
        for (key, value) in &source.env {
            crate::model::env::check_key(key)?;
            crate::model::env::check_value(key, value)?;
            sqlx::query(
                "INSERT INTO environments (project_id, user_id, key, value, is_secret)
                 VALUES ($1, $2, $3, $4, false)",
            )
            .bind(project.id)
            .bind(user_id)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        // A pooled sandbox, claimed in the same transaction as the intent,
        // becomes the project's under the name it already runs with.
        let pooled_sandbox = if self.sandbox_pool_claims {
            super::pool::claim_keeping_name(&mut tx, user_id, crate::model::pool::PoolKind::Sandbox)
                .await?
        } else {
            None
        };
        sqlx::query(
            "INSERT INTO sandboxes (project_id, user_id, resource_name, pooled)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(project.id)
        .bind(user_id)
        .bind(pooled_sandbox.as_deref().unwrap_or(&sandbox_name))
        .bind(pooled_sandbox.is_some())
        .execute(&mut *tx)
        .await?;
        let database_id = Uuid::new_v4();
        // In the same transaction as the intent: a create that fails gives
        // its claim back with everything else. On a cluster the claimed
        // database keeps its pooled name; locally it is renamed later.
        let (pooled_from, database_name) = match (self.pool_claims, self.database_claims_keep_name)
        {
            (false, _) => (None, database_name),
            (true, false) => (
                super::pool::claim_database(&mut tx, user_id, database_id).await?,
                database_name,
            ),
            (true, true) => (
                None,
                super::pool::claim_keeping_name(
                    &mut tx,
                    user_id,
                    crate::model::pool::PoolKind::Database,
                )
                .await?
                .unwrap_or(database_name),
            ),
        };
        // Sealed for the name the row ends up with (a claim may give it one).
        let password = self.key.encrypt_str(
            &random_password(),
            &ResourceKind::Database.password_context(&database_name),
        );
        sqlx::query(
            "INSERT INTO databases (id, project_id, user_id, resource_name, password_enc, pooled_from)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(database_id)
        .bind(project.id)
        .bind(user_id)
        .bind(&database_name)
        .bind(password)
        .bind(&pooled_from)
        .execute(&mut *tx)
        .await?;
        append_event(
            &mut tx,
            &NewEvent {
                project_id: Some(project.id),
                user_id,
                kind: EventKind::Project,
                resource: &project.slug,
                from_status: None,
                to_status: Some(ProjectStatus::Creating.as_str()),
                message: "project created",
                actor,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(project)
    }

    /// The user's projects with their resources, newest first.
    pub async fn list_projects(&self, user_id: Uuid) -> StoreResult<Vec<ProjectView>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE user_id = $1 ORDER BY created_at DESC, name"
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let projects: Vec<Project> = rows
            .iter()
            .map(project_from_row)
            .collect::<Result<_, _>>()?;
        let ids: Vec<Uuid> = projects.iter().map(|p| p.id).collect();
        let resources = sqlx::query(RESOURCE_SELECT)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
        let mut resources: Vec<ResourceSummary> = resources
            .iter()
            .map(resource_from_row)
            .collect::<Result<_, _>>()?;
        Ok(projects
            .into_iter()
            .map(|project| {
                let mine = resources
                    .extract_if(.., |r| r.project_id == project.id)
                    .collect();
                ProjectView {
                    project,
                    resources: mine,
                    team_role: None,
                }
            })
            .collect())
    }

    /// The name of a project's sandbox (`None`: it has none, or is gone).
    pub async fn project_sandbox_name(&self, project_id: Uuid) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT resource_name FROM sandboxes WHERE project_id = $1")
                .bind(project_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// One of the user's projects by name (case-insensitive) or slug. Another
    /// tenant's project is indistinguishable from one that does not exist.
    pub async fn find_project(&self, user_id: Uuid, name: &str) -> StoreResult<ProjectView> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects
             WHERE user_id = $1 AND (lower(name) = lower($2) OR slug = $2)
             ORDER BY (slug = $2) DESC LIMIT 1"
        )))
        .bind(user_id)
        .bind(name.trim())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| no_such_project(name))?;
        let project = project_from_row(&row)?;
        let resources = sqlx::query(RESOURCE_SELECT)
            .bind(vec![project.id])
            .fetch_all(&self.pool)
            .await?;
        Ok(ProjectView {
            project,
            team_role: None,
            resources: resources
                .iter()
                .map(resource_from_row)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Records a user's intent on one of their projects in one transaction:
    /// checks it against the intents table, sets `desired` and the matching
    /// transition on every resource that needs it, re-aggregates the project
    /// and appends an event. The reconcile loop does the work.
    pub async fn record_intent(
        &self,
        user_id: Uuid,
        name: &str,
        intent: Intent,
        actor: &str,
    ) -> StoreResult<ProjectStatus> {
        let mut tx = self.pool.begin().await?;
        if intent == Intent::Start {
            // The owner's lock before the project's, as a create takes it.
            super::quotas::lock_owner(&mut tx, user_id).await?;
        }
        let (project_id, slug, status) = lock_project_by_name(&mut tx, user_id, name).await?;
        intent::check(intent, status)?;
        if intent == Intent::Start {
            let (cpu, memory) = super::quotas::project_sizing(&mut tx, project_id).await?;
            super::quotas::check(
                &mut tx,
                user_id,
                Ask::Start,
                Some(project_id),
                self.sandbox_size,
                (cpu.as_deref(), memory.as_deref()),
            )
            .await?;
        }
        apply_intent(&mut tx, project_id, intent).await?;
        let new_status = reaggregate(&mut tx, project_id).await?.unwrap_or(status);
        append_event(
            &mut tx,
            &NewEvent {
                project_id: Some(project_id),
                user_id,
                kind: EventKind::Project,
                resource: &slug,
                from_status: Some(status.as_str()),
                to_status: Some(new_status.as_str()),
                message: &format!("{intent} requested"),
                actor,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(new_status)
    }
}

/// Sets `desired` and the matching transition on every resource of the
/// project that the intent moves (the caller holds the project lock and has
/// checked the intent against the project's status).
pub(crate) async fn apply_intent(
    tx: &mut PgConnection,
    project_id: Uuid,
    intent: Intent,
) -> StoreResult<()> {
    for kind in ResourceKind::ALL {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, desired, status FROM {} WHERE project_id = $1 FOR UPDATE",
            kind.table()
        )))
        .bind(project_id)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let current = ResourceIntent {
                desired: parse(row.try_get("desired")?)?,
                status: parse(row.try_get("status")?)?,
            };
            let Some(next) = intent::apply(intent, current) else {
                continue;
            };
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {} SET desired = $2, status = $3, intent_seq = intent_seq + 1,
                     attempts = 0, last_error = NULL, next_attempt_at = now()
                 WHERE id = $1",
                kind.table()
            )))
            .bind(row.try_get::<Uuid, _>("id")?)
            .bind(next.desired.as_str())
            .bind(next.status.as_str())
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

/// Recomputes the project's status from its resources (the caller holds the
/// project lock). Deletes the project once it has no resources left and
/// returns `None` then.
pub(crate) async fn reaggregate(
    conn: &mut PgConnection,
    project_id: Uuid,
) -> StoreResult<Option<ProjectStatus>> {
    let texts: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM sandboxes WHERE project_id = $1
         UNION ALL SELECT status FROM databases WHERE project_id = $1",
    )
    .bind(project_id)
    .fetch_all(&mut *conn)
    .await?;
    if texts.is_empty() {
        sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(project_id)
            .execute(&mut *conn)
            .await?;
        return Ok(None);
    }
    let statuses: Vec<ResourceStatus> = texts
        .into_iter()
        .map(parse)
        .collect::<Result<_, sqlx::Error>>()?;
    let status = aggregate(&statuses);
    sqlx::query("UPDATE projects SET status = $2 WHERE id = $1 AND status <> $2")
        .bind(project_id)
        .bind(status.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(Some(status))
}
