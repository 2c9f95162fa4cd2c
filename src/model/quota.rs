//! Quotas: how many projects an owner (a user or a team) may have, how
//! many of their sandboxes may run at once, and on Kubernetes how much CPU
//! and memory their running sandboxes may request together. The decision
//! is this pure function; the store calls it inside the transaction that
//! would pass the limit, under a per-owner lock, so concurrent requests
//! cannot all pass.

use std::fmt;

/// An owner's limits; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub projects: Option<i64>,
    pub running: Option<i64>,
    /// CPU the running sandboxes may request together, in millicores.
    pub cpu_millis: Option<i64>,
    /// Memory the running sandboxes may request together, in bytes.
    pub memory_bytes: Option<i64>,
}

/// What one sandbox requests from the cluster (the server's Kubernetes
/// settings); `None` where sandboxes are not on Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxSize {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl SandboxSize {
    /// The size of a sandbox whose template names `cpu` and `memory`
    /// (Kubernetes quantities, checked when the template was saved), this
    /// one (the server's) where it names none: a template's size is both
    /// what its sandbox requests and all it gets. A quantity that cannot
    /// be read counts as the server's.
    pub fn with_template(self, cpu: Option<&str>, memory: Option<&str>) -> SandboxSize {
        let read = |q: Option<&str>, scale: f64| {
            q.and_then(quantity_value)
                .map(|v| (v * scale).ceil())
                .filter(|v| v.is_finite() && *v >= 0.0 && *v < i64::MAX as f64)
                .map(|v| v as i64)
        };
        SandboxSize {
            cpu_millis: read(cpu, 1000.0).unwrap_or(self.cpu_millis),
            memory_bytes: read(memory, 1.0).unwrap_or(self.memory_bytes),
        }
    }
}

/// What an owner has now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Projects that exist and are not being deleted.
    pub projects: i64,
    /// Sandboxes asked to run (`desired = RUNNING`), whatever their status.
    pub running: i64,
    /// What those sandboxes request (0 off Kubernetes).
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl Usage {
    /// The usage of `projects` and of running sandboxes of these sizes.
    pub fn of_sizes(projects: i64, running: &[SandboxSize]) -> Usage {
        Usage {
            projects,
            running: running.len() as i64,
            cpu_millis: running
                .iter()
                .fold(0, |n, s| n.saturating_add(s.cpu_millis)),
            memory_bytes: running
                .iter()
                .fold(0, |n, s| n.saturating_add(s.memory_bytes)),
        }
    }

    /// The usage of `projects` and `running` sandboxes of `size` each.
    pub fn of(projects: i64, running: i64, size: Option<SandboxSize>) -> Usage {
        let (cpu, memory) = size.map_or((0, 0), |s| (s.cpu_millis, s.memory_bytes));
        Usage {
            projects,
            running,
            cpu_millis: running.saturating_mul(cpu),
            memory_bytes: running.saturating_mul(memory),
        }
    }
}

/// What would add to the usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// A new project, which starts at once: one more project, one more running.
    Create,
    /// A stopped project started: one more running.
    Start,
}

/// Whose quota it is, as the refusal names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    You,
    Team(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct QuotaExceeded {
    pub holder: Holder,
    pub what: Counted,
    pub used: i64,
    pub limit: i64,
    /// What one more sandbox would add (CPU and memory only; else 0).
    pub each: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Projects,
    Running,
    /// Millicores requested.
    Cpu,
    /// Bytes of memory requested.
    Memory,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (used, limit) = (self.used, self.limit);
        match (&self.holder, self.what) {
            (Holder::You, Counted::Projects) => write!(
                f,
                "you have {used} of {limit} projects: delete one or ask an admin"
            ),
            (Holder::Team(t), Counted::Projects) => write!(
                f,
                "team {t} has {used} of {limit} projects: delete one or ask an admin"
            ),
            (Holder::You, Counted::Running) => write!(
                f,
                "you run {used} of {limit} sandboxes: stop one or ask an admin"
            ),
            (Holder::Team(t), Counted::Running) => write!(
                f,
                "team {t} runs {used} of {limit} sandboxes: stop one or ask an admin"
            ),
            (holder, what @ (Counted::Cpu | Counted::Memory)) => {
                let (show, noun): (fn(i64) -> String, _) = match what {
                    Counted::Cpu => (show_cpu, "CPU"),
                    _ => (show_memory, "memory"),
                };
                let who = match holder {
                    Holder::You => "your sandboxes request".to_string(),
                    Holder::Team(t) => format!("team {t}'s sandboxes request"),
                };
                write!(
                    f,
                    "{who} {} of {} {noun} and one more needs {}: stop one or ask an admin",
                    show(used),
                    show(limit),
                    show(self.each)
                )
            }
        }
    }
}

/// Millicores as Kubernetes writes them: `4` for whole cores, else `500m`.
pub fn show_cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Bytes in the largest binary unit that divides them: `8Gi`, `512Mi`.
pub fn show_memory(bytes: i64) -> String {
    for (unit, size) in [
        ("Ti", 1i64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes != 0 && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Why a CPU or memory amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuantity(String);

/// A CPU amount as Kubernetes writes it: cores (`4`, `1.5`) or
/// millicores (`500m`), in millicores.
pub fn parse_cpu(text: &str) -> Result<i64, BadQuantity> {
    let t = text.trim();
    let bad = || {
        BadQuantity(format!(
            "{} is not a CPU amount: give cores (4, 1.5) or millicores (500m)",
            crate::model::naming::printable(t, 40)
        ))
    };
    if let Some(m) = t.strip_suffix('m') {
        return m.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(bad);
    }
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 3 {
        return Err(bad());
    }
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: i64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)
}

/// A memory amount as Kubernetes writes it: bytes, or a number with a
/// binary (`Ki Mi Gi Ti`) or decimal (`k M G T`) suffix, in bytes.
pub fn parse_memory(text: &str) -> Result<i64, BadQuantity> {
    let t = text.trim();
    let bad = || {
        BadQuantity(format!(
            "{} is not a memory amount: give bytes or a unit (512Mi, 8Gi, 1G)",
            crate::model::naming::printable(t, 40)
        ))
    };
    let units: [(&str, i64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (number, scale) = units
        .iter()
        .find_map(|(u, n)| t.strip_suffix(u).map(|rest| (rest, *n)))
        .unwrap_or((t, 1));
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(bad)
}

/// The value of a Kubernetes quantity (`20m`, `4096Mi`, `1.5`, `2e3`), or
/// `None` if the API server would refuse it. Signs are refused too: nothing
/// here may be negative. Precision is an f64's: enough to compare requests
/// with limits.
pub fn quantity_value(q: &str) -> Option<f64> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return None;
    }
    let base: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp = &e[1..];
            let body = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(exp.parse().ok()?)
        }
        _ => return None,
    };
    Some(base * factor)
}

/// May `ask` proceed with `usage` under `limits`? `size` is what the
/// sandbox it runs would request (`None`: not on Kubernetes, so the CPU
/// and memory limits do not apply).
pub fn check(
    ask: Ask,
    limits: Limits,
    usage: Usage,
    size: Option<SandboxSize>,
    holder: &Holder,
) -> Result<(), QuotaExceeded> {
    let refuse = |what, used, limit| {
        Err(QuotaExceeded {
            holder: holder.clone(),
            what,
            used,
            limit,
            each: 0,
        })
    };
    if ask == Ask::Create
        && let Some(limit) = limits.projects
        && usage.projects >= limit
    {
        return refuse(Counted::Projects, usage.projects, limit);
    }
    if let Some(limit) = limits.running
        && usage.running >= limit
    {
        return refuse(Counted::Running, usage.running, limit);
    }
    let Some(size) = size else { return Ok(()) };
    for (what, limit, used, each) in [
        (
            Counted::Cpu,
            limits.cpu_millis,
            usage.cpu_millis,
            size.cpu_millis,
        ),
        (
            Counted::Memory,
            limits.memory_bytes,
            usage.memory_bytes,
            size.memory_bytes,
        ),
    ] {
        if let Some(limit) = limit
            && used.saturating_add(each) > limit
        {
            return Err(QuotaExceeded {
                holder: holder.clone(),
                what,
                used,
                limit,
                each,
            });
        }
    }
    Ok(())
}

/// "2 of 3 projects · 1 of 2 running"; a count without a limit stands alone.
pub fn summary(limits: Limits, usage: Usage) -> String {
    let part = |used: i64, limit: Option<i64>, what: &str| match limit {
        Some(l) => format!("{used} of {l} {what}"),
        None => format!("{used} {what} (no limit)"),
    };
    let mut out = format!(
        "{} · {}",
        part(usage.projects, limits.projects, "projects"),
        part(usage.running, limits.running, "running")
    );
    // CPU and memory only when limited: off Kubernetes they mean nothing.
    if let Some(l) = limits.cpu_millis {
        out.push_str(&format!(
            " · {} of {} CPU",
            show_cpu(usage.cpu_millis),
            show_cpu(l)
        ));
    }
    if let Some(l) = limits.memory_bytes {
        out.push_str(&format!(
            " · {} of {} memory",
            show_memory(usage.memory_bytes),
            show_memory(l)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(projects: Option<i64>, running: Option<i64>) -> Limits {
        Limits {
            projects,
            running,
            ..Limits::default()
        }
    }

    fn usage(projects: i64, running: i64) -> Usage {
        Usage::of(projects, running, None)
    }

    #[test]
    fn the_quota_table() {
        use Ask::*;
        // (ask, limits, usage, allowed)
        let table = [
            (Create, limits(None, None), usage(100, 100), true),
            (Create, limits(Some(3), None), usage(2, 2), true),
            (Create, limits(Some(3), None), usage(3, 0), false),
            (Create, limits(Some(3), Some(1)), usage(1, 1), false),
            (Create, limits(Some(0), None), usage(0, 0), false),
            (Start, limits(Some(3), None), usage(9, 0), true),
            (Start, limits(None, Some(2)), usage(5, 1), true),
            (Start, limits(None, Some(2)), usage(5, 2), false),
            (Start, limits(None, Some(0)), usage(1, 0), false),
        ];
        for (ask, l, u, allowed) in table {
            assert_eq!(
                check(ask, l, u, None, &Holder::You).is_ok(),
                allowed,
                "{ask:?} {l:?} {u:?}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_limit_and_the_usage() {
        let team = Holder::Team("acme".into());
        let e = check(Ask::Start, limits(None, Some(5)), usage(7, 5), None, &team).unwrap_err();
        assert_eq!(
            e.to_string(),
            "team acme runs 5 of 5 sandboxes: stop one or ask an admin"
        );
        let e = check(
            Ask::Create,
            limits(Some(3), None),
            usage(3, 0),
            None,
            &Holder::You,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "you have 3 of 3 projects: delete one or ask an admin"
        );
        assert_eq!(
            summary(limits(Some(3), None), usage(2, 1)),
            "2 of 3 projects · 1 running (no limit)"
        );
    }

    const GI: i64 = 1 << 30;

    #[test]
    fn cpu_and_memory_limits_count_what_running_sandboxes_request() {
        let size = Some(SandboxSize {
            cpu_millis: 1500,
            memory_bytes: 2 * GI,
        });
        let l = Limits {
            cpu_millis: Some(4000),
            memory_bytes: Some(8 * GI),
            ..Limits::default()
        };
        let team = Holder::Team("acme".into());
        // Two running ask 3000m; a third would make 4500m of 4000m.
        assert!(check(Ask::Start, l, Usage::of(5, 1, size), size, &team).is_ok());
        let e = check(Ask::Create, l, Usage::of(5, 2, size), size, &team).unwrap_err();
        assert_eq!(e.what, Counted::Cpu);
        assert_eq!(
            e.to_string(),
            "team acme's sandboxes request 3 of 4 CPU and one more needs 1500m: stop one or ask an admin"
        );
        // Memory: 4 × 2Gi of 8Gi, with CPU to spare.
        let l = Limits {
            memory_bytes: Some(8 * GI),
            ..Limits::default()
        };
        assert!(check(Ask::Start, l, Usage::of(3, 3, size), size, &Holder::You).is_ok());
        let e = check(Ask::Start, l, Usage::of(4, 4, size), size, &Holder::You).unwrap_err();
        assert_eq!(
            e.to_string(),
            "your sandboxes request 8Gi of 8Gi memory and one more needs 2Gi: stop one or ask an admin"
        );
        // Off Kubernetes the limits do not apply.
        assert!(check(Ask::Start, l, Usage::of(9, 9, None), None, &Holder::You).is_ok());
        assert_eq!(
            summary(l, Usage::of(2, 1, size)),
            "2 projects (no limit) · 1 running (no limit) · 2Gi of 8Gi memory"
        );
    }

    #[test]
    fn a_templates_own_size_counts_instead_of_the_servers() {
        let server = SandboxSize {
            cpu_millis: 500,
            memory_bytes: GI,
        };
        let big = server.with_template(Some("2"), Some("1.5Gi"));
        assert_eq!(big.cpu_millis, 2000);
        assert_eq!(big.memory_bytes, 3 * GI / 2);
        assert_eq!(server.with_template(None, Some("512Mi")).cpu_millis, 500);
        assert_eq!(server.with_template(Some("250m"), None).memory_bytes, GI);
        // Unreadable (never saved so) counts as the server's.
        assert_eq!(server.with_template(Some("lots"), Some("-1Gi")), server);
        // One big sandbox running and a default one asked: 2000m + 500m
        // of 2500m fits; a second big one does not.
        let l = Limits {
            cpu_millis: Some(2500),
            ..Limits::default()
        };
        let usage = Usage::of_sizes(1, &[big]);
        assert_eq!((usage.running, usage.cpu_millis), (1, 2000));
        assert!(check(Ask::Create, l, usage, Some(server), &Holder::You).is_ok());
        let e = check(Ask::Create, l, usage, Some(big), &Holder::You).unwrap_err();
        assert_eq!(
            e.to_string(),
            "your sandboxes request 2 of 2500m CPU and one more needs 2: stop one or ask an admin"
        );
    }

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(parse_cpu("4"), Ok(4000));
        assert_eq!(parse_cpu("1.5"), Ok(1500));
        assert_eq!(parse_cpu("0.25"), Ok(250));
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu(".5"), Ok(500));
        for bad in [
            "",
            "m",
            "-1",
            "1.0005",
            "four",
            "1e3",
            "1.5m",
            "9999999999999999999",
        ] {
            assert!(parse_cpu(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_memory("8Gi"), Ok(8 * GI));
        assert_eq!(parse_memory("512Mi"), Ok(512 << 20));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1024"), Ok(1024));
        for bad in ["", "Gi", "-1Gi", "1.5Gi", "8 GB", "99999999999Ti"] {
            assert!(parse_memory(bad).is_err(), "{bad:?}");
        }
        assert_eq!(show_cpu(4000), "4");
        assert_eq!(show_cpu(1500), "1500m");
        assert_eq!(show_memory(8 * GI), "8Gi");
        assert_eq!(show_memory(25 << 20), "25Mi");
        assert_eq!(show_memory(1000), "1000");
    }
}
