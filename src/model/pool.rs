//! Warm pools (issue 23): how many pre-made resources to keep, which empty
//! slots of a pool to fill and which pooled resources to retire, decided
//! from what the pool holds. Pure; the keeper (`reconcile::pool`) does the
//! I/O.

use uuid::Uuid;

/// How many pre-made, unclaimed resources of each kind are kept ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolTargets {
    /// Databases, each with a role of its own (0: no pool).
    pub databases: u32,
    /// Sandboxes (0: no pool): on the local driver, each already running
    /// its confined tmux server and network, which is most of a start.
    pub sandboxes: u32,
}

impl PoolTargets {
    /// The local driver's default: small, so an idle install holds little.
    pub const LOCAL_DEFAULT: PoolTargets = PoolTargets {
        databases: 2,
        sandboxes: 2,
    };
    /// The most of one kind a pool may hold.
    pub const MAX: u32 = 1000;
    pub const OFF: PoolTargets = PoolTargets {
        databases: 0,
        sandboxes: 0,
    };
}

impl Default for PoolTargets {
    fn default() -> Self {
        Self::LOCAL_DEFAULT
    }
}

/// The kinds of resource a warm pool holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Database,
    Sandbox,
}

impl PoolKind {
    pub const ALL: [PoolKind; 2] = [PoolKind::Database, PoolKind::Sandbox];

    /// Its name in metrics labels and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolKind::Database => "database",
            PoolKind::Sandbox => "sandbox",
        }
    }

    /// How many of this kind `targets` asks for.
    pub fn target(self, targets: PoolTargets) -> u32 {
        match self {
            PoolKind::Database => targets.databases,
            PoolKind::Sandbox => targets.sandboxes,
        }
    }
}

/// An unclaimed pooled resource: the slot it fills and whether it is ready
/// to be handed out (else it is still being made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slotted {
    pub id: Uuid,
    pub slot: i32,
    pub ready: bool,
}

/// What one pass of the keeper does to the pool's size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolPlan {
    /// Empty slots below the target, lowest first: make one resource each.
    pub fill: Vec<i32>,
    /// Ready resources in slots at or above the target (it was lowered):
    /// retire them. One still being made is left to finish and retired by
    /// a later pass, so its maker and its retirer never race.
    pub retire: Vec<Uuid>,
}

/// Fills every empty slot in `0..target` and retires whatever ready
/// resource sits beyond it. Slots, not counts: two replicas that plan from
/// the same view pick the same slots, and the unique slot index lets only
/// one of them fill each, so the pool never holds more than `target`.
pub fn plan(target: u32, held: &[Slotted]) -> PoolPlan {
    let target = i32::try_from(target).unwrap_or(i32::MAX);
    let fill = (0..target)
        .filter(|s| !held.iter().any(|h| h.slot == *s))
        .collect();
    let retire = held
        .iter()
        .filter(|h| h.ready && h.slot >= target)
        .map(|h| h.id)
        .collect();
    PoolPlan { fill, retire }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(slots: &[(i32, bool)]) -> Vec<Slotted> {
        slots
            .iter()
            .map(|&(slot, ready)| Slotted {
                id: Uuid::from_u128(slot as u128 + 1),
                slot,
                ready,
            })
            .collect()
    }

    #[test]
    fn an_empty_pool_fills_every_slot_below_the_target() {
        assert_eq!(plan(3, &[]).fill, vec![0, 1, 2]);
        assert!(plan(3, &[]).retire.is_empty());
    }

    #[test]
    fn only_empty_slots_are_filled_whether_their_holders_are_ready_or_not() {
        let p = plan(4, &held(&[(0, true), (2, false)]));
        assert_eq!(p.fill, vec![1, 3]);
        assert!(p.retire.is_empty());
    }

    #[test]
    fn a_full_pool_needs_nothing() {
        assert_eq!(
            plan(2, &held(&[(0, true), (1, false)])),
            PoolPlan::default()
        );
    }

    #[test]
    fn a_lowered_target_retires_ready_resources_beyond_it_and_waits_for_the_rest() {
        let p = plan(1, &held(&[(0, true), (1, true), (2, false), (3, true)]));
        assert!(p.fill.is_empty());
        assert_eq!(p.retire, vec![Uuid::from_u128(2), Uuid::from_u128(4)]);
    }

    #[test]
    fn a_target_of_zero_retires_every_ready_resource() {
        let p = plan(0, &held(&[(0, true), (1, false)]));
        assert!(p.fill.is_empty());
        assert_eq!(p.retire, vec![Uuid::from_u128(1)]);
    }
}
